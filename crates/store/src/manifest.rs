//! The manifest: the commit record of one flush, and the only checkpoint of a projection.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::layout::{ProjectionId, TableId};

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
    /// How the projection keyed its records for disclosure control (`record_keys`: the
    /// fingerprint of the deployment secret); absent in format 1.
    #[serde(default)]
    pub disclosure: BTreeMap<String, String>,
}

impl Manifest {
    /// The JSON shape of manifests this build writes and reads. Bump it (and teach readers the
    /// older shape) whenever the snapshot test below has to change. Format 2 added
    /// `disclosure`; format 1 reads with it empty.
    pub const FORMAT: u32 = 2;

    /// The `disclosure` entry naming the secret the projection keyed its records with (its
    /// fingerprint, or [`Manifest::NO_RECORD_KEYS`]).
    pub const RECORD_KEYS: &str = "record_keys";

    /// A projection folded without record keys (every key 0): nothing public is served from it.
    pub const NO_RECORD_KEYS: &str = "none";

    /// An empty manifest of `version`: what a version that has committed nothing yet holds.
    pub fn empty(projection: ProjectionId, version: u32, stream: &str) -> Manifest {
        Manifest {
            format: Manifest::FORMAT,
            projection: projection.name().to_owned(),
            version,
            stream: stream.to_owned(),
            last_sequence: 0,
            committed_at: Utc::now(),
            tables: BTreeMap::new(),
            stats: BTreeMap::new(),
            reference: BTreeMap::new(),
            disclosure: BTreeMap::new(),
        }
    }

    /// The live files of `table` (none when the manifest does not name it).
    pub fn files(&self, table: &TableId) -> &[DataFile] {
        self.tables.get(&table.key()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The tables this manifest names, typed; keys this build does not know are left out.
    pub fn table_ids(&self) -> impl Iterator<Item = TableId> + '_ {
        self.tables.keys().filter_map(|key| TableId::parse(key))
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
    use super::*;

    /// The manifest JSON is the storage format every reader of every version relies on. This
    /// snapshot fails on any change of shape: make such a change deliberately, with a bump of
    /// `Manifest::FORMAT` and a reader for the previous format.
    #[test]
    fn the_manifest_json_keeps_its_shape() {
        let mut manifest = Manifest::empty(ProjectionId::Incidents, 2, "OBSERVATORY");
        manifest.last_sequence = 42;
        manifest.committed_at = "2026-01-02T03:04:05Z".parse().unwrap();
        manifest.tables.insert(
            TableId::Counts.key(),
            vec![DataFile {
                path: TableId::Counts.data_file(Some(2024), 1, 42),
                year: Some(2024),
                first_sequence: 1,
                last_sequence: 42,
                rows: 7,
                bytes: 1234,
            }],
        );
        manifest.tables.insert(
            TableId::State.key(),
            vec![DataFile {
                path: TableId::State.data_file(None, 1, 42),
                year: None,
                first_sequence: 1,
                last_sequence: 42,
                rows: 40,
                bytes: 4321,
            }],
        );
        manifest.stats.insert("events_applied".into(), 42);
        manifest.reference.insert("iccs".into(), "1.0".into());
        manifest.disclosure.insert("record_keys".into(), "0123456789abcdef".into());
        let expected = r#"{
  "format": 2,
  "projection": "incidents",
  "version": 2,
  "stream": "OBSERVATORY",
  "last_sequence": 42,
  "committed_at": "2026-01-02T03:04:05Z",
  "tables": {
    "counts": [
      {
        "path": "data/counts/year=2024/1-42.parquet",
        "year": 2024,
        "first_sequence": 1,
        "last_sequence": 42,
        "rows": 7,
        "bytes": 1234
      }
    ],
    "state": [
      {
        "path": "data/state/1-42.parquet",
        "first_sequence": 1,
        "last_sequence": 42,
        "rows": 40,
        "bytes": 4321
      }
    ]
  },
  "stats": {
    "events_applied": 42
  },
  "reference": {
    "iccs": "1.0"
  },
  "disclosure": {
    "record_keys": "0123456789abcdef"
  }
}"#;
        assert_eq!(serde_json::to_string_pretty(&manifest).unwrap(), expected);
        let read: Manifest = serde_json::from_str(expected).unwrap();
        assert_eq!(read, manifest);
        assert_eq!(read.files(&TableId::Counts).len(), 1);
        assert!(read.files(&TableId::Coverage).is_empty());
        assert_eq!(read.table_ids().collect::<Vec<_>>(), vec![TableId::Counts, TableId::State]);
        // Format 1 (no `disclosure`) still reads.
        let format_1 = expected
            .replace("\"format\": 2", "\"format\": 1")
            .replace(",\n  \"disclosure\": {\n    \"record_keys\": \"0123456789abcdef\"\n  }", "");
        let old: Manifest = serde_json::from_str(&format_1).unwrap();
        assert!(old.disclosure.is_empty() && old.format == 1);
    }
}
