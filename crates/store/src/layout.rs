//! The storage contract, as code: which projections exist, which tables their manifests name,
//! where every kind of file lives, and the columns of every table. The projector writes and the
//! query reads through these names only, so a rename is a compile error on both sides; a change
//! to what is written is a deliberate bump of [`crate::Manifest::FORMAT`] (the manifest snapshot
//! test holds the JSON shape).
//!
//! ```text
//! projections/<projection>/CURRENT                                   "v<N>": the serving version
//! projections/<projection>/v<N>/manifests/<u64::MAX - seq:020>.json   newest lists first
//! projections/<projection>/v<N>/data/<table dir>/<first>-<last>.parquet
//! releases/r<N>.json                                                  create-only, never deleted
//! reports/<kind>/<period>/r<N>/{report.pdf,tables.xlsx,tables/*.csv,report.json,manifest.json}
//!                                                   create-only, manifest last, never deleted
//! ```
//!
//! | projection | table (manifest key) | data directory |
//! |---|---|---|
//! | `incidents` | `counts` | `data/counts/year=<yyyy>/` |
//! | `incidents` | `state` | `data/state/` |
//! | `incidents` | `coverage` | `data/coverage/` |
//! | `surveys` | `waves` | `data/waves/` |
//! | `surveys` | `microdata/<survey>/<wave>` | `data/microdata/survey=<survey>/wave=<wave>/` |

use std::fmt;

use object_store::path::Path;

/// `releases/`: one create-only JSON per release.
pub const RELEASES: &str = "releases";

/// `releases/<id>.json`.
pub fn release(id: &str) -> Path {
    Path::from(format!("{RELEASES}/{id}.json"))
}

/// The release id of `releases/<id>.json`.
pub fn release_id(path: &Path) -> Option<&str> {
    path.filename()?.strip_suffix(".json")
}

/// `reports/`: published reports, `reports/<kind>/<period>/<release>/<file>`.
pub const REPORTS: &str = "reports";

/// The file whose presence makes a report published (written last).
pub const REPORT_MANIFEST: &str = "manifest.json";

/// `reports/<kind>/<period>/<release>/<name>` (`name` may hold a `/`: `tables/x.csv`).
pub fn report_file(kind: &str, period: &str, release: &str, name: &str) -> Path {
    Path::from(format!("{REPORTS}/{kind}/{period}/{release}/{name}"))
}

/// `reports/<kind>/<period>/runs/<occurrence>.json`: the claim of one scheduled run.
pub fn report_claim(kind: &str, period: &str, occurrence: &str) -> Path {
    Path::from(format!("{REPORTS}/{kind}/{period}/runs/{occurrence}.json"))
}

/// The report a `reports/<kind>/<period>/<release>/manifest.json` path names.
pub fn report_key_of_manifest(path: &Path) -> Option<crate::reports::ReportKey> {
    let parts: Vec<&str> = path.as_ref().split('/').collect();
    match parts.as_slice() {
        [REPORTS, kind, period, release, REPORT_MANIFEST] => Some(crate::reports::ReportKey {
            kind: (*kind).to_owned(),
            period: (*period).to_owned(),
            release: (*release).to_owned(),
        }),
        _ => None,
    }
}

/// A projection in the store: one fold of the stream, with its own versions and manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionId {
    /// Incident counts, incident state and period closures (`obs.incident.>`).
    Incidents,
    /// Survey wave declarations and microdata (`obs.survey.>`).
    Surveys,
}

impl ProjectionId {
    pub const ALL: [ProjectionId; 2] = [ProjectionId::Incidents, ProjectionId::Surveys];

