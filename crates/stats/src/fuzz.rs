//! Property tests (fuzzing) of the CSV reader `observatory estimate` reads a survey file with
//! (`Table::from_csv_str`): arbitrary text and valid files mutated (quotes, separators, line
//! ends, BOMs, `NA`, numbers of every form). No panic; a refusal names its line; a table read
//! has one value per row in every column.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::{StatsError, Table};

/// `cases` unless `PROPTEST_CASES` says otherwise, a fixed seed unless `PROPTEST_RNG_SEED`
/// gives one, no regression files.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x0b5e_7a70_0f2a_2026);
    }
    config.failure_persistence = None;
    config
}

const SEED: &str = "\"cds\",\"stype\",\"api00\",\"w\",\"fpc\"\n\"01\",\"E\",693,44.21,4421\n\"02\",\"H\",NA,44.21,4421\n\"03\",\"M\",,1e2,\"4421\"\r\n\n";

const PIECES: &[&str] = &[
    "\"", "\"\"", ",", "\n", "\r", "\r\n", "\u{feff}", "\0", "NA", "\"NA\"", " ", "1e400", "-0",
    "0x10", "inf", "NaN", "1_000", "٣", "é", "\t", "+5", ".5", "5.", "1e", "--1",
];

fn text() -> impl Strategy<Value = String> {
    let edit = (0u8..3, any::<usize>(), proptest::sample::select(PIECES), 1usize..6);
    let mutated = proptest::collection::vec(edit, 0..8).prop_map(|edits| {
        let mut text: Vec<char> = SEED.chars().collect();
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
        text.into_iter().collect::<String>()
    });
    prop_oneof![4 => mutated, 1 => ".{0,60}", 1 => "[a-c0-9,\"\\n\\r.-]{0,60}"]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_stats_csv_tables(text in text()) {
        match Table::from_csv_str(&text) {
            Ok(table) => {
                for name in table.column_names() {
                    let column = table.column(name).unwrap();
                    prop_assert_eq!(column.len(), table.n_rows());
                    for row in 0..table.n_rows() {
                        let _ = (column.is_missing(row), column.text(row));
                    }
                }
            }
            Err(StatsError::Csv { line, message }) => {
                prop_assert!(line >= 1 && !message.trim().is_empty());
                prop_assert!(line <= text.split('\n').count() + text.matches('\r').count());
            }
            Err(other) => prop_assert!(!other.to_string().trim().is_empty()),
        }
    }
}
