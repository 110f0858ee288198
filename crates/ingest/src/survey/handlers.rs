//! The three survey endpoints: declare a wave, upload its responses, close it. Each checks the
//! request against the ledger and publishes under the ledger's lock.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use observatory_bus::Outgoing;
use observatory_metrics::Records;
use observatory_model::survey::{
    LedgerOutcome, SurveyEvent, SurveyLedger, SurveyResponsesRecorded, SurveyRow, SurveyWaveClosed,
    SurveyWaveDeclared, WaveState, is_valid_survey_id, is_valid_wave_id, validate_row,
};
use serde_json::json;
use tracing::Span;

use super::batch::batches;
use super::parse::{BodyFormat, BodyRow, parse_close, parse_rows};
use super::state::{ENVELOPE_ROOM, SurveyIngestState};
use crate::agencies::Agency;
use crate::error::ApiError;
use crate::parse::REPEATED_KEY;
use crate::upload::{self, IngestSummary, Rejection};

/// What the advice on an oversized body tells the producer to split.
const SPLIT: &str = "the responses";

/// Readiness and token checks shared by the three endpoints.
fn admit(state: &SurveyIngestState, headers: &HeaderMap) -> Result<Agency, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::unavailable(
            "survey ingest is starting (replaying the declared waves from the stream); retry in a few seconds",
        ));
    }
    upload::authenticate(&state.registry, headers)
}

fn check_ids(survey: &str, wave: Option<&str>) -> Result<(), ApiError> {
    if !is_valid_survey_id(survey) {
        return Err(ApiError::bad_request(format!(
            "'{survey}' is not a survey id: use 1 to 64 lowercase letters, digits, '-' or '_'"
        )));
    }
    if let Some(wave) = wave.filter(|w| !is_valid_wave_id(w)) {
        return Err(ApiError::bad_request(format!(
            "'{wave}' is not a wave id: use 1 to 32 lowercase letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// The survey and wave of the path, checked, and recorded on the span.
fn wave_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((survey, wave)) = path?;
    check_ids(&survey, Some(&wave))?;
    let span = Span::current();
    span.record("survey", survey.as_str());
    span.record("wave", wave.as_str());
    Ok((survey, wave))
}

fn outgoing(event: &SurveyEvent, source: &str) -> Outgoing {
    Outgoing::from_envelope(&event.envelope(source, Utc::now()), event.dedupe_key(source), None)
}

/// Publishes one event and applies it to the ledger at its sequence.
async fn publish_one(
    state: &SurveyIngestState,
    ledger: &mut SurveyLedger,
    source: &str,
    event: SurveyEvent,
) -> Result<u64, ApiError> {
    let message = outgoing(&event, source);
    let limit = state.max_payload() + ENVELOPE_ROOM;
    if message.payload.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the event would be {} bytes, over the bus limit of {limit} bytes; for final weights of a very large wave, raise max_payload in nats-server",
                message.payload.len(),
            ),
        ));
    }
    let published = upload::publish_one(&state.bus.publisher(), message).await?;
    if !published.duplicate {
        ledger.apply(published.sequence, source, &event);
    }
    Ok(published.sequence)
}

/// `POST /v1/surveys/{survey}/waves`: declares a wave (JSON). The body's `survey` may be left
/// out; it comes from the path.
#[tracing::instrument(name = "survey_declare", skip_all, fields(source, survey, wave))]
pub(super) async fn post_declare(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agency = admit(&state, &headers)?;
    let Path(survey) = path?;
    check_ids(&survey, None)?;
    Span::current().record("survey", survey.as_str());
    let body = upload::read_body(body, SPLIT)?;
    let declaration = declaration(&survey, &body)?;
    Span::current().record("wave", declaration.wave.as_str());
    if let Err(errors) = declaration.validate() {
        let first = format!("{}: {}", errors[0].field, errors[0].error);
        let rejected: Vec<_> =
            errors.into_iter().map(|e| json!({"field": e.field, "error": e.error})).collect();
        return Err(ApiError::unprocessable(format!(
            "the declaration is not valid ({} problem(s); first: {first})",
            rejected.len()
        ))
        .with("rejected", rejected));
    }

    let mut ledger = state.ledger.lock().await;
    if !ledger.check_declare(&agency.id, &declaration)? {
        let sequence =
            ledger.wave(&declaration.survey, &declaration.wave).map(|w| w.declared_sequence);
        return Ok(Json(json!({
            "survey": declaration.survey, "wave": declaration.wave, "declared": false,
            "duplicate": true, "last_sequence": sequence,
        }))
        .into_response());
    }
    let (survey, wave) = (declaration.survey.clone(), declaration.wave.clone());
    let event = SurveyEvent::WaveDeclared(declaration);
    let sequence = publish_one(&state, &mut ledger, &agency.id, event).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "survey": survey, "wave": wave, "declared": true, "duplicate": false,
            "last_sequence": sequence,
        })),
    )
        .into_response())
}

