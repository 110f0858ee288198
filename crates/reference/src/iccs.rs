//! UNODC International Classification of Crime for Statistical Purposes (ICCS), version 1.0.
//!
//! Codes are hierarchical: sections have 2 digits (`09`), divisions 4 (`0903`), groups 5
//! (`09031`) and classes 6 (`090321`). Each entry carries `verified`: whether the code was
//! checked against a published source while this table was assembled (see
//! `data/SOURCES.md` and `data/iccs/iccs-1.0-evidence.csv`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

use crate::ReferenceError;
use crate::table::records;

const ICCS_1_0_CSV: &str = include_str!("../data/iccs/iccs-1.0.csv");
const ICCS_1_0_EVIDENCE_CSV: &str = include_str!("../data/iccs/iccs-1.0-evidence.csv");

/// Prefix of the division "Acts against computer systems": everything below is cyber by nature.
pub const COMPUTER_SYSTEMS_DIVISION: &str = "0903";

/// Level of an ICCS code, derived from its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Section,
    Division,
    Group,
    Class,
}

impl Level {
    /// The number of digits a code of this level has.
    pub fn code_len(self) -> usize {
        match self {
            Level::Section => 2,
            Level::Division => 4,
            Level::Group => 5,
            Level::Class => 6,
        }
    }

    /// The level of the parent, `None` for sections.
    pub fn parent(self) -> Option<Level> {
        match self {
            Level::Section => None,
            Level::Division => Some(Level::Section),
            Level::Group => Some(Level::Division),
            Level::Class => Some(Level::Group),
        }
    }

    fn from_name(name: &str) -> Option<Level> {
        match name {
            "section" => Some(Level::Section),
            "division" => Some(Level::Division),
            "group" => Some(Level::Group),
            "class" => Some(Level::Class),
            _ => None,
        }
    }

    /// Level for a code of the given length, if any.
    pub fn for_code(code: &str) -> Option<Level> {
        match code.len() {
            2 => Some(Level::Section),
            4 => Some(Level::Division),
            5 => Some(Level::Group),
            6 => Some(Level::Class),
            _ => None,
        }
    }
}

/// One code of the classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IccsEntry {
    pub code: String,
    pub level: Level,
    /// `None` for sections.
    pub parent: Option<String>,
    /// English label as published by UNODC.
    pub label: String,
    /// True when the code was checked against a published source (see `data/SOURCES.md`);
    /// false when it comes from the ICCS 1.0 structure without a re-check.
    pub verified: bool,
    /// True for everything under 0903 "Acts against computer systems".
    pub always_cyber: bool,
}

/// The classification: entries in published order plus an index by code.
#[derive(Debug, Clone, Serialize)]
pub struct Iccs {
    pub version: String,
    pub entries: Vec<IccsEntry>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Iccs {
    /// ICCS version 1.0 (UNODC, March 2015), parsed once from the embedded files.
    pub fn v1_0() -> &'static Iccs {
        static ICCS: OnceLock<Iccs> = OnceLock::new();
        ICCS.get_or_init(|| {
            Iccs::parse("1.0", ICCS_1_0_CSV, Some(ICCS_1_0_EVIDENCE_CSV))
                .unwrap_or_else(|e| panic!("embedded ICCS 1.0 table is invalid: {e}"))
        })
    }

