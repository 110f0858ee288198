//! Survey waves as events. A survey producer declares a wave (population, reference period,
//! sampling design, the questionnaire's variables), records respondents in batches, then closes
//! the wave, optionally with final weights. Rows are checked against the declaration here so the
//! ingest and the projector apply the same rules, and [`SurveyLedger`] decides — identically on
//! both sides — which rows are new: a respondent is keyed by (survey, wave, respondent id), so a
//! re-sent batch changes nothing, and a closed wave takes no more rows.
//!
//! Numbers in survey payloads are decoded from their JSON text with Rust's correctly rounded
//! `str::parse`, never through `serde_json::Value` (whose default float parsing may be one ulp
//! off): an estimate from the pipeline must equal the estimate from the same CSV file to the
//! last digit. Survey payloads are therefore decoded with [`SurveyEvent::decode`] from the
//! message bytes, not with [`Envelope::event`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::envelope::{DecodeError, Envelope, EventKind};
use crate::validate::FieldError;

/// Column added to a closed wave's microdata when the closure carried final weights.
pub const FINAL_WEIGHT_COLUMN: &str = "final_weight";
const MAX_VARIABLES: usize = 2_000;
const MAX_LABEL_LEN: usize = 500;
const MAX_VALUE_LEN: usize = 200;
const MAX_TEXT_LEN: usize = 2_000;
const MAX_STAGES: usize = 4;

/// Whether `id` may name a survey: it becomes a URL segment and an object-store path segment.
pub fn is_valid_survey_id(id: &str) -> bool {
    is_slug(id, 64)
}

/// Whether `id` may name a wave (same alphabet as survey ids, e.g. `2024`, `2024-t1`).
pub fn is_valid_wave_id(id: &str) -> bool {
    is_slug(id, 32)
}

fn is_slug(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Variable names are kept to what survey software exports (`api00`, `sch.wide`, `acs_k3`):
/// a letter, then letters, digits, `_`, `.` or `-`.
pub fn is_valid_variable_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

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
        deserialize_with = "exact::option_f64"
    )]
    pub min: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "exact::option_f64"
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
        deserialize_with = "exact::f64_map"
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

/// The envelope with its payload left as text, so numbers are parsed by [`exact`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    event_id: Uuid,
    event_type: EventKind,
    schema_version: u32,
    source: String,
    recorded_at: DateTime<Utc>,
    payload: Box<RawValue>,
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

    /// Decodes a survey event from the bytes of a message (numbers parsed exactly).
    pub fn decode(bytes: &[u8]) -> Result<DecodedSurveyEvent, DecodeError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let kind = raw.event_type;
        let max = kind.current_version();
        if kind.family() != "survey" {
            return Err(DecodeError::WrongFamily {
                kind: kind.as_str(),
                family: kind.family(),
                expected: "survey",
            });
        }
        if raw.schema_version > max {
            return Err(DecodeError::FutureVersion {
                kind: kind.as_str(),
                version: raw.schema_version,
                max,
            });
        }
        let payload_err = |source| DecodeError::Payload {
            kind: kind.as_str(),
            version: raw.schema_version,
            source,
        };
        let text = raw.payload.get();
        let event = match kind {
            EventKind::SurveyWaveDeclared => {
                SurveyEvent::WaveDeclared(serde_json::from_str(text).map_err(payload_err)?)
            }
            EventKind::SurveyResponsesRecorded => {
                SurveyEvent::ResponsesRecorded(serde_json::from_str(text).map_err(payload_err)?)
            }
            EventKind::SurveyWaveClosed => {
                SurveyEvent::WaveClosed(serde_json::from_str(text).map_err(payload_err)?)
            }
            _ => unreachable!("the family was checked"),
        };
        Ok(DecodedSurveyEvent {
            event_id: raw.event_id,
            source: raw.source,
            recorded_at: raw.recorded_at,
            event,
        })
    }
}

/// 128-bit identity of a respondent: (survey, wave, respondent id). Survey ids are global
/// (a survey belongs to the agency that declared it first), so the source is not part of it.
pub fn respondent_key(survey: &str, wave: &str, respondent_id: &str) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(survey.as_bytes());
    hasher.update(&[0]);
    hasher.update(wave.as_bytes());
    hasher.update(&[0]);
    hasher.update(respondent_id.as_bytes());
    hasher.digest128()
}

/// Exact decoding of JSON numbers: from their text, with `str::parse`.
mod exact {
    use super::*;

    pub(super) fn number(raw: &str) -> Result<f64, String> {
        let text = raw.trim();
        if text.starts_with('"') || text == "null" || text == "true" || text == "false" {
            return Err(format!("expected a number, got {text}"));
        }
        text.parse::<f64>().map_err(|_| format!("expected a number, got {text}"))
    }

