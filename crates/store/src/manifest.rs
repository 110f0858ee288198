use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The commit record of one flush: which files make up the projection and the last stream
/// sequence applied to them. Readers see a projection only through a manifest (invariant 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub projection: String,
    pub version: u32,
    pub stream: String,
    /// Every event up to and including this sequence is reflected, none after it.
    pub last_sequence: u64,
    pub committed_at: DateTime<Utc>,
    /// Live files per table (e.g. "counts", "state"), paths relative to the version root.
    pub tables: BTreeMap<String, Vec<DataFile>>,
    /// Figures about the projection at this point (events applied, incidents, …).
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
    /// Reference data versions the projection was computed with.
    #[serde(default)]
    pub reference: BTreeMap<String, String>,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    pub fn files(&self, table: &str) -> &[DataFile] {
        self.tables.get(table).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Object name of a manifest: `u64::MAX - seq`, zero-padded, so a lexical listing puts
    /// the newest first.
    pub fn file_name(last_sequence: u64) -> String {
        format!("{:020}.json", u64::MAX - last_sequence)
    }

    pub fn sequence_of_file_name(name: &str) -> Option<u64> {
        let digits = name.strip_suffix(".json")?;
        (digits.len() == 20)
            .then(|| digits.parse::<u64>().ok().map(|inverted| u64::MAX - inverted))
            .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to `projections/<name>/v<version>/`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub rows: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    #[test]
    fn newer_manifests_sort_first() {
        let older = Manifest::file_name(41);
        let newer = Manifest::file_name(1_000_000);
        assert!(newer < older);
        assert_eq!(Manifest::sequence_of_file_name(&older), Some(41));
        assert_eq!(Manifest::sequence_of_file_name("x.json"), None);
    }
}
