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
use observatory_metrics::Records;
use observatory_model::survey::{
    LedgerOutcome, SurveyEvent, SurveyResponsesRecorded, SurveyRow, SurveyWaveClosed,
    SurveyWaveDeclared, is_valid_survey_id, is_valid_wave_id, validate_row,
};
use serde_json::{Value, json};
use tracing::Span;

use super::batch::batches;
use super::parse::{BodyFormat, BodyRow, parse_close, parse_rows};
use super::state::{ENVELOPE_ROOM, SurveyIngestState};
use super::view::{MAX_ROUNDS, SurveyView, Written, contended};
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

/// The largest message a survey event may travel in.
fn max_message(state: &SurveyIngestState) -> usize {
    state.max_payload() + ENVELOPE_ROOM
}

/// The survey's view, locked and caught up with the stream.
async fn current_view(
    state: &SurveyIngestState,
    survey: &str,
) -> Result<tokio::sync::OwnedMutexGuard<SurveyView>, ApiError> {
    let mut view = state.view(survey).lock_owned().await;
    view.catch_up(&state.bus).await?;
    Ok(view)
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

    let mut view = current_view(&state, &survey).await?;
    let (survey, wave) = (declaration.survey.clone(), declaration.wave.clone());
    let event = SurveyEvent::WaveDeclared(declaration);
    let SurveyEvent::WaveDeclared(declaration) = &event else { unreachable!("a declaration") };
    for _ in 0..MAX_ROUNDS {
        let new = match view.ledger.check_declare(&agency.id, declaration) {
            Ok(new) => new,
            Err(refusal) if view.moved_under(&state.bus, &refusal).await? => continue,
            Err(refusal) => return Err(refusal.into()),
        };
        let declared = if new {
            match view.write(&state.bus, &agency.id, &event, max_message(&state)).await? {
                Written::Moved => continue,
                Written::Stored { outcome: LedgerOutcome::Refused(refusal), .. } => {
                    return Err(refusal.into());
                }
                Written::Stored { sequence, outcome } => {
                    (outcome == LedgerOutcome::Declared).then_some(sequence)
                }
            }
        } else {
            None
        };
        return Ok(match declared {
            Some(sequence) => (
                StatusCode::CREATED,
                Json(json!({
                    "survey": survey, "wave": wave, "declared": true, "duplicate": false,
                    "last_sequence": sequence,
                })),
            )
                .into_response(),
            None => {
                let sequence = view.ledger.wave(&survey, &wave).map(|w| w.declared_sequence);
                Json(json!({
                    "survey": survey, "wave": wave, "declared": false,
                    "duplicate": true, "last_sequence": sequence,
                }))
                .into_response()
            }
        });
    }
    Err(contended(&survey))
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

    let mut view = current_view(&state, &survey).await?;
    let declaration = loop {
        let refusal = match view.ledger.check_open(&agency.id, &survey, &wave) {
            Ok(open) => break open.declaration.clone(),
            Err(refusal) => refusal,
        };
        if !view.moved_under(&state.bus, &refusal).await? {
            return Err(refusal.into());
        }
    };
    let rows = parse_rows(format, &body, state.max_rows)?;
    let span = Span::current();
    span.record("rows", rows.len());
    let Vetted { fresh, rejected, mut duplicates } = vet(&declaration, rows);

    // Rows not yet stored, decided again against the survey each time another writer
    // reached it first: a respondent recorded meanwhile becomes a duplicate.
    let (mut pending, mut accepted, mut last_sequence) = (fresh, 0u64, None);
    let mut failed: Vec<Value> = Vec::new();
    let mut rounds = 0;
    'rounds: while !pending.is_empty() {
        rounds += 1;
        let open = match view.ledger.check_open(&agency.id, &survey, &wave) {
            Ok(open) if rounds <= MAX_ROUNDS => open,
            Ok(_) => {
                failed.push(not_stored(&pending, contended(&survey).message()));
                break;
            }
            // Closed by another request meanwhile: the rest is not stored.
            Err(refusal) => {
                failed.push(not_stored(&pending, &refusal.to_string()));
                break;
            }
        };
        let before = pending.len();
        pending.retain(|row| !open.has_respondent(&row.respondent_id));
        duplicates += (before - pending.len()) as u64;
        let mut split = batches(std::mem::take(&mut pending), state.max_payload()).into_iter();
        while let Some(rows) = split.next() {
            let event = SurveyEvent::ResponsesRecorded(SurveyResponsesRecorded {
                survey: survey.clone(),
                wave: wave.clone(),
                rows,
            });
            let written = view.write(&state.bus, &agency.id, &event, max_message(&state)).await;
            let SurveyEvent::ResponsesRecorded(batch) = event else { unreachable!("responses") };
            match written {
                Ok(Written::Stored {
                    sequence,
                    outcome: LedgerOutcome::Recorded { new_rows, duplicates: d, .. },
                }) => {
                    accepted += new_rows.len() as u64;
                    duplicates += d;
                    last_sequence = last_sequence.max(Some(sequence));
                }
                Ok(Written::Stored { outcome, .. }) => {
                    failed.push(not_stored(&batch.rows, &format!("{outcome:?}")));
                }
                Ok(Written::Moved) => {
                    pending = batch.rows.into_iter().chain(split.flatten()).collect();
                    continue 'rounds;
                }
                Err(error) => {
                    let rest: Vec<SurveyRow> =
                        batch.rows.into_iter().chain(split.flatten()).collect();
                    failed.push(not_stored(&rest, error.message()));
                    break 'rounds;
                }
            }
        }
    }
    drop(view);
    span.record("accepted", accepted);
    span.record("duplicates", duplicates);
    span.record("rejected", rejected.len());
    let summary = IngestSummary { accepted, duplicates, rejected, last_sequence };
    let failed_rows = failed.iter().filter_map(|f| f["respondents"].as_u64()).sum::<u64>();
    upload::tally(&agency.id, Records::SurveyResponses, &summary, failed_rows as usize);
    upload::summary_answer(summary, failed, "rows")
}

