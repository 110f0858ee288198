//! Published reports over HTTP: `GET /v1/reports` (every report: kind, period, release,
//! files, when its release was committed), `GET /v1/reports/{kind}/{period}` (the newest
//! release's report, or `?release=`), and each file under
//! `/v1/reports/{kind}/{period}/{release}/{file}` with its content type and its SHA-256 as
//! the ETag. A report never changes once published, so files are cached as immutable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use observatory_store::{Releases, ReportKey, Reports, Store, release_number};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::request::query_pairs;

pub const KINDS: [&str; 2] = ["monthly", "annual"];

/// The reports of a store, with the manifests read so far (they never change).
#[derive(Clone)]
pub struct ReportsState {
    reports: Reports,
    pub(crate) releases: Releases,
    manifests: Arc<Mutex<HashMap<ReportKey, Value>>>,
}

impl ReportsState {
    pub fn new(store: Store) -> ReportsState {
        ReportsState {
            reports: Reports::new(store.clone()),
            releases: Releases::new(store),
            manifests: Arc::default(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }

    pub async fn manifest(&self, key: &ReportKey) -> Result<Option<Value>, ApiError> {
        if let Some(m) = self.manifests.lock().expect("not poisoned").get(key) {
            return Ok(Some(m.clone()));
        }
        let Some(bytes) = self.reports.file(key, "manifest.json").await.map_err(Self::internal)?
        else {
            return Ok(None);
        };
        let manifest: Value = serde_json::from_slice(&bytes).map_err(Self::internal)?;
        self.manifests.lock().expect("not poisoned").insert(key.clone(), manifest.clone());
        Ok(Some(manifest))
    }

    /// Every report, newest release first, as the listing shows it.
    pub async fn list(&self) -> Result<Vec<Value>, ApiError> {
        let mut keys = self.reports.list().await.map_err(Self::internal)?;
        keys.sort_by(|a, b| {
            (release_number(&b.release), &b.kind, &b.period).cmp(&(
                release_number(&a.release),
                &a.kind,
                &a.period,
            ))
        });
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(manifest) = self.manifest(&key).await? {
                out.push(summary(&key, &manifest));
            }
        }
        Ok(out)
    }

    /// One file of a report.
    pub async fn file(
        &self,
        key: &ReportKey,
        name: &str,
    ) -> Result<Option<bytes::Bytes>, ApiError> {
        self.reports.file(key, name).await.map_err(Self::internal)
    }
}

/// A report as listed: where it is, what it holds, and the link of each file.
pub fn summary(key: &ReportKey, manifest: &Value) -> Value {
    let base = format!("/v1/reports/{}/{}/{}", key.kind, key.period, key.release);
    let files: Vec<Value> = manifest
        .get("files")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, sha)| json!({"name": name, "sha256": sha, "href": format!("{base}/{name}")}))
        .collect();
    json!({
        "kind": key.kind, "period": key.period, "release": key.release,
        "title": manifest.get("title"), "created": manifest.get("release_created_at"),
        "previous_release": manifest.get("previous_release"),
        "files": files, "manifest": format!("{base}/manifest.json"),
    })
}

pub fn router(state: ReportsState) -> Router {
    Router::new()
        .route("/v1/reports", get(list))
        .route("/v1/reports/{kind}/{period}", get(latest))
        .route("/v1/reports/{kind}/{period}/{release}/{*file}", get(file))
        .route("/", get(crate::front::page))
        .with_state(state)
}

#[tracing::instrument(name = "reports", skip_all)]
async fn list(
    State(state): State<ReportsState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut kind = None;
    for (key, value) in query_pairs(raw.as_deref()) {
        match key.as_str() {
            "kind" => kind = Some(check_kind(&value)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}'; use kind=monthly|annual"
                )));
            }
        }
    }
    let reports: Vec<Value> =
        state.list().await?.into_iter().filter(|r| kind.is_none_or(|k| r["kind"] == k)).collect();
    Ok(Json(json!({"reports": reports})))
}

fn check_kind(kind: &str) -> Result<&'static str, ApiError> {
    KINDS.into_iter().find(|k| *k == kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no report kind '{kind}'; the kinds are monthly and annual"),
        )
    })
}

#[tracing::instrument(name = "report", skip_all, fields(kind, period))]
async fn latest(
    State(state): State<ReportsState>,
    Path((kind, period)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let kind = check_kind(&kind)?;
    let mut release = None;
    for (key, value) in query_pairs(raw.as_deref()) {
        match key.as_str() {
            "release" if release.is_none() => release = Some(value),
            "release" => {
                return Err(ApiError::bad_request(
                    "parameter 'release' is given twice; give it once",
                ));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}'; use release=<id>"
                )));
            }
        }
    }
    let all = state.list().await?;
    let of_period: Vec<&Value> =
        all.iter().filter(|r| r["kind"] == kind && r["period"] == period.as_str()).collect();
    let found = match &release {
        Some(id) => of_period.iter().find(|r| r["release"] == id.as_str()),
        None => of_period.first(),
    };
    match found {
        Some(report) => Ok(Json((*report).clone())),
        None => {
            let releases: Vec<&str> =
                of_period.iter().filter_map(|r| r["release"].as_str()).collect();
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                match (release, releases.is_empty()) {
                    (_, true) => format!(
                        "no {kind} report for period '{period}' is published; GET /v1/reports lists them (observatory report --kind {kind} --period {period} makes one)"
                    ),
                    (Some(id), false) => format!(
                        "no {kind} report for {period} from release '{id}'; it exists from release {}",
                        releases.join(", ")
                    ),
                    (None, false) => unreachable!("the newest is found when there is one"),
                },
            ))
        }
    }
}

#[tracing::instrument(name = "report_file", skip_all, fields(kind, period, release, file))]
async fn file(
    State(state): State<ReportsState>,
    Path((kind, period, release, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = check_kind(&kind)?;
    let key = ReportKey { kind: kind.to_owned(), period: period.clone(), release: release.clone() };
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no file '{name}' in the {kind} report {period} of release {release}; GET /v1/reports/{kind}/{period}?release={release} lists its files"
            ),
        )
    };
    let manifest = state.manifest(&key).await?.ok_or_else(not_found)?;
    let sha = if name == "manifest.json" {
        None
    } else {
        Some(manifest["files"].get(&name).and_then(Value::as_str).ok_or_else(not_found)?.to_owned())
    };
    let etag = sha.as_ref().map(|s| format!("\"{s}\""));
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if let Some(tag) = &etag
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert(header::ETAG, HeaderValue::from_str(tag).expect("hex"));
        response.headers_mut().insert(header::CACHE_CONTROL, cache);
        return Ok(response);
    }
    let bytes = state.file(&key, &name).await?.ok_or_else(not_found)?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&name)));
    h.insert(header::CACHE_CONTROL, cache);
    if let Some(tag) = etag {
        h.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex"));
    }
    let download = name.rsplit('/').next().unwrap_or(&name);
    if !name.ends_with(".json") {
        let disposition = format!("inline; filename=\"{kind}-{period}-{release}-{download}\"");
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

/// The content type of a report file by its name.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