    pub fn option_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
        raw.map(|r| number(r.get()).map_err(D::Error::custom)).transpose()
    }

    pub fn f64_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let raw: BTreeMap<String, Box<RawValue>> = BTreeMap::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| number(v.get()).map(|x| (k, x)).map_err(D::Error::custom))
            .collect()
    }

    /// A scalar cell from its JSON text; `None` for null. Booleans become the text
    /// `true`/`false` (a categorical variable may allow them).
    pub(super) fn cell(raw: &str) -> Result<Option<Cell>, String> {
        let text = raw.trim();
        match text.as_bytes().first() {
            None => Err("empty value".into()),
            Some(b'n') if text == "null" => Ok(None),
            Some(b't' | b'f') if text == "true" || text == "false" => {
                Ok(Some(Cell::Text(text.to_owned())))
            }
            Some(b'"') => serde_json::from_str::<String>(text)
                .map(|s| Some(Cell::Text(s)))
                .map_err(|e| e.to_string()),
            Some(b'[' | b'{') => {
                Err("expected a number, a string or null, got an array or object".into())
            }
            Some(_) => {
                if !text.contains(['.', 'e', 'E'])
                    && let Ok(i) = text.parse::<i64>()
                {
                    return Ok(Some(Cell::Integer(i)));
                }
                number(text).map(|x| Some(Cell::Number(x)))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if matches!(raw.get().trim(), "true" | "false") {
            return Err(D::Error::custom(
                "a cell is a number or a string (categorical values travel as text)",
            ));
        }
        exact::cell(raw.get())
            .map_err(D::Error::custom)?
            .ok_or_else(|| D::Error::custom("a cell may not be null; leave a missing value out"))
    }
}

/// A value as an agency sent it: from JSON (exactly parsed) or a CSV/Parquet cell as text.
#[derive(Debug, Clone, PartialEq)]
pub struct InputCell(pub Option<Cell>);

impl<'de> Deserialize<'de> for InputCell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<InputCell, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        exact::cell(raw.get()).map(InputCell).map_err(D::Error::custom)
    }
}

