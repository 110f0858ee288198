//! The report scheduler, run by `observatory up` and by `observatory scheduler`: for each
//! `[[report]]` of the reports config, it catches up at start the latest run if its period
//! has no published report, then sleeps until the next run. Each run is claimed create-only
//! in the object store before it starts, so two schedulers firing the same run publish one
//! report; the report itself is written create-only too.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use observatory_report::Schedule;
use observatory_store::{Reports, Store};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::QuerySettings;

/// Reads the schedules; a missing file is no schedule (`required` makes it an error).
pub fn load(path: &Path, required: bool) -> Result<Vec<Schedule>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Schedule::parse_file(&text).with_context(|| format!("reading {}", path.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| {
            format!("reading the reports config {}; write [[report]] tables there (see README, Reports)", path.display())
        }),
    }
}

fn who() -> String {
    format!("pid {}", std::process::id())
}

/// The run at `at` of `schedule`: claimed, then published. A run another scheduler claimed
/// is left to it.
async fn fire(settings: &QuerySettings, reports: &Reports, schedule: &Schedule, at: DateTime<Utc>) {
    let period = schedule.period_of(at);
    let kind = schedule.kind;
    let occurrence = at.format("%Y%m%dT%H%M%SZ").to_string();
    match reports.claim(kind.name(), &period.code(), &occurrence, &who()).await {
        Ok(true) => {}
        Ok(false) => {
            info!(%kind, %period, run = %occurrence, "scheduled report already claimed by another scheduler");
            return;
        }
        Err(error) => {
            warn!(%kind, %period, %error, "cannot claim the scheduled report run; skipped");
            return;
        }
    }
    match crate::report::publish(settings, kind, period, None, &ProgressBar::hidden()).await {
        Ok(published) => info!(
            %kind, %period, release = %published.key.release, run = %occurrence,
            "scheduled report published"
        ),
        Err(error) => warn!(
            %kind, %period, run = %occurrence, error = format!("{error:#}"),
            "scheduled report failed; run `observatory report --kind {kind} --period {period}` once fixed"
        ),
    }
}

/// Runs `schedules` until `stop` turns true.
pub async fn run(
    settings: QuerySettings,
    schedules: Vec<Schedule>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    if schedules.is_empty() {
        return Ok(());
    }
    let reports = Reports::new(Store::open(&settings.store)?);
    let now = Utc::now();
    // Catch up: the latest run of each schedule, if its period has no report yet.
    for schedule in &schedules {
        let Some(latest) = schedule.latest_at_or_before(now) else { continue };
        let period = schedule.period_of(latest);
        match reports.published(schedule.kind.name(), &period.code()).await {
            Ok(true) => info!(kind = %schedule.kind, %period, "scheduled report already published"),
            Ok(false) => {
                info!(kind = %schedule.kind, %period, "catching up a scheduled report missed while stopped");
                fire(&settings, &reports, schedule, latest).await;
            }
            Err(error) => warn!(%error, "cannot list the published reports; no catch-up"),
        }
    }
    let mut after = Utc::now();
    loop {
        let Some((at, due)) = schedules
            .iter()
            .filter_map(|s| s.next_after(after).map(|t| (t, s)))
            .min_by_key(|(t, _)| *t)
        else {
            return Ok(());
        };
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        info!(kind = %due.kind, next = %at, "next scheduled report");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return Ok(()),
        }
        for schedule in schedules.iter().filter(|s| s.next_after(after) == Some(at)) {
            fire(&settings, &reports, schedule, at).await;
        }
        after = at;
    }
}
