//! Stage 5: design-based estimation on 1 000 000 synthetic respondents, linearised and with
//! 80 JK1 replicate weights (the generator lives in `observatory_stats::synthetic`).

use std::time::Instant;

use anyhow::{Context, Result};
use observatory_stats::synthetic::{self, SurveyShape};
use observatory_stats::{EstimateRequest, Table, estimate};
use serde::Serialize;

use crate::measure::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct SurveyReport {
    pub respondents: usize,
    pub strata: usize,
    pub psus: usize,
    pub domains: usize,
    pub replicates: usize,
    pub generate_seconds: f64,
    /// Estimates per run: mean and total of `y` in each domain.
    pub estimates: usize,
    pub linearisation: Latency,
    pub jk1_replicates: Latency,
    /// Replicate p50 over linearisation p50.
    pub replicate_cost_ratio: f64,
}

fn time(table: &Table, request: &EstimateRequest, runs: usize) -> Result<(Latency, usize)> {
    let mut samples = Vec::with_capacity(runs);
    let mut estimates = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let report = estimate(table, request).context("survey estimate")?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        estimates = report.estimates.len();
    }
    Ok((Latency::of(&samples).context("no runs")?, estimates))
}

/// CPU-bound and single-threaded: runs on a blocking thread.
pub async fn run(runs: usize) -> Result<SurveyReport> {
    tokio::task::spawn_blocking(move || {
        let shape = SurveyShape::MILLION;
        let started = Instant::now();
        let table = synthetic::survey(&shape);
        let generate_seconds = started.elapsed().as_secs_f64();
        let (linearisation, estimates) = time(&table, &synthetic::linear_request(), runs)?;
        let (jk1_replicates, _) = time(&table, &synthetic::replicate_request(), runs)?;
        Ok(SurveyReport {
            respondents: shape.respondents(),
            strata: shape.strata,
            psus: shape.psus(),
            domains: shape.domains,
            replicates: shape.replicates,
            generate_seconds,
            estimates,
            replicate_cost_ratio: jk1_replicates.p50_ms / linearisation.p50_ms,
            linearisation,
            jk1_replicates,
        })
    })
    .await?
}
