//! The survey event types: a wave's declaration (population, period, design, variables,
//! victimisation items), the respondent rows and their cells, the closure, and [`SurveyEvent`]
//! wrapping the three payloads with what every event needs (kind, envelope, dedupe key).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{Envelope, EventKind};

/// Column added to a closed wave's microdata when the closure carried final weights.
pub const FINAL_WEIGHT_COLUMN: &str = "final_weight";

macro_rules! snake_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

snake_enum!(
    /// The statistical units a wave samples.
    Population { Households => "households", Individuals => "individuals", Businesses => "businesses" }
);

snake_enum!(
    /// How a variable's cells are read and checked.
    VariableType { Numeric => "numeric", Integer => "integer", Categorical => "categorical", Text => "text" }
);

snake_enum!(
    /// R's `survey.lonely.psu` option, applied when the wave is estimated.
    LonelyPsuRule { Fail => "fail", Adjust => "adjust", Average => "average", Remove => "remove", Certainty => "certainty" }
);

/// Inclusive range of dates the questionnaire asks about ("in 2024, were you…").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The sampling design, naming declared variables (as `svydesign`'s arguments).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyDesign {
    /// Design (sampling) weights; replaced by the final weights of the closure when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<String>,
    /// Cluster variable of each sampling stage, first stage first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Finite population correction of each stage: population sizes or sampling fractions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fpc: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lonely_psu: Option<LonelyPsuRule>,
}

/// One variable of the questionnaire (or of the sample frame: strata, PSU ids, weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyVariable {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VariableType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Allowed values of a categorical variable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::survey::decode::exact::option_f64"
    )]
    pub min: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::survey::decode::exact::option_f64"
    )]
    pub max: Option<f64>,
    /// A row without this variable is rejected (design variables are always required).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

fn yes() -> String {
    "yes".to_owned()
}

fn is_yes(value: &String) -> bool {
    value == "yes"
}

/// A victimisation question ("in the reference period, were you a victim of …?") and its
/// optional follow-up ("did you report it to the police or the gendarmerie?"). `iccs` names
/// the offence category whose recorded incidents the dark-figure view sets beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VictimisationItem {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub victim: String,
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub victim_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub reported_value: String,
    pub iccs: String,
    /// Restricts the recorded incidents compared with this item to cyber (or non-cyber) ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cyber: Option<bool>,
}

/// Payload of `SurveyWaveDeclared` v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyWaveDeclared {
    pub survey: String,
    pub wave: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub population: Population,
    pub reference_period: ReferencePeriod,
    /// Column identifying a respondent within the wave (the idempotency key's last part).
    pub respondent_id: String,
    #[serde(default)]
    pub design: SurveyDesign,
    pub variables: Vec<SurveyVariable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub victimisation_items: Vec<VictimisationItem>,
}

/// One cell of a respondent row. A missing value is an absent cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Integer(i64),
    Number(f64),
    Text(String),
}

/// One respondent: its id and its non-missing values, normalised to the declared types
/// (numeric → `Number`, integer → `Integer`, categorical and text → `Text`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyRow {
    pub respondent_id: String,
    pub values: BTreeMap<String, Cell>,
}

/// Payload of `SurveyResponsesRecorded` v1: a batch of respondents of one wave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyResponsesRecorded {
    pub survey: String,
    pub wave: String,
    pub rows: Vec<SurveyRow>,
}

/// Payload of `SurveyWaveClosed` v1: fieldwork is over. With `final_weights` (respondent id →
/// weight, one for every recorded respondent) those weights replace the design weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyWaveClosed {
    pub survey: String,
    pub wave: String,
    /// Respondents recorded when the wave closed, as the ingest counted them.
    pub respondents: u64,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::survey::decode::exact::f64_map"
    )]
    pub final_weights: BTreeMap<String, f64>,
}

/// A decoded survey event.
#[derive(Debug, Clone, PartialEq)]
pub enum SurveyEvent {
    WaveDeclared(SurveyWaveDeclared),
    ResponsesRecorded(SurveyResponsesRecorded),
    WaveClosed(SurveyWaveClosed),
}