/// The declaration in the body, its `survey` completed from the path. Numbers (bounds) must
/// keep their exact text, so the body is completed as raw JSON.
pub(super) fn declaration(survey: &str, body: &[u8]) -> Result<SurveyWaveDeclared, ApiError> {
    let mut fields: BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the declaration is not a JSON object: {e}"))
        })?;
    match fields.get("survey").map(|raw| serde_json::from_str::<String>(raw.get())) {
        None => {
            let raw = serde_json::value::to_raw_value(survey).expect("a string serialises");
            fields.insert("survey".into(), raw);
        }
        Some(Ok(given)) if given == survey => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "the body's \"survey\" differs from the path's '{survey}'; leave it out or make them equal"
            )));
        }
    }
    let text = serde_json::to_string(&fields).expect("raw values serialise");
    serde_json::from_str(&text).map_err(|e| {
        ApiError::bad_request(format!("the declaration does not match SurveyWaveDeclared v1: {e}"))
    })
}

/// `POST /v1/surveys/{survey}/waves/{wave}/responses`: respondent rows as CSV, NDJSON or
/// Parquet. Answers as `POST /v1/incidents` does, once JetStream has acknowledged every event.
#[tracing::instrument(
    name = "survey_responses",
    skip_all,
    fields(source, survey, wave, rows, accepted, duplicates, rejected)
)]
pub(super) async fn post_responses(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agency = admit(&state, &headers)?;
    let (survey, wave) = wave_path(path)?;
    let content_type = upload::content_type(&headers).unwrap_or("");
    let format = BodyFormat::from_content_type(content_type).ok_or_else(|| {
        upload::unsupported_media(
            content_type,
            "use text/csv, application/x-ndjson or application/vnd.apache.parquet",
        )
    })?;
    let body = upload::read_body(body, SPLIT)?;

    let mut ledger = state.ledger.lock().await;
    let wave_state = ledger.check_open(&agency.id, &survey, &wave)?;
    let rows = parse_rows(format, &body).map_err(ApiError::bad_request)?;
    let span = Span::current();
    span.record("rows", rows.len());
    let Vetted { fresh, rejected, mut duplicates } = vet(wave_state, rows);

    let events: Vec<SurveyEvent> = batches(fresh, state.max_payload())
        .into_iter()
        .map(|rows| {
            SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
                survey: survey.clone(),
                wave: wave.clone(),
                rows,
            })
        })
        .collect();
    let messages: Vec<Outgoing> = events.iter().map(|e| outgoing(e, &agency.id)).collect();
    let results = state.bus.publisher().publish_all(messages).await;
    let (mut accepted, mut last_sequence, mut failed) = (0u64, None, Vec::new());
    for (event, result) in events.iter().zip(results) {
        let SurveyEvent::ResponsesRecorded(batch) = event else {
            unreachable!("only responses here")
        };
        match result {
            Ok(published) if published.duplicate => duplicates += batch.rows.len() as u64,
            Ok(published) => {
                if let LedgerOutcome::Recorded { new_rows, duplicates: d, .. } =
                    ledger.apply(published.sequence, &agency.id, event)
                {
                    accepted += new_rows.len() as u64;
                    duplicates += d;
                }
                last_sequence = last_sequence.max(Some(published.sequence));
            }
            // Not applied to the ledger: a retry of these rows is not a duplicate.
            Err(failure) => {
                observatory_metrics::publish_failures(1);
                failed.push(json!({
                    "respondents": batch.rows.len(),
                    "first_respondent": batch.rows.first().map(|r| r.respondent_id.clone()),
                    "error": failure.to_string(),
                }))
            }
        }
    }
    drop(ledger);
    span.record("accepted", accepted);
    span.record("duplicates", duplicates);
    span.record("rejected", rejected.len());
    let summary = IngestSummary { accepted, duplicates, rejected, last_sequence };
    let failed_rows = failed.iter().filter_map(|f| f["respondents"].as_u64()).sum::<u64>();
    upload::tally(&agency.id, Records::SurveyResponses, &summary, failed_rows as usize);
    upload::summary_answer(summary, failed, "rows")
}