    /// The projection's directory name under `projections/`, and its `projection` in manifests.
    pub const fn name(self) -> &'static str {
        match self {
            ProjectionId::Incidents => "incidents",
            ProjectionId::Surveys => "surveys",
        }
    }

    pub fn parse(name: &str) -> Option<ProjectionId> {
        ProjectionId::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `projections/<name>`.
    pub fn root(self) -> String {
        format!("projections/{}", self.name())
    }

    /// `projections/<name>/CURRENT`: which version serves readers.
    pub fn current(self) -> Path {
        Path::from(format!("{}/CURRENT", self.root()))
    }

    /// `projections/<name>/v<version>`: everything of one version lives below it.
    pub fn version_root(self, version: u32) -> String {
        format!("{}/v{version}", self.root())
    }

    /// The directory of a version's manifests.
    pub fn manifests(self, version: u32) -> Path {
        Path::from(format!("{}/manifests", self.version_root(version)))
    }

    /// The manifest of `version` that commits everything up to `last_sequence`.
    pub fn manifest(self, version: u32, last_sequence: u64) -> Path {
        Path::from(format!(
            "{}/manifests/{}",
            self.version_root(version),
            manifest_file_name(last_sequence)
        ))
    }

    /// The directory of a version's data files (what garbage collection sweeps).
    pub fn data(self, version: u32) -> Path {
        Path::from(format!("{}/{DATA_DIR}", self.version_root(version)))
    }

    /// The object path of a file named relative to a version root, as manifests name them.
    pub fn object(self, version: u32, relative: &str) -> Path {
        Path::from(format!("{}/{relative}", self.version_root(version)))
    }

    /// The version a path below `projections/<name>/` belongs to, if any.
    pub fn version_of(self, path: &Path) -> Option<u32> {
        let mut parts = path.parts();
        (parts.next()?.as_ref() == "projections").then_some(())?;
        (parts.next()?.as_ref() == self.name()).then_some(())?;
        parts.next()?.as_ref().strip_prefix('v')?.parse().ok()
    }
}

impl fmt::Display for ProjectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Data files live under `v<N>/data/`.
const DATA_DIR: &str = "data";

/// A table of a manifest: the key of [`crate::Manifest::tables`] and the directory its files
/// are written to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// Incident count deltas (or snapshots) per cell, partitioned by year: [`counts`].
    Counts,
    /// The state of every changed incident, one row per applied change: [`state`].
    State,
    /// Every closed (source, month[, département]), rewritten whole: [`coverage`].
    Coverage,
    /// Every survey wave's declaration and status, one snapshot per flush: [`waves`].
    Waves,
    /// One wave's respondent rows, in stream order: [`microdata`].
    Microdata { survey: String, wave: String },
    /// The incident fold's memory at one commit (its cells, totals and every incident's
    /// entry), what a restart loads before the state rows committed after it; not Parquet
    /// but the projector's own format (`observatory_projector::incidents::image`). At most
    /// one per manifest; readers of the data never need it.
    FoldImage,
}

impl TableId {
    pub fn microdata(survey: &str, wave: &str) -> TableId {
        TableId::Microdata { survey: survey.to_owned(), wave: wave.to_owned() }
    }

    /// The projection whose manifests name this table.
    pub fn projection(&self) -> ProjectionId {
        match self {
            TableId::Counts | TableId::State | TableId::Coverage | TableId::FoldImage => {
                ProjectionId::Incidents
            }
            TableId::Waves | TableId::Microdata { .. } => ProjectionId::Surveys,
        }
    }

    /// The key of this table in a manifest's `tables`.
    pub fn key(&self) -> String {
        match self {
            TableId::Counts => "counts".into(),
            TableId::State => "state".into(),
            TableId::Coverage => "coverage".into(),
            TableId::Waves => "waves".into(),
            TableId::FoldImage => "fold_image".into(),
            TableId::Microdata { survey, wave } => format!("{MICRODATA}/{survey}/{wave}"),
        }
    }

    /// The table a manifest key names; `None` for a key this build does not know.
    pub fn parse(key: &str) -> Option<TableId> {
        match key {
            "counts" => Some(TableId::Counts),
            "state" => Some(TableId::State),
            "coverage" => Some(TableId::Coverage),
            "waves" => Some(TableId::Waves),
            "fold_image" => Some(TableId::FoldImage),
            _ => {
                let (survey, wave) =
                    key.strip_prefix(MICRODATA)?.strip_prefix('/')?.split_once('/')?;
                Some(TableId::microdata(survey, wave))
            }
        }
    }

    /// The directory of this table's files, relative to the version root. Counts are
    /// partitioned by year ([`TableId::data_file`] adds `year=<yyyy>/`).
    pub fn dir(&self) -> String {
        match self {
            TableId::Microdata { survey, wave } => {
                format!("{DATA_DIR}/{MICRODATA}/survey={survey}/wave={wave}")
            }
            other => format!("{DATA_DIR}/{}", other.key()),
        }
    }

    /// The relative path of the file holding sequences `first..=last` of this table (of one
    /// `year` for counts). Names come from sequence ranges, so re-processing after a crash
    /// rewrites the same name with the same content.
    pub fn data_file(&self, year: Option<i32>, first: u64, last: u64) -> String {
        let extension = self.extension();
        match year {
            Some(year) => format!("{}/year={year}/{first}-{last}.{extension}", self.dir()),
            None => format!("{}/{first}-{last}.{extension}", self.dir()),
        }
    }