/// Parses one NDJSON line into cells, numbers exactly.
pub fn parse_json_row(line: &str) -> Result<Vec<(String, Option<Cell>)>, String> {
    let map: BTreeMap<String, InputCell> = serde_json::from_str(line).map_err(|e| {
        if e.is_data() && line.trim_start().starts_with('{') {
            format!("invalid value: {e}")
        } else if line.trim_start().starts_with('{') {
            format!("invalid JSON: {e}")
        } else {
            "expected a JSON object".to_owned()
        }
    })?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// The JSON body of a closure request: `{}` or `{"final_weights": {"<respondent id>": w, …}}`,
/// weights parsed exactly.
pub fn parse_close_json(text: &str) -> Result<BTreeMap<String, f64>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "exact::f64_map")]
        final_weights: BTreeMap<String, f64>,
    }
    serde_json::from_str::<Body>(text).map(|b| b.final_weights).map_err(|e| e.to_string())
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

    /// Every problem of the declaration, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: String, error: String| errors.push(FieldError { field, error });
        if !is_valid_survey_id(&self.survey) {
            fail(
                "survey".into(),
                format!(
                    "'{}' is not a survey id: use 1 to 64 lowercase letters, digits, '-' or '_'",
                    self.survey
                ),
            );
        }
        if !is_valid_wave_id(&self.wave) {
            fail(
                "wave".into(),
                format!(
                    "'{}' is not a wave id: use 1 to 32 lowercase letters, digits, '-' or '_' (e.g. \"2024\")",
                    self.wave
                ),
            );
        }
        if self.title.as_ref().is_some_and(|t| t.len() > MAX_LABEL_LEN) {
            fail("title".into(), format!("at most {MAX_LABEL_LEN} bytes"));
        }
        if self.reference_period.to < self.reference_period.from {
            fail(
                "reference_period.to".into(),
                format!(
                    "{} is before reference_period.from {}",
                    self.reference_period.to, self.reference_period.from
                ),
            );
        }
        if !is_valid_variable_name(&self.respondent_id) {
            fail(
                "respondent_id".into(),
                format!(
                    "'{}' is not a column name (a letter, then letters, digits, '_', '.', '-'; at most 64)",
                    self.respondent_id
                ),
            );
        }
        if self.variables.is_empty() {
            fail("variables".into(), "declare at least one variable".into());
        }
        if self.variables.len() > MAX_VARIABLES {
            fail(
                "variables".into(),
                format!("{} variables; at most {MAX_VARIABLES}", self.variables.len()),
            );
        }
        let mut seen = HashSet::new();
        for (i, v) in self.variables.iter().enumerate() {
            let at = |field: &str| format!("variables[{i}].{field}");
            if !is_valid_variable_name(&v.name) {
                fail(
                    at("name"),
                    format!(
                        "'{}' is not a variable name (a letter, then letters, digits, '_', '.', '-'; at most 64)",
                        v.name
                    ),
                );
            } else if !seen.insert(v.name.as_str()) {
                fail(at("name"), format!("'{}' is declared twice", v.name));
            } else if v.name == self.respondent_id {
                fail(
                    at("name"),
                    format!(
                        "'{}' is the respondent_id column; do not declare it as a variable",
                        v.name
                    ),
                );
            } else if v.name == FINAL_WEIGHT_COLUMN {
                fail(
                    at("name"),
                    format!(
                        "'{FINAL_WEIGHT_COLUMN}' is reserved for the final weights of the closure"
                    ),
                );
            }
            if v.label.as_ref().is_some_and(|l| l.len() > MAX_LABEL_LEN) {
                fail(at("label"), format!("at most {MAX_LABEL_LEN} bytes"));
            }
            match v.kind {
                VariableType::Categorical => {
                    if v.values.is_empty() {
                        fail(
                            at("values"),
                            "a categorical variable lists its allowed values".into(),
                        );
                    }
                    let mut distinct = HashSet::new();
                    for value in &v.values {
                        if value.is_empty() || value.len() > MAX_VALUE_LEN {
                            fail(
                                at("values"),
                                format!("'{value}': values are 1 to {MAX_VALUE_LEN} bytes"),
                            );
                        } else if !distinct.insert(value) {
                            fail(at("values"), format!("'{value}' is listed twice"));
                        }
                    }
                }
                _ if !v.values.is_empty() => {
                    fail(
                        at("values"),
                        format!(
                            "only categorical variables list values; '{}' is {}",
                            v.name, v.kind
                        ),
                    );
                }
                _ => {}
            }
            let numeric = matches!(v.kind, VariableType::Numeric | VariableType::Integer);
            for (field, bound) in [("min", v.min), ("max", v.max)] {
                match bound {
                    Some(_) if !numeric => fail(
                        at(field),
                        format!(
                            "only numeric and integer variables have bounds; '{}' is {}",
                            v.name, v.kind
                        ),
                    ),
                    Some(b) if !b.is_finite() => fail(at(field), "must be a finite number".into()),
                    _ => {}
                }
            }
            if let (Some(min), Some(max)) = (v.min, v.max)
                && min > max
            {
                fail(at("max"), format!("{max} is below min {min}"));
            }
        }

        let known = |name: &str| name == self.respondent_id || self.variable(name).is_some();
        let numeric = |name: &str| {
            self.variable(name)
                .is_some_and(|v| matches!(v.kind, VariableType::Numeric | VariableType::Integer))
        };
        if let Some(w) = &self.design.weights
            && !numeric(w)
        {
            fail(
                "design.weights".into(),
                format!("'{w}' is not a declared numeric or integer variable"),
            );
        }
        if let Some(s) = &self.design.strata
            && !known(s)
        {
            fail("design.strata".into(), format!("'{s}' is not a declared variable"));
        }
        if self.design.clusters.len() > MAX_STAGES {
            fail(
                "design.clusters".into(),
                format!("{} stages; at most {MAX_STAGES}", self.design.clusters.len()),
            );
        }
        for (i, c) in self.design.clusters.iter().enumerate() {
            if !known(c) {
                fail(format!("design.clusters[{i}]"), format!("'{c}' is not a declared variable"));
            }
        }
        for (i, f) in self.design.fpc.iter().enumerate() {
            if !numeric(f) {
                fail(
                    format!("design.fpc[{i}]"),
                    format!("'{f}' is not a declared numeric or integer variable"),
                );
            }
        }
        if self.design.fpc.len() > self.design.clusters.len().max(1) {
            fail(
                "design.fpc".into(),
                format!(
                    "{} fpc columns for {} sampling stages; give at most one per stage",
                    self.design.fpc.len(),
                    self.design.clusters.len().max(1)
                ),
            );
        }

        let mut names = HashSet::new();
        for (i, item) in self.victimisation_items.iter().enumerate() {
            let at = |field: &str| format!("victimisation_items[{i}].{field}");
            if !is_valid_variable_name(&item.name) {
                fail(
                    at("name"),
                    format!(
                        "'{}' is not an item name (a letter, then letters, digits, '_', '.', '-')",
                        item.name
                    ),
                );
            } else if !names.insert(item.name.as_str()) {
                fail(at("name"), format!("'{}' is declared twice", item.name));
            }
            if item.label.as_ref().is_some_and(|l| l.len() > MAX_LABEL_LEN) {
                fail(at("label"), format!("at most {MAX_LABEL_LEN} bytes"));
            }
            if let Err(error) = self.indicator_check(&item.victim, &item.victim_value) {
                fail(at("victim"), error);
            }
            if let Some(reported) = &item.reported {
                if reported == &item.victim {
                    fail(
                        at("reported"),
                        "the follow-up must be another variable than the victimisation question"
                            .into(),
                    );
                } else if let Err(error) = self.indicator_check(reported, &item.reported_value) {
                    fail(at("reported"), error);
                }
            }
            if !((2..=6).contains(&item.iccs.len())
                && item.iccs.bytes().all(|b| b.is_ascii_digit()))
            {
                fail(
                    at("iccs"),
                    format!("'{}' is not an ICCS code (2 to 6 digits, e.g. \"0701\")", item.iccs),
                );
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// An item's question must be categorical with `value` allowed, or integer with `value` an integer.
    fn indicator_check(&self, name: &str, value: &str) -> Result<(), String> {
        let Some(variable) = self.variable(name) else {
            return Err(format!("'{name}' is not a declared variable"));
        };
        match variable.kind {
            VariableType::Categorical if variable.values.iter().any(|v| v == value) => Ok(()),
            VariableType::Categorical => Err(format!(
                "'{value}' is not an allowed value of '{name}' ({})",
                variable.values.join(", ")
            )),
            VariableType::Integer if value.parse::<i64>().is_ok() => Ok(()),
            other => Err(format!(
                "'{name}' is {other}; an item needs a categorical variable (or an integer one with an integer value)"
            )),
        }
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

fn valid_respondent_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= crate::MAX_ID_LEN && !id.chars().any(char::is_control)
}

impl SurveyResponsesRecorded {
    /// What holds without the declaration: ids and names well formed, at least one row.
    pub fn validate_shape(&self) -> Result<(), String> {
        if !is_valid_survey_id(&self.survey) || !is_valid_wave_id(&self.wave) {
            return Err(format!("'{}'/'{}' is not a survey/wave id", self.survey, self.wave));
        }
        if self.rows.is_empty() {
            return Err("a batch holds at least one row".into());
        }
        for (i, row) in self.rows.iter().enumerate() {
            if !valid_respondent_id(&row.respondent_id) {
                return Err(format!(
                    "rows[{i}].respondent_id is empty, too long or has a control character"
                ));
            }
            if let Some(name) = row.values.keys().find(|n| !is_valid_variable_name(n)) {
                return Err(format!("rows[{i}].values: '{name}' is not a variable name"));
            }
            if row.values.values().any(|c| matches!(c, Cell::Number(x) if !x.is_finite())) {
                return Err(format!("rows[{i}].values: numbers must be finite"));
            }
        }
        Ok(())
    }
}

impl SurveyWaveClosed {
    /// What holds without the ledger: ids well formed, weights positive and finite.
    pub fn validate_shape(&self) -> Result<(), String> {
        if !is_valid_survey_id(&self.survey) || !is_valid_wave_id(&self.wave) {
            return Err(format!("'{}'/'{}' is not a survey/wave id", self.survey, self.wave));
        }
        for (id, weight) in &self.final_weights {
            if id.is_empty() || id.len() > crate::MAX_ID_LEN {
                return Err(format!("final_weights: respondent id '{id}' is empty or too long"));
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(format!(
                    "final_weights: respondent '{id}': weight {weight} is not a positive finite number"
                ));
            }
        }
        Ok(())
    }
}

/// Names a cell for an error message.
fn describe(cell: &Cell) -> String {
    match cell {
        Cell::Integer(i) => format!("the number {i}"),
        Cell::Number(x) => format!("the number {x}"),
        Cell::Text(t) if t.chars().count() <= 40 => format!("{t:?}"),
        Cell::Text(_) => "a long text".into(),
    }
}

fn to_number(cell: &Cell) -> Result<Option<f64>, String> {
    match cell {
        Cell::Number(x) => Ok(Some(*x)),
        Cell::Integer(i) => Ok(Some(*i as f64)),
        // A CSV cell: read as R (and `observatory estimate`) read it.
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() || t == "NA" {
                return Ok(None);
            }
            t.parse::<f64>()
                .map(Some)
                .map_err(|_| format!("expected a number, got {}", describe(cell)))
        }
    }
}

fn check_number(variable: &SurveyVariable, cell: &Cell) -> Result<Option<Cell>, String> {
    let Some(x) = to_number(cell)? else {
        return Ok(None);
    };
    if !x.is_finite() {
        return Err(format!("expected a finite number, got {}", describe(cell)));
    }
    let out = if variable.kind == VariableType::Integer {
        if x.fract() != 0.0 || x.abs() >= 9.2e18 {
            return Err(format!("expected an integer, got {}", describe(cell)));
        }
        match cell {
            Cell::Integer(i) => Cell::Integer(*i),
            _ => Cell::Integer(x as i64),
        }
    } else {
        Cell::Number(x)
    };
    if let Some(min) = variable.min.filter(|m| x < *m) {
        return Err(format!("{x} is below the declared minimum {min}"));
    }
    if let Some(max) = variable.max.filter(|m| x > *m) {
        return Err(format!("{x} is above the declared maximum {max}"));
    }
    Ok(Some(out))
}

fn as_text(cell: &Cell) -> String {
    match cell {
        Cell::Text(t) => t.clone(),
        Cell::Integer(i) => i.to_string(),
        Cell::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
        Cell::Number(x) => x.to_string(),
    }
}

fn check_cell(variable: &SurveyVariable, cell: &Cell) -> Result<Option<Cell>, String> {
    match variable.kind {
        VariableType::Numeric | VariableType::Integer => check_number(variable, cell),
        VariableType::Categorical => {
            let text = as_text(cell);
            if text.is_empty() {
                return Ok(None);
            }
            if variable.values.contains(&text) {
                Ok(Some(Cell::Text(text)))
            } else {
                let mut allowed =
                    variable.values.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
                if variable.values.len() > 20 {
                    allowed.push_str(", …");
                }
                Err(format!("{} is not an allowed value ({allowed})", describe(cell)))
            }
        }
        VariableType::Text => {
            let text = as_text(cell);
            if text.is_empty() {
                Ok(None)
            } else if text.len() > MAX_TEXT_LEN {
                Err(format!("{} bytes long; at most {MAX_TEXT_LEN}", text.len()))
            } else {
                Ok(Some(Cell::Text(text)))
            }
        }
    }
}

/// Checks one respondent row (column → value, from any wire format) against the declared
/// variables, normalising each value to its declared type. Every problem is reported, each
/// naming its column.
pub fn validate_row<I>(
    declaration: &SurveyWaveDeclared,
    cells: I,
) -> Result<SurveyRow, Vec<FieldError>>
where
    I: IntoIterator<Item = (String, Option<Cell>)>,
{
    let mut errors = Vec::new();
    let mut respondent_id = None;
    let mut given: HashMap<String, Cell> = HashMap::new();
    for (name, cell) in cells {
        if name == declaration.respondent_id {
            respondent_id = Some(cell);
        } else if declaration.variable(&name).is_none() {
            let mut list: Vec<&str> =
                declaration.variables.iter().take(20).map(|v| v.name.as_str()).collect();
            if declaration.variables.len() > 20 {
                list.push("…");
            }
            errors.push(FieldError::new(
                &name,
                format!(
                    "not a variable of wave '{}'; declared: {}, {}",
                    declaration.wave,
                    declaration.respondent_id,
                    list.join(", ")
                ),
            ));
        } else if let Some(cell) = cell {
            given.insert(name, cell);
        }
    }
    let id_field = declaration.respondent_id.as_str();
    let respondent_id = match respondent_id.flatten().map(|c| as_text(&c)) {
        None => {
            errors.push(FieldError::new(id_field, "required: the respondent id"));
            None
        }
        Some(id) if id.trim().is_empty() => {
            errors.push(FieldError::new(id_field, "must not be empty"));
            None
        }
        Some(id) if id.len() > crate::MAX_ID_LEN => {
            errors.push(FieldError::new(
                id_field,
                format!("{} bytes long; at most {}", id.len(), crate::MAX_ID_LEN),
            ));
            None
        }
        // As for incident ids: two respondent ids that look the same must be the same.
        Some(id) => match crate::validate::identifier_problem(&id) {
            Some(problem) => {
                errors.push(FieldError::new(id_field, problem));
                None
            }
            None => Some(id),
        },
    };
    let design: HashMap<&str, &str> = declaration.design_columns().into_iter().collect();
    let mut values = BTreeMap::new();
    for variable in &declaration.variables {
        let checked = match given.remove(&variable.name) {
            Some(cell) => match check_cell(variable, &cell) {
                Ok(value) => value,
                Err(error) => {
                    errors.push(FieldError::new(&variable.name, error));
                    continue;
                }
            },
            None => None,
        };
        match checked {
            Some(value) => {
                values.insert(variable.name.clone(), value);
            }
            None => {
                if let Some(role) = design.get(variable.name.as_str()) {
                    errors.push(FieldError::new(
                        &variable.name,
                        format!("required: design variable ({role}) may not be missing"),
                    ));
                } else if variable.required {
                    errors.push(FieldError::new(&variable.name, "required"));
                }
            }
        }
    }
    match respondent_id {
        Some(respondent_id) if errors.is_empty() => Ok(SurveyRow { respondent_id, values }),
        _ => Err(errors),
    }
}

/// Re-checks a row as it travelled (the projector trusts nothing it did not check itself).
pub fn check_row(
    declaration: &SurveyWaveDeclared,
    row: &SurveyRow,
) -> Result<SurveyRow, Vec<FieldError>> {
    let cells =
        row.values.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).chain(std::iter::once((
            declaration.respondent_id.clone(),
            Some(Cell::Text(row.respondent_id.clone())),
        )));
    validate_row(declaration, cells)
}

