//! Survey endpoints: a survey producer declares a wave, uploads respondent rows (CSV, NDJSON or
//! Parquet; each row checked against the declared variables, with per-row errors as for
//! incidents), then closes the wave, optionally with final weights.
//!
//! The ingest keeps a [`SurveyLedger`](observatory_model::survey::SurveyLedger) of every wave on the stream (rebuilt at start by
//! replaying `obs.survey.>`): it tells a re-sent respondent from a new one, however late, and
//! refuses responses once the wave is closed. Requests that touch the ledger are serialised by
//! one lock held until JetStream has acknowledged their events, so a closure cannot overtake
//! the responses accepted before it. Survey volumes (thousands of rows per wave) make that
//! lock cheap.

mod batch;
#[cfg(test)]
mod fuzz;
mod handlers;
mod parse;
mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

use crate::api::IngestConfig;

pub use state::SurveyIngestState;

/// Subjects of every survey event.
pub const SURVEY_SUBJECTS: &str = "obs.survey.>";

pub fn survey_router(state: Arc<SurveyIngestState>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/v1/surveys/{survey}/waves", post(handlers::post_declare))
        .route("/v1/surveys/{survey}/waves/{wave}/responses", post(handlers::post_responses))
        .route("/v1/surveys/{survey}/waves/{wave}/close", post(handlers::post_close))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}
