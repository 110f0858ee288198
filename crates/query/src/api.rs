//! The HTTP face of the incident counts: `/v1/incidents/counts`, `/v1/coverage` and the
//! reference data, each answer saying the stream sequence it reflects.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Map, Value, json};

use axum::http::HeaderMap;

use crate::counts::{CountsEngine, QueryError};
use crate::disclosure::Disclosure;
use crate::error::ApiError;
use crate::request::{CountsRequest, Dimension, OutputFormat, query_pairs};
use crate::vintage::{Vintage, Vintages};

#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// How long `min_sequence` waits for the projection before answering 503.
    pub max_wait: Duration,
    /// The maintenance agency of the SDMX artefacts (`--sdmx-agency`).
    pub sdmx_agency: String,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            max_wait: Duration::from_secs(10),
            sdmx_agency: crate::sdmx::DEFAULT_AGENCY.to_owned(),
        }
    }
}

pub struct QueryState {
    /// Shared with the survey endpoints' dark-figure view: one netting in memory.
    pub engine: Arc<CountsEngine>,
    pub config: QueryConfig,
    /// The public tier's policy and the readers who see past it.
    pub disclosure: Disclosure,
    /// Releases and the other committed states a request may ask for.
    pub vintages: Vintages,
}

pub fn router(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/v1/incidents/counts", get(get_counts))
        .route("/v1/coverage", get(get_coverage))
        .route("/v1/releases", get(crate::releases::list).post(crate::releases::create))
        .route("/v1/releases/{id}", get(crate::releases::show))
        .route("/v1/reference/iccs", get(|| async { Json(json!({"version": "1.0", "codes": observatory_reference::Iccs::v1_0().iter().collect::<Vec<_>>()})) }))
        .route("/v1/reference/geography", get(get_geography))
        .route("/v1/reference/crosswalks", get(get_crosswalks))
        .route("/v1/reference/crosswalks/{name}", get(get_crosswalk))
        .with_state(state.clone())
        .merge(crate::sdmx::router(state))
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
) -> Result<Response, ApiError> {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    let version =
        query_pairs(raw.as_deref()).into_iter().find(|(k, _)| k == "version").map(|(_, v)| v);
    let version = version
        .map(|v| v.trim_start_matches('v').parse::<u32>())
        .transpose()
        .map_err(|_| ApiError::bad_request("version must be a number, e.g. version=2"))?;
    let crosswalk = crosswalks
        .resolve(&name, version)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(Json(crosswalk).into_response())
}

/// `from`, `to`, `source` and `format` of `/v1/coverage`, each checked as the counts
/// parser checks them.
pub(crate) struct CoverageQuery {
    from: Option<String>,
    to: Option<String>,
    sources: Option<Vec<String>>,
    format: OutputFormat,
    vintage: Vintage,
}

impl CoverageQuery {
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<CoverageQuery, ApiError> {
        let unknown = |key: &str| {
            ApiError::bad_request(format!(
                "unknown parameter '{key}'; use from, to, source, format, release, as_of or as_of_time"
            ))
        };
        let mut query = CoverageQuery {
            from: None,
            to: None,
            sources: None,
            format: OutputFormat::Json,
            vintage: Vintage::Current,
        };
        let mut seen = std::collections::HashSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "parameter '{key}' is given twice; give it once (a list is one comma-separated value)"
                )));
            }
            if query.vintage.take(key, value)? {
                continue;
            }
            // The counts parser checks months, sources and formats the same way for both
            // endpoints.
            let parsed = match CountsRequest::parse(&[(key.clone(), value.clone())]) {
                Ok(parsed) => parsed,
                Err(e) if matches!(key.as_str(), "from" | "to" | "source" | "format") => {
                    return Err(e.into());
                }
                Err(_) => return Err(unknown(key)),
            };
            match key.as_str() {
                "from" => query.from = parsed.from,
                "to" => query.to = parsed.to,
                "source" => query.sources = parsed.filters.get(&Dimension::Source).cloned(),
                "format" if !matches!(parsed.format, OutputFormat::Json | OutputFormat::Csv) => {
                    return Err(ApiError::bad_request(format!(
                        "format={value} is served by /v1/incidents/counts; coverage is json or csv"
                    )));
                }
                "format" => query.format = parsed.format,
                other => return Err(unknown(other)),
            }
        }
        if let (Some(f), Some(t)) = (&query.from, &query.to)
            && f > t
        {
            return Err(ApiError::bad_request(format!("from={f} is after to={t}")));
        }
        Ok(query)
    }
}