/// The rows of an upload sorted into new respondents, per-field rejections and duplicates
/// (of a respondent already recorded, or sent twice in the body).
struct Vetted {
    fresh: Vec<SurveyRow>,
    rejected: Vec<Rejection>,
    duplicates: u64,
}

fn vet(wave_state: &WaveState, rows: Vec<BodyRow>) -> Vetted {
    let mut vetted = Vetted { fresh: Vec::new(), rejected: Vec::new(), duplicates: 0 };
    let mut in_batch = HashSet::new();
    for (line, cells, repeated) in rows {
        let cells = match cells {
            Ok(cells) => cells,
            Err(_) if !repeated.is_empty() => {
                vetted.rejected.extend(repeated.into_iter().map(|key| Rejection {
                    line,
                    field: Some(key),
                    error: REPEATED_KEY.to_owned(),
                }));
                continue;
            }
            Err(message) => {
                vetted.rejected.push(Rejection { line, field: None, error: message });
                continue;
            }
        };
        match validate_row(&wave_state.declaration, cells) {
            Ok(row) => {
                if wave_state.has_respondent(&row.respondent_id)
                    || !in_batch.insert(row.respondent_id.clone())
                {
                    vetted.duplicates += 1;
                } else {
                    vetted.fresh.push(row);
                }
            }
            Err(errors) => vetted.rejected.extend(errors.into_iter().map(|e| Rejection {
                line,
                field: Some(e.field),
                error: e.error,
            })),
        }
    }
    vetted
}

/// `POST /v1/surveys/{survey}/waves/{wave}/close`: ends fieldwork. An empty body (or `{}`)
/// keeps the design weights; `{"final_weights": {"<respondent id>": w, …}}` or a two-column CSV
/// gives one final weight per recorded respondent.
#[tracing::instrument(name = "survey_close", skip_all, fields(source, survey, wave, respondents))]
pub(super) async fn post_close(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agency = admit(&state, &headers)?;
    let (survey, wave) = wave_path(path)?;
    let body = upload::read_body(body, SPLIT)?;
    let text = upload::text(&body)?;
    let format = BodyFormat::from_content_type(upload::content_type(&headers).unwrap_or(""));
    let final_weights = parse_close(text, format).map_err(ApiError::bad_request)?;

    let mut ledger = state.ledger.lock().await;
    let respondents = match ledger.wave(&survey, &wave) {
        Some(w) => w.closed.map_or(w.respondents() as u64, |c| c.respondents),
        None => 0,
    };
    Span::current().record("respondents", respondents);
    let close =
        SurveyWaveClosed { survey: survey.clone(), wave: wave.clone(), respondents, final_weights };
    close.validate_shape().map_err(ApiError::unprocessable)?;
    let with_weights = !close.final_weights.is_empty();
    let (duplicate, sequence) = if ledger.check_close(&agency.id, &close)? {
        let event = SurveyEvent::WaveClosed(close);
        (false, Some(publish_one(&state, &mut ledger, &agency.id, event).await?))
    } else {
        (true, ledger.wave(&survey, &wave).and_then(|w| w.closed).map(|c| c.sequence))
    };
    Ok(Json(json!({
        "survey": survey, "wave": wave, "closed": true, "duplicate": duplicate,
        "respondents": respondents, "final_weights": with_weights, "last_sequence": sequence,
    }))
    .into_response())
}
