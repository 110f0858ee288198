//! Holds the Rust event types and the JSON Schemas in `schemas/` to the same examples: every
//! valid example passes both, every invalid one fails both.

use std::path::PathBuf;

use chrono::NaiveDate;
use observatory_model::{Envelope, Event, EventKind, IncidentReported, IncidentWithdrawn, validate_record};
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

/// The Rust side of the contract: the payload deserialises into its type and passes the
/// same validation the ingest applies.
fn rust_accepts(kind: &str, payload: &Value) -> bool {
    let today = NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
    match kind {
        "IncidentReported.v1" => {
            serde_json::from_value::<IncidentReported>(payload.clone()).is_ok()
                && matches!(validate_record(payload.as_object().unwrap(), today), Ok(Event::IncidentReported(_)))
        }
        "IncidentWithdrawn.v1" => {
            let mut record = payload.as_object().unwrap().clone();
            record.insert("withdrawn".into(), Value::Bool(true));
            serde_json::from_value::<IncidentWithdrawn>(payload.clone()).is_ok()
                && matches!(validate_record(&record, today), Ok(Event::IncidentWithdrawn(_)))
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
            assert!(errors.is_empty(), "{kind}: schema rejects valid example {example}: {errors:?}");
            assert!(rust_accepts(kind, example), "{kind}: Rust rejects valid example {example}");
            checked += 1;
        }
        for example in sets["invalid"].as_array().unwrap() {
            assert!(!schema.is_valid(example), "{kind}: schema accepts invalid example {example}");
            assert!(!rust_accepts(kind, example), "{kind}: Rust accepts invalid example {example}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} examples checked");
}

#[test]
fn every_event_kind_has_a_schema_and_envelopes_match_theirs() {
    let envelope_schema = validator("envelope.v1.schema.json");
    let examples = load("examples/examples.json");
    for kind in EventKind::ALL {
        let key = format!("{}.v{}", kind.as_str(), kind.current_version());
        let example = &examples[&key]["valid"][0];
        assert!(example.is_object(), "no valid example for {key}");
        let event = match kind {
            EventKind::IncidentReported => Event::IncidentReported(serde_json::from_value(example.clone()).unwrap()),
            EventKind::IncidentWithdrawn => Event::IncidentWithdrawn(serde_json::from_value(example.clone()).unwrap()),
        };
        let envelope = Envelope::new(&event, "pn", chrono::Utc::now());
        let json: Value = serde_json::from_slice(&envelope.to_bytes()).unwrap();
        let errors: Vec<String> = envelope_schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{key}: {errors:?}");
        // The payload as written validates against its own schema, and round-trips.
        assert!(validator(&format!("incident/{key}.schema.json")).is_valid(&json["payload"]), "{key}");
        assert_eq!(Envelope::from_bytes(&envelope.to_bytes()).unwrap().event().unwrap(), event);
    }
}