    /// Parses a table with header `code,level,parent,label`, and optionally an evidence table
    /// with header `code,status,evidence` (status `verified` or `recalled`) that must cover
    /// exactly the same codes. Checks code shape, level/length agreement, parent existence
    /// (parents must precede children) and parent level.
    pub fn parse(
        version: &str,
        csv_text: &str,
        evidence_csv: Option<&str>,
    ) -> Result<Iccs, ReferenceError> {
        let table = format!("iccs {version}");
        let mut entries: Vec<IccsEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (line, rec) in records(&table, csv_text, &["code", "level", "parent", "label"])? {
            let code = &rec[0];
            let err = |m: String| ReferenceError::parse(&table, line, m);
            if !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("code '{code}' is not all digits")));
            }
            let level = Level::from_name(&rec[1])
                .ok_or_else(|| err(format!("code '{code}': unknown level '{}'", &rec[1])))?;
            if code.len() != level.code_len() {
                return Err(err(format!(
                    "code '{code}' has {} digits but level {:?} needs {}",
                    code.len(),
                    level,
                    level.code_len()
                )));
            }
            if index.contains_key(code) {
                return Err(err(format!("code '{code}' appears twice")));
            }
            let parent = match level.parent() {
                None => {
                    if !rec[2].is_empty() {
                        return Err(err(format!("section '{code}' must have an empty parent")));
                    }
                    None
                }
                Some(parent_level) => {
                    let p = &rec[2];
                    let &pi = index.get(p).ok_or_else(|| {
                        err(format!(
                            "code '{code}': parent '{p}' is not an earlier code of the table"
                        ))
                    })?;
                    if entries[pi].level != parent_level {
                        return Err(err(format!(
                            "code '{code}': parent '{p}' is a {:?}, expected a {:?}",
                            entries[pi].level, parent_level
                        )));
                    }
                    if !code.starts_with(p) {
                        return Err(err(format!(
                            "code '{code}' does not start with its parent '{p}'"
                        )));
                    }
                    Some(p.to_string())
                }
            };
            if rec[3].is_empty() {
                return Err(err(format!("code '{code}' has an empty label")));
            }
            index.insert(code.to_string(), entries.len());
            entries.push(IccsEntry {
                code: code.to_string(),
                level,
                parent,
                label: rec[3].to_string(),
                verified: false,
                always_cyber: is_computer_systems_code(code),
            });
        }
        if let Some(evidence) = evidence_csv {
            let etable = format!("iccs {version} evidence");
            let mut seen = vec![false; entries.len()];
            for (line, rec) in records(&etable, evidence, &["code", "status", "evidence"])? {
                let code = &rec[0];
                let &i = index.get(code).ok_or_else(|| {
                    ReferenceError::parse(
                        &etable,
                        line,
                        format!("code '{code}' is not in table {table}"),
                    )
                })?;
                if seen[i] {
                    return Err(ReferenceError::parse(
                        &etable,
                        line,
                        format!("code '{code}' appears twice"),
                    ));
                }
                seen[i] = true;
                entries[i].verified = match &rec[1] {
                    "verified" => true,
                    "recalled" => false,
                    other => {
                        return Err(ReferenceError::parse(
                            &etable,
                            line,
                            format!(
                                "code '{code}': status must be verified or recalled, got '{other}'"
                            ),
                        ));
                    }
                };
            }
            if let Some(i) = seen.iter().position(|s| !s) {
                return Err(ReferenceError::parse(
                    &etable,
                    0,
                    format!("code '{}' of table {table} has no evidence row", entries[i].code),
                ));
            }
        }
        Ok(Iccs { version: version.to_string(), entries, index })
    }

    /// The entry for `code`, if it is part of the classification.
    pub fn get(&self, code: &str) -> Option<&IccsEntry> {
        self.index.get(code).map(|&i| &self.entries[i])
    }

    /// The entry for `code`, or an error naming the code and the table.
    pub fn require(&self, code: &str) -> Result<&IccsEntry, ReferenceError> {
        self.get(code).ok_or_else(|| ReferenceError::UnknownIccsCode {
            code: code.to_string(),
            version: self.version.clone(),
        })
    }

    pub fn contains(&self, code: &str) -> bool {
        self.index.contains_key(code)
    }

    /// First two digits of the code (the section). Pure string operation: it does not check
    /// that the code exists.
    pub fn section_of<'a>(&self, code: &'a str) -> &'a str {
        code.get(..2).unwrap_or(code)
    }

    /// First four digits (the division), `None` for a section code.
    pub fn division_of<'a>(&self, code: &'a str) -> Option<&'a str> {
        prefix(code, 4)
    }

    /// First five digits (the group), `None` for sections and divisions.
    pub fn group_of<'a>(&self, code: &'a str) -> Option<&'a str> {
        prefix(code, 5)
    }

    /// True for everything under 0903 "Acts against computer systems". The cyber-related tag of
    /// ICCS is otherwise orthogonal to the offence and comes from the record (or the
    /// crosswalk default).
    pub fn always_cyber(&self, code: &str) -> bool {
        is_computer_systems_code(code)
    }

    /// Entries in published order.
    pub fn iter(&self) -> impl Iterator<Item = &IccsEntry> {
        self.entries.iter()
    }

    /// Direct children of `code`, in published order.
    pub fn children<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a IccsEntry> + 'a {
        self.entries.iter().filter(move |e| e.parent.as_deref() == Some(code))
    }

    /// `code` and its ancestors, from the code up to its section (only codes present in the table).
    pub fn ancestors<'a>(&'a self, code: &str) -> Vec<&'a IccsEntry> {
        let mut out = Vec::new();
        let mut cur = self.get(code);
        while let Some(e) = cur {
            out.push(e);
            cur = e.parent.as_deref().and_then(|p| self.get(p));
        }
        out
    }

    /// True when `code` equals `ancestor` or lies below it.
    pub fn is_within(&self, code: &str, ancestor: &str) -> bool {
        code.starts_with(ancestor)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn prefix(code: &str, n: usize) -> Option<&str> {
    if code.len() >= n { code.get(..n) } else { None }
}

fn is_computer_systems_code(code: &str) -> bool {
    code.starts_with(COMPUTER_SYSTEMS_DIVISION)
}
