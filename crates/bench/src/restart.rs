//! After the fill: how long an ingest process takes to be ready on a stream of N events (what
//! a restart or a new replica costs), and what holding the stream costs nats-server's memory
//! (one subject per incident).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::process::Service;

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub events_on_stream: u64,
    /// From spawning `observatory ingest` to its first `/health` 200 (connected, relay
    /// subscribed, legacy subjects read: ready to answer a resubmission correctly).
    pub ingest_ready_seconds: f64,
    /// The ingest's peak RSS once ready.
    pub ingest_peak_rss_mib: Option<f64>,
    /// nats-server's resident and peak memory holding the stream.
    pub nats_rss_mib: Option<f64>,
    pub nats_peak_rss_mib: Option<f64>,
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
pub fn memory_mib(pid: u32) -> (Option<f64>, Option<f64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts `observatory ingest` on the filled stream and times it to ready.
pub async fn measure(
    nats_url: &str,
    nats_pid: u32,
    service_dir: &Path,
    events_on_stream: u64,
) -> Result<Restart> {
    let client = reqwest::Client::new();
    let args: Vec<String> = vec![
        "ingest".into(),
        "--data-dir".into(),
        service_dir.to_string_lossy().into_owned(),
        "--nats-url".into(),
        nats_url.into(),
    ];
    let started = Instant::now();
    let service = Service::start(&args, service_dir.join("restart-ingest.log"), &client).await?;
    let ingest_ready_seconds = started.elapsed().as_secs_f64();
    let ingest_peak_rss_mib = service.pid().and_then(|pid| memory_mib(pid).1);
    service.stop().await?;
    let (nats_rss_mib, nats_peak_rss_mib) = memory_mib(nats_pid);
    Ok(Restart {
        events_on_stream,
        ingest_ready_seconds,
        ingest_peak_rss_mib,
        nats_rss_mib,
        nats_peak_rss_mib,
    })
}
