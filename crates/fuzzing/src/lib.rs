//! What the `fuzz_*` property tests of the crates share, so that every property runs under the
//! same rules (the cases and seed `scripts/fuzz.sh` sets, the same cases in CI every time) and
//! the crates that fuzz a text file mutate it alike. A dev-dependency only: no service links it.

use std::ops::Range;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// The seed of every run that `PROPTEST_RNG_SEED` does not give one: changing it changes the
/// cases CI runs, everywhere at once.
const RNG_SEED: u64 = 0x0b5e_7a70_0f2a_2026;

/// `cases` cases unless `PROPTEST_CASES` says otherwise (`scripts/fuzz.sh` sets a million); a
/// fixed seed unless `PROPTEST_RNG_SEED` gives one, so CI runs the same cases every time; no
/// regression files written into the tree (a failure found is kept as a unit test beside its
/// parser).
pub fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(RNG_SEED);
    }
    config.failure_persistence = None;
    config
}

/// `seed` edited a number of times drawn from `edits`: each edit inserts one of `pieces`, deletes
/// a run of characters as long as a number drawn from `deleted`, or replaces one character by the
/// first of a piece. Positions wrap around the text, so every edit lands somewhere. Characters,
/// not bytes: the parsers fuzzed this way take a `&str`, so the text must stay UTF-8.
pub fn mutated_text(
    seed: &'static str,
    pieces: &'static [&'static str],
    edits: Range<usize>,
    deleted: Range<usize>,
) -> impl Strategy<Value = String> {
    let edit = (0u8..3, any::<usize>(), proptest::sample::select(pieces), deleted);
    proptest::collection::vec(edit, edits).prop_map(move |edits| {
        let mut text: Vec<char> = seed.chars().collect();
        for (kind, at, piece, n) in edits {
            let at = at % (text.len() + 1);
            match kind {
                0 => {
                    text.splice(at..at, piece.chars());
                }
                1 => {
                    let end = (at + n).min(text.len());
                    text.drain(at..end);
                }
                _ if at < text.len() => text[at] = piece.chars().next().unwrap_or(' '),
                _ => {}
            }
        }
        text.into_iter().collect()
    })
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    const SEED: &str = "a = \"é\"\n";
    const PIECES: &[&str] = &["\"", "\n", "\u{feff}", ""];

    fn draw(strategy: &impl Strategy<Value = String>, runner: &mut TestRunner) -> String {
        strategy.new_tree(runner).unwrap().current()
    }

    #[test]
    fn the_environment_alone_overrides_the_cases_and_the_seed() {
        let config = config(7);
        if std::env::var_os("PROPTEST_CASES").is_none() {
            assert_eq!(config.cases, 7);
        }
        if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
            assert_eq!(config.rng_seed, RngSeed::Fixed(RNG_SEED));
        }
        assert!(config.failure_persistence.is_none());
    }

    #[test]
    fn no_edit_leaves_the_seed() {
        let strategy = mutated_text(SEED, PIECES, 0..1, 1..6);
        let mut runner = TestRunner::new(config(1));
        for _ in 0..16 {
            assert_eq!(draw(&strategy, &mut runner), SEED);
        }
    }

    /// A failure found in CI must come back on a developer's machine from the seed alone.
    #[test]
    fn the_same_seed_draws_the_same_texts() {
        let strategy = mutated_text(SEED, PIECES, 0..6, 1..6);
        let (mut first, mut second) = (TestRunner::new(config(1)), TestRunner::new(config(1)));
        let texts: Vec<String> = (0..64).map(|_| draw(&strategy, &mut first)).collect();
        assert_eq!(texts, (0..64).map(|_| draw(&strategy, &mut second)).collect::<Vec<_>>());
        assert!(texts.iter().any(|t| t != SEED), "64 draws and never an edit");
    }
}
