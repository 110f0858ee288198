//! Holds the survey event types and their JSON Schemas in `schemas/survey/` to the same
//! examples (`schemas/examples/survey-examples.json`): every valid example passes both, every
//! invalid one fails both. Payloads are read from text, as the projector reads them.

use std::path::PathBuf;

use observatory_model::survey::{
    SurveyEvent, SurveyResponsesRecorded, SurveyWaveClosed, SurveyWaveDeclared,
};
use observatory_model::{Envelope, EventFamily, EventKind};
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

/// The Rust side: the payload text deserialises into its type and passes the checks the
/// ingest and the projector apply without other context.
fn rust_event(kind: &str, payload: &Value) -> Option<SurveyEvent> {
    let text = payload.to_string();
    match kind {
        "SurveyWaveDeclared.v1" => serde_json::from_str::<SurveyWaveDeclared>(&text)
            .ok()
            .filter(|d| d.validate().is_ok())
            .map(SurveyEvent::WaveDeclared),
        "SurveyResponsesRecorded.v1" => serde_json::from_str::<SurveyResponsesRecorded>(&text)
            .ok()
            .filter(|r| r.validate_shape().is_ok())
            .map(SurveyEvent::ResponsesRecorded),
        "SurveyWaveClosed.v1" => serde_json::from_str::<SurveyWaveClosed>(&text)
            .ok()
            .filter(|c| c.validate_shape().is_ok())
            .map(SurveyEvent::WaveClosed),
        other => panic!("no Rust type registered for {other}"),
    }
}

fn schema_path(kind: &str) -> String {
    format!("survey/{kind}.schema.json")
}

#[test]
fn types_and_schemas_agree_on_every_example() {
    let examples = load("examples/survey-examples.json");
    let mut checked = 0;
    for (kind, sets) in examples.as_object().unwrap() {
        let schema = validator(&schema_path(kind));
        for example in sets["valid"].as_array().unwrap() {
            let errors: Vec<String> = schema.iter_errors(example).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{kind}: schema rejects valid example {example}: {errors:?}"
            );
            assert!(
                rust_event(kind, example).is_some(),
                "{kind}: Rust rejects valid example {example}"
            );
            checked += 1;
        }
        for example in sets["invalid"].as_array().unwrap() {
            assert!(!schema.is_valid(example), "{kind}: schema accepts invalid example {example}");
            assert!(
                rust_event(kind, example).is_none(),
                "{kind}: Rust accepts invalid example {example}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} examples checked");
}

#[test]
fn every_survey_kind_has_a_schema_and_envelopes_round_trip_exactly() {
    let envelope_schema = validator("envelope.v1.schema.json");
    let examples = load("examples/survey-examples.json");
    let survey_kinds: Vec<EventKind> =
        EventKind::ALL.into_iter().filter(|k| k.family() == EventFamily::Survey).collect();
    assert_eq!(survey_kinds.len(), 3);
    for kind in survey_kinds {
        let key = format!("{}.v{}", kind.as_str(), kind.current_version());
        let example = &examples[&key]["valid"][0];
        let event =
            rust_event(&key, example).unwrap_or_else(|| panic!("no valid example for {key}"));
        assert_eq!(event.kind(), kind);
        let envelope = event.envelope("ssmsi", chrono::Utc::now());
        assert!(envelope.subject().starts_with("obs.survey."), "{}", envelope.subject());
        let bytes = envelope.to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> =
            envelope_schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{key}: {errors:?}");
        assert!(validator(&schema_path(&key)).is_valid(&json["payload"]), "{key}");
        assert_eq!(SurveyEvent::decode(&bytes).unwrap().event, event, "{key}");
        // The incident decoder refuses survey events instead of misreading them.
        assert!(Envelope::from_bytes(&bytes).unwrap().event().is_err());
    }
}
