//! The survey parts of the services (issue 3): endpoints, projector and query, wired by
//! `serve` next to the incident parts so `up`, `ingest`, `project`, `query` and `rebuild` all
//! include them.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use observatory_bus::Bus;
use observatory_ingest::survey::{SurveyIngestState, survey_router};
use observatory_ingest::{AgencyRegistry, IngestConfig};
use observatory_projector::ProjectorConfig;
use observatory_projector::{SurveySink, replay, serve};
use observatory_query::CountsEngine;
use observatory_query::survey::{SurveyEngine, SurveyQueryState};
use observatory_store::ProjectionId;
use observatory_store::{Projection, Store};
use tokio::sync::watch;
use tracing::info;

use crate::config::QuerySettings;

pub fn projection(store: &str) -> Result<Projection> {
    Ok(Projection::new(Store::open(store)?, ProjectionId::Surveys))
}

/// The survey endpoints and their state; the state is ready once [`SurveyIngestState::load_legacy`] ran.
pub fn ingest(
    agencies: &Path,
    bus: &Bus,
    config: &IngestConfig,
) -> Result<(Router, Arc<SurveyIngestState>)> {
    let registry = AgencyRegistry::open(agencies)?;
    let state = Arc::new(SurveyIngestState::new(registry, bus.clone(), config));
    Ok((survey_router(state.clone(), config), state))
}

/// Reads the survey events of earlier versions' subjects (logged; on failure the survey
/// endpoints stay unavailable and the incident ones are unaffected). Surveys on their own
/// subjects are read when a request first needs them.
pub async fn load(state: &SurveyIngestState) {
    match state.load_legacy().await {
        Ok(events) => info!(events, "legacy survey subjects read; survey ingest ready"),
        Err(error) => {
            tracing::error!(%error, "cannot read the legacy survey subjects; survey ingest stays unavailable")
        }
    }
}

pub fn query(settings: &QuerySettings, counts: Arc<CountsEngine>) -> Result<Router> {
    let store = Store::open(&settings.store)?;
    let state = Arc::new(SurveyQueryState {
        engine: SurveyEngine::new(Projection::new(store.clone(), ProjectionId::Surveys)),
        counts,
        config: settings.config.clone(),
        disclosure: settings.disclosure.clone(),
        vintages: observatory_query::Vintages::new(observatory_store::Releases::new(store)),
    });
    Ok(observatory_query::survey::survey_router(state))
}

/// The survey projector, stopping when `stop` turns true.
pub fn projector(
    store: &str,
    bus: &Bus,
    config: ProjectorConfig,
    mut stop: watch::Receiver<bool>,
) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
    let (bus, projection) = (bus.clone(), projection(store)?);
    Ok(async move {
        serve::<SurveySink>(&bus, &projection, &config, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
        .context("survey projector stopped")
    })
}

/// Rebuilds the survey projection into a new version and prints what it holds.
pub async fn rebuild(store: &str, bus: &Bus, config: &ProjectorConfig) -> Result<()> {
    let projection = projection(store)?;
    let (version, sequence) = replay::<SurveySink>(bus, &projection, config, |_| {}).await?;
    let manifest = projection.newest_manifest(version).await?;
    let stat = |name: &str| manifest.as_ref().and_then(|m| m.stats.get(name).copied()).unwrap_or(0);
    println!(
        "rebuilt surveys v{version} up to sequence {sequence}: {} waves, {} respondents; CURRENT now v{version}",
        stat("waves"),
        stat("respondents")
    );
    Ok(())
}
