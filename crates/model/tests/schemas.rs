//! Holds the Rust event types and the JSON Schemas in `schemas/` to the same examples: every
//! valid example passes both, every invalid one fails both.

use std::path::PathBuf;

use chrono::NaiveDate;
use observatory_model::{
    Envelope, Event, EventFamily, EventKind, IncidentRecord, IncidentReported, IncidentWithdrawn,
    PeriodClosed, validate_period_close, validate_record,
};
use observatory_reference::{Crosswalk, Crosswalks, IDENTITY};
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn load(path: &str) -> Value {
    let path = schemas_dir().join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(path: &str) -> jsonschema::Validator {
    jsonschema::options().should_validate_formats(true).build(&load(path)).expect("schema compiles")
}

fn crosswalk(name: &str, version: u32) -> &'static Crosswalk {
    Crosswalks::builtin()
        .get(name, version)
        .unwrap_or_else(|| panic!("crosswalk {name} v{version}"))
}

/// The Rust side of the contract: the payload decodes (through the upcaster for older
/// versions) and passes the same validation the ingest applies.
fn rust_accepts(kind: &str, payload: &Value) -> bool {
    let today = NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    let identity = Crosswalks::builtin().latest(IDENTITY).unwrap();
    let Some(record) = payload.as_object() else { return false };
    match kind {
        "IncidentReported.v1" => {
            let envelope = Envelope {
                event_id: uuid::Uuid::now_v7(),
                event_type: EventKind::IncidentReported,
                schema_version: 1,
                source: "pn".into(),
                recorded_at: chrono::Utc::now(),
                payload: payload.clone(),
            };
            envelope.event().is_ok()
                && matches!(
                    validate_record(&IncidentRecord::from(record), today, identity),
                    Ok(Event::IncidentReported(_))
                )
        }
        "IncidentReported.v2" => {
            let Ok(event) = serde_json::from_value::<IncidentReported>(payload.clone()) else {
                return false;
            };
            // What the agency sent: the payload without what the ingest adds.
            let mut sent = record.clone();
            sent.remove("unit");
            sent.remove("coding");
            let crosswalk =
                event.coding.as_ref().map_or(identity, |c| crosswalk(&c.crosswalk, c.version));
            match validate_record(&IncidentRecord::from(&sent), today, crosswalk) {
                Ok(Event::IncidentReported(validated)) => validated.unit == event.unit,
                _ => false,
            }
        }
        "IncidentWithdrawn.v1" => {
            let mut record = record.clone();
            record.insert("withdrawn".into(), Value::Bool(true));
            serde_json::from_value::<IncidentWithdrawn>(payload.clone()).is_ok()
                && matches!(
                    validate_record(&IncidentRecord::from(&record), today, identity),
                    Ok(Event::IncidentWithdrawn(_))
                )
        }
        "PeriodClosed.v1" => {
            serde_json::from_value::<PeriodClosed>(payload.clone()).is_ok()
                && validate_period_close(record, today).is_ok()
        }
        other => panic!("no Rust type registered for {other}"),
    }
}

#[test]
fn types_and_schemas_agree_on_every_example() {
    let examples = load("examples/examples.json");
    let mut checked = 0;
    for (kind, sets) in examples.as_object().unwrap() {
        let (name, version) = kind.split_once(".v").unwrap();
        let schema = validator(&format!("incident/{name}.v{version}.schema.json"));
        for example in sets["valid"].as_array().unwrap() {
            let errors: Vec<String> = schema.iter_errors(example).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{kind}: schema rejects valid example {example}: {errors:?}"
            );
            assert!(rust_accepts(kind, example), "{kind}: Rust rejects valid example {example}");
            checked += 1;
        }
        for example in sets["invalid"].as_array().unwrap() {
            assert!(!schema.is_valid(example), "{kind}: schema accepts invalid example {example}");
            assert!(!rust_accepts(kind, example), "{kind}: Rust accepts invalid example {example}");
            checked += 1;
        }
    }
    assert!(checked >= 34, "only {checked} examples checked");
}

#[test]
fn every_event_kind_has_a_schema_and_envelopes_match_theirs() {
    let envelope_schema = validator("envelope.v1.schema.json");
    let examples = load("examples/examples.json");
    for kind in EventKind::ALL.into_iter().filter(|k| k.family() == EventFamily::Incident) {
        let key = format!("{}.v{}", kind.as_str(), kind.current_version());
        let example = &examples[&key]["valid"][0];
        assert!(example.is_object(), "no valid example for {key}");
        let event = match kind {
            EventKind::IncidentReported => {
                Event::IncidentReported(serde_json::from_value(example.clone()).unwrap())
            }
            EventKind::IncidentWithdrawn => {
                Event::IncidentWithdrawn(serde_json::from_value(example.clone()).unwrap())
            }
            EventKind::PeriodClosed => {
                Event::PeriodClosed(serde_json::from_value(example.clone()).unwrap())
            }
            other => unreachable!("{other:?} is checked by tests/survey_schemas.rs"),
        };
        let envelope = Envelope::new(&event, "pn", chrono::Utc::now());
        let json: Value = serde_json::from_slice(&envelope.to_bytes()).unwrap();
        let errors: Vec<String> =
            envelope_schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{key}: {errors:?}");
        // The payload as written validates against its own schema, and round-trips.
        assert!(
            validator(&format!("incident/{key}.schema.json")).is_valid(&json["payload"]),
            "{key}"
        );
        assert_eq!(Envelope::from_bytes(&envelope.to_bytes()).unwrap().event().unwrap(), event);
    }
}
