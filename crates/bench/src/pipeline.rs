//! Stages 2 and 3: the stream is filled with N realistic events by raw pipelined publishes
//! (the ingest's envelopes, subjects and headers), replayed raw by an ordered consumer that
//! decodes nothing (the limit), then projected to committed Parquet by the real
//! `observatory rebuild` process, whose wall time and peak RSS are read with `wait4`. Before
//! each raw replay the projection floor ([`crate::ProjectionFloor`]) replays the stream in a
//! process of its own, measured the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use futures::StreamExt;
use observatory_bus::{Bus, Outgoing};
use observatory_store::{Manifest, Projection, Store, TableId};
use serde::Serialize;
use tracing::{Instrument, info_span};

use crate::generate::Generator;
use crate::ingest::{publish_raw, sum_concurrently};
use crate::nats::Nats;
use crate::process::run_measured;
use crate::{cpu, progress_bar};

#[derive(Debug, Clone, Serialize)]
pub struct Fill {
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub event_bytes_avg: f64,
    pub stream_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub cpu_us_per_event: cpu::PerProcess,
    /// The slowest [`STRETCH`] consecutive messages, in seconds: a stall of nats-server's
    /// shows here as it shows in a rebuild's longest wait (timed per stretch, not per
    /// message, so the clock costs the replay nothing it could be compared on).
    pub slowest_stretch_seconds: f64,
}

/// Messages per timed stretch of a raw replay (about 5 ms of them at 200 000 per second).
pub const STRETCH: u64 = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub events: u64,
    pub wall_seconds: f64,
    /// Events from the stream to committed Parquet per second of the rebuild's wall time.
    pub events_per_s: f64,
    pub peak_rss_bytes: u64,
    pub peak_rss_mib: f64,
    pub user_cpu_seconds: f64,
    pub system_cpu_seconds: f64,
    /// nats-server CPU microseconds per event while the rebuild ran (summed over the nodes of
    /// a cluster).
    pub nats_cpu_us_per_event: Option<f64>,
    pub last_sequence: u64,
    pub incidents_counted: Option<u64>,
    pub counts_files: usize,
    pub counts_rows: u64,
    pub counts_bytes: u64,
    pub state_files: usize,
    pub state_rows: u64,
    pub state_bytes: u64,
    /// Seconds the rebuild waited for nats-server's next message, and how many of those waits
    /// were stalls, as the rebuild printed them (`None` if it did not).
    pub stream_wait_seconds: Option<f64>,
    pub stream_stalls: Option<u64>,
    pub longest_stream_wait_seconds: Option<f64>,
    /// How many times the rebuild recreated its consumer after a silence while the stream
    /// still owed messages.
    pub consumer_resumes: Option<u64>,
}

/// The rebuild's "waited for the stream X s, N stalls over M ms, the longest Y s; consumer
/// recreated R times" line, read back (Y and R were added later: older rebuilds leave them
/// out).
fn stream_waits(log: &str) -> Option<(f64, u64, Option<f64>, Option<u64>)> {
    let line = log.lines().rev().find_map(|l| l.strip_prefix("waited for the stream "))?;
    let (seconds, rest) = line.split_once(" s, ")?;
    let (stalls, rest) = rest.split_once(' ')?;
    let (rest, resumes) = match rest.split_once("; consumer recreated ") {
        Some((rest, resumes)) => (rest, resumes.strip_suffix(" times")?.parse().ok()),
        None => (rest, None),
    };
    let longest = rest
        .split_once("the longest ")
        .and_then(|(_, longest)| longest.strip_suffix(" s")?.parse().ok());
    Some((seconds.parse().ok()?, stalls.parse().ok()?, longest, resumes))
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub fill: Fill,
    /// The median of the raw replays, by events per second.
    pub raw_replay: Replay,
    /// The median of the rebuilds, by events per second.
    pub rebuild: Rebuild,
    /// The median of the projection floors, by events per second.
    pub floor: Rebuild,
    /// The median of the trials' ratios, each a rebuild's rate over the raw replay's just
    /// before it. Not the median rebuild over the median raw replay: those two may come from
    /// trials minutes apart, and with the machine drifting between trials that quotient fell
    /// outside every trial's own ratio (0.74× from trials of 0.90×, 0.71× and 0.84×).
    pub projection_ratio: f64,
    /// The median of the trials' floor ratios: what the parts leave a projection that decodes
    /// every event and writes it as a state row, but folds nothing ([`crate::ProjectionFloor`]).
    pub floor_ratio: f64,
    /// The median of the trials' rebuild rates over their floor's: what the fold costs.
    pub ratio_to_floor: f64,
    /// The projector's decoding, folding and state encoding timed on one thread, without
    /// nats-server: what a change to them is measured by.
    pub fold_alone: crate::fold_alone::FoldAlone,
    /// Every floor, raw replay and rebuild, in the order they ran (one of each per trial, the
    /// raw replay between the other two): one rebuild can lose seconds to a stall that the
    /// next does not meet.
    pub trials: Vec<Trial>,
    pub restart: crate::restart::Restart,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The projection floor, just before the raw replay.
    pub floor: Rebuild,
    pub raw_replay: Replay,
    pub rebuild: Rebuild,
    /// This trial's rebuild rate over its raw replay's.
    pub ratio: f64,
    /// This trial's floor rate over its raw replay's.
    pub floor_ratio: f64,
    /// This trial's rebuild rate over its floor's.
    pub ratio_to_floor: f64,
}

