//! Survey payloads decoded from their bytes with numbers parsed exactly: [`SurveyEvent::decode`]
//! for a message, [`parse_json_row`] and [`parse_close_json`] for what an agency posts. A JSON
//! number is read from its text with Rust's correctly rounded `str::parse`, never through
//! `serde_json::Value`, so the pipeline's estimates equal those from the same CSV file.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::events::{Cell, DecodedSurveyEvent, SurveyEvent};
use crate::envelope::{DecodeError, EventFamily, EventKind};

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
    /// Decodes a survey event from the bytes of a message (numbers parsed exactly).
    pub fn decode(bytes: &[u8]) -> Result<DecodedSurveyEvent, DecodeError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        let kind = raw.event_type;
        let max = kind.current_version();
        if kind.family() != EventFamily::Survey {
            return Err(DecodeError::WrongFamily {
                kind: kind.as_str(),
                family: kind.family(),
                expected: EventFamily::Survey,
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

/// Exact decoding of JSON numbers: from their text, with `str::parse`.
pub(super) mod exact {
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

/// One NDJSON line read in a single pass: its cells (by key, numbers exact) and the keys it
/// sent more than once (a map would silently keep one of their values).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRow {
    pub cells: Vec<(String, Option<Cell>)>,
    /// Keys sent more than once, in the order first repeated; empty for a well-formed row.
    pub repeated: Vec<String>,
}

impl<'de> Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonRow, D::Error> {
        struct RowVisitor;
        impl<'de> serde::de::Visitor<'de> for RowVisitor {
            type Value = JsonRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonRow, A::Error> {
                let mut cells: BTreeMap<String, Option<Cell>> = BTreeMap::new();
                let mut repeated = Vec::new();
                while let Some((key, InputCell(cell))) = map.next_entry::<String, InputCell>()? {
                    match cells.entry(key) {
                        Entry::Vacant(slot) => {
                            slot.insert(cell);
                        }
                        Entry::Occupied(taken) => {
                            if !repeated.contains(taken.key()) {
                                repeated.push(taken.key().clone());
                            }
                        }
                    }
                }
                Ok(JsonRow { cells: cells.into_iter().collect(), repeated })
            }
        }
        deserializer.deserialize_map(RowVisitor)
    }
}

/// Parses one NDJSON line into cells, numbers exactly, naming the keys it repeats.
pub fn parse_json_row(line: &str) -> Result<JsonRow, String> {
    serde_json::from_str(line).map_err(|e| {
        if e.is_data() && line.trim_start().starts_with('{') {
            format!("invalid value: {e}")
        } else if line.trim_start().starts_with('{') {
            format!("invalid JSON: {e}")
        } else {
            "expected a JSON object".to_owned()
        }
    })
}

/// The JSON body of a closure request: `{}` or `{"final_weights": {"<respondent id>": w, …}}`,
/// weights parsed exactly. The error is serde's own, so a caller can tell a syntax error from a
/// wrong field and point at its line and column.
pub fn parse_close_json(text: &str) -> Result<BTreeMap<String, f64>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "exact::f64_map")]
        final_weights: BTreeMap<String, f64>,
    }
    serde_json::from_str::<Body>(text).map(|b| b.final_weights)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::survey::{SurveyResponsesRecorded, SurveyRow};

    /// A map would keep one value of a repeated key; the row names every key sent twice, once,
    /// in the order first repeated, and keeps the first value.
    #[test]
    fn a_row_names_the_keys_it_repeats() {
        let row = parse_json_row(r#"{"id":"A","x":1,"y":2,"x":3,"y":4,"x":5}"#).unwrap();
        assert_eq!(row.repeated, ["x", "y"]);
        assert_eq!(row.cells[1], ("x".to_owned(), Some(Cell::Integer(1))));
        assert_eq!(parse_json_row("[1]").unwrap_err(), "expected a JSON object");
        assert!(parse_json_row(r#"{"x":[1]}"#).unwrap_err().starts_with("invalid value"));
        assert!(parse_json_row(r#"{"x":1"#).unwrap_err().starts_with("invalid JSON"));
    }

    #[test]
    fn json_numbers_are_parsed_exactly() {
        // 17 significant digits: the mantissa exceeds 2^53, where a two-step parse can be one ulp off.
        let text = "0.30000000000000004";
        let cells = parse_json_row(&format!(
            r#"{{"hh":"A","w":{text},"psu":12,"victim":"yes","region":null}}"#
        ))
        .unwrap();
        assert!(cells.repeated.is_empty());
        let map: HashMap<_, _> = cells.cells.into_iter().collect();
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
}