#[tracing::instrument(name = "coverage", skip_all)]
async fn get_coverage(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    // Coverage publishes statuses, not counts: every tier reads the same, but a bad token is
    // still refused rather than read as public.
    let tier = state.disclosure.tier(&headers)?;
    let query = CoverageQuery::parse(&query_pairs(raw.as_deref()))?;
    let resolved = state
        .vintages
        .resolve(state.engine.serving(), &query.vintage, None, state.config.max_wait)
        .await
        .map_err(QueryError::from)?;
    let (as_of, rows) = state
        .engine
        .coverage(&resolved, query.from.as_deref(), query.to.as_deref(), query.sources.as_deref())
        .await?;
    let sequence = as_of.sequence;
    let mut response = match query.format {
        OutputFormat::Json => Json(json!({
            "as_of": as_of,
            "coverage": rows,
            "disclosure": {"tier": tier.name(), "note": "statuses, not counts: the same for every tier"},
        }))
        .into_response(),
        _ => {
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
            csv_response(out)
        }
    };
    stamp(&mut response, sequence, None, None);
    Ok(response)
}

/// The header every answer carries: the stream sequence it reflects.
pub const AS_OF_SEQUENCE: &str = "observatory-as-of-sequence";

/// Sets the headers every answer carries: the stream sequence it reflects, the release it comes
/// from (when it comes from one) and how its numbers were published (for bodies that cannot
/// say it themselves: CSV, SDMX). One place, so every endpoint and format says it the same way.
pub fn stamp(
    response: &mut Response,
    sequence: u64,
    release: Option<&str>,
    disclosure: Option<&str>,
) {
    let headers = response.headers_mut();
    headers.insert(AS_OF_SEQUENCE, HeaderValue::from(sequence));
    // Release ids (r<N>) and the disclosure description are ASCII; a value that is not is left
    // out rather than sent malformed.
    if let Some(value) = release.and_then(|r| HeaderValue::from_str(r).ok()) {
        headers.insert(RELEASE_HEADER, value);
    }
    if let Some(value) = disclosure.and_then(|d| HeaderValue::from_str(d).ok()) {
        headers.insert(DISCLOSURE_HEADER, value);
    }
}

fn csv_response(body: String) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    response
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
async fn get_counts(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let tier = state.disclosure.tier(&headers)?;
    let request = CountsRequest::parse(&query_pairs(raw.as_deref()))?;
    if request.history {
        return Ok(
            Json(crate::history::counts_history(&state, &request, tier).await?).into_response()
        );
    }
    let answer = state
        .engine
        .published(&state.vintages, &state.disclosure, tier, &request, state.config.max_wait)
        .await?;
    let mut response = match request.format {
        OutputFormat::Json => {
            let mut body = json!({
                "as_of": answer.as_of,
                "by": request.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "rows": frame_rows(&answer.frame),
            });
            if request.rate.is_some() {
                body["rate"] = json!({"per": 100_000, "definition": RATE_DEFINITION});
            }
            body["disclosure"] = state.disclosure.describe(tier);
            Json(body).into_response()
        }
        OutputFormat::JsonStat => {
            let dataset = crate::jsonstat::counts(
                &answer.frame,
                &request,
                &answer.as_of,
                state.disclosure.describe(tier),
            )?;
            Json(dataset).into_response()
        }
        OutputFormat::Arrow | OutputFormat::Parquet => {
            let metadata =
                crate::tabular::metadata(&answer.as_of, &state.disclosure.describe(tier));
            let batch = crate::tabular::from_frame(&answer.frame, metadata)?;
            let (content_type, body) = if request.format == OutputFormat::Arrow {
                (crate::tabular::ARROW_STREAM, crate::tabular::ipc_stream(&batch)?)
            } else {
                (crate::tabular::PARQUET, crate::tabular::parquet(&batch)?)
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        OutputFormat::Csv => csv_response(frame_csv(&answer.frame)),
    };
    let disclosure = (request.format == OutputFormat::Csv).then(|| state.disclosure.header(tier));
    stamp(&mut response, answer.as_of.sequence, answer.as_of.release_id(), disclosure.as_deref());
    Ok(response)
}

/// The header of a CSV answer saying how its numbers were published.
pub const DISCLOSURE_HEADER: &str = "observatory-disclosure";
/// The header naming the release an answer comes from.
pub const RELEASE_HEADER: &str = "observatory-release";
