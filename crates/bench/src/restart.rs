//! After the fill and the rebuild: how long each service takes to be back on a stream of N
//! events (what a restart or a new replica costs) — the ingest ready, the projector restored
//! and caught up, the query service's counts netted and its first answer — and what holding
//! the stream costs nats-server's memory (one subject per incident).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::nats::Nats;
use crate::process::{Service, kib_line};

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub events_on_stream: u64,
    /// From spawning `observatory ingest` to its first `/health` 200 (connected, relay
    /// subscribed, legacy subjects read: ready to answer a resubmission correctly).
    pub ingest_ready_seconds: f64,
    /// The ingest's peak RSS once ready.
    pub ingest_peak_rss_mib: Option<f64>,
    /// nats-server's resident and peak memory holding the stream; with a cluster, each summed
    /// over the three nodes (the peak is the sum of each node's own peak).
    pub nats_rss_mib: Option<f64>,
    pub nats_peak_rss_mib: Option<f64>,
    /// From spawning `observatory project` on the committed store to its metrics reporting
    /// the incident projection committed at the stream's end with no lag (restore, consumer,
    /// first report).
    pub projector_caught_up_seconds: f64,
    pub projector_peak_rss_mib: Option<f64>,
    /// From spawning `observatory query` to `/health/ready` 200 (the counts netted).
    pub query_ready_seconds: f64,
    /// The first count request once ready.
    pub first_query_ms: f64,
    pub query_peak_rss_mib: Option<f64>,
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
pub fn memory_mib(pid: u32) -> (Option<f64>, Option<f64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| kib_line(&status, name).map(|kib| kib as f64 / 1024.0);
    (field("VmRSS:"), field("VmHWM:"))
}

/// The part of a process's resident memory it has offered back to the kernel (`MADV_FREE`),
/// which the kernel takes only when short: `LazyFree` in `/proc/<pid>/smaps_rollup`, in MiB.
pub fn lazy_free_mib(pid: u32) -> Option<f64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(kib_line(&rollup, "LazyFree:")? as f64 / 1024.0)
}

/// `VmRSS` and `VmHWM` summed over `pids`, in MiB; each `None` if any process's is unreadable,
/// since a sum missing a node would pass for less memory.
fn summed_memory_mib(pids: &[u32]) -> (Option<f64>, Option<f64>) {
    if pids.is_empty() {
        return (None, None);
    }
    let each: Vec<(Option<f64>, Option<f64>)> = pids.iter().map(|&pid| memory_mib(pid)).collect();
    (each.iter().map(|m| m.0).sum(), each.iter().map(|m| m.1).sum())
}

/// Starts `observatory ingest` on the filled stream and times it to ready.
pub async fn measure(
    nats: &Nats,
    service_dir: &Path,
    store: &Path,
    events_on_stream: u64,
    last_sequence: u64,
) -> Result<Restart> {
    let client = reqwest::Client::new();
    let mut args: Vec<String> =
        vec!["ingest".into(), "--data-dir".into(), service_dir.to_string_lossy().into_owned()];
    args.extend(nats.service_args());
    let started = Instant::now();
    let service = Service::start(&args, service_dir.join("restart-ingest.log"), &client).await?;
    let ingest_ready_seconds = started.elapsed().as_secs_f64();
    let ingest_peak_rss_mib = service.pid().and_then(|pid| memory_mib(pid).1);
    service.stop().await?;
    let (nats_rss_mib, nats_peak_rss_mib) = summed_memory_mib(&nats.pids());
    let (projector_caught_up_seconds, projector_peak_rss_mib) =
        projector_back(nats, service_dir, store, last_sequence, &client).await?;
    let (query_ready_seconds, first_query_ms, query_peak_rss_mib) =
        query_back(service_dir, store, &client).await?;
    Ok(Restart {
        events_on_stream,
        ingest_ready_seconds,
        ingest_peak_rss_mib,
        nats_rss_mib,
        nats_peak_rss_mib,
        projector_caught_up_seconds,
        projector_peak_rss_mib,
        query_ready_seconds,
        first_query_ms,
        query_peak_rss_mib,
    })
}

/// How long to wait for a restarted service before the bench gives up.
const BACK_WITHIN: Duration = Duration::from_secs(600);

/// Starts `observatory project` on the committed store and times it until its metrics say the
/// incident projection is committed at `last_sequence` with no lag.
async fn projector_back(
    nats: &Nats,
    service_dir: &Path,
    store: &Path,
    last_sequence: u64,
    client: &reqwest::Client,
) -> Result<(f64, Option<f64>)> {
    let address = format!("127.0.0.1:{}", crate::process::free_port()?);
    let log = std::fs::File::create(service_dir.join("restart-project.log"))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(crate::process::observatory_exe()?)
        .args(["project", "--data-dir"])
        .arg(service_dir)
        .arg("--store")
        .arg(store)
        .args(nats.service_args())
        .args(["--metrics-http", &address])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start observatory project")?;
    let metrics = format!("http://{address}/metrics");
    let committed = format!(
        "observatory_projector_committed_sequence{{projection=\"incidents\"}} {last_sequence}"
    );
    let no_lag = "observatory_projector_lag_events{projection=\"incidents\"} 0";
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("observatory project exited ({status}) before it caught up");
        }
        if let Ok(response) = client.get(&metrics).send().await
            && let Ok(text) = response.text().await
            && text.lines().any(|l| l == committed)
            && text.lines().any(|l| l == no_lag)
        {
            break;
        }
        if started.elapsed() > BACK_WITHIN {
            bail!("observatory project did not catch up within {BACK_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = child.id().and_then(|pid| memory_mib(pid).1);
    child.kill().await?;
    Ok((seconds, peak))
}

/// Starts `observatory query` on the committed store, times it to `/health/ready` (its
/// counts netted), then its first count request.
async fn query_back(
    service_dir: &Path,
    store: &Path,
    client: &reqwest::Client,
) -> Result<(f64, f64, Option<f64>)> {
    let args: Vec<String> = vec![
        "query".into(),
        "--data-dir".into(),
        service_dir.to_string_lossy().into_owned(),
        "--store".into(),
        store.to_string_lossy().into_owned(),
    ];
    let started = Instant::now();
    let service = Service::start(&args, service_dir.join("restart-query.log"), client).await?;
    let ready = format!("{}/health/ready", service.base_url);
    loop {
        if client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if started.elapsed() > BACK_WITHIN {
            bail!("observatory query was not ready within {BACK_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_seconds = started.elapsed().as_secs_f64();
    let first = Instant::now();
    let url = format!("{}/v1/incidents/counts?by=month,departement", service.base_url);
    let response = client.get(&url).send().await?;
    if !response.status().is_success() {
        bail!("GET {url} answered {}", response.status());
    }
    response.bytes().await?;
    let first_ms = first.elapsed().as_secs_f64() * 1000.0;
    let peak = service.pid().and_then(|pid| memory_mib(pid).1);
    service.stop().await?;
    Ok((ready_seconds, first_ms, peak))
}
