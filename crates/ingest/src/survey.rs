//! Survey endpoints: a survey producer declares a wave, uploads respondent rows (CSV, NDJSON or
//! Parquet; each row checked against the declared variables, with per-row errors as for
//! incidents), then closes the wave, optionally with final weights.
//!
//! The ingest keeps a [`SurveyLedger`] of every wave on the stream (rebuilt at start by
//! replaying `obs.survey.>`): it tells a re-sent respondent from a new one, however late, and
//! refuses responses once the wave is closed. Requests that touch the ledger are serialised by
//! one lock held until JetStream has acknowledged their events, so a closure cannot overtake
//! the responses accepted before it. Survey volumes (thousands of rows per wave) make that
//! lock cheap.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use observatory_bus::{Bus, BusError, Outgoing, PublishFailure, Published};
use observatory_model::survey::{
    Cell, LedgerError, LedgerOutcome, SurveyEvent, SurveyLedger, SurveyResponsesRecorded,
    SurveyRow, SurveyWaveClosed, SurveyWaveDeclared, is_valid_survey_id, is_valid_wave_id,
    parse_close_json, parse_json_row, validate_row,
};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::Span;

use crate::agencies::{Agency, AgencyRegistry};
use crate::api::{IngestConfig, IngestSummary, Rejection, bearer, error};
use crate::parse::{json_record, read_csv, strip_bom};

/// Subjects of every survey event.
pub const SURVEY_SUBJECTS: &str = "obs.survey.>";
/// Room left in a message for the envelope around a payload.
const ENVELOPE_ROOM: usize = 4 * 1024;

pub struct SurveyIngestState {
    registry: AgencyRegistry,
    bus: Bus,
    ledger: Mutex<SurveyLedger>,
    ready: AtomicBool,
}

impl SurveyIngestState {
    /// Not ready until [`load_from_stream`](Self::load_from_stream) has replayed the waves.
    pub fn new(registry: AgencyRegistry, bus: Bus) -> SurveyIngestState {
        SurveyIngestState {
            registry,
            bus,
            ledger: Mutex::new(SurveyLedger::new()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Replays every survey event into the ledger, then marks the endpoints ready. Returns the
    /// number of events read.
    pub async fn load_from_stream(&self) -> Result<u64, BusError> {
        let bus = &self.bus;
        let stream_err = |e: &dyn std::fmt::Display| BusError::Stream {
            stream: bus.config().stream.clone(),
            message: e.to_string(),
        };
        let stream = bus.stream().await?;
        let mut subjects =
            stream.info_with_subjects(SURVEY_SUBJECTS).await.map_err(|e| stream_err(&e))?;
        let mut total: u64 = 0;
        while let Some(entry) = subjects.next().await {
            total += entry.map_err(|e| stream_err(&e))?.1 as u64;
        }
        let mut ledger = self.ledger.lock().await;
        let mut seen = 0u64;
        if total > 0 {
            let mut messages = bus.ordered_replay(SURVEY_SUBJECTS, false).await?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| BusError::Consumer {
                    stream: bus.config().stream.clone(),
                    name: "survey replay".into(),
                    message: e.to_string(),
                })?;
                seen += 1;
                let info = message.info().map_err(|e| stream_err(&e))?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                match SurveyEvent::decode(&message.payload) {
                    // The projector skips events whose source disagrees with the subject; so does this.
                    Ok(decoded)
                        if observatory_model::source_matches_subject(
                            &decoded.source,
                            &message.subject,
                        ) =>
                    {
                        ledger.apply(sequence, &decoded.source, &decoded.event);
                    }
                    Ok(_) => {
                        tracing::warn!(sequence, subject = %message.subject, "survey event skipped: source does not match its subject")
                    }
                    Err(error) => tracing::warn!(sequence, %error, "survey event skipped"),
                }
                if pending == 0 {
                    break;
                }
            }
        }
        drop(ledger);
        self.ready.store(true, Ordering::Release);
        Ok(seen)
    }

    /// Largest payload a survey event may have: the server's limit minus the envelope.
    fn max_payload(&self) -> usize {
        let server = self.bus.client().server_info().max_payload;
        let server = if server == 0 { 1024 * 1024 } else { server };
        server.saturating_sub(ENVELOPE_ROOM).max(16 * 1024)
    }
}

pub fn survey_router(state: Arc<SurveyIngestState>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/v1/surveys/{survey}/waves", post(post_declare))
        .route("/v1/surveys/{survey}/waves/{wave}/responses", post(post_responses))
        .route("/v1/surveys/{survey}/waves/{wave}/close", post(post_close))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Readiness, token and path checks shared by the three endpoints.
fn admit(state: &SurveyIngestState, headers: &HeaderMap) -> Result<Agency, Response> {
    if !state.is_ready() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "survey ingest is starting (replaying the declared waves from the stream); retry in a few seconds",
        ));
    }
    let token = bearer(headers)?;
    let agency = state.registry.authenticate(token).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unknown token; ask the observatory for a token with `observatory agency add <ID>`",
        )
    })?;
    Span::current().record("source", agency.id.as_str());
    Ok(agency)
}