/// Rows an answer reports as not stored, and why.
fn not_stored(rows: &[SurveyRow], error: &str) -> Value {
    json!({
        "respondents": rows.len(),
        "first_respondent": rows.first().map(|r| r.respondent_id.clone()),
        "error": error,
    })
}

/// The rows of an upload sorted into valid rows of respondents not seen earlier in the body,
/// per-field rejections, and repeats within the body (whether a respondent is already
/// recorded is decided against the survey at each round).
struct Vetted {
    fresh: Vec<SurveyRow>,
    rejected: Vec<Rejection>,
    duplicates: u64,
}

fn vet(declaration: &SurveyWaveDeclared, rows: Vec<BodyRow>) -> Vetted {
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
        match validate_row(declaration, cells) {
            Ok(row) => {
                if in_batch.insert(row.respondent_id.clone()) {
                    vetted.fresh.push(row);
                } else {
                    vetted.duplicates += 1;
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

    let mut view = current_view(&state, &survey).await?;
    for _ in 0..MAX_ROUNDS {
        let respondents = match view.ledger.wave(&survey, &wave) {
            Some(w) => w.closed.map_or(w.respondents() as u64, |c| c.respondents),
            None => 0,
        };
        Span::current().record("respondents", respondents);
        let close = SurveyWaveClosed {
            survey: survey.clone(),
            wave: wave.clone(),
            respondents,
            final_weights: final_weights.clone(),
        };
        close.validate_shape().map_err(ApiError::unprocessable)?;
        let new = match view.ledger.check_close(&agency.id, &close) {
            Ok(new) => new,
            Err(refusal) if view.moved_under(&state.bus, &refusal).await? => continue,
            Err(refusal) => return Err(refusal.into()),
        };
        let closed_now = if new {
            let event = SurveyEvent::WaveClosed(close);
            match view.write(&state.bus, &agency.id, &event, max_message(&state)).await? {
                Written::Moved => continue,
                Written::Stored { outcome: LedgerOutcome::Refused(refusal), .. } => {
                    return Err(refusal.into());
                }
                Written::Stored { sequence, outcome } => {
                    (outcome == LedgerOutcome::Closed).then_some(sequence)
                }
            }
        } else {
            None
        };
        let sequence = closed_now.or_else(|| {
            view.ledger.wave(&survey, &wave).and_then(|w| w.closed).map(|c| c.sequence)
        });
        return Ok(Json(json!({
            "survey": survey, "wave": wave, "closed": true, "duplicate": closed_now.is_none(),
            "respondents": respondents, "final_weights": !final_weights.is_empty(),
            "last_sequence": sequence,
        }))
        .into_response());
    }
    Err(contended(&survey))
}
