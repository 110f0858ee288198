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
use crate::request::{CountsRequest, Dimension, OutputFormat};

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
    Router::new()
        .route("/v1/incidents/counts", get(get_counts))
        .route("/v1/coverage", get(get_coverage))
        .route("/v1/reference/iccs", get(|| async { Json(json!({"version": "1.0", "codes": observatory_reference::Iccs::v1_0().iter().collect::<Vec<_>>()})) }))
        .route("/v1/reference/geography", get(get_geography))
        .route("/v1/reference/crosswalks", get(get_crosswalks))
        .route("/v1/reference/crosswalks/{name}", get(get_crosswalk))
        .with_state(state)
}

async fn get_geography() -> Json<Value> {
    let geography = observatory_reference::Geography::france();
    let departements: Vec<Value> = geography
        .departements()
        .iter()
        .map(|d| {
            let mut value = serde_json::to_value(d).unwrap_or_default();
            value["population"] =
                serde_json::to_value(geography.population_series(&d.code)).unwrap_or_default();
            value
        })
        .collect();
    Json(json!({
        "regions": geography.regions(),
        "departements": departements,
        "population_source": "INSEE, populations légales (population municipale), by reference year (millésime)",
    }))
}

async fn get_crosswalks() -> Json<Value> {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    let list: Vec<Value> = crosswalks
        .names()
        .map(|name| json!({"name": name, "versions": crosswalks.versions(name), "latest": crosswalks.latest(name).map(|c| c.version)}))
        .collect();
    Json(json!({"crosswalks": list}))
}

async fn get_crosswalk(
    axum::extract::Path(name): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    let version =
        query_pairs(raw.as_deref()).into_iter().find(|(k, _)| k == "version").map(|(_, v)| v);
    let version = match version.map(|v| v.trim_start_matches('v').parse::<u32>()) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "version must be a number, e.g. version=2");
        }
        None => None,
    };
    match crosswalks.resolve(&name, version) {
        Ok(crosswalk) => Json(crosswalk).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[tracing::instrument(name = "coverage", skip_all)]
async fn get_coverage(State(state): State<Arc<QueryState>>, RawQuery(raw): RawQuery) -> Response {
    let mut from = None;
    let mut to = None;
    let mut sources: Option<Vec<String>> = None;
    let mut format = OutputFormat::Json;
    let pairs = query_pairs(raw.as_deref());
    let mut seen = std::collections::HashSet::new();
    for (key, value) in &pairs {
        if !seen.insert(key.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("parameter '{key}' is given twice; give one comma-separated list"),
            );
        }
        // The counts parser checks months, sources and formats the same way for both endpoints.
        let parsed = match CountsRequest::parse(&[(key.clone(), value.clone())]) {
            Ok(parsed) => parsed,
            Err(e) if matches!(key.as_str(), "from" | "to" | "source" | "format") => {
                return error(StatusCode::BAD_REQUEST, e.0);
            }
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter '{key}'; use from, to, source or format"),
                );
            }
        };
        match key.as_str() {
            "from" => from = parsed.from,
            "to" => to = parsed.to,
            "source" => sources = parsed.filters.get(&Dimension::Source).cloned(),
            "format" => format = parsed.format,
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter '{other}'; use from, to, source or format"),
                );
            }
        }
    }
    if let (Some(f), Some(t)) = (&from, &to) {
        if f > t {
            return error(StatusCode::BAD_REQUEST, format!("from={f} is after to={t}"));
        }
    }
    let (as_of, rows) =
        match state.engine.coverage(from.as_deref(), to.as_deref(), sources.as_deref()).await {
            Ok(answer) => answer,
            Err(e) if e.is_bad_request() => return error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    let sequence = HeaderValue::from(as_of.sequence);
    let mut response = match format {
        OutputFormat::Json => Json(json!({"as_of": as_of, "coverage": rows})).into_response(),
        OutputFormat::Csv => {
            let mut out = String::from("source,month,status,closed_departements\n");
            for row in &rows {
                let closed = row["closed_departements"]
                    .as_array()
                    .map(|d| d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "));
                let fields = [
                    row["source"].clone(),
                    row["month"].clone(),
                    row["status"].clone(),
                    closed.map_or(Value::Null, Value::String),
                ];
                out.push_str(&fields.iter().map(csv_field).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            let mut response = out.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            response
        }
    };
    response.headers_mut().insert("observatory-as-of-sequence", sequence);
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into(), "status": status.as_u16()}))).into_response()
}

/// Query pairs in order, repeats kept, so the request parser can refuse a repeated parameter.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
        .unwrap_or_default()
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
        .map(|i| {
            columns
                .iter()
                .map(|c| (c.name().to_string(), c.get(i).map(cell).unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
}

fn csv_field(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
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

/// What `rate_per_100k` is, in every JSON answer that carries it.
pub const RATE_DEFINITION: &str = "count over rate_period (cumulative, not annualised) divided by the INSEE legal \
     population of population_area (the départements the row counts) in population_year, times 100 000";

#[tracing::instrument(name = "counts", skip_all, fields(query = raw.as_deref().unwrap_or("")))]
async fn get_counts(State(state): State<Arc<QueryState>>, RawQuery(raw): RawQuery) -> Response {
    let request = match CountsRequest::parse(&query_pairs(raw.as_deref())) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let answer = match state.engine.counts(&request, state.config.max_wait).await {
        Ok(answer) => answer,
        Err(e @ QueryError::NotYet { .. }) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e) if e.is_bad_request() => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "count query failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    let as_of = HeaderValue::from(answer.as_of.sequence);
    match request.format {
        OutputFormat::Json => {
            let mut body = json!({
                "as_of": answer.as_of,
                "by": request.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "rows": frame_rows(&answer.frame),
            });
            if request.rate.is_some() {
                body["rate"] = json!({"per": 100_000, "definition": RATE_DEFINITION});
            }
            let mut response = Json(body).into_response();
            response.headers_mut().insert("observatory-as-of-sequence", as_of);
            response
        }
        OutputFormat::Csv => {
            let mut response = frame_csv(&answer.frame).into_response();
            let headers = response.headers_mut();
            headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
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