fn check_ids(survey: &str, wave: Option<&str>) -> Result<(), Response> {
    if !is_valid_survey_id(survey) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "'{survey}' is not a survey id: use 1 to 64 lowercase letters, digits, '-' or '_'"
            ),
        ));
    }
    if let Some(wave) = wave.filter(|w| !is_valid_wave_id(w)) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("'{wave}' is not a wave id: use 1 to 32 lowercase letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Response> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is over the size limit; split the responses into smaller batches",
        )),
        Err(rejection) => Err(error(rejection.status(), rejection.body_text())),
    }
}

fn ledger_error(e: LedgerError) -> Response {
    let status = match &e {
        LedgerError::NotOwner { .. } => StatusCode::FORBIDDEN,
        LedgerError::NotDeclared { .. } => StatusCode::NOT_FOUND,
        LedgerError::Redeclared { .. }
        | LedgerError::Closed { .. }
        | LedgerError::ClosedDifferently { .. } => StatusCode::CONFLICT,
        LedgerError::FinalWeights(_) | LedgerError::InvalidDeclaration(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    error(status, e.to_string())
}

fn outgoing(event: &SurveyEvent, source: &str) -> Outgoing {
    let envelope = event.envelope(source, Utc::now());
    Outgoing {
        subject: envelope.subject(),
        message_id: envelope.event_id.to_string(),
        dedupe: event.dedupe_key(source).to_hex(),
        revision: None,
        payload: Bytes::from(envelope.to_bytes()),
    }
}

/// Publishes one event and applies it to the ledger at its sequence.
async fn publish_one(
    state: &SurveyIngestState,
    ledger: &mut SurveyLedger,
    source: &str,
    event: SurveyEvent,
) -> Result<u64, Response> {
    let message = outgoing(&event, source);
    if message.payload.len() > state.max_payload() + ENVELOPE_ROOM {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the event would be {} bytes, over the bus limit of {} bytes; for final weights of a very large wave, raise max_payload in nats-server",
                message.payload.len(),
                state.max_payload() + ENVELOPE_ROOM
            ),
        ));
    }
    match state.bus.publisher().publish_all(vec![message]).await.pop() {
        Some(Ok(published)) => {
            if !published.duplicate {
                ledger.apply(published.sequence, source, &event);
            }
            Ok(published.sequence)
        }
        Some(Err(failure)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string())),
        None => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the bus returned no publish result")),
    }
}

