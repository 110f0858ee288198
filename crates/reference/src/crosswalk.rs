//! Crosswalks from each source's own codes to ICCS, versioned per source.
//!
//! Files live in `data/crosswalks/<name>/v<N>.csv` with header
//! `source_code,label,iccs,cyber,unit`. The `iccs` crosswalk (a feed already coded in ICCS)
//! is built in: it maps every ICCS code to itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Serialize;

use crate::ReferenceError;
use crate::iccs::Iccs;
use crate::table::{parse_bool, records};

/// Name of the built-in identity crosswalk.
pub const IDENTITY: &str = "iccs";

/// Embedded crosswalk files: (name, version, csv).
const BUILTIN_FILES: &[(&str, u32, &str)] = &[
    ("natinf", 1, include_str!("../data/crosswalks/natinf/v1.csv")),
    ("natinf", 2, include_str!("../data/crosswalks/natinf/v2.csv")),
    ("platform", 1, include_str!("../data/crosswalks/platform/v1.csv")),
    ("nibrs", 1, include_str!("../data/crosswalks/nibrs/v1.csv")),
];

/// What one counted item of a source stands for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// One offence (the ICCS unit of classification).
    Offence,
    /// One victim of an offence (e.g. NIBRS crimes against persons are counted per victim).
    Victim,
    /// One report made to a reporting platform (not yet an established offence).
    Report,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Offence => "offence",
            Unit::Victim => "victim",
            Unit::Report => "report",
        }
    }

    fn from_name(name: &str) -> Option<Unit> {
        match name {
            "offence" => Some(Unit::Offence),
            "victim" => Some(Unit::Victim),
            "report" => Some(Unit::Report),
            _ => None,
        }
    }
}

/// Where a source code lands in ICCS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// ICCS code (any level).
    pub iccs: String,
    /// Default cyber-related flag when the record itself does not say (always true under 0903).
    pub cyber: bool,
    pub unit: Unit,
}

/// One row of a crosswalk file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrosswalkRow {
    pub source_code: String,
    pub label: String,
    #[serde(flatten)]
    pub mapping: Mapping,
}

/// One version of one source's crosswalk.
#[derive(Debug, Clone, Serialize)]
pub struct Crosswalk {
    pub name: String,
    pub version: u32,
    /// True for the built-in `iccs` identity crosswalk.
    pub identity: bool,
    pub rows: Vec<CrosswalkRow>,
    /// Lookup key (trimmed, lowercased source code) -> row index.
    #[serde(skip)]
    index: HashMap<String, usize>,
    /// The unit every row shares, else offences: worked out once, as the ingest asks for it
    /// for each record its crosswalk does not map.
    #[serde(skip)]
    unit: Unit,
}

/// The unit all `rows` share, else offences (the ICCS unit of classification).
fn common_unit(rows: &[CrosswalkRow]) -> Unit {
    let mut units = rows.iter().map(|r| r.mapping.unit);
    match units.next() {
        Some(first) if units.all(|u| u == first) => first,
        _ => Unit::Offence,
    }
}

fn key(code: &str) -> String {
    code.trim().to_lowercase()
}

impl Crosswalk {
    /// Parses one crosswalk file and checks it against the classification: every `iccs` must
    /// be a code of `iccs`, codes under 0903 must default to cyber, source codes must be unique
    /// (compared trimmed and case-insensitively).
    pub fn parse(
        name: &str,
        version: u32,
        csv_text: &str,
        iccs: &Iccs,
    ) -> Result<Crosswalk, ReferenceError> {
        let table = format!("crosswalk {name} v{version}");
        let mut rows = Vec::new();
        let mut index = HashMap::new();
        for (line, rec) in
            records(&table, csv_text, &["source_code", "label", "iccs", "cyber", "unit"])?
        {
            let err = |m: String| ReferenceError::parse(&table, line, m);
            let source_code = rec[0].to_string();
            if source_code.is_empty() {
                return Err(err("empty source_code".into()));
            }
            let code = &rec[2];
            if !iccs.contains(code) {
                return Err(err(format!(
                    "source code '{source_code}' maps to '{code}', which is not in table iccs {}",
                    iccs.version
                )));
            }
            let cyber = parse_bool(&table, line, "cyber", &rec[3])?;
            if iccs.always_cyber(code) && !cyber {
                return Err(err(format!(
                    "source code '{source_code}' maps to '{code}' (acts against computer systems) but cyber is false"
                )));
            }
            let unit = Unit::from_name(&rec[4]).ok_or_else(|| {
                err(format!("source code '{source_code}': unknown unit '{}'", &rec[4]))
            })?;
            if index.insert(key(&source_code), rows.len()).is_some() {
                return Err(err(format!("source code '{source_code}' appears twice")));
            }
            rows.push(CrosswalkRow {
                source_code,
                label: rec[1].to_string(),
                mapping: Mapping { iccs: code.to_string(), cyber, unit },
            });
        }
        let unit = common_unit(&rows);
        Ok(Crosswalk { name: name.to_string(), version, identity: false, rows, index, unit })
    }

