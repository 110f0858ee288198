//! The `INCIDENTS` dataflow: its dimensions, codelists and attributes, and how each code maps
//! onto the counts API (which `by=` column it groups by and which filter value it is). Pure: the
//! serialisers write these structures and the planner reads them.
//!
//! Every code of a hierarchy is an observation of its own (a section's value is its subtree's
//! count), `_T` is the total over a dimension and `FR` the national total of `REF_AREA`.
//! Régions are `R` + their INSEE code (`R11` Île-de-France), because INSEE région and
//! département codes collide (`11` is also Aude). Counts of different units are never added:
//! `UNIT_MEASURE` has no total. Rates per 100 000 inhabitants are `UNIT_MEASURE` codes of their
//! own (`offence_per_100k`, ...), so one DSD carries both.

use observatory_model::{Channel, VictimType};
use observatory_reference::{Geography, Iccs};

use crate::request::Dimension;

/// The default maintenance agency of every artefact (`--sdmx-agency`).
pub const DEFAULT_AGENCY: &str = "OBSERVATORY";
pub const DATAFLOW: &str = "INCIDENTS";
pub const DSD: &str = "DSD_INCIDENTS";
pub const CONCEPT_SCHEME: &str = "CS_INCIDENTS";
pub const VERSION: &str = "1.0";
pub const TOTAL: &str = "_T";
pub const NATIONAL: &str = "FR";
pub const TIME_PERIOD: &str = "TIME_PERIOD";
pub const OBS_VALUE: &str = "OBS_VALUE";
/// The suffix of a rate code of `UNIT_MEASURE`.
pub const PER_100K: &str = "_per_100k";

/// The dimensions before `TIME_PERIOD`, in DSD order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Freq,
    RefArea,
    Iccs,
    Cyber,
    VictimType,
    Channel,
    Source,
    UnitMeasure,
}

impl Dim {
    pub const ALL: [Dim; 8] = [
        Dim::Freq,
        Dim::RefArea,
        Dim::Iccs,
        Dim::Cyber,
        Dim::VictimType,
        Dim::Channel,
        Dim::Source,
        Dim::UnitMeasure,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Dim::Freq => "FREQ",
            Dim::RefArea => "REF_AREA",
            Dim::Iccs => "ICCS",
            Dim::Cyber => "CYBER",
            Dim::VictimType => "VICTIM_TYPE",
            Dim::Channel => "CHANNEL",
            Dim::Source => "SOURCE",
            Dim::UnitMeasure => "UNIT_MEASURE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dim::Freq => "Frequency",
            Dim::RefArea => "Reference area",
            Dim::Iccs => "Offence (ICCS 1.0)",
            Dim::Cyber => "Cyber-enabled or cyber-dependent",
            Dim::VictimType => "Victim type",
            Dim::Channel => "Channel of contact",
            Dim::Source => "Reporting source",
            Dim::UnitMeasure => "Unit of measure",
        }
    }

    pub fn codelist(self) -> String {
        format!("CL_{}", self.id())
    }

    pub fn position(self) -> usize {
        Dim::ALL.iter().position(|d| *d == self).expect("every dimension is in ALL")
    }

    pub fn parse(id: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.id() == id)
    }
}

/// An observation-level attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    /// `A` normal, `P` provisional (a source has not closed a month the cell covers).
    ObsStatus,
    /// `EXACT`, or `CKM` for a count perturbed by the cell-key method (the public tier).
    Disclosure,
}

impl Attr {
    pub const ALL: [Attr; 2] = [Attr::ObsStatus, Attr::Disclosure];

    pub fn id(self) -> &'static str {
        match self {
            Attr::ObsStatus => "OBS_STATUS",
            Attr::Disclosure => "DISCLOSURE",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Attr::ObsStatus => "Observation status",
            Attr::Disclosure => "Disclosure control",
        }
    }

    pub fn codelist(self) -> String {
        format!("CL_{}", self.id())
    }

    pub fn parse(id: &str) -> Option<Attr> {
        Attr::ALL.into_iter().find(|a| a.id() == id)
    }
}

/// One code of a codelist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
}

