//! Property tests (fuzzing) of the CSV reader `observatory estimate` reads a survey file with
//! (`Table::from_csv_str`): arbitrary text and valid files mutated (quotes, separators, line
//! ends, BOMs, `NA`, numbers of every form). No panic; a refusal names its line; a table read
//! has one value per row in every column.

use observatory_fuzzing::{config, mutated_text};
use proptest::prelude::*;

use crate::{StatsError, Table};

const SEED: &str = "\"cds\",\"stype\",\"api00\",\"w\",\"fpc\"\n\"01\",\"E\",693,44.21,4421\n\"02\",\"H\",NA,44.21,4421\n\"03\",\"M\",,1e2,\"4421\"\r\n\n";

const PIECES: &[&str] = &[
    "\"", "\"\"", ",", "\n", "\r", "\r\n", "\u{feff}", "\0", "NA", "\"NA\"", " ", "1e400", "-0",
    "0x10", "inf", "NaN", "1_000", "٣", "é", "\t", "+5", ".5", "5.", "1e", "--1",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => mutated_text(SEED, PIECES, 0..8, 1..6), 1 => ".{0,60}", 1 => "[a-c0-9,\"\\n\\r.-]{0,60}"]
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
