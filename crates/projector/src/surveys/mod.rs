//! The `surveys` projection: folds `obs.survey.>` into each wave's microdata (Parquet, one
//! file per flush and wave, in stream order, rewritten as one file when the wave closes) and a
//! snapshot of every wave's declaration and status. Same invariants as the incident
//! projection — the same [`ProjectionWriter`](crate::writer::ProjectionWriter) commits it and
//! the same loop ([`crate::runner`]) consumes for it: data files first, then a create-only
//! manifest with the last applied sequence, restart from the newest manifest, rebuild from
//! sequence 1.
//!
//! - [`fold`]: the pure fold, deciding with the shared [`SurveyLedger`] which rows are new.
//! - [`tables`]: Arrow schemas and conversions (one microdata schema per wave declaration).
//! - [`sink`]: restore, flush and close-time rewrite over the writer, and the
//!   [`Folding`](crate::runner::Folding) impl.
//!
//! [`SurveyLedger`]: observatory_model::survey::SurveyLedger

pub mod fold;
pub mod sink;
pub mod tables;

use std::future::Future;

use observatory_bus::Bus;
use observatory_store::Projection;

pub use fold::{SurveyFold, WaveKey};
pub use sink::{SurveySink, SurveySinkError};

use crate::runner::{LoopError, Progress, ProjectorConfig, replay, serve};

pub type SurveyProjectorError = LoopError<SurveySinkError>;

/// Serves the current survey version until `shutdown` resolves, following `CURRENT`.
/// Creates version 1 when the store has none.
pub async fn run_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SurveyProjectorError> {
    serve(bus, projection, config, shutdown, |version| open(bus, projection, config, version)).await
}

/// Replays every survey event into a new version, then switches `CURRENT` to it.
pub async fn rebuild_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), SurveyProjectorError> {
    replay(bus, projection, config, on_progress, |version| open(bus, projection, config, version))
        .await
}

async fn open(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    version: u32,
) -> Result<SurveySink, SurveySinkError> {
    SurveySink::open(projection.clone(), version, &bus.config().stream, config.compaction).await
}