/// The middle element by `key` (the upper middle of an even count).
fn median_by<T: Clone>(items: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted[sorted.len() / 2].clone()
}

/// What the later stages need from this one.
pub struct Pipeline {
    pub store: PathBuf,
    pub service_dir: PathBuf,
    pub manifest: Manifest,
}

const CHUNK: usize = 10_000;

/// Generates on a thread of its own while the async side publishes, so generation overlaps
/// the publishes instead of adding to them.
async fn fill(bus: &Bus, events: u64, seed: u64, connections: usize) -> Result<Fill> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Outgoing>>(connections * 2);
    let generator = std::thread::spawn(move || {
        let mut generator = Generator::new(seed);
        let mut bytes = 0u64;
        let mut left = events;
        while left > 0 {
            let n = left.min(CHUNK as u64);
            let recorded_at = Utc::now();
            let chunk: Vec<Outgoing> =
                (0..n).map(|_| generator.next_event().outgoing(recorded_at)).collect();
            bytes += chunk.iter().map(|o| o.payload.len() as u64).sum::<u64>();
            if tx.blocking_send(chunk).is_err() {
                break;
            }
            left -= n;
        }
        bytes
    });
    let bar = progress_bar(events, "filling the stream (raw publish)");
    let started = Instant::now();
    let chunks =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
        );
    let jetstream = bus.jetstream();
    let stored =
        sum_concurrently(chunks, connections, &bar, |chunk| publish_raw(jetstream, chunk)).await?;
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let bytes = generator.join().map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    ensure!(stored == events, "stored {stored} of {events} events");
    let mut stream = bus.stream().await?;
    let info = stream.info().await.context("stream info")?;
    Ok(Fill {
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        event_bytes_avg: bytes as f64 / events.max(1) as f64,
        stream_bytes: info.state.bytes,
    })
}