/// `POST /v1/surveys/{survey}/waves`: declares a wave (JSON). The body's `survey` may be left
/// out; it comes from the path.
#[tracing::instrument(name = "survey_declare", skip_all, fields(source, survey, wave))]
async fn post_declare(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agency = match admit(&state, &headers) {
        Ok(agency) => agency,
        Err(response) => return response,
    };
    let survey = match path {
        Ok(Path(survey)) => survey,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Err(response) = check_ids(&survey, None) {
        return response;
    }
    Span::current().record("survey", survey.as_str());
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Numbers (bounds) must keep their exact text, so the body is completed as raw JSON.
    let mut fields: BTreeMap<String, Box<serde_json::value::RawValue>> =
        match serde_json::from_slice(&body) {
            Ok(fields) => fields,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the declaration is not a JSON object: {e}"),
                );
            }
        };
    match fields.get("survey").map(|raw| serde_json::from_str::<String>(raw.get())) {
        None => {
            let raw = serde_json::value::to_raw_value(&survey).expect("a string serialises");
            fields.insert("survey".into(), raw);
        }
        Some(Ok(given)) if given == survey => {}
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body's \"survey\" differs from the path's '{survey}'; leave it out or make them equal"
                ),
            );
        }
    }
    let text = serde_json::to_string(&fields).expect("raw values serialise");
    let declaration: SurveyWaveDeclared = match serde_json::from_str(&text) {
        Ok(declaration) => declaration,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the declaration does not match SurveyWaveDeclared v1: {e}"),
            );
        }
    };
    Span::current().record("wave", declaration.wave.as_str());
    if let Err(errors) = declaration.validate() {
        let first = format!("{}: {}", errors[0].field, errors[0].error);
        let rejected: Vec<_> =
            errors.into_iter().map(|e| json!({"field": e.field, "error": e.error})).collect();
        let body = json!({
            "error": format!("the declaration is not valid ({} problem(s); first: {first})", rejected.len()),
            "status": 422,
            "rejected": rejected,
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    }

    let mut ledger = state.ledger.lock().await;
    match ledger.check_declare(&agency.id, &declaration) {
        Err(e) => ledger_error(e),
        Ok(false) => {
            let sequence =
                ledger.wave(&declaration.survey, &declaration.wave).map(|w| w.declared_sequence);
            Json(json!({
                "survey": declaration.survey, "wave": declaration.wave, "declared": false, "duplicate": true,
                "last_sequence": sequence,
            }))
            .into_response()
        }
        Ok(true) => {
            let (survey, wave) = (declaration.survey.clone(), declaration.wave.clone());
            match publish_one(&state, &mut ledger, &agency.id, SurveyEvent::WaveDeclared(declaration)).await {
                Ok(sequence) => (
                    StatusCode::CREATED,
                    Json(json!({"survey": survey, "wave": wave, "declared": true, "duplicate": false, "last_sequence": sequence})),
                )
                    .into_response(),
                Err(response) => response,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Csv,
    Ndjson,
    Parquet,
}

impl BodyFormat {
    fn from_content_type(content_type: &str) -> Option<BodyFormat> {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" => Some(BodyFormat::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(BodyFormat::Ndjson)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(BodyFormat::Parquet),
            _ => None,
        }
    }
}

/// One row of the body: its line (CSV/NDJSON physical line, the header being line 1; the
/// 1-based row number for Parquet) and its cells, or why it could not be read.
/// A row of the body: its line, its cells or why they cannot be read, and the keys it sent
/// more than once (each is rejected on its own field).
type BodyRow = (u64, Result<Vec<(String, Option<Cell>)>, String>, Vec<String>);

fn parse_rows(format: BodyFormat, body: &[u8]) -> Result<Vec<BodyRow>, String> {
    match format {
        BodyFormat::Parquet => parse_parquet(body),
        _ => {
            let text = std::str::from_utf8(body)
                .map_err(|e| format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()))?;
            if format == BodyFormat::Csv {
                parse_csv(text)
            } else {
                Ok(parse_ndjson(strip_bom(text)))
            }
        }
    }
}

fn parse_ndjson(text: &str) -> Vec<BodyRow> {
    text.split('\n')
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let line = line.trim_end_matches('\r');
            // parse_json_row reads the object into a map, which keeps one value of a repeated key.
            let repeated: Vec<String> =
                json_record(line).map(|record| record.repeated_keys().to_vec()).unwrap_or_default();
            let row = match repeated.as_slice() {
                [] => parse_json_row(line),
                [key] => Err(format!("'{key}' appears twice in the record; send each field once")),
                keys => Err(format!(
                    "'{}' each appear twice in the record; send each field once",
                    keys.join("', '")
                )),
            };
            (i as u64 + 1, row, repeated)
        })
        .collect()
}

/// CSV cells stay text; [`validate_row`] reads them by the declared type, as R reads a CSV.
/// The body is read as the incident feed's is ([`read_csv`]): a repeated column fails the
/// body, an unclosed quote rejects its line and reading goes on after it.
fn parse_csv(text: &str) -> Result<Vec<BodyRow>, String> {
    let mut rows = Vec::new();
    read_csv(text, |header, line, record| {
        let cells = record.map(|record| {
            header
                .iter()
                .zip(record.iter())
                .map(|(h, cell)| {
                    (h.clone(), (!cell.is_empty()).then(|| Cell::Text(cell.to_owned())))
                })
                .collect()
        });
        rows.push((line, cells, Vec::new()));
    })?;
    Ok(rows)
}