    fn extension(&self) -> &'static str {
        match self {
            TableId::FoldImage => IMAGE_EXTENSION,
            _ => "parquet",
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

const MICRODATA: &str = "microdata";

/// Object name of a manifest: `u64::MAX - seq`, zero-padded, so a lexical listing puts the
/// newest first.
pub fn manifest_file_name(last_sequence: u64) -> String {
    format!("{:020}.json", u64::MAX - last_sequence)
}

/// The sequence a manifest's object name commits, if it is one.
pub fn sequence_of_manifest_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20).then(|| digits.parse::<u64>().ok().map(|inverted| u64::MAX - inverted))?
}

const IMAGE_EXTENSION: &str = "obsfold";

/// The sequence range `(first, last)` in a data file's name (`<first>-<last>.parquet`, or
/// `.obsfold` for a fold image).
pub fn data_file_range(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".parquet").or_else(|| name.strip_suffix(".obsfold"))?;
    let (first, last) = stem.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// Columns of [`TableId::Counts`]: one row per cell at the grain (year, month, département,
/// ICCS, cyber, victim type, channel, source, unit) with the roll-ups precomputed, a signed
/// `count` and `loss_cents`. Readers sum every file the manifest names.
pub mod counts {
    pub const YEAR: &str = "year";
    /// `YYYY-MM`.
    pub const MONTH: &str = "month";
    /// INSEE code; null when the record named none.
    pub const DEPARTEMENT: &str = "departement";
    pub const ICCS: &str = "iccs";
    pub const CYBER: &str = "cyber";
    pub const VICTIM_TYPE: &str = "victim_type";
    pub const CHANNEL: &str = "channel";
    pub const SOURCE: &str = "source";
    pub const UNIT: &str = "unit";
    pub const ICCS_SECTION: &str = "iccs_section";
    pub const ICCS_DIVISION: &str = "iccs_division";
    pub const ICCS_GROUP: &str = "iccs_group";
    pub const REGION: &str = "region";
    pub const COUNT: &str = "count";
    pub const LOSS_CENTS: &str = "loss_cents";
    /// The sum of the record keys of the incidents the cell counts (a delta, like `count`):
    /// the cell key of any aggregate is the sum of its cells' sums modulo 256.
    pub const KEY_SUM: &str = "key_sum";

    /// The dimensions in file order (every column but the measures).
    pub const DIMENSIONS: [&str; 13] = [
        YEAR,
        MONTH,
        DEPARTEMENT,
        ICCS,
        CYBER,
        VICTIM_TYPE,
        CHANNEL,
        SOURCE,
        UNIT,
        ICCS_SECTION,
        ICCS_DIVISION,
        ICCS_GROUP,
        REGION,
    ];
}

/// Columns of [`TableId::State`]: the state of an incident after one applied change; the row
/// with the highest `sequence` of an incident wins.
pub mod state {
    pub const SOURCE: &str = "source";
    pub const AGENCY_INCIDENT_ID: &str = "agency_incident_id";
    pub const REVISION: &str = "revision";
    pub const SEQUENCE: &str = "sequence";
    pub const WITHDRAWN: &str = "withdrawn";
    /// The incident's record key (0..=255), kept so a restore need not recompute it.
    pub const RECORD_KEY: &str = "record_key";
    pub const OCCURRED_ON: &str = "occurred_on";
    pub const OCCURRED_UNTIL: &str = "occurred_until";
    pub const REPORTED_ON: &str = "reported_on";
    pub const ICCS: &str = "iccs";
    pub const OFFENCE_CODE: &str = "offence_code";
    pub const CYBER: &str = "cyber";
    pub const DEPARTEMENT: &str = "departement";
    pub const VICTIM_TYPE: &str = "victim_type";
    pub const CHANNEL: &str = "channel";
    pub const LOSS_EUR: &str = "loss_eur";
    pub const UNIT: &str = "unit";
    pub const CROSSWALK: &str = "crosswalk";
    pub const CROSSWALK_VERSION: &str = "crosswalk_version";
    pub const ICCS_FROM_CROSSWALK: &str = "iccs_from_crosswalk";
    pub const CYBER_FROM_CROSSWALK: &str = "cyber_from_crosswalk";
}