/// Why the ledger refuses an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "survey '{survey}' belongs to agency '{owner}'; only its token may declare waves, record responses or close waves"
    )]
    NotOwner { survey: String, owner: String },
    #[error(
        "wave '{wave}' of survey '{survey}' is not declared; declare it first with POST /v1/surveys/{survey}/waves"
    )]
    NotDeclared { survey: String, wave: String },
    #[error(
        "wave '{wave}' of survey '{survey}' was declared differently at sequence {sequence}; a declared wave never changes: declare a new wave id"
    )]
    Redeclared { survey: String, wave: String, sequence: u64 },
    #[error(
        "wave '{wave}' of survey '{survey}' was closed at sequence {sequence}; it takes no more responses (declare a new wave for new fieldwork)"
    )]
    Closed { survey: String, wave: String, sequence: u64 },
    #[error(
        "wave '{wave}' of survey '{survey}' was already closed at sequence {sequence} with other final weights; a closure never changes"
    )]
    ClosedDifferently { survey: String, wave: String, sequence: u64 },
    #[error("final_weights: {0}")]
    FinalWeights(String),
    #[error("the declaration is not valid: {0}")]
    InvalidDeclaration(String),
}

/// What the ledger did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerOutcome {
    Declared,
    /// The identical declaration again (a retry): nothing changes.
    AlreadyDeclared,
    /// Indexes (into the batch) of the rows that are new, in batch order.
    Recorded {
        new_rows: Vec<usize>,
        duplicates: u64,
        invalid: u64,
    },
    Closed,
    /// The identical closure again: nothing changes.
    AlreadyClosed,
    Refused(LedgerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveClosure {
    pub sequence: u64,
    pub respondents: u64,
    pub final_weights: bool,
    /// Identity of the closure's final weights, so a retried closure is recognised.
    pub digest: u128,
}

/// One declared wave as the ledger knows it.
#[derive(Debug, Clone)]
pub struct WaveState {
    pub source: String,
    pub declaration: SurveyWaveDeclared,
    pub declared_sequence: u64,
    pub closed: Option<WaveClosure>,
    respondents: HashSet<u128>,
}

impl WaveState {
    pub fn respondents(&self) -> usize {
        self.respondents.len()
    }

    pub fn has_respondent(&self, respondent_id: &str) -> bool {
        self.respondents.contains(&respondent_key(
            &self.declaration.survey,
            &self.declaration.wave,
            respondent_id,
        ))
    }
}

fn weights_digest(weights: &BTreeMap<String, f64>) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (id, w) in weights {
        hasher.update(id.as_bytes());
        hasher.update(&[0]);
        hasher.update(&w.to_bits().to_le_bytes());
    }
    hasher.digest128()
}

