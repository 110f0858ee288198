//! What operators read from every process that serves HTTP: `GET /metrics` (the process's
//! Prometheus registry, `observatory_metrics`), `GET /health/live` (the process runs),
//! `GET /health/ready` (each part the process runs can do its job; else a 503 naming the part,
//! why and what to do), and the layer that times every answer by its route template.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use observatory_bus::Bus;
use observatory_bus::async_nats::connection::State;
use observatory_ingest::IngestState;
use observatory_ingest::survey::SurveyIngestState;
use observatory_query::CountsEngine;
use observatory_store::Projection;
use serde_json::{Value, json};

/// The parts of a process `/health/ready` checks: only those it runs.
#[derive(Clone, Default)]
pub struct Parts {
    /// The NATS connection (ingest, projector).
    pub nats: Option<Bus>,
    /// The ingest's start-up: the survey waves, the NATS feed relay, the incident subjects of
    /// an earlier version.
    pub ingest: Option<(Arc<IngestState>, Arc<SurveyIngestState>)>,
    /// The projections the process reads (query) or writes (projector).
    pub projections: Vec<Projection>,
    /// The counts engine a query service nets each new manifest with.
    pub counts: Option<Arc<CountsEngine>>,
}

/// How long a readiness check waits for the object store.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// `/metrics`, `/health/live` and `/health/ready` for `parts`.
pub fn router(parts: Parts) -> Router {
    let parts = Arc::new(parts);
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, observatory_metrics::CONTENT_TYPE)],
                    observatory_metrics::encode(),
                )
            }),
        )
        .route("/health/live", get(|| async { Json(json!({"live": true})) }))
        .route(
            "/health/ready",
            get(move || {
                let parts = parts.clone();
                async move { ready(&parts).await }
            }),
        )
}

/// One part's readiness: `None` when ready, else why not and what to do.
type Verdict = Option<(String, &'static str)>;

async fn ready(parts: &Parts) -> Response {
    let mut checks: Vec<(String, Verdict)> = Vec::new();
    if let Some(bus) = &parts.nats {
        checks.push(("nats".into(), nats(bus)));
    }
    if let Some((incidents, surveys)) = &parts.ingest {
        let loading = "wait; if it lasts, the log says why the loading failed: restart the process once NATS answers";
        checks.push((
            "ingest".into(),
            (!incidents.is_ready()).then(|| {
                (
                    "starting the agencies' NATS feed relay and reading the revisions of an \
                     earlier version's incident subjects"
                        .into(),
                    loading,
                )
            }),
        ));
        checks.push((
            "survey_ingest".into(),
            (!surveys.is_ready())
                .then(|| ("replaying the survey waves into the ledger".into(), loading)),
        ));
    }
    for projection in &parts.projections {
        checks.push((format!("projection:{}", projection.name()), readable(projection).await));
    }
    if let Some(counts) = &parts.counts {
        checks.push((
            "counts".into(),
            (counts.serving().prepared() == Some(false)).then(|| {
                (
                    "netting the committed counts before the first answer (seconds at tens of \
                     millions of events)"
                        .into(),
                    "wait; if it lasts, the log says why the counts cannot be read",
                )
            }),
        ));
    }
    let list: Vec<Value> = checks
        .iter()
        .map(|(part, verdict)| match verdict {
            None => json!({"part": part, "ready": true}),
            Some((reason, action)) => {
                json!({"part": part, "ready": false, "reason": reason, "action": action})
            }
        })
        .collect();
    let waiting: Vec<String> = checks
        .iter()
        .filter_map(|(part, verdict)| {
            verdict.as_ref().map(|(reason, _)| format!("{part}: {reason}"))
        })
        .collect();
    if waiting.is_empty() {
        return Json(json!({"ready": true, "parts": list})).into_response();
    }
    let error = format!("not ready: {}", waiting.join("; "));
    let body = json!({"error": error, "status": 503, "ready": false, "parts": list});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn nats(bus: &Bus) -> Verdict {
    match bus.client().connection_state() {
        State::Connected => None,
        state => Some((
            format!(
                "not connected to NATS ({}; {state:?}); the client reconnects by itself",
                bus.config().url
            ),
            "check that the nats-server nodes --nats-url lists are up and reachable from this process",
        )),
    }
}

/// The projection's `CURRENT` and newest manifest can be read; an empty store, or a version
/// that has committed nothing yet, is a valid empty projection.
async fn readable(projection: &Projection) -> Verdict {
    let read = async {
        if let Some(version) = projection.current_version().await? {
            projection.newest_manifest(version).await?;
        }
        Ok::<_, observatory_store::StoreError>(())
    };
    let action = "check --store (the directory, or the s3:// bucket and the AWS_* variables) and \
                  that this process may read it; a projection that cannot be read is rebuilt by \
                  `observatory rebuild`";
    match tokio::time::timeout(STORE_TIMEOUT, read).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some((format!("cannot read the committed projection: {error}"), action)),
        Err(_) => {
            Some((format!("the object store did not answer within {STORE_TIMEOUT:?}"), action))
        }
    }
}

/// Times an answer into `observatory_http_request_duration_seconds`, labelled by the route
/// template the router matched (never the raw path: the label has as many values as there
/// are routes), the method and the status class.
pub async fn timed(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    observatory_metrics::http_answered(
        method.as_str(),
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