/// Columns of [`TableId::Coverage`]: one row per closed (source, month), or per closed
/// (source, month, département) when the closure listed départements.
pub mod coverage {
    pub const SOURCE: &str = "source";
    pub const MONTH: &str = "month";
    /// Null when the whole month was closed.
    pub const DEPARTEMENT: &str = "departement";
}

/// Columns of [`TableId::Waves`]: one row per declared wave.
pub mod waves {
    pub const SURVEY: &str = "survey";
    pub const WAVE: &str = "wave";
    pub const SOURCE: &str = "source";
    pub const POPULATION: &str = "population";
    pub const REFERENCE_FROM: &str = "reference_from";
    pub const REFERENCE_TO: &str = "reference_to";
    pub const DECLARED_SEQUENCE: &str = "declared_sequence";
    pub const CLOSED_SEQUENCE: &str = "closed_sequence";
    pub const FINAL_WEIGHTS: &str = "final_weights";
    pub const CLOSURE_DIGEST: &str = "closure_digest";
    pub const RESPONDENTS: &str = "respondents";
    /// The wave's declaration event, as JSON.
    pub const DECLARATION: &str = "declaration";
}

/// Columns of [`TableId::Microdata`]: the respondent id column the wave declares (text), then
/// every declared variable in order (numeric as Float64, integer as Int64, categorical and
/// text as Utf8), and `final_weight` once the wave closed with final weights.
pub mod microdata {
    pub const FINAL_WEIGHT: &str = "final_weight";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_manifests_sort_first() {
        let older = manifest_file_name(41);
        let newer = manifest_file_name(1_000_000);
        assert!(newer < older);
        assert_eq!(sequence_of_manifest_file_name(&older), Some(41));
        assert_eq!(sequence_of_manifest_file_name("x.json"), None);
        assert_eq!(sequence_of_manifest_file_name("123.json"), None);
    }

    #[test]
    fn every_table_key_parses_back_to_its_table() {
        let tables = [
            TableId::Counts,
            TableId::State,
            TableId::Coverage,
            TableId::Waves,
            TableId::FoldImage,
            TableId::microdata("cvs", "2024"),
        ];
        for table in tables {
            assert_eq!(TableId::parse(&table.key()), Some(table.clone()), "{table}");
        }
        assert_eq!(TableId::parse("microdata/cvs"), None);
        assert_eq!(TableId::parse("nothing"), None);
    }

    /// The paths the store has always used: changing one orphans every existing store.
    #[test]
    fn paths_keep_their_shape() {
        let incidents = ProjectionId::Incidents;
        assert_eq!(incidents.current().as_ref(), "projections/incidents/CURRENT");
        assert_eq!(
            incidents.manifest(3, 7).as_ref(),
            "projections/incidents/v3/manifests/18446744073709551608.json"
        );
        assert_eq!(
            TableId::Counts.data_file(Some(2024), 1, 9),
            "data/counts/year=2024/1-9.parquet"
        );
        assert_eq!(TableId::State.data_file(None, 1, 9), "data/state/1-9.parquet");
        assert_eq!(TableId::Coverage.data_file(None, 5, 5), "data/coverage/5-5.parquet");
        assert_eq!(TableId::Waves.data_file(None, 2, 4), "data/waves/2-4.parquet");
        let image = TableId::FoldImage.data_file(None, 1, 9);
        assert_eq!(image, "data/fold_image/1-9.obsfold");
        // Garbage collection reads the range of every data file, images included.
        assert_eq!(data_file_range("1-9.obsfold"), Some((1, 9)));
        assert_eq!(data_file_range("1-9.parquet"), Some((1, 9)));
        assert_eq!(data_file_range("1-9.json"), None);
        assert_eq!(
            TableId::microdata("cvs", "2024").data_file(None, 2, 4),
            "data/microdata/survey=cvs/wave=2024/2-4.parquet"
        );
        assert_eq!(TableId::microdata("cvs", "2024").key(), "microdata/cvs/2024");
        assert_eq!(
            ProjectionId::Surveys.object(2, "data/waves/2-4.parquet").as_ref(),
            "projections/surveys/v2/data/waves/2-4.parquet"
        );
        assert_eq!(incidents.version_of(&incidents.object(12, "data/state/1-2.parquet")), Some(12));
        assert_eq!(ProjectionId::Surveys.version_of(&incidents.object(12, "x")), None);
        assert_eq!(data_file_range("10-250.parquet"), Some((10, 250)));
        assert_eq!(data_file_range("10-x.parquet"), None);
    }
}