/// Which waves exist, who owns each survey, which respondents each open wave has and which
/// waves are closed: the state both the ingest and the projector derive from the stream, with
/// the same rules, so they agree on what is new.
#[derive(Debug, Clone, Default)]
pub struct SurveyLedger {
    waves: BTreeMap<(String, String), WaveState>,
    owners: HashMap<String, String>,
}

impl SurveyLedger {
    pub fn new() -> SurveyLedger {
        SurveyLedger::default()
    }

    pub fn wave(&self, survey: &str, wave: &str) -> Option<&WaveState> {
        self.waves.get(&(survey.to_owned(), wave.to_owned()))
    }

    pub fn waves(&self) -> impl Iterator<Item = &WaveState> {
        self.waves.values()
    }

    pub fn survey_owner(&self, survey: &str) -> Option<&str> {
        self.owners.get(survey).map(String::as_str)
    }

    fn owned(&self, source: &str, survey: &str) -> Result<(), LedgerError> {
        match self.owners.get(survey) {
            Some(owner) if owner != source => {
                Err(LedgerError::NotOwner { survey: survey.to_owned(), owner: owner.clone() })
            }
            _ => Ok(()),
        }
    }

    /// `Ok(true)` when the declaration is new, `Ok(false)` when it repeats the existing one.
    pub fn check_declare(
        &self,
        source: &str,
        declaration: &SurveyWaveDeclared,
    ) -> Result<bool, LedgerError> {
        self.owned(source, &declaration.survey)?;
        match self.wave(&declaration.survey, &declaration.wave) {
            None => Ok(true),
            Some(existing) if existing.declaration == *declaration => Ok(false),
            Some(existing) => Err(LedgerError::Redeclared {
                survey: declaration.survey.clone(),
                wave: declaration.wave.clone(),
                sequence: existing.declared_sequence,
            }),
        }
    }

