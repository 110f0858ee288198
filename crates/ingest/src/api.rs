use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use chrono::Utc;
use observatory_bus::{Outgoing, Publisher};
use observatory_model::{
    DedupeKey, Envelope, Event, FieldError, RevisionStamp, validate_period_close,
};
use observatory_reference::{Crosswalk, Crosswalks};
use serde::Serialize;
use serde_json::json;

use crate::agencies::AgencyRegistry;
use crate::dedupe::{Claim, DedupeIndex};
use crate::parse::{Format, parse_body};

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Requests with a larger body get 413.
    pub max_body_bytes: usize,
    /// Crosswalk versions in force (name → version); crosswalks not listed use their latest.
    pub crosswalk_versions: std::collections::BTreeMap<String, u32>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_body_bytes: 64 * 1024 * 1024, crosswalk_versions: Default::default() }
    }
}

pub struct IngestState {
    registry: AgencyRegistry,
    publisher: Publisher,
    index: Arc<DedupeIndex>,
    ready: AtomicBool,
    crosswalk_versions: std::collections::BTreeMap<String, u32>,
}

impl IngestState {
    /// Not ready until [`mark_ready`](Self::mark_ready): the dedupe index must be loaded
    /// before a resubmission can be recognised.
    pub fn new(
        registry: AgencyRegistry,
        publisher: Publisher,
        index: Arc<DedupeIndex>,
        config: &IngestConfig,
    ) -> IngestState {
        IngestState {
            registry,
            publisher,
            index,
            ready: AtomicBool::new(false),
            crosswalk_versions: config.crosswalk_versions.clone(),
        }
    }

    /// The crosswalk version in force for an agency.
    fn crosswalk(&self, name: &str) -> Result<&'static Crosswalk, Response> {
        Crosswalks::builtin().resolve(name, self.crosswalk_versions.get(name).copied()).map_err(
            |e| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the agency's crosswalk is misconfigured: {e}"),
                )
            },
        )
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn index(&self) -> &DedupeIndex {
        &self.index
    }
}

/// One problem of one record. `field` is null when the record could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub line: u64,
    pub field: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
    /// Highest stream sequence of this batch's accepted events; pass it as `min_sequence`
    /// to the query to read your own writes. Null when nothing new was accepted.
    pub last_sequence: Option<u64>,
}