/// The limit of reading the stream: an ordered consumer delivering every message, nothing
/// decoded. Timed from consumer creation, as the projector's time includes its own.
async fn raw_replay(bus: &Bus, events: u64, pids: &cpu::Pids) -> Result<Replay> {
    let bar = progress_bar(events, "raw replay (ordered consumer)");
    let before = cpu::sample(pids);
    let started = Instant::now();
    // The whole stream, as the incident projector reads it (see `Folding::SUBJECT_PREFIX`).
    // The client's consumer alone: the projector's resumption after a silence is its own.
    let mut messages = bus.ordered_replay("", false).await?.into_inner();
    let mut seen = 0u64;
    let mut stretch = Instant::now();
    let mut slowest = Duration::ZERO;
    while seen < events {
        let message = messages.next().await.context("the replay ended early")?.context("replay")?;
        std::hint::black_box(&message.payload);
        seen += 1;
        if seen.is_multiple_of(STRETCH) {
            slowest = slowest.max(stretch.elapsed());
            stretch = Instant::now();
            if seen.is_multiple_of(65_536) {
                bar.set_position(seen);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let slowest = slowest.max(stretch.elapsed());
    bar.finish_and_clear();
    Ok(Replay {
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        cpu_us_per_event: cpu::sample(pids).since(&before, events),
        slowest_stretch_seconds: slowest.as_secs_f64(),
    })
}

/// What replays the stream into committed Parquet: the projector, or the floor beneath it.
#[derive(Debug, Clone, Copy)]
enum Replayer {
    /// `observatory rebuild`.
    Rebuild,
    /// `observatory bench-projection-floor` ([`crate::ProjectionFloor`]).
    Floor,
}

impl Replayer {
    fn command(self) -> &'static str {
        match self {
            Replayer::Rebuild => "rebuild",
            Replayer::Floor => "bench-projection-floor",
        }
    }

    fn bar(self) -> &'static str {
        match self {
            Replayer::Rebuild => "rebuild (observatory rebuild → Parquet)",
            Replayer::Floor => "projection floor (state rows → Parquet, no fold)",
        }
    }
}

async fn rebuild(
    replayer: Replayer,
    nats: &Nats,
    store: &Path,
    service_dir: &Path,
    log: PathBuf,
    events: u64,
    version: u32,
) -> Result<(Rebuild, Manifest)> {
    let mut args: Vec<String> = vec![replayer.command().into()];
    args.extend(nats.service_args());
    args.extend([
        "--store".into(),
        store.to_string_lossy().into_owned(),
        "--data-dir".into(),
        service_dir.to_string_lossy().into_owned(),
    ]);
    let projection = Projection::new(
        Store::open(&store.to_string_lossy())?,
        observatory_store::ProjectionId::Incidents,
    );
    let bar = progress_bar(events, replayer.bar());
    let pids = cpu::Pids { nats: nats.pids(), service: None };
    let before = cpu::sample(&pids);
    let child = run_measured(args, log.clone());
    tokio::pin!(child);
    // The child's own bar is not drawn without a terminal: follow its commits instead.
    let usage = loop {
        tokio::select! {
            usage = &mut child => break usage?,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Ok(Some(manifest)) = projection.newest_manifest(version).await {
                    bar.set_position(manifest.last_sequence);
                }
            }
        }
    };
    let nats_cpu = cpu::sample(&pids).since(&before, events).nats_server;
    bar.finish_and_clear();
    let manifest =
        projection.serving_manifest().await?.context("the rebuild committed no manifest")?;
    ensure!(
        manifest.last_sequence == events,
        "the {} reached sequence {} of {events}",
        replayer.command(),
        manifest.last_sequence
    );
    let sum = |table: TableId| {
        let files = manifest.files(&table);
        (
            files.len(),
            files.iter().map(|f| f.rows).sum::<u64>(),
            files.iter().map(|f| f.bytes).sum::<u64>(),
        )
    };
    let (counts_files, counts_rows, counts_bytes) = sum(TableId::Counts);
    let (state_files, state_rows, state_bytes) = sum(TableId::State);
    let wall = usage.wall.as_secs_f64();
    let waits = stream_waits(&std::fs::read_to_string(&log).unwrap_or_default());
    let report = Rebuild {
        events,
        wall_seconds: wall,
        events_per_s: events as f64 / wall,
        peak_rss_bytes: usage.peak_rss_bytes,
        peak_rss_mib: usage.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        user_cpu_seconds: usage.user.as_secs_f64(),
        system_cpu_seconds: usage.system.as_secs_f64(),
        nats_cpu_us_per_event: nats_cpu,
        last_sequence: manifest.last_sequence,
        incidents_counted: manifest.stats.get("incidents_counted").copied(),
        counts_files,
        counts_rows,
        counts_bytes,
        state_files,
        state_rows,
        state_bytes,
        stream_wait_seconds: waits.map(|w| w.0),
        stream_stalls: waits.map(|w| w.1),
        longest_stream_wait_seconds: waits.and_then(|w| w.2),
        consumer_resumes: waits.and_then(|w| w.3),
    };
    Ok((report, manifest))
}

