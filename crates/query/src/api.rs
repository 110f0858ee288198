use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Map, Value, json};

use crate::counts::{CountsEngine, QueryError};
use crate::request::{CountsRequest, OutputFormat};

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// How long `min_sequence` waits for the projection before answering 503.
    pub max_wait: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig { max_wait: Duration::from_secs(10) }
    }
}

pub struct QueryState {
    pub engine: CountsEngine,
    pub config: QueryConfig,
}

pub fn router(state: Arc<QueryState>) -> Router {
    Router::new().route("/v1/incidents/counts", get(get_counts)).with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into(), "status": status.as_u16()}))).into_response()
}

/// Query pairs in order, repeats kept, so the request parser can refuse a repeated parameter.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn cell(value: AnyValue<'_>) -> Value {
    match value {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(b),
        AnyValue::String(s) => Value::String(s.to_owned()),
        AnyValue::StringOwned(s) => Value::String(s.to_string()),
        AnyValue::Int32(i) => Value::from(i),
        AnyValue::Int64(i) => Value::from(i),
        AnyValue::UInt32(i) => Value::from(i),
        AnyValue::UInt64(i) => Value::from(i),
        AnyValue::Float64(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        other => Value::String(other.to_string()),
    }
}

pub fn frame_rows(frame: &DataFrame) -> Vec<Map<String, Value>> {
    let columns = frame.columns();
    (0..frame.height())
        .map(|i| columns.iter().map(|c| (c.name().to_string(), c.get(i).map(cell).unwrap_or(Value::Null))).collect())
        .collect()
}

fn csv_field(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

pub fn frame_csv(frame: &DataFrame) -> String {
    let names: Vec<String> = frame.columns().iter().map(|c| c.name().to_string()).collect();
    let mut out = names.join(",");
    out.push('\n');
    for row in frame_rows(frame) {
        let fields: Vec<String> = names.iter().map(|n| csv_field(&row[n])).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

#[tracing::instrument(name = "counts", skip_all, fields(query = raw.as_deref().unwrap_or("")))]
async fn get_counts(State(state): State<Arc<QueryState>>, RawQuery(raw): RawQuery) -> Response {
    let request = match CountsRequest::parse(&query_pairs(raw.as_deref())) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let answer = match state.engine.counts(&request, state.config.max_wait).await {
        Ok(answer) => answer,
        Err(e @ QueryError::NotYet { .. }) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "count query failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let as_of = HeaderValue::from(answer.as_of.sequence);
    match request.format {
        OutputFormat::Json => {
            let body = json!({
                "as_of": answer.as_of,
                "by": request.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "rows": frame_rows(&answer.frame),
            });
            let mut response = Json(body).into_response();
            response.headers_mut().insert("observatory-as-of-sequence", as_of);
            response
        }
        OutputFormat::Csv => {
            let mut response = frame_csv(&answer.frame).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            headers.insert("observatory-as-of-sequence", as_of);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_in_order() {
        let pairs = query_pairs(Some("by=month%2Cdepartement&cyber=true&x=a+b&by=year"));
        assert_eq!(pairs[0], ("by".into(), "month,departement".into()));
        assert_eq!(pairs[2], ("x".into(), "a b".into()));
        assert_eq!(pairs.len(), 4);
    }
}
