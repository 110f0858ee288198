//! Survey endpoints: a survey producer declares a wave, uploads respondent rows (CSV, NDJSON or
//! Parquet; each row checked against the declared variables, with per-row errors as for
//! incidents), then closes the wave, optionally with final weights.
//!
//! The ingest keeps no survey state to rebuild at start. A survey's events are on subjects of
//! their own, read on its first request and caught up before each decision, and published
//! with the stream leader checking that nothing reached the survey since that reading
//! ([`view`]): several ingest replicas then agree on which respondents are new and whether a
//! wave is closed, and a closure cannot overtake the responses accepted before it. Within a
//! replica a survey's requests are serialised by its view's lock, held until JetStream has
//! acknowledged their events.

mod batch;
#[cfg(test)]
mod fuzz;
mod handlers;
mod parse;
mod state;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

use crate::api::IngestConfig;

pub use state::SurveyIngestState;

pub fn survey_router(state: Arc<SurveyIngestState>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/v1/surveys/{survey}/waves", post(handlers::post_declare))
        .route("/v1/surveys/{survey}/waves/{wave}/responses", post(handlers::post_responses))
        .route("/v1/surveys/{survey}/waves/{wave}/close", post(handlers::post_close))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}