/// Parquet goes through the same Arrow conversion as `observatory estimate` and the survey
/// query: numeric columns as numbers, everything else as text.
fn parse_parquet(body: &[u8]) -> Result<Vec<BodyRow>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        Bytes::copy_from_slice(body),
    )
    .map_err(|e| format!("body is not a readable Parquet file: {e}"))?
    .build()
    .map_err(|e| format!("body is not a readable Parquet file: {e}"))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading the Parquet body: {e}"))?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let table =
        observatory_stats::Table::from_record_batches(&batches).map_err(|e| e.to_string())?;
    let columns: Vec<_> = table.column_names().filter_map(|n| table.column(n)).collect();
    Ok((0..table.n_rows())
        .map(|row| {
            let cells = columns
                .iter()
                .map(|column| {
                    let cell = match column.numeric() {
                        Some(values) => Some(values[row]).filter(|x| !x.is_nan()).map(Cell::Number),
                        None => column.text(row).map(|t| Cell::Text(t.into_owned())),
                    };
                    (column.name().to_owned(), cell)
                })
                .collect();
            (row as u64 + 1, Ok(cells), Vec::new())
        })
        .collect())
}

/// Splits rows into batches whose payload stays under `budget` bytes.
fn batches(rows: Vec<SurveyRow>, budget: usize) -> Vec<Vec<SurveyRow>> {
    let mut out: Vec<Vec<SurveyRow>> = Vec::new();
    let mut current = Vec::new();
    let mut size = 256;
    for row in rows {
        let row_size = serde_json::to_vec(&row).map(|v| v.len() + 1).unwrap_or(1024);
        if !current.is_empty() && size + row_size > budget {
            out.push(std::mem::take(&mut current));
            size = 256;
        }
        size += row_size;
        current.push(row);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `POST /v1/surveys/{survey}/waves/{wave}/responses`: respondent rows as CSV, NDJSON or
/// Parquet. Answers as `POST /v1/incidents` does, once JetStream has acknowledged every event.
#[tracing::instrument(
    name = "survey_responses",
    skip_all,
    fields(source, survey, wave, rows, accepted, duplicates, rejected)
)]
async fn post_responses(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agency = match admit(&state, &headers) {
        Ok(agency) => agency,
        Err(response) => return response,
    };
    let (survey, wave) = match path {
        Ok(Path(ids)) => ids,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Err(response) = check_ids(&survey, Some(&wave)) {
        return response;
    }
    let span = Span::current();
    span.record("survey", survey.as_str());
    span.record("wave", wave.as_str());
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = BodyFormat::from_content_type(content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type '{content_type}'; use text/csv, application/x-ndjson or application/vnd.apache.parquet"
            ),
        );
    };
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err(response) => return response,
    };

    let mut ledger = state.ledger.lock().await;
    let wave_state = match ledger.check_open(&agency.id, &survey, &wave) {
        Ok(wave_state) => wave_state,
        Err(e) => return ledger_error(e),
    };
    let rows = match parse_rows(format, &body) {
        Ok(rows) => rows,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    span.record("rows", rows.len());

    let mut rejected = Vec::new();
    let mut duplicates = 0u64;
    let mut in_batch = HashSet::new();
    let mut fresh = Vec::new();
    for (line, cells, repeated) in rows {
        let cells = match cells {
            Ok(cells) => cells,
            Err(_) if !repeated.is_empty() => {
                rejected.extend(repeated.into_iter().map(|key| Rejection {
                    line,
                    field: Some(key),
                    error: crate::parse::REPEATED_KEY.to_owned(),
                }));
                continue;
            }
            Err(message) => {
                rejected.push(Rejection { line, field: None, error: message });
                continue;
            }
        };
        match validate_row(&wave_state.declaration, cells) {
            Ok(row) => {
                if wave_state.has_respondent(&row.respondent_id)
                    || !in_batch.insert(row.respondent_id.clone())
                {
                    duplicates += 1;
                } else {
                    fresh.push(row);
                }
            }
            Err(errors) => rejected.extend(errors.into_iter().map(|e| Rejection {
                line,
                field: Some(e.field),
                error: e.error,
            })),
        }
    }

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
    let results: Vec<Result<Published, PublishFailure>> =
        state.bus.publisher().publish_all(messages).await;
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
            Err(failure) => failed.push(json!({
                "respondents": batch.rows.len(),
                "first_respondent": batch.rows.first().map(|r| r.respondent_id.clone()),
                "error": failure.to_string(),
            })),
        }
    }
    drop(ledger);
    span.record("accepted", accepted);
    span.record("duplicates", duplicates);
    span.record("rejected", rejected.len());
    let summary = IngestSummary { accepted, duplicates, rejected, last_sequence };
    if failed.is_empty() {
        return Json(summary).into_response();
    }
    tracing::error!(failed = failed.len(), "survey publishes not acknowledged");
    let mut body = serde_json::to_value(&summary).expect("summary serialises");
    body["error"] = json!(
        "some accepted rows were not acknowledged by JetStream and were not stored; resend the batch (rows already stored will be reported as duplicates)"
    );
    body["status"] = json!(503);
    body["failed"] = json!(failed);
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Final weights from a two-column CSV (respondent id, weight), numbers parsed exactly.
fn parse_close_csv(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header =
        reader.headers().map_err(|e| format!("cannot read the CSV header row: {e}"))?.clone();
    if header.len() != 2 {
        return Err(format!(
            "expected two columns (respondent id, final weight), the header has {}",
            header.len()
        ));
    }
    let mut weights = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("unreadable CSV row: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record[0].to_owned();
        let weight = record[1].trim().parse::<f64>().map_err(|_| {
            format!("line {line}, column {}: '{}' is not a number", &header[1], &record[1])
        })?;
        if weights.insert(id.clone(), weight).is_some() {
            return Err(format!(
                "line {line}, column {}: respondent '{id}' has a second weight",
                &header[0]
            ));
        }
    }
    Ok(weights)
}