pub fn router(state: Arc<IngestState>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/v1/incidents", post(post_incidents))
        .route("/v1/periods/close", post(post_period_close))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response =
        (status, Json(json!({"error": message.into(), "status": status.as_u16()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"observatory\""),
        );
    }
    response
}

pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "missing Authorization header; send 'Authorization: Bearer <token>' with the token from `observatory agency add`"))?;
    let text = value
        .to_str()
        .map_err(|_| error(StatusCode::UNAUTHORIZED, "Authorization header is not ASCII"))?;
    // RFC 9110: the scheme is case-insensitive; one space, then a token without spaces.
    text.split_once(' ')
        .filter(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.bytes().any(|b| b.is_ascii_whitespace())
        })
        .map(|(_, token)| token)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Authorization must be 'Bearer <token>'"))
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
) -> Response {
    if !state.is_ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest is starting (loading its idempotency index from the stream); retry in a few seconds",
        );
    }
    let token = match bearer(&headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    let Some(agency) = state.registry.authenticate(token) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unknown token; ask the observatory for a token with `observatory agency add <ID>`",
        );
    };
    let span = tracing::Span::current();
    span.record("source", agency.id.as_str());
    let crosswalk = match state.crosswalk(&agency.crosswalk) {
        Ok(crosswalk) => crosswalk,
        Err(response) => return response,
    };

    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = Format::from_content_type(content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type '{content_type}'; use application/x-ndjson, application/json (an array) or text/csv"
            ),
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over the size limit; split the feed into smaller batches",
            );
        }
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let records = match parse_body(format, &body) {
        Ok(records) => records,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    span.record("records", records.len());

    let today = Utc::now().date_naive();
    let recorded_at = Utc::now();
    let mut rejected = Vec::new();
    let mut candidates = Vec::with_capacity(records.len());
    for parsed in records {
        match parsed.event(today, crosswalk) {
            Ok(event) => {
                let (id, revision) = event.incident().expect("records are incident events");
                let key = DedupeKey::new(&agency.id, id, revision);
                candidates.push((parsed.line, key, event));
            }
            Err(problems) => {
                rejected.extend(problems.into_iter().map(|(field, error)| Rejection {
                    line: parsed.line,
                    field,
                    error,
                }))
            }
        }
    }

    let records: Vec<(DedupeKey, RevisionStamp)> = candidates
        .iter()
        .map(|(_, key, event)| {
            (*key, RevisionStamp::of(&agency.id, event).expect("records are incident events"))
        })
        .collect();
    let claims = state.index.claim(&records);
    let mut duplicates = 0u64;
    let mut lines = Vec::new();
    let mut claimed = Vec::new();
    let mut outgoing: Vec<Outgoing> = Vec::new();
    for (((line, key, event), (_, stamp)), claim) in candidates.into_iter().zip(records).zip(claims)
    {
        let (id, revision) = event.incident().expect("records are incident events");
        let refusal = match claim {
            Claim::New { previous } => {
                lines.push(line);
                claimed.push((key, stamp, previous));
                let envelope = Envelope::new(&event, &agency.id, recorded_at);
                outgoing.push(Outgoing {
                    subject: envelope.subject(),
                    message_id: envelope.event_id.to_string(),
                    dedupe: key.to_hex(),
                    revision: Some(stamp.to_header()),
                    payload: Bytes::from(envelope.to_bytes()),
                });
                continue;
            }
            Claim::Duplicate => {
                duplicates += 1;
                continue;
            }
            Claim::Conflict { current } => (
                "revision",
                format!(
                    "revision {revision} of '{id}' is already on the stream with different content (current revision \
                     {current}); a change is a new revision: send it as revision {}",
                    current + 1
                ),
            ),
            Claim::Stale { current } => (
                "revision",
                format!(
                    "revision {revision} of '{id}' is older than revision {current} already on the stream and would \
                     change nothing; send a change as revision {}",
                    current + 1
                ),
            ),
            Claim::NeverReported => (
                "withdrawn",
                format!(
                    "'{id}' has never been reported by this agency: there is nothing to withdraw"
                ),
            ),
        };
        rejected.push(Rejection { line, field: Some(refusal.0.to_owned()), error: refusal.1 });
    }

    let results = state.publisher.publish_all(outgoing).await;
    let mut accepted = 0u64;
    let mut last_sequence = None;
    let mut failed = Vec::new();
    let mut release = Vec::new();
    for ((result, line), claim) in results.into_iter().zip(lines).zip(claimed) {
        match result {
            Ok(published) if published.duplicate => duplicates += 1,
            Ok(published) => {
                accepted += 1;
                last_sequence = last_sequence.max(Some(published.sequence));
            }
            Err(failure) => {
                release.push(claim);
                failed.push(json!({"line": line, "error": failure.to_string()}));
            }
        }
    }
    state.index.release(&release);
    span.record("accepted", accepted);
    span.record("duplicates", duplicates);
    span.record("rejected", rejected.len());

    // Validation and index refusals in the order of the body.
    rejected.sort_by_key(|r| r.line);
    let summary = IngestSummary { accepted, duplicates, rejected, last_sequence };
    if failed.is_empty() {
        return Json(summary).into_response();
    }
    tracing::error!(failed = failed.len(), "publishes not acknowledged");
    let mut body = serde_json::to_value(&summary).expect("summary serialises");
    body["error"] = json!(
        "some accepted records were not acknowledged by JetStream and were not stored; resend the batch (records already stored will be reported as duplicates)"
    );
    body["status"] = json!(503);
    body["failed"] = json!(failed);
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `POST /v1/periods/close`: the agency declares a month complete, as NIBRS zero reports do.
#[tracing::instrument(name = "close_period", skip_all, fields(source))]
async fn post_period_close(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let token = match bearer(&headers) {
        Ok(token) => token,
        Err(response) => return response,
    };
    let Some(agency) = state.registry.authenticate(token) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unknown token; ask the observatory for a token with `observatory agency add <ID>`",
        );
    };
    tracing::Span::current().record("source", agency.id.as_str());
    // The essence, parameters and case aside, as for POST /v1/incidents.
    match headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("")) {
        Some(content_type)
            if Format::from_content_type(content_type) == Some(Format::JsonArray) => {}
        Some(content_type) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type '{content_type}'; send the closure as application/json"
                ),
            );
        }
        None => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "no Content-Type; send the closure as application/json",
            );
        }
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not valid UTF-8");
    };
    // Read as the incident records are: a key sent twice is named by the validation.
    let (record, repeated) = match crate::parse::json_record(crate::parse::strip_bom(text)) {
        Ok(crate::parse::JsonRecord::Object(record, repeated)) => (record, repeated),
        Ok(crate::parse::JsonRecord::Other(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "expected a JSON object like {\"month\": \"2024-03\"}",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not valid JSON: {e}")),
    };
    let validated = validate_period_close(&record, Utc::now().date_naive());
    let closed = match validated {
        Ok(closed) if repeated.is_empty() => closed,
        outcome => {
            let errors = repeated
                .into_iter()
                .map(|field| FieldError::new(&field, crate::parse::REPEATED_KEY))
                .chain(outcome.err().unwrap_or_default());
            let rejected: Vec<_> =
                errors.map(|e| json!({"field": e.field, "error": e.error})).collect();
            let body = json!({"error": "the period closure is not valid", "status": 422, "rejected": rejected});
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
    };
    let event = Event::PeriodClosed(closed.clone());
    let envelope = Envelope::new(&event, &agency.id, Utc::now());
    let key = DedupeKey::new(
        &agency.id,
        &format!("period:{}:{:?}", closed.month, closed.departements),
        1,
    );
    let outgoing = Outgoing {
        subject: envelope.subject(),
        message_id: envelope.event_id.to_string(),
        dedupe: key.to_hex(),
        revision: None,
        payload: Bytes::from(envelope.to_bytes()),
    };
    match state.publisher.publish_all(vec![outgoing]).await.pop() {
        Some(Ok(published)) => Json(json!({
            "source": agency.id, "month": closed.month, "departements": closed.departements,
            "sequence": published.sequence,
        }))
        .into_response(),
        Some(Err(failure)) => error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string()),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "no publish result"),
    }
}
