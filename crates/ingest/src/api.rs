//! `POST /v1/incidents` and `POST /v1/periods/close`: incident records checked, claimed in the
//! dedupe index and published; a period closure validated and published.

use std::sync::{Arc, OnceLock};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use observatory_bus::{Bus, BusError, Outgoing, Publisher};
use observatory_model::{
    DedupeKey, Envelope, Event, FieldError, RecordedAt, validate_period_close,
};
use observatory_reference::{Crosswalk, Crosswalks};
use serde_json::json;

use crate::agencies::{Agency, AgencyRegistry};
use crate::commit::{Outcome, Parts, commit};
use crate::dedupe::{Decision, LegacyIndex};
use crate::error::ApiError;
use crate::parse::{Format, JsonRecord, REPEATED_KEY, Record, json_record};
use crate::prepare::{Prepared, prepare};
use crate::upload::{self, IngestSummary, Rejection};
use crate::written::Written;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Requests with a larger body get 413.
    pub max_body_bytes: usize,
    /// Requests with more incident records, or survey rows, get 413 (`parse_body`).
    pub max_records_per_request: usize,
    /// Crosswalk versions in force (name → version); crosswalks not listed use their latest.
    pub crosswalk_versions: std::collections::BTreeMap<String, u32>,
    /// Incidents whose last stored event the ingest remembers, per generation (up to twice as
    /// many in all): their next revision is published without reading their subject first.
    /// 0 reads every time.
    pub remembered_incidents: usize,
}

/// About 100 bytes an incident: two generations of this many take ~20 MB.
pub const DEFAULT_REMEMBERED_INCIDENTS: usize = 100_000;

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 64 * 1024 * 1024,
            max_records_per_request: crate::parse::DEFAULT_MAX_RECORDS,
            crosswalk_versions: Default::default(),
            remembered_incidents: DEFAULT_REMEMBERED_INCIDENTS,
        }
    }
}

pub struct IngestState {
    registry: AgencyRegistry,
    bus: Bus,
    publisher: Publisher,
    /// Set once the revisions of legacy subjects are read: the ingest is ready then.
    legacy: OnceLock<LegacyIndex>,
    written: Written,
    crosswalk_versions: std::collections::BTreeMap<String, u32>,
    max_records: usize,
}

impl IngestState {
    /// Not ready until [`load`](Self::load): a stream written by an earlier version may hold
    /// revisions on subjects the per-incident checks do not see.
    pub fn new(registry: AgencyRegistry, bus: Bus, config: &IngestConfig) -> IngestState {
        IngestState {
            registry,
            publisher: bus.publisher(),
            bus,
            legacy: OnceLock::new(),
            written: Written::new(config.remembered_incidents),
            crosswalk_versions: config.crosswalk_versions.clone(),
            max_records: config.max_records_per_request,
        }
    }

    /// The crosswalk version in force for an agency.
    fn crosswalk(&self, name: &str) -> Result<&'static Crosswalk, ApiError> {
        Crosswalks::builtin().resolve(name, self.crosswalk_versions.get(name).copied()).map_err(
            |e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the agency's crosswalk is misconfigured: {e}"),
                )
            },
        )
    }

    /// Reads the legacy subjects' revisions (none on a stream written by this version) and
    /// marks the ingest ready. Returns the events read and the revisions known.
    pub async fn load(&self) -> Result<(u64, usize), BusError> {
        let (legacy, events) = LegacyIndex::load(&self.bus).await?;
        let revisions = legacy.revisions();
        // A second load keeps the first index: both read the same frozen subjects.
        let _ = self.legacy.set(legacy);
        Ok((events, revisions))
    }

    pub fn is_ready(&self) -> bool {
        self.legacy.get().is_some()
    }

    /// The legacy revisions, or the 503 of an ingest still starting.
    fn legacy(&self) -> Result<&LegacyIndex, ApiError> {
        self.legacy.get().ok_or_else(|| {
            ApiError::unavailable(
                "ingest is starting (reading the revisions of an earlier version's subjects); retry in a few seconds",
            )
        })
    }

    pub(crate) fn registry(&self) -> &AgencyRegistry {
        &self.registry
    }
}

pub fn router(state: Arc<IngestState>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/v1/incidents", post(post_incidents))
        .route("/v1/periods/close", post(post_period_close))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

#[tracing::instrument(
    name = "ingest",
    skip_all,
    fields(source, records, accepted, duplicates, rejected)
)]
async fn post_incidents(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.legacy()?;
    let agency = upload::authenticate(&state.registry, &headers)?;
    let content_type = upload::content_type(&headers).unwrap_or("");
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        upload::unsupported_media(
            content_type,
            "use application/x-ndjson, application/json (an array) or text/csv",
        )
    })?;
    let body = upload::read_body(body, "the feed")?;
    let (summary, failed) = ingest_records(&state, &agency, format, body).await?;
    upload::tally(&agency.id, observatory_metrics::Records::Incidents, &summary, failed.len());
    upload::summary_answer(summary, failed, "records")
}

/// Bodies from this size up (about 250 records, half a millisecond of reading) are read on a
/// blocking thread; a smaller one holds a worker briefly, and the hand-over would cost a
/// noticeable share of its read.
const OFF_THE_RUNTIME_BYTES: usize = 64 * 1024;