/// `POST /v1/surveys/{survey}/waves/{wave}/close`: ends fieldwork. An empty body (or `{}`)
/// keeps the design weights; `{"final_weights": {"<respondent id>": w, …}}` or a two-column CSV
/// gives one final weight per recorded respondent.
#[tracing::instrument(name = "survey_close", skip_all, fields(source, survey, wave, respondents))]
async fn post_close(
    State(state): State<Arc<SurveyIngestState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let agency = match admit(&state, &headers) {
        Ok(agency) => agency,
        Err(response) => return response,
    };
    let (survey, wave) = match path {
        Ok(Path(ids)) => ids,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Err(response) = check_ids(&survey, Some(&wave)) {
        return response;
    }
    let span = Span::current();
    span.record("survey", survey.as_str());
    span.record("wave", wave.as_str());
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not valid UTF-8");
    };
    let text = strip_bom(text);
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let final_weights = if text.trim().is_empty() {
        Ok(BTreeMap::new())
    } else if BodyFormat::from_content_type(content_type) == Some(BodyFormat::Csv) {
        parse_close_csv(text)
    } else {
        parse_close_json(text).map_err(|e| {
            format!(
                "expected {{}} or {{\"final_weights\": {{\"<respondent id>\": weight, …}}}}: {e}"
            )
        })
    };
    let final_weights = match final_weights {
        Ok(weights) => weights,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };

    let mut ledger = state.ledger.lock().await;
    let respondents = match ledger.wave(&survey, &wave) {
        Some(w) => w.closed.map_or(w.respondents() as u64, |c| c.respondents),
        None => 0,
    };
    span.record("respondents", respondents);
    let close =
        SurveyWaveClosed { survey: survey.clone(), wave: wave.clone(), respondents, final_weights };
    if let Err(message) = close.validate_shape() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    let with_weights = !close.final_weights.is_empty();
    match ledger.check_close(&agency.id, &close) {
        Err(e) => ledger_error(e),
        Ok(false) => {
            let sequence = ledger.wave(&survey, &wave).and_then(|w| w.closed).map(|c| c.sequence);
            Json(json!({
                "survey": survey, "wave": wave, "closed": true, "duplicate": true, "respondents": respondents,
                "final_weights": with_weights, "last_sequence": sequence,
            }))
            .into_response()
        }
        Ok(true) => match publish_one(&state, &mut ledger, &agency.id, SurveyEvent::WaveClosed(close)).await {
            Ok(sequence) => Json(json!({
                "survey": survey, "wave": wave, "closed": true, "duplicate": false, "respondents": respondents,
                "final_weights": with_weights, "last_sequence": sequence,
            }))
            .into_response(),
            Err(response) => response,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_lines_and_text_cells_and_refuses_repeated_columns() {
        let rows = parse_csv("id,x,y\nA,1.5,\nB,2\n").unwrap();
        assert_eq!(rows[0].0, 2);
        let a = rows[0].1.as_ref().unwrap();
        assert_eq!(a[1], ("x".to_owned(), Some(Cell::Text("1.5".into()))));
        assert_eq!(a[2], ("y".to_owned(), None));
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].1.as_ref().unwrap_err().contains("header has 3 columns"));
        assert!(parse_csv("id,x,x\n").unwrap_err().contains("twice"));
    }

    #[test]
    fn a_repeated_column_or_key_is_refused_naming_it() {
        let error = parse_csv("id,x,y,x\nA,1,2,3\n").unwrap_err();
        assert!(error.contains("'x'") && error.contains("columns 2 and 4"), "{error}");
        let rows = parse_rows(
            BodyFormat::Ndjson,
            b"{\"id\":\"A\",\"x\":1}\n{\"id\":\"B\",\"x\":1,\"x\":2}\n{\"id\":\"C\"}\n",
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(rows[0].1.is_ok() && rows[2].1.is_ok());
        let error = rows[1].1.as_ref().unwrap_err();
        assert!(error.contains("'x'") && error.contains("appears twice in the record"), "{error}");
        assert_eq!(rows[1].2, ["x"], "the repeated key is named on its own");
    }

    #[test]
    fn an_unclosed_quote_rejects_its_line_and_the_next_lines_are_read() {
        let rows = parse_rows(BodyFormat::Csv, b"id,x\nA,\"1\nB,2\n").unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3]);
        assert!(rows[0].1.as_ref().unwrap_err().contains("unclosed quote"));
        assert_eq!(rows[1].1.as_ref().unwrap()[1], ("x".to_owned(), Some(Cell::Text("2".into()))));
        // A record over several lines with the wrong size says so; CRLF lines count once.
        let rows = parse_rows(BodyFormat::Csv, b"id,x\r\nA,\"1\r\nB\",2,3\r\nC,4\r\n").unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4]);
        assert!(rows[0].1.as_ref().unwrap_err().contains("spans lines 2–3"), "{rows:?}");
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let rows = parse_rows(BodyFormat::Ndjson, "\u{feff}{\"id\":\"A\"}\n".as_bytes()).unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap()[0].0, "id");
        let rows = parse_rows(BodyFormat::Csv, "\u{feff}id,x\nA,1\n".as_bytes()).unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap()[0].0, "id");
        let weights = parse_close_csv("\u{feff}cds,w\nA,1.5\n").unwrap();
        assert_eq!(weights["A"], 1.5);
    }

    #[test]
    fn batches_stay_under_the_budget_and_keep_order() {
        let rows: Vec<SurveyRow> = (0..100)
            .map(|i| SurveyRow {
                respondent_id: format!("R{i:03}"),
                values: [("x".to_owned(), Cell::Integer(i))].into(),
            })
            .collect();
        let split = batches(rows, 1024);
        assert!(split.len() > 1);
        let ids: Vec<String> = split.iter().flatten().map(|r| r.respondent_id.clone()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(split.iter().all(|b| serde_json::to_vec(b).unwrap().len() <= 1024));
    }

    #[test]
    fn close_bodies() {
        let csv = parse_close_csv("cds,w\nA,1.5\nB,2\n").unwrap();
        assert_eq!(csv["B"], 2.0);
        assert!(parse_close_csv("cds,w\nA,1.5\nA,2\n").unwrap_err().contains("second weight"));
        assert!(parse_close_csv("cds,w\nA,heavy\n").unwrap_err().contains("line 2"));
        assert_eq!(parse_close_json("{}").unwrap().len(), 0);
        assert!(parse_close_json(r#"{"weights":{}}"#).is_err());
    }
}
