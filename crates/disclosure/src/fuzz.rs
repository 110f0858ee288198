//! Property tests (fuzzing) of the disclosure files read at start: the perturbation table
//! (`PTable::from_csv`, the shipped CSV mutated) and the deployment secret file
//! (`RecordKeys::from_hex`). No panic; a table is read only when every guarantee holds (it then
//! perturbs any count with any cell key), else refused naming the line; a secret is keyed only
//! from enough hex digits.

use observatory_fuzzing::{config, mutated_text};
use proptest::prelude::*;

use crate::{MIN_SECRET_BYTES, PTable, PTableError, RecordKeys};

const SHIPPED: &str = include_str!("../data/ptable-1.csv");

const PIECES: &[&str] = &[
    ",",
    "\n",
    "\r\n",
    "-",
    "0",
    "1",
    "9",
    "4294967295",
    "4294967296",
    "-2147483649",
    "1e400",
    "NaN",
    "inf",
    "none",
    "variance:",
    "variance:1e9",
    "# D=",
    " V=",
    " js=",
    "D=4294967295",
    "js=4294967295",
    "\u{feff}",
    "\0",
    "é",
];

fn table_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => mutated_text(SHIPPED, PIECES, 0..4, 1..40),
        1 => "# D=[0-9]{1,10} V=[0-9.]{1,6} js=[0-9]{1,10}\n(.{0,20}\n){0,3}",
        1 => ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_ptable_files(text in table_text(), counts in proptest::collection::vec((any::<u64>(), any::<u8>()), 4)) {
        match PTable::from_csv(&text) {
            Ok(table) => {
                for (count, key) in counts {
                    let published = table.perturb(count, key);
                    prop_assert!(count > 1_000 || published <= count + 64);
                }
            }
            Err(PTableError::Csv { why, .. }) => prop_assert!(!why.trim().is_empty()),
            Err(other) => prop_assert!(!other.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn fuzz_secret_files(text in prop_oneof![
        "[0-9a-fA-F]{0,80}",
        "\\s{0,2}[0-9a-f]{30,40}\\s{0,2}",
        "[0-9a-f+ -]{0,40}",
        ".{0,40}",
    ]) {
        match RecordKeys::from_hex(&text) {
            Ok(keys) => {
                let hex = text.trim();
                prop_assert!(hex.len() >= 2 * MIN_SECRET_BYTES && hex.len() % 2 == 0, "{:?}", text);
                prop_assert_eq!(keys.fingerprint().len(), 16);
            }
            Err(weak) => prop_assert!(weak.found < MIN_SECRET_BYTES),
        }
    }
}