impl Code {
    fn new(id: impl Into<String>, name: impl Into<String>, parent: Option<&str>) -> Code {
        Code { id: id.into(), name: name.into(), parent: parent.map(str::to_owned) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codelist {
    pub id: String,
    pub name: String,
    pub codes: Vec<Code>,
}

impl Codelist {
    pub fn get(&self, id: &str) -> Option<&Code> {
        self.codes.iter().find(|c| c.id == id)
    }
}

/// A concept of the scheme: every dimension, `TIME_PERIOD`, the measure and the attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concept {
    pub id: &'static str,
    pub name: &'static str,
}

/// The dataflow's whole structure, built from the reference data and the sources a state
/// knows.
#[derive(Debug, Clone)]
pub struct Dataflow {
    pub agency: String,
    /// One per [`Dim`], in DSD order.
    pub dimensions: Vec<Codelist>,
    /// One per [`Attr`].
    pub attributes: Vec<Codelist>,
}

impl Dataflow {
    /// The structure with `sources` as the codes of `SOURCE` (besides `_T`).
    pub fn new(agency: &str, sources: &[String]) -> Dataflow {
        let dimensions = Dim::ALL.iter().map(|d| codelist(*d, sources)).collect();
        let attributes = vec![
            Codelist {
                id: Attr::ObsStatus.codelist(),
                name: "Observation status".into(),
                codes: vec![
                    Code::new("A", "Normal value", None),
                    Code::new(
                        "P",
                        "Provisional value (a source has not closed a month it covers)",
                        None,
                    ),
                ],
            },
            Codelist {
                id: Attr::Disclosure.codelist(),
                name: "Disclosure control".into(),
                codes: vec![
                    Code::new("EXACT", "Exact value (reader tier)", None),
                    Code::new("CKM", "Perturbed by the cell-key method (public tier)", None),
                ],
            },
        ];
        Dataflow { agency: agency.to_owned(), dimensions, attributes }
    }

    pub fn codelist(&self, dim: Dim) -> &Codelist {
        &self.dimensions[dim.position()]
    }

    pub fn attribute_codelist(&self, attr: Attr) -> &Codelist {
        &self.attributes[Attr::ALL.iter().position(|a| *a == attr).expect("in ALL")]
    }

    /// `AGENCY:ID(VERSION)`, as SDMX-CSV and URNs name the dataflow.
    pub fn reference(&self) -> String {
        format!("{}:{DATAFLOW}({VERSION})", self.agency)
    }

    pub fn concepts() -> Vec<Concept> {
        let mut concepts: Vec<Concept> =
            Dim::ALL.iter().map(|d| Concept { id: d.id(), name: d.name() }).collect();
        concepts.push(Concept { id: TIME_PERIOD, name: "Time period" });
        concepts.push(Concept { id: OBS_VALUE, name: "Observation value" });
        concepts.extend(Attr::ALL.iter().map(|a| Concept { id: a.id(), name: a.name() }));
        concepts
    }
}

/// The counts API column a code of `dim` groups by (its level): `None` for totals.
pub fn level(dim: Dim, code: &str) -> Option<Dimension> {
    match dim {
        Dim::Freq => Some(if code == "A" { Dimension::Year } else { Dimension::Month }),
        Dim::RefArea if code == NATIONAL => None,
        Dim::RefArea if code.starts_with('R') => Some(Dimension::Region),
        Dim::RefArea => Some(Dimension::Departement),
        _ if code == TOTAL => None,
        Dim::Iccs => Some(match code.len() {
            2 => Dimension::IccsSection,
            4 => Dimension::IccsDivision,
            5 => Dimension::IccsGroup,
            // Classes are leaves: grouping by the coded value and keeping 6-digit codes gives
            // each class its subtree.
            _ => Dimension::Iccs,
        }),
        Dim::Cyber => Some(Dimension::Cyber),
        Dim::VictimType => Some(Dimension::VictimType),
        Dim::Channel => Some(Dimension::Channel),
        Dim::Source => Some(Dimension::Source),
        Dim::UnitMeasure => Some(Dimension::Unit),
    }
}

/// The counts API's value of a code (`R11` → `11`, `offence_per_100k` → `offence`).
pub fn api_value(dim: Dim, code: &str) -> &str {
    match dim {
        Dim::RefArea if code.starts_with('R') => &code[1..],
        Dim::UnitMeasure => code.strip_suffix(PER_100K).unwrap_or(code),
        _ => code,
    }
}

/// The code of a value of the counts API column `by` (the inverse of [`api_value`]).
pub fn code_of(dim: Dim, by: Dimension, value: &str, rate: bool) -> String {
    match (dim, by) {
        (Dim::RefArea, Dimension::Region) => format!("R{value}"),
        (Dim::UnitMeasure, _) if rate => format!("{value}{PER_100K}"),
        _ => value.to_owned(),
    }
}

fn codelist(dim: Dim, sources: &[String]) -> Codelist {
    let total = || Code::new(TOTAL, "Total", None);
    let codes = match dim {
        Dim::Freq => vec![Code::new("M", "Monthly", None), Code::new("A", "Annual", None)],
        Dim::RefArea => {
            let geography = Geography::france();
            let mut codes = vec![Code::new(NATIONAL, "France", None)];
            for region in geography.regions() {
                codes.push(Code::new(format!("R{}", region.code), &region.name, Some(NATIONAL)));
            }
            for departement in geography.departements() {
                let parent = format!("R{}", departement.region);
                codes.push(Code::new(&departement.code, &departement.name, Some(&parent)));
            }
            codes
        }
        Dim::Iccs => {
            let mut codes = vec![total()];
            for entry in Iccs::v1_0().iter() {
                codes.push(Code::new(
                    &entry.code,
                    &entry.label,
                    Some(entry.parent.as_deref().unwrap_or(TOTAL)),
                ));
            }
            codes
        }
        Dim::Cyber => vec![
            total(),
            Code::new("true", "Cyber (online or against computer systems)", Some(TOTAL)),
            Code::new("false", "Not cyber", Some(TOTAL)),
        ],
        Dim::VictimType => std::iter::once(total())
            .chain(
                VictimType::ALL
                    .iter()
                    .map(|v| Code::new(v.as_str(), label(v.as_str()), Some(TOTAL))),
            )
            .collect(),
        Dim::Channel => std::iter::once(total())
            .chain(
                Channel::ALL.iter().map(|c| Code::new(c.as_str(), label(c.as_str()), Some(TOTAL))),
            )
            .collect(),
        Dim::Source => std::iter::once(total())
            .chain(sources.iter().map(|s| Code::new(s, s, Some(TOTAL))))
            .collect(),
        Dim::UnitMeasure => {
            let units = [
                ("offence", "Offences"),
                ("victim", "Victims"),
                ("report", "Reports to an online platform"),
            ];
            let mut codes: Vec<Code> =
                units.iter().map(|(id, name)| Code::new(*id, *name, None)).collect();
            codes.extend(units.iter().map(|(id, name)| {
                Code::new(
                    format!("{id}{PER_100K}"),
                    format!("{name} per 100 000 inhabitants"),
                    None,
                )
            }));
            codes
        }
    };
    Codelist { id: dim.codelist(), name: dim.name().to_owned(), codes }
}

/// `social_network` → `Social network`.
fn label(value: &str) -> String {
    let text = value.replace('_', " ");
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_departements_never_share_a_code() {
        let flow = Dataflow::new(DEFAULT_AGENCY, &[]);
        let areas = flow.codelist(Dim::RefArea);
        let mut ids: Vec<&str> = areas.codes.iter().map(|c| c.id.as_str()).collect();
        let len = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), len);
        assert_eq!(areas.get("R11").map(|c| c.name.as_str()), Some("Île-de-France"));
        assert_eq!(areas.get("11").map(|c| c.name.as_str()), Some("Aude"));
        assert_eq!(level(Dim::RefArea, "R11"), Some(Dimension::Region));
        assert_eq!(api_value(Dim::RefArea, "R11"), "11");
        assert_eq!(code_of(Dim::RefArea, Dimension::Region, "11", false), "R11");
        assert_eq!(level(Dim::RefArea, "11"), Some(Dimension::Departement));
    }

    #[test]
    fn every_iccs_code_has_its_parent_in_the_list() {
        let flow = Dataflow::new(DEFAULT_AGENCY, &["pn".into()]);
        let iccs = flow.codelist(Dim::Iccs);
        for code in &iccs.codes {
            if let Some(parent) = &code.parent {
                assert!(iccs.get(parent).is_some(), "{} has no parent {parent}", code.id);
            }
        }
        assert_eq!(level(Dim::Iccs, "0903"), Some(Dimension::IccsDivision));
        assert_eq!(level(Dim::Iccs, TOTAL), None);
        assert_eq!(flow.codelist(Dim::Source).codes.len(), 2);
    }

    #[test]
    fn rates_are_units_of_their_own() {
        assert_eq!(api_value(Dim::UnitMeasure, "offence_per_100k"), "offence");
        assert_eq!(code_of(Dim::UnitMeasure, Dimension::Unit, "offence", true), "offence_per_100k");
        assert_eq!(label("social_network"), "Social network");
    }
}