pub async fn run(
    work: &Path,
    events: u64,
    seed: u64,
    connections: usize,
    replicas: usize,
    trials_wanted: usize,
) -> Result<(PipelineReport, Pipeline)> {
    let dir = work.join("pipeline");
    let nats = Nats::start(&dir.join("nats"), replicas).await?;
    let bus = nats.bus().await?;
    let fill = fill(&bus, events, seed, connections).instrument(info_span!("fill", events)).await?;
    // Before the trials, with nats-server idle: the projector's own work has the machine.
    let fold_alone = tokio::task::spawn_blocking(move || crate::fold_alone::measure(events, seed))
        .await
        .context("the fold timed alone panicked")??;
    let pids = cpu::Pids { nats: nats.pids(), service: None };
    let store = dir.join("store");
    let service_dir = dir.join("service");
    std::fs::create_dir_all(&service_dir)?;
    let (floor_store, floor_dir) = (dir.join("floor-store"), dir.join("floor-service"));
    let mut trials = Vec::new();
    let mut manifest = None;
    for trial in 1..=u32::try_from(trials_wanted.max(1)).unwrap_or(u32::MAX) {
        // The floor's files are of no further use: each trial writes them afresh.
        for dir in [&floor_store, &floor_dir] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
        }
        let log = dir.join(format!("floor-{trial}.log"));
        let (floor, _) =
            rebuild(Replayer::Floor, &nats, &floor_store, &floor_dir, log, events, 1).await?;
        let raw_replay = raw_replay(&bus, events, &pids).await?;
        // Each rebuild is a new version of the same projection, as an operator's would be.
        let log = dir.join(format!("rebuild-{trial}.log"));
        let (rebuild, committed) =
            rebuild(Replayer::Rebuild, &nats, &store, &service_dir, log, events, trial).await?;
        let ratio = rebuild.events_per_s / raw_replay.events_per_s;
        let floor_ratio = floor.events_per_s / raw_replay.events_per_s;
        let ratio_to_floor = rebuild.events_per_s / floor.events_per_s;
        trials.push(Trial { floor, raw_replay, rebuild, ratio, floor_ratio, ratio_to_floor });
        manifest = Some(committed);
    }
    let _ = std::fs::remove_dir_all(&floor_store);
    drop(bus);
    let manifest = manifest.context("no rebuild ran")?;
    let restart =
        crate::restart::measure(&nats, &service_dir, &store, events, manifest.last_sequence)
            .await?;
    // The query stage reads the store only.
    drop(nats);
    let raw_replay = median_by(&trials, |t| t.raw_replay.events_per_s).raw_replay;
    let rebuild = median_by(&trials, |t| t.rebuild.events_per_s).rebuild;
    let floor = median_by(&trials, |t| t.floor.events_per_s).floor;
    let projection_ratio = median_by(&trials, |t| t.ratio).ratio;
    let floor_ratio = median_by(&trials, |t| t.floor_ratio).floor_ratio;
    let ratio_to_floor = median_by(&trials, |t| t.ratio_to_floor).ratio_to_floor;
    Ok((
        PipelineReport {
            fill,
            raw_replay,
            rebuild,
            floor,
            projection_ratio,
            floor_ratio,
            ratio_to_floor,
            fold_alone,
            trials,
            restart,
        },
        Pipeline { store, service_dir, manifest },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rebuilds_stream_waits_are_read_back() {
        let log = "rebuilt incidents v1 up to sequence 9: 9 incidents counted; CURRENT now v1\n\
                   waited for the stream 12.34 s, 3 stalls over 500 ms, the longest 2.05 s; \
                   consumer recreated 2 times\n";
        assert_eq!(super::stream_waits(log), Some((12.34, 3, Some(2.05), Some(2))));
        let older = "waited for the stream 12.34 s, 3 stalls over 500 ms, the longest 2.05 s\n";
        assert_eq!(super::stream_waits(older), Some((12.34, 3, Some(2.05), None)));
        let oldest = "waited for the stream 12.34 s, 3 stalls over 500 ms\n";
        assert_eq!(super::stream_waits(oldest), Some((12.34, 3, None, None)));
        assert_eq!(super::stream_waits("rebuilt incidents v1"), None);
    }
}