    /// The identity crosswalk: every ICCS code maps to itself, unit offence, cyber true only
    /// under 0903.
    pub fn identity(iccs: &Iccs) -> Crosswalk {
        let mut rows = Vec::with_capacity(iccs.len());
        let mut index = HashMap::with_capacity(iccs.len());
        for e in iccs.iter() {
            index.insert(key(&e.code), rows.len());
            rows.push(CrosswalkRow {
                source_code: e.code.clone(),
                label: e.label.clone(),
                mapping: Mapping {
                    iccs: e.code.clone(),
                    cyber: e.always_cyber,
                    unit: Unit::Offence,
                },
            });
        }
        Crosswalk {
            name: IDENTITY.to_string(),
            version: 1,
            identity: true,
            rows,
            index,
            unit: Unit::Offence,
        }
    }

    /// The unit a source counts in when a record is not mapped through this crosswalk: the
    /// unit all its rows share, else offences (the ICCS unit of classification).
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// Maps a source code (compared trimmed and case-insensitively) to ICCS.
    pub fn map(&self, source_code: &str) -> Result<&Mapping, ReferenceError> {
        self.row(source_code).map(|r| &r.mapping).ok_or_else(|| ReferenceError::UnmappedCode {
            code: source_code.to_string(),
            crosswalk: self.name.clone(),
            version: self.version,
            next: self.version + 1,
        })
    }

    /// The whole row for a source code.
    pub fn row(&self, source_code: &str) -> Option<&CrosswalkRow> {
        self.index.get(&key(source_code)).map(|&i| &self.rows[i])
    }

    pub fn contains(&self, source_code: &str) -> bool {
        self.index.contains_key(&key(source_code))
    }
}

/// All built-in crosswalks, by name then version.
#[derive(Debug, Clone, Serialize)]
pub struct Crosswalks {
    by_name: BTreeMap<String, BTreeMap<u32, Crosswalk>>,
}

impl Crosswalks {
    /// The embedded crosswalks plus the `iccs` identity, parsed once against ICCS 1.0.
    pub fn builtin() -> &'static Crosswalks {
        static CROSSWALKS: OnceLock<Crosswalks> = OnceLock::new();
        CROSSWALKS.get_or_init(|| {
            Crosswalks::from_files(Iccs::v1_0(), BUILTIN_FILES)
                .unwrap_or_else(|e| panic!("embedded crosswalk is invalid: {e}"))
        })
    }

    /// Builds a registry from `(name, version, csv)` triples plus the identity crosswalk.
    pub fn from_files(
        iccs: &Iccs,
        files: &[(&str, u32, &str)],
    ) -> Result<Crosswalks, ReferenceError> {
        let mut by_name: BTreeMap<String, BTreeMap<u32, Crosswalk>> = BTreeMap::new();
        for &(name, version, text) in files {
            if name == IDENTITY {
                return Err(ReferenceError::parse(
                    format!("crosswalk {name} v{version}"),
                    0,
                    "the name 'iccs' is reserved for the built-in identity crosswalk",
                ));
            }
            let cw = Crosswalk::parse(name, version, text, iccs)?;
            if by_name.entry(name.to_string()).or_default().insert(version, cw).is_some() {
                return Err(ReferenceError::parse(
                    format!("crosswalk {name} v{version}"),
                    0,
                    "version registered twice",
                ));
            }
        }
        let identity = Crosswalk::identity(iccs);
        by_name.entry(IDENTITY.to_string()).or_default().insert(1, identity);
        Ok(Crosswalks { by_name })
    }

    /// Crosswalk names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Versions of a crosswalk, ascending; empty for an unknown name.
    pub fn versions(&self, name: &str) -> Vec<u32> {
        self.by_name.get(name).map(|v| v.keys().copied().collect()).unwrap_or_default()
    }

    /// Highest version of a crosswalk.
    pub fn latest(&self, name: &str) -> Option<&Crosswalk> {
        self.by_name.get(name).and_then(|v| v.values().next_back())
    }

    pub fn get(&self, name: &str, version: u32) -> Option<&Crosswalk> {
        self.by_name.get(name).and_then(|v| v.get(&version))
    }

    /// `get` (or `latest` when `version` is `None`) with an error naming what is missing.
    pub fn resolve(&self, name: &str, version: Option<u32>) -> Result<&Crosswalk, ReferenceError> {
        let found = match version {
            Some(v) => self.get(name, v),
            None => self.latest(name),
        };
        found.ok_or_else(|| ReferenceError::UnknownCrosswalk {
            name: name.to_string(),
            version,
            known: self
                .by_name
                .iter()
                .map(|(n, vs)| {
                    let vs: Vec<String> = vs.keys().map(|v| format!("v{v}")).collect();
                    format!("{n} ({})", vs.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Every crosswalk, by name then version.
    pub fn iter(&self) -> impl Iterator<Item = &Crosswalk> {
        self.by_name.values().flat_map(|v| v.values())
    }
}
