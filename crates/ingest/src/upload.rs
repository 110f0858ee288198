//! What every upload endpoint (incidents, period closures, survey waves) does around its own
//! parsing: who is sending (bearer token → agency), reading the body, the body's media type,
//! publishing, and the summary answer once JetStream has acknowledged the accepted events.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use observatory_bus::{Outgoing, PublishFailure, Published, Publisher};
use observatory_metrics::Records;
use serde::Serialize;
use serde_json::{Value, json};

use crate::agencies::{Agency, AgencyRegistry};
use crate::error::ApiError;
use crate::parse::strip_bom;

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

/// The agency whose token the request carries; recorded as the span's `source`.
pub(crate) fn authenticate(
    registry: &AgencyRegistry,
    headers: &HeaderMap,
) -> Result<Agency, ApiError> {
    let agency = registry.authenticate(bearer(headers)?).ok_or_else(|| {
        ApiError::unauthorized(
            "unknown token; ask the observatory for a token with `observatory agency add <ID>`",
        )
    })?;
    tracing::Span::current().record("source", agency.id.as_str());
    Ok(agency)
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <token>' with the token from `observatory agency add`",
        )
    })?;
    let text =
        value.to_str().map_err(|_| ApiError::unauthorized("Authorization header is not ASCII"))?;
    observatory_access::bearer_token(text)
        .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))
}

/// The body, or why axum could not read it. Over the size limit the answer advises splitting
/// the `what` (the feed, the responses) into smaller batches.
pub(crate) fn read_body(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<Bytes, ApiError> {
    match body {
        Ok(body) => Ok(body),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the size limit; split {what} into smaller batches"),
            ))
        }
        Err(rejection) => Err(rejection.into()),
    }
}

/// A one-document body as text, without the byte-order mark spreadsheet and Windows tools
/// write.
pub(crate) fn text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map(strip_bom)
        .map_err(|_| ApiError::bad_request("body is not valid UTF-8"))
}

/// The `Content-Type` header, if sent (empty when it is not ASCII).
pub(crate) fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or(""))
}

/// The media type without its parameters, lowercase: what selects a body format.
pub(crate) fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// A body in a format the endpoint does not read; `advice` says which to use.
pub(crate) fn unsupported_media(content_type: &str, advice: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("unsupported Content-Type '{content_type}'; {advice}"),
    )
}

/// Publishes one event; an event JetStream did not acknowledge is a 503 (retry).
pub(crate) async fn publish_one(
    publisher: &Publisher,
    event: Outgoing,
) -> Result<Published, ApiError> {
    publisher.publish_one(event).await.map_err(not_acknowledged)
}

/// The answer to an event JetStream did not store: a 503 (retry), counted among the publish
/// failures when the retries ran out.
pub(crate) fn not_acknowledged(failure: PublishFailure) -> ApiError {
    if matches!(failure, PublishFailure::Unavailable { .. }) {
        observatory_metrics::publish_failures(1);
    }
    ApiError::unavailable(failure.to_string())
}

/// Logs a batch's answer (in the request's span: its source and counts) and counts its records
/// in the metrics, a record with several problems as one rejected record; `failed` are the
/// records or batches not stored.
pub(crate) fn tally(source: &str, records: Records, summary: &IngestSummary, failed: usize) {
    let mut lines: Vec<u64> = summary.rejected.iter().map(|r| r.line).collect();
    lines.sort_unstable();
    lines.dedup();
    tracing::info!(
        accepted = summary.accepted,
        duplicates = summary.duplicates,
        rejected = lines.len(),
        failed,
        "batch answered"
    );
    observatory_metrics::ingest_answered(
        source,
        records,
        summary.accepted,
        summary.duplicates,
        lines.len() as u64,
        failed as u64,
    );
}

/// The answer to a batch: the summary, or a 503 carrying it with the `failed` publishes when
/// some accepted `items` (records, rows) were not acknowledged and must be sent again.
pub(crate) fn summary_answer(
    summary: IngestSummary,
    failed: Vec<Value>,
    items: &str,
) -> Result<Response, ApiError> {
    if failed.is_empty() {
        return Ok(Json(summary).into_response());
    }
    tracing::error!(failed = failed.len(), items, "publishes not acknowledged");
    Err(ApiError::unavailable(format!(
        "some accepted {items} were not acknowledged by JetStream and were not stored; resend the batch ({items} already stored will be reported as duplicates)"
    ))
    .with_all(serde_json::to_value(&summary).expect("summary serialises"))
    .with("failed", json!(failed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_bearer_token_is_one_word_after_the_scheme_in_any_case() {
        assert_eq!(bearer(&auth("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&auth("bearer abc")).unwrap(), "abc");
        for wrong in ["Basic abc", "Bearer", "Bearer  abc", "Bearer a b"] {
            let error = bearer(&auth(wrong)).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{wrong}");
        }
        assert!(bearer(&HeaderMap::new()).unwrap_err().message().contains("missing"));
    }

    #[test]
    fn a_text_body_loses_its_byte_order_mark() {
        assert_eq!(text("\u{feff}{}".as_bytes()).unwrap(), "{}");
        assert_eq!(text(b"\xff").unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert_eq!(essence("Text/CSV; charset=utf-8"), "text/csv");
    }
}