    /// The wave, if `source` may record responses in it now.
    pub fn check_open(
        &self,
        source: &str,
        survey: &str,
        wave: &str,
    ) -> Result<&WaveState, LedgerError> {
        self.owned(source, survey)?;
        let state = self.wave(survey, wave).ok_or_else(|| LedgerError::NotDeclared {
            survey: survey.to_owned(),
            wave: wave.to_owned(),
        })?;
        match state.closed {
            Some(closure) => Err(LedgerError::Closed {
                survey: survey.to_owned(),
                wave: wave.to_owned(),
                sequence: closure.sequence,
            }),
            None => Ok(state),
        }
    }

    /// `Ok(true)` when the closure is new, `Ok(false)` when it repeats the existing one. Final
    /// weights must name every recorded respondent once, with a positive finite weight.
    pub fn check_close(&self, source: &str, close: &SurveyWaveClosed) -> Result<bool, LedgerError> {
        self.owned(source, &close.survey)?;
        let state = self.wave(&close.survey, &close.wave).ok_or_else(|| {
            LedgerError::NotDeclared { survey: close.survey.clone(), wave: close.wave.clone() }
        })?;
        if let Some(closure) = state.closed {
            return if closure.digest == weights_digest(&close.final_weights) {
                Ok(false)
            } else {
                Err(LedgerError::ClosedDifferently {
                    survey: close.survey.clone(),
                    wave: close.wave.clone(),
                    sequence: closure.sequence,
                })
            };
        }
        if close.final_weights.is_empty() {
            return Ok(true);
        }
        let mut unknown = Vec::new();
        for (id, weight) in &close.final_weights {
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(LedgerError::FinalWeights(format!(
                    "respondent '{id}': weight {weight} is not a positive finite number"
                )));
            }
            if !state.has_respondent(id) {
                unknown.push(id.as_str());
            }
        }
        if !unknown.is_empty() {
            let shown: Vec<&str> = unknown.iter().take(5).copied().collect();
            return Err(LedgerError::FinalWeights(format!(
                "{} respondent id(s) were never recorded in this wave: {}{}",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > 5 { ", …" } else { "" }
            )));
        }
        if close.final_weights.len() != state.respondents.len() {
            return Err(LedgerError::FinalWeights(format!(
                "{} weights for {} recorded respondents; give one final weight per respondent",
                close.final_weights.len(),
                state.respondents.len()
            )));
        }
        Ok(true)
    }

    /// Applies the event at stream position `sequence`, published by `source`.
    pub fn apply(&mut self, sequence: u64, source: &str, event: &SurveyEvent) -> LedgerOutcome {
        match event {
            SurveyEvent::WaveDeclared(declaration) => {
                match self.check_declare(source, declaration) {
                    Err(e) => return LedgerOutcome::Refused(e),
                    Ok(false) => return LedgerOutcome::AlreadyDeclared,
                    Ok(true) => {}
                }
                if let Err(errors) = declaration.validate() {
                    let first = errors
                        .first()
                        .map(|e| format!("{}: {}", e.field, e.error))
                        .unwrap_or_default();
                    return LedgerOutcome::Refused(LedgerError::InvalidDeclaration(first));
                }
                self.owners.entry(declaration.survey.clone()).or_insert_with(|| source.to_owned());
                self.waves.insert(
                    (declaration.survey.clone(), declaration.wave.clone()),
                    WaveState {
                        source: source.to_owned(),
                        declaration: declaration.clone(),
                        declared_sequence: sequence,
                        closed: None,
                        respondents: HashSet::new(),
                    },
                );
                LedgerOutcome::Declared
            }
            SurveyEvent::ResponsesRecorded(batch) => {
                if let Err(e) = self.check_open(source, &batch.survey, &batch.wave) {
                    return LedgerOutcome::Refused(e);
                }
                let state = self
                    .waves
                    .get_mut(&(batch.survey.clone(), batch.wave.clone()))
                    .expect("checked");
                let (mut new_rows, mut duplicates, mut invalid) = (Vec::new(), 0, 0);
                for (i, row) in batch.rows.iter().enumerate() {
                    if check_row(&state.declaration, row).is_err() {
                        invalid += 1;
                    } else if state.respondents.insert(respondent_key(
                        &batch.survey,
                        &batch.wave,
                        &row.respondent_id,
                    )) {
                        new_rows.push(i);
                    } else {
                        duplicates += 1;
                    }
                }
                LedgerOutcome::Recorded { new_rows, duplicates, invalid }
            }
            SurveyEvent::WaveClosed(close) => {
                match self.check_close(source, close) {
                    Err(e) => return LedgerOutcome::Refused(e),
                    Ok(false) => return LedgerOutcome::AlreadyClosed,
                    Ok(true) => {}
                }
                let state = self
                    .waves
                    .get_mut(&(close.survey.clone(), close.wave.clone()))
                    .expect("checked");
                state.closed = Some(WaveClosure {
                    sequence,
                    respondents: state.respondents.len() as u64,
                    final_weights: !close.final_weights.is_empty(),
                    digest: weights_digest(&close.final_weights),
                });
                // A closed wave takes no more rows: its respondent set is no longer needed.
                state.respondents = HashSet::new();
                LedgerOutcome::Closed
            }
        }
    }

    /// Restores a wave from a projection snapshot (the projector's restart path).
    pub fn restore_wave(
        &mut self,
        source: &str,
        declaration: SurveyWaveDeclared,
        declared_sequence: u64,
        closed: Option<WaveClosure>,
        respondent_ids: impl IntoIterator<Item = String>,
    ) {
        let respondents = if closed.is_some() {
            HashSet::new()
        } else {
            respondent_ids
                .into_iter()
                .map(|id| respondent_key(&declaration.survey, &declaration.wave, &id))
                .collect()
        };
        self.owners.entry(declaration.survey.clone()).or_insert_with(|| source.to_owned());
        self.waves.insert(
            (declaration.survey.clone(), declaration.wave.clone()),
            WaveState {
                source: source.to_owned(),
                declaration,
                declared_sequence,
                closed,
                respondents,
            },
        );
    }

    /// Recomputes the owners after restores in arbitrary order: the owner of a survey is the
    /// source of its earliest declared wave.
    pub fn settle_owners(&mut self) {
        let mut earliest: HashMap<String, (u64, String)> = HashMap::new();
        for state in self.waves.values() {
            let entry = earliest
                .entry(state.declaration.survey.clone())
                .or_insert((state.declared_sequence, state.source.clone()));
            if state.declared_sequence < entry.0 {
                *entry = (state.declared_sequence, state.source.clone());
            }
        }
        self.owners = earliest.into_iter().map(|(survey, (_, source))| (survey, source)).collect();
    }

    /// Surveys known, for listings.
    pub fn surveys(&self) -> BTreeSet<&str> {
        self.waves.keys().map(|(s, _)| s.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaration() -> SurveyWaveDeclared {
        serde_json::from_str(
            r#"{"survey":"cvs","wave":"2024","population":"households",
                "reference_period":{"from":"2024-01-01","to":"2024-12-31"},"respondent_id":"hh",
                "design":{"weights":"w","strata":"region","clusters":["psu"]},
                "variables":[{"name":"region","type":"categorical","values":["11","84"]},
                             {"name":"psu","type":"integer"},{"name":"w","type":"numeric","min":0},
                             {"name":"victim","type":"categorical","values":["yes","no"],"required":true},
                             {"name":"reported","type":"categorical","values":["yes","no"]},
                             {"name":"age","type":"integer","min":15,"max":120}],
                "victimisation_items":[{"name":"fraud","victim":"victim","reported":"reported","iccs":"0701"}]}"#,
        )
        .unwrap()
    }

    fn csv_row(pairs: &[(&str, &str)]) -> Vec<(String, Option<Cell>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), Some(Cell::Text(v.to_string())))).collect()
    }

    #[test]
    fn a_good_declaration_passes_and_a_bad_one_names_every_field() {
        declaration().validate().unwrap();
        let mut bad = declaration();
        bad.wave = "Wave 1".into();
        bad.design.weights = Some("region".into());
        bad.design.clusters = vec!["nowhere".into()];
        bad.variables[0].values.clear();
        bad.victimisation_items[0].victim_value = "oui".into();
        bad.victimisation_items[0].iccs = "7".into();
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "wave",
            "design.weights",
            "design.clusters[0]",
            "variables[0].values",
            "victimisation_items[0].victim",
            "victimisation_items[0].iccs",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
    }

    #[test]
    fn rows_are_typed_like_the_cli_reads_csv_and_every_problem_is_named() {
        let d = declaration();
        let row = validate_row(
            &d,
            csv_row(&[
                ("hh", "H1"),
                ("region", "11"),
                ("psu", "7"),
                ("w", "33.84699630737305"),
                ("victim", "no"),
                ("age", "NA"),
            ]),
        )
        .unwrap();
        assert_eq!(row.values["w"], Cell::Number("33.84699630737305".parse().unwrap()));
        assert_eq!(row.values["psu"], Cell::Integer(7));
        assert!(!row.values.contains_key("age"));
        let errors = validate_row(
            &d,
            csv_row(&[
                ("hh", "H2"),
                ("region", "99"),
                ("psu", "7.5"),
                ("w", ""),
                ("age", "200"),
                ("colour", "red"),
            ]),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields.len(), 6, "{errors:?}");
        for f in ["region", "psu", "w", "victim", "age", "colour"] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
        assert!(
            errors.iter().any(|e| e.field == "w" && e.error.contains("design variable (weights)"))
        );
        // Respondent ids are identifiers: nothing around them, nothing invisible in them.
        for (id, problem) in [
            (" H3", "leading or trailing spaces"),
            ("H\u{202E}3", "U+202E"),
            ("H\u{200B}3", "U+200B"),
        ] {
            let row = [("hh", id), ("region", "11"), ("psu", "7"), ("w", "1.5"), ("victim", "no")];
            let errors = validate_row(&d, csv_row(&row)).unwrap_err();
            assert!(
                errors.iter().any(|e| e.field == "hh" && e.error.contains(problem)),
                "{id:?}: {errors:?}"
            );
        }
    }

    #[test]
    fn json_numbers_are_parsed_exactly() {
        // 17 significant digits: the mantissa exceeds 2^53, where a two-step parse can be one ulp off.
        let text = "0.30000000000000004";
        let cells = parse_json_row(&format!(
            r#"{{"hh":"A","w":{text},"psu":12,"victim":"yes","region":null}}"#
        ))
        .unwrap();
        let map: HashMap<_, _> = cells.into_iter().collect();
        assert_eq!(map["w"], Some(Cell::Number(text.parse().unwrap())));
        assert_eq!(map["psu"], Some(Cell::Integer(12)));
        assert_eq!(map["region"], None);
        let event = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
            survey: "cvs".into(),
            wave: "2024".into(),
            rows: vec![SurveyRow {
                respondent_id: "A".into(),
                values: [
                    ("w".to_owned(), Cell::Number(1.0 / 3.0)),
                    ("psu".to_owned(), Cell::Integer(-4)),
                ]
                .into(),
            }],
        });
        let bytes = event.envelope("ssmsi", Utc::now()).to_bytes();
        let decoded = SurveyEvent::decode(&bytes).unwrap();
        assert_eq!(decoded.event, event);
        assert_eq!(decoded.source, "ssmsi");
    }

    #[test]
    fn the_ledger_dedupes_respondents_refuses_late_rows_and_checks_final_weights() {
        let d = declaration();
        let mut ledger = SurveyLedger::new();
        assert_eq!(
            ledger.apply(1, "ssmsi", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::Declared
        );
        assert_eq!(
            ledger.apply(2, "ssmsi", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::AlreadyDeclared
        );
        assert!(matches!(
            ledger.apply(3, "pn", &SurveyEvent::WaveDeclared(d.clone())),
            LedgerOutcome::Refused(LedgerError::NotOwner { .. })
        ));
        let row = |id: &str| {
            validate_row(
                &d,
                csv_row(&[
                    ("hh", id),
                    ("region", "11"),
                    ("psu", "1"),
                    ("w", "2.5"),
                    ("victim", "yes"),
                ]),
            )
            .unwrap()
        };
        let batch = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
            survey: "cvs".into(),
            wave: "2024".into(),
            rows: vec![row("A"), row("B"), row("A")],
        });
        assert_eq!(
            ledger.apply(4, "ssmsi", &batch),
            LedgerOutcome::Recorded { new_rows: vec![0, 1], duplicates: 1, invalid: 0 }
        );
        assert_eq!(
            ledger.apply(5, "ssmsi", &batch),
            LedgerOutcome::Recorded { new_rows: vec![], duplicates: 3, invalid: 0 }
        );
        let mut close = SurveyWaveClosed {
            survey: "cvs".into(),
            wave: "2024".into(),
            respondents: 2,
            final_weights: [("A".to_owned(), 3.0)].into(),
        };
        assert!(matches!(ledger.check_close("ssmsi", &close), Err(LedgerError::FinalWeights(_))));
        close.final_weights.insert("B".into(), 4.0);
        assert_eq!(
            ledger.apply(6, "ssmsi", &SurveyEvent::WaveClosed(close.clone())),
            LedgerOutcome::Closed
        );
        assert_eq!(
            ledger.apply(7, "ssmsi", &SurveyEvent::WaveClosed(close.clone())),
            LedgerOutcome::AlreadyClosed
        );
        assert!(matches!(
            ledger.apply(8, "ssmsi", &batch),
            LedgerOutcome::Refused(LedgerError::Closed { sequence: 6, .. })
        ));
        close.final_weights.insert("B".into(), 5.0);
        assert!(matches!(
            ledger.check_close("ssmsi", &close),
            Err(LedgerError::ClosedDifferently { .. })
        ));
    }
}