/// A survey event with the envelope fields it travelled in.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSurveyEvent {
    pub event_id: Uuid,
    pub source: String,
    pub recorded_at: DateTime<Utc>,
    pub event: SurveyEvent,
}

impl SurveyEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            SurveyEvent::WaveDeclared(_) => EventKind::SurveyWaveDeclared,
            SurveyEvent::ResponsesRecorded(_) => EventKind::SurveyResponsesRecorded,
            SurveyEvent::WaveClosed(_) => EventKind::SurveyWaveClosed,
        }
    }

    pub fn survey(&self) -> &str {
        match self {
            SurveyEvent::WaveDeclared(e) => &e.survey,
            SurveyEvent::ResponsesRecorded(e) => &e.survey,
            SurveyEvent::WaveClosed(e) => &e.survey,
        }
    }

    pub fn wave(&self) -> &str {
        match self {
            SurveyEvent::WaveDeclared(e) => &e.wave,
            SurveyEvent::ResponsesRecorded(e) => &e.wave,
            SurveyEvent::WaveClosed(e) => &e.wave,
        }
    }

    /// Wraps the event in a fresh envelope (new UUIDv7).
    pub fn envelope(&self, source: &str, recorded_at: DateTime<Utc>) -> Envelope {
        let payload = match self {
            SurveyEvent::WaveDeclared(e) => serde_json::to_value(e),
            SurveyEvent::ResponsesRecorded(e) => serde_json::to_value(e),
            SurveyEvent::WaveClosed(e) => serde_json::to_value(e),
        }
        .expect("survey payloads always serialise");
        Envelope {
            event_id: Uuid::now_v7(),
            event_type: self.kind(),
            schema_version: self.kind().current_version(),
            source: source.to_owned(),
            recorded_at,
            payload,
        }
    }

    /// The `Obs-Dedupe` header: what the event is about, for a replay of headers. Responses
    /// are deduplicated per respondent by the ledger, not by this key.
    pub fn dedupe_key(&self, source: &str) -> crate::DedupeKey {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for part in [source, self.kind().as_str(), self.survey(), self.wave()] {
            hasher.update(part.as_bytes());
            hasher.update(&[0]);
        }
        if let SurveyEvent::ResponsesRecorded(batch) = self {
            for row in &batch.rows {
                hasher.update(row.respondent_id.as_bytes());
                hasher.update(&[0]);
            }
        }
        crate::DedupeKey(hasher.digest128())
    }
}

impl SurveyWaveDeclared {
    pub fn variable(&self, name: &str) -> Option<&SurveyVariable> {
        self.variables.iter().find(|v| v.name == name)
    }

    pub fn item(&self, name: &str) -> Option<&VictimisationItem> {
        self.victimisation_items.iter().find(|i| i.name == name)
    }

    /// Design variables with their role; none of them may be missing in a row.
    pub fn design_columns(&self) -> Vec<(&str, &'static str)> {
        let mut columns = Vec::new();
        if let Some(w) = &self.design.weights {
            columns.push((w.as_str(), "weights"));
        }
        if let Some(s) = &self.design.strata {
            columns.push((s.as_str(), "strata"));
        }
        columns.extend(self.design.clusters.iter().map(|c| (c.as_str(), "cluster")));
        columns.extend(self.design.fpc.iter().map(|c| (c.as_str(), "fpc")));
        columns
    }
}

/// Whether a cell of `variable` equals the indicator `value` of an item (see
/// [`VictimisationItem`]). Used to derive 0/1 indicators for estimation.
pub fn cell_matches(cell: &Cell, value: &str) -> bool {
    match cell {
        Cell::Text(t) => t == value,
        Cell::Integer(i) => value.parse::<i64>().is_ok_and(|v| v == *i),
        Cell::Number(x) => value.parse::<f64>().is_ok_and(|v| v == *x),
    }
}