/// What `POST /v1/incidents` and the NATS relay both do with an agency's batch: parse,
/// validate, publish each new revision once. Returns the summary and the records JetStream
/// did not acknowledge.
pub(crate) async fn ingest_records(
    state: &IngestState,
    agency: &Agency,
    format: Format,
    body: Bytes,
) -> Result<(IngestSummary, Vec<serde_json::Value>), ApiError> {
    let legacy = state.legacy()?;
    let crosswalk = state.crosswalk(&agency.crosswalk)?;
    let now = Utc::now();
    let span = tracing::Span::current();
    let (source, max_records, large) =
        (agency.id.clone(), state.max_records, body.len() >= OFF_THE_RUNTIME_BYTES);
    let read = move || {
        // One time for the batch, written once, not once per record.
        prepare(
            &source,
            crosswalk,
            format,
            &body,
            max_records,
            now.date_naive(),
            &RecordedAt::new(now),
        )
    };
    // A large batch is read on a blocking thread: tens of milliseconds of CPU on a worker would
    // hold up every task queued behind it there, the NATS connection's among them, and with
    // it the acks of every other request in flight.
    let Prepared { records, events, mut candidates, mut rejected } = if large {
        let in_span = span.clone();
        tokio::task::spawn_blocking(move || in_span.in_scope(read)).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the batch failed ({e}); nothing was stored: send it again"),
            )
        })??
    } else {
        read()?
    };
    span.record("records", records);
    let outcomes = commit(
        Parts { bus: &state.bus, publisher: &state.publisher, legacy, written: &state.written },
        &mut candidates,
    )
    .await;
    let mut accepted = 0u64;
    let mut duplicates = 0u64;
    let mut last_sequence = None;
    let mut failed = Vec::new();
    for ((&(line, ref event), candidate), outcome) in events.iter().zip(&candidates).zip(outcomes) {
        let id = event.incident().expect("records are incident events").0;
        let revision = candidate.stamp.revision;
        let refusal = match outcome {
            Outcome::Accepted { sequence } => {
                accepted += 1;
                last_sequence = last_sequence.max(Some(sequence));
                continue;
            }
            Outcome::Duplicate => {
                duplicates += 1;
                continue;
            }
            Outcome::Failed(error) => {
                failed.push(json!({"line": line, "error": error}));
                continue;
            }
            Outcome::Refused(Decision::Conflict { current }) => (
                "revision",
                format!(
                    "revision {revision} of '{id}' is already on the stream with different content (current revision \
                     {current}); a change is a new revision: send it as revision {}",
                    current + 1
                ),
            ),
            Outcome::Refused(Decision::Stale { current }) => (
                "revision",
                format!(
                    "revision {revision} of '{id}' is older than revision {current} already on the stream and would \
                     change nothing; send a change as revision {}",
                    current + 1
                ),
            ),
            Outcome::Refused(_) => (
                "withdrawn",
                format!(
                    "'{id}' has never been reported by this agency: there is nothing to withdraw"
                ),
            ),
        };
        rejected.push(Rejection { line, field: Some(refusal.0.to_owned()), error: refusal.1 });
    }
    span.record("accepted", accepted);
    span.record("duplicates", duplicates);
    span.record("rejected", rejected.len());

    // Validation and index refusals in the order of the body.
    rejected.sort_by_key(|r| r.line);
    Ok((IngestSummary { accepted, duplicates, rejected, last_sequence }, failed))
}

/// `POST /v1/periods/close`: the agency declares a month complete, as NIBRS zero reports do.
#[tracing::instrument(name = "close_period", skip_all, fields(source))]
async fn post_period_close(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let agency = upload::authenticate(&state.registry, &headers)?;
    // The essence, parameters and case aside, as for POST /v1/incidents.
    match upload::content_type(&headers) {
        Some(content_type)
            if Format::from_content_type(content_type) == Some(Format::JsonArray) => {}
        Some(content_type) => {
            return Err(upload::unsupported_media(
                content_type,
                "send the closure as application/json",
            ));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "no Content-Type; send the closure as application/json",
            ));
        }
    }
    let body = body?;
    let text = upload::text(&body)?;
    // Read as the incident records are: a key sent twice is named by the validation.
    let (record, repeated) = match json_record::<Record>(text) {
        Ok(JsonRecord::Object(record, repeated)) => (record, repeated),
        Ok(JsonRecord::Other(_)) => {
            return Err(ApiError::bad_request(
                "expected a JSON object like {\"month\": \"2024-03\"}",
            ));
        }
        Err(e) => return Err(ApiError::bad_request(format!("body is not valid JSON: {e}"))),
    };
    let closed = match validate_period_close(&record, Utc::now().date_naive()) {
        Ok(closed) if repeated.is_empty() => closed,
        outcome => {
            let errors = repeated
                .into_iter()
                .map(|field| FieldError::new(&field, REPEATED_KEY))
                .chain(outcome.err().unwrap_or_default());
            let rejected: Vec<_> =
                errors.map(|e| json!({"field": e.field, "error": e.error})).collect();
            return Err(ApiError::unprocessable("the period closure is not valid")
                .with("rejected", rejected));
        }
    };
    let event = Event::PeriodClosed(closed.clone());
    let envelope = Envelope::new(&event, &agency.id, Utc::now());
    let key = DedupeKey::new(
        &agency.id,
        &format!("period:{}:{:?}", closed.month, closed.departements),
        1,
    );
    let published =
        upload::publish_one(&state.publisher, Outgoing::from_envelope(&envelope, key, None))
            .await?;
    Ok(Json(json!({
        "source": agency.id, "month": closed.month, "departements": closed.departements,
        "sequence": published.sequence,
    }))
    .into_response())
}
