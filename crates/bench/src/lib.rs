//! `observatory bench`: starts its own nats-server and object-store directory and measures
//! each stage next to the raw limit of the parts underneath, in the same run:
//!
//! 1. ingest: `POST /v1/incidents` (the real `observatory ingest` process) vs raw pipelined
//!    JetStream publishes of the same serialised events;
//! 2. projection: stream → committed Parquet (`observatory rebuild`) vs a raw ordered replay,
//!    and the projection floor between them ([`ProjectionFloor`]: decoding and writing without
//!    the fold);
//! 3. rebuild of N events: wall time and peak RSS of the projector process;
//! 4. query: five typical count requests (`observatory query`) vs DuckDB over the same files;
//! 5. survey estimation on 1 000 000 respondents, with and without 80 JK1 replicates.
//!
//! With `--replicas 3` the ingest and projection stages run on a 3-node nats-server cluster
//! with an R3 stream instead of one server.
//!
//! Figures go to a table on stdout and, with `--json`, to a file with the machine, the
//! versions and the command line. Targets are reported, never asserted.

mod cpu;
mod fold_alone;
mod formats;
mod generate;
mod ingest;
mod measure;
mod nats;
mod pipeline;
mod process;
mod projection_floor;
mod query;
mod restart;
mod survey;

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tracing::{Instrument, info_span};

pub use measure::{Latency, compare_rows, percentile};
pub use projection_floor::ProjectionFloor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Ingest,
    /// Fill, raw replay and rebuild (projection and rebuild figures).
    Projection,
    /// Needs the projection stage.
    Query,
    Survey,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events in the stream for the rebuild and query stages.
    #[arg(long, env = "OBSERVATORY_BENCH_EVENTS", default_value_t = 10_000_000, value_parser = at_least_one::<u64>)]
    pub events: u64,
    /// Write every figure, ratio, the machine and the command line to this JSON file.
    #[arg(long, env = "OBSERVATORY_BENCH_JSON")]
    pub json: Option<PathBuf>,
    /// Records pushed through the ingest per batch size (and published raw as the baseline).
    #[arg(long, env = "OBSERVATORY_BENCH_INGEST_RECORDS", default_value_t = 200_000, value_parser = at_least_one::<usize>)]
    pub ingest_records: usize,
    /// Records per ingest request (NDJSON body).
    #[arg(long, env = "OBSERVATORY_BENCH_BATCH_SIZES", value_delimiter = ',', default_values_t = [1_000, 10_000], value_parser = at_least_one::<usize>)]
    pub batch_sizes: Vec<usize>,
    /// Concurrent client connections (HTTP) or publishers (raw).
    #[arg(long, env = "OBSERVATORY_BENCH_CONNECTIONS", default_value_t = 4, value_parser = at_least_one::<usize>)]
    pub connections: usize,
    /// Timed runs of each query, after warm-up.
    #[arg(long, env = "OBSERVATORY_BENCH_QUERY_RUNS", default_value_t = 50, value_parser = at_least_one::<usize>)]
    pub query_runs: usize,
    /// Trials of the projection stage, each a projection floor, a raw replay and a rebuild:
    /// the projection ratio is the median trial's (each rebuild over the raw replay before
    /// it), every trial is reported beside it.
    #[arg(long, env = "OBSERVATORY_BENCH_PROJECTION_RUNS", default_value_t = 1, value_parser = at_least_one::<usize>)]
    pub projection_runs: usize,
    /// Timed runs of each survey estimate.
    #[arg(long, env = "OBSERVATORY_BENCH_SURVEY_RUNS", default_value_t = 5, value_parser = at_least_one::<usize>)]
    pub survey_runs: usize,
    /// Seed of the incident generator.
    #[arg(long, env = "OBSERVATORY_BENCH_SEED", default_value_t = 2014)]
    pub seed: u64,
    /// Stages to run (query needs projection).
    #[arg(long, env = "OBSERVATORY_BENCH_STAGES", value_delimiter = ',', default_values_t = [Stage::Ingest, Stage::Projection, Stage::Query, Stage::Survey])]
    pub stages: Vec<Stage>,
    /// Directory for the temporary nats-server store and object store (default: the system
    /// temp dir). A 10M-event stream takes about 6 GB.
    #[arg(long, env = "OBSERVATORY_BENCH_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the temporary directory (stream, projection, logs) instead of deleting it.
    #[arg(long, env = "OBSERVATORY_BENCH_KEEP")]
    pub keep: bool,
    /// Stream replicas: 1 runs the ingest and projection stages on one nats-server; 3 on a
    /// 3-node nats-server cluster on loopback, every service given the three URLs and
    /// `--replicas 3` (nats-server CPU and memory are then summed over the nodes).
    #[arg(long, env = "OBSERVATORY_BENCH_REPLICAS", default_value_t = 1, value_parser = parse_replicas)]
    pub replicas: usize,
}

impl BenchArgs {
    /// What one flag's parser cannot see: a batch size or a stage listed twice, which ran that
    /// ingest twice and reported its target twice.
    pub fn check(&self) -> Result<(), String> {
        if let Some(size) = repeated(&self.batch_sizes) {
            return Err(format!("--batch-sizes lists {size} twice; list each size once"));
        }
        if let Some(stage) = repeated(&self.stages) {
            return Err(format!("--stages lists {stage} twice; list each stage once"));
        }
        Ok(())
    }
}

/// A temporary file beside `path`, renamed to it once the figures are written.
fn figures_file(path: &std::path::Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    // Read and written as any file the user creates (the umask applies), not a temporary
    // file's owner-only mode.
    let mode = std::fs::Permissions::from_mode(0o666);
    tempfile::Builder::new().permissions(mode).tempfile_in(dir).with_context(|| {
        format!(
            "cannot write --json {}: its directory {} must exist and be writable",
            path.display(),
            dir.display()
        )
    })
}

/// The first value listed a second time.
fn repeated<T: PartialEq>(values: &[T]) -> Option<&T> {
    values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v)
}

/// A count the bench runs nothing with at zero (events, records, request sizes, connections,
/// runs): refused with the flag's name, where a zero once ran an empty stage and reported NaN
/// ratios, or was quietly taken as 1.
fn at_least_one<T>(value: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialEq + Default,
    T::Err: std::fmt::Display,
{
    let n: T =
        value.trim().parse().map_err(|e| format!("{e}; give a whole number of at least 1"))?;
    if n == T::default() {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn parse_replicas(value: &str) -> Result<usize, String> {
    match value {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err("the bench runs with 1 replica (one nats-server) or 3 (a 3-node cluster)".into()),
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_possible_value().expect("no skipped variants").get_name())
    }
}

pub(crate) fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = if total == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(total) };
    let template = if total == 0 {
        "{spinner} {msg} ({elapsed})"
    } else {
        "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} ({per_sec}, eta {eta})"
    };
    bar.set_style(
        ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub observatory: &'static str,
    pub build: &'static str,
    pub nats_server: Option<String>,
    pub rustc: Option<String>,
    pub duckdb: Option<String>,
    pub python: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub value: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: Machine,
    pub versions: Versions,
    pub events: u64,
    pub ingest_records: usize,
    pub connections: usize,
    /// Stream replicas: 1 on one nats-server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// What the nats-server CPU and memory figures cover: one process, or the cluster's
    /// three summed.
    pub nats_figures: &'static str,
    pub notes: Vec<String>,
    pub ingest: Option<ingest::IngestReport>,
    pub projection: Option<pipeline::PipelineReport>,
    pub query: Option<query::QueryReport>,
    pub survey: Option<survey::SurveyReport>,
    pub targets: Vec<Target>,
    pub total_seconds: f64,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let text = if text.is_empty() {
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    } else {
        text
    };
    (output.status.success() && !text.is_empty()).then_some(text)
}

fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_total_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned());
    Machine {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu,
        memory_total_bytes,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
    }
}

fn versions() -> Versions {
    let nats = observatory_bus::find_nats_server().ok();
    Versions {
        observatory: env!("CARGO_PKG_VERSION"),
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        nats_server: nats.and_then(|path| command_output(&path.to_string_lossy(), &["--version"])),
        rustc: command_output("rustc", &["--version"]),
        duckdb: None,
        python: None,
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@".contains(&b));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}

fn targets(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    let check = |name: String, goal: &str, value: Option<f64>, met: fn(f64) -> bool| Target {
        name,
        goal: goal.to_owned(),
        value,
        met: value.map(met),
    };
    if let Some(ingest) = &report.ingest {
        for run in &ingest.runs {
            targets.push(check(
                format!("ingest {}/request vs raw publish", run.records_per_request),
                "≥ 0.9×",
                Some(run.ratio),
                |v| v >= 0.9,
            ));
        }
    }
    if let Some(p) = &report.projection {
        targets.push(check(
            "projection vs raw replay".into(),
            "≥ 0.85×",
            Some(p.projection_ratio),
            |v| v >= 0.85,
        ));
        targets.push(check(
            format!(
                "ingest ready after restart, {} events on the stream",
                p.restart.events_on_stream
            ),
            "≤ 3 s",
            Some(p.restart.ingest_ready_seconds),
            |v| v <= 3.0,
        ));
        targets.push(check(
            format!(
                "projector caught up after restart, {} events on the stream",
                p.restart.events_on_stream
            ),
            "≤ 5 s",
            Some(p.restart.projector_caught_up_seconds),
            |v| v <= 5.0,
        ));
        targets.push(check(
            format!("projector peak RSS, rebuild of {} events", p.rebuild.events),
            "≤ 768 MiB (for 10M events)",
            Some(p.rebuild.peak_rss_mib),
            |v| v <= 768.0,
        ));
    }
    if let Some(q) = &report.query {
        targets.push(check(
            "query p99 vs DuckDB (worst of five)".into(),
            "≤ 0.8×",
            q.worst_p99_ratio,
            |v| v <= 0.8,
        ));
        targets.push(check(
            format!(
                "first count query after a new manifest (a rebuild's switch), slowest of {}",
                q.after_switch.switches.len()
            ),
            "≤ 100 ms",
            Some(q.after_switch.first_request_ms),
            |v| v <= 100.0,
        ));
    }
    targets
}

fn rate(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn opt_ms(latency: &Option<Latency>) -> String {
    latency.as_ref().map_or("—".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms))
}

/// The human-readable table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let gib = report
        .machine
        .memory_total_bytes
        .map_or("?".into(), |b| format!("{:.1} GiB", b as f64 / 1073741824.0));
    let _ = writeln!(out, "observatory bench — {}", report.date);
    let _ = writeln!(
        out,
        "machine: {} cores ({}), {gib}; {} build; {}; {}",
        report.machine.cores,
        report.machine.cpu.as_deref().unwrap_or("?"),
        report.versions.build,
        report.versions.nats_server.as_deref().unwrap_or("nats-server ?"),
        report.versions.rustc.as_deref().unwrap_or("rustc ?"),
    );
    let _ = writeln!(out, "command: {}", report.command);
    // Only a cluster says so, so that a run on one server reads as it always has.
    let cluster = report.replicas > 1;
    if cluster {
        let _ = writeln!(
            out,
            "nats: {}-node nats-server cluster on loopback, stream replicas {}; nats-server CPU and memory are {}",
            report.replicas, report.replicas, report.nats_figures
        );
    }
    if let Some(ingest) = &report.ingest {
        let _ = writeln!(
            out,
            "\n1. ingest — {} records per batch size, {} concurrent connections, records {:.0} B as NDJSON, events {:.0} B",
            report.ingest_records,
            ingest.connections,
            ingest.record_bytes_avg,
            ingest.event_bytes_avg
        );
        let _ = writeln!(
            out,
            "   {:<28} {:>14} {:>18} {:>7}   CPU µs/event ({} / ingest / client)",
            "",
            "POST ev/s",
            "raw publish ev/s",
            "ratio",
            if cluster { "nats, 3 nodes summed" } else { "nats" }
        );
        for run in &ingest.runs {
            let c = &run.http_cpu_us_per_event;
            let f = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "   {:<28} {:>14} {:>18} {:>6.2}×   {} / {} / {}",
                format!("NDJSON, {} records/request", run.records_per_request),
                rate(run.http_events_per_s),
                rate(run.raw_events_per_s),
                run.ratio,
                f(c.nats_server),
                f(c.service),
                f(c.bench_client),
            );
            // A raw baseline beside the plain raw publish and the HTTP ingest.
            let baseline = |out: &mut String,
                            label: &str,
                            events_per_s: f64,
                            cpu: &cpu::PerProcess| {
                let _ = writeln!(
                    out,
                    "   {:<28} {label} {} ev/s ({:.2}× raw; HTTP / it {:.2}×), CPU µs/event {} / - / {}",
                    "",
                    rate(events_per_s),
                    events_per_s / run.raw_events_per_s,
                    run.http_events_per_s / events_per_s,
                    f(cpu.nats_server),
                    f(cpu.bench_client),
                );
            };
            baseline(
                &mut out,
                "raw with the ingest's expected-sequence header, just before the HTTP ingest",
                run.raw_expected_events_per_s,
                &run.raw_expected_cpu_us_per_event,
            );
            let _ = writeln!(
                out,
                "   {:<28} one subject per source {} ev/s ({:.2}× raw)",
                "",
                rate(run.raw_per_source_events_per_s),
                run.raw_per_source_events_per_s / run.raw_events_per_s,
            );
            baseline(
                &mut out,
                "raw with the ingest's expected-sequence header, just after the HTTP ingest",
                run.raw_expected_after_events_per_s,
                &run.raw_expected_after_cpu_us_per_event,
            );
            let _ = writeln!(
                out,
                "   {:<28} HTTP / the raw publish of the same messages, before and after it (harmonic mean) {:.2}×",
                "", run.ratio_to_expected_bracketed,
            );
            let _ = writeln!(
                out,
                "   {:<28} floor ingest (HTTP, serde_json reading and writing back each record, the same messages published) {} / {} ev/s just before / after the HTTP ingest; it / the raw publish, before and after (harmonic means) {:.2}×; HTTP / it {:.2}×",
                "",
                rate(run.floor_events_per_s),
                rate(run.floor_after_events_per_s),
                run.floor_ratio_bracketed,
                run.ratio_to_floor_bracketed,
            );
            baseline(
                &mut out,
                "plain raw publish again, after the HTTP ingest",
                run.raw_after_events_per_s,
                &run.raw_after_cpu_us_per_event,
            );
            let _ = writeln!(
                out,
                "   {:<28} HTTP / the raw publish before and after it (harmonic mean) {:.2}×",
                "", run.ratio_bracketed,
            );
            let above = c.service.zip(run.raw_cpu_us_per_event.bench_client).map(|(s, r)| s - r);
            let _ = writeln!(
                out,
                "   {:<28} ingest CPU above the raw client {} µs/event; one thread, µs/record: the ingest reading, validating and encoding {:.2}; serde_json reading and writing back {:.2} (a struct borrowing its strings), {:.2} (a Value)",
                "",
                f(above),
                run.prepare_us_per_record,
                run.json_floor_us_per_record,
                run.json_value_us_per_record,
            );
            let health = &run.health_during_ingest;
            let _ = writeln!(
                out,
                "   {:<28} GET /health during the HTTP ingest, every 5 ms: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes)",
                "", health.p50_ms, health.p99_ms, health.max_ms, health.runs,
            );
        }
    }
    if let Some(p) = &report.projection {
        let _ = writeln!(
            out,
            "\n2. projection — {} events ({:.0} B each, stream {:.2} GB; filled at {} ev/s)",
            p.fill.events,
            p.fill.event_bytes_avg,
            p.fill.stream_bytes as f64 / 1e9,
            rate(p.fill.events_per_s)
        );
        let _ = writeln!(
            out,
            "   stream → committed Parquet {:>12} ev/s   raw ordered replay {:>12} ev/s   ratio {:.2}× (the median trial's)",
            rate(p.rebuild.events_per_s),
            rate(p.raw_replay.events_per_s),
            p.projection_ratio
        );
        let _ = writeln!(
            out,
            "   projection floor (decoding, state rows to Parquet, no fold) {:>12} ev/s: {:.2}× of the raw replay, the rebuild {:.2}× of it (the median trial's)",
            rate(p.floor.events_per_s),
            p.floor_ratio,
            p.ratio_to_floor
        );
        let alone = &p.fold_alone;
        let _ = writeln!(
            out,
            "   the projector's own work on one thread, first {} events: decoding {:.2} µs/event, folding {:.2}, encoding state rows {:.2}",
            alone.events,
            alone.decode_us_per_event,
            alone.fold_us_per_event,
            alone.encode_us_per_event
        );
        if p.trials.len() > 1 {
            let _ = writeln!(
                out,
                "   medians of {} trials, each a floor, a raw replay, then a rebuild:",
                p.trials.len()
            );
            for (n, t) in p.trials.iter().enumerate() {
                let r = &t.rebuild;
                let resumes = r
                    .consumer_resumes
                    .filter(|&n| n > 0)
                    .map(|n| format!(", consumer recreated {n}×"))
                    .unwrap_or_default();
                let waits = match (r.stream_wait_seconds, r.longest_stream_wait_seconds) {
                    (Some(all), Some(longest)) => format!(
                        ", waited {all:.1} s for the stream (longest {longest:.2} s{resumes})"
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "     {}. {:>12} ev/s   raw {:>12} ev/s (slowest {} messages {:.2} s)   ratio {:.2}×   floor {:>12} ev/s ({:.2}×)   CPU {:.1} s user{waits}",
                    n + 1,
                    rate(r.events_per_s),
                    rate(t.raw_replay.events_per_s),
                    pipeline::STRETCH,
                    t.raw_replay.slowest_stretch_seconds,
                    t.ratio,
                    rate(t.floor.events_per_s),
                    t.floor_ratio,
                    r.user_cpu_seconds
                );
            }
        }
        let r = &p.rebuild;
        let _ = writeln!(
            out,
            "\n3. rebuild of {} events — wall {:.1} s, peak RSS {:.0} MiB, CPU {:.1} s user + {:.1} s system",
            r.events, r.wall_seconds, r.peak_rss_mib, r.user_cpu_seconds, r.system_cpu_seconds
        );
        if let (Some(waited), Some(stalls)) = (r.stream_wait_seconds, r.stream_stalls) {
            let longest = r
                .longest_stream_wait_seconds
                .map(|s| format!(", the longest {s:.2} s"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "   waited for nats-server's next message {waited:.1} s in all ({stalls} waits over 0.5 s{longest}){}",
                r.consumer_resumes
                    .map(|n| format!("; consumer recreated {n} times after a silence"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "   committed: {} counts files ({} rows, {:.1} MB), {} state files ({} rows, {:.1} MB); {} incidents counted",
            r.counts_files,
            r.counts_rows,
            r.counts_bytes as f64 / 1e6,
            r.state_files,
            r.state_rows,
            r.state_bytes as f64 / 1e6,
            r.incidents_counted.map_or("?".into(), |n| n.to_string())
        );
        let t = &p.restart;
        let mib = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
        let nats_memory = if cluster {
            format!(
                "the 3 nats-server nodes hold the stream in {} MiB summed (sum of their peaks {} MiB)",
                mib(t.nats_rss_mib),
                mib(t.nats_peak_rss_mib)
            )
        } else {
            format!(
                "nats-server holds the stream in {} MiB (peak {} MiB)",
                mib(t.nats_rss_mib),
                mib(t.nats_peak_rss_mib)
            )
        };
        let _ = writeln!(
            out,
            "   restart on {} events: ingest ready in {:.2} s (peak RSS {} MiB); {nats_memory}",
            t.events_on_stream,
            t.ingest_ready_seconds,
            mib(t.ingest_peak_rss_mib),
        );
        let _ = writeln!(
            out,
            "   projector restored and caught up in {:.2} s (peak RSS {} MiB); query ready (counts netted) in {:.2} s, first count answer {:.1} ms (peak RSS {} MiB)",
            t.projector_caught_up_seconds,
            mib(t.projector_peak_rss_mib),
            t.query_ready_seconds,
            t.first_query_ms,
            mib(t.query_peak_rss_mib)
        );
    }
    if let Some(q) = &report.query {
        let _ = writeln!(
            out,
            "\n4. query — {} runs each after warm-up, over {} counts files ({} rows); DuckDB {} ({})",
            q.runs,
            q.counts_files,
            q.counts_rows,
            q.duckdb.version.as_deref().unwrap_or("-"),
            q.duckdb.status
        );
        let _ = writeln!(
            out,
            "   {:<34} {:>5} {:>17} {:>17} {:>7} {:>15} {:>17} {:>17} {:>9} {:>6}",
            "p50 / p99 ms",
            "rows",
            "ours HTTP exact",
            "ours HTTP public",
            "cost",
            "ours engine",
            "DuckDB Parquet",
            "DuckDB memory",
            "p99 ratio",
            "equal"
        );
        for r in &q.queries {
            let _ = writeln!(
                out,
                "   {:<34} {:>5} {:>17} {:>17} {:>7} {:>15} {:>17} {:>17} {:>9} {:>6}",
                r.name,
                r.rows,
                format!("{:.1} / {:.1}", r.http.p50_ms, r.http.p99_ms),
                format!("{:.1} / {:.1}", r.public.p50_ms, r.public.p99_ms),
                format!("{:+.0}%", r.perturbation_cost * 100.0),
                format!("{:.1} / {:.1}", r.engine.p50_ms, r.engine.p99_ms),
                opt_ms(&r.duckdb_parquet),
                opt_ms(&r.duckdb_memory),
                r.p99_ratio_vs_duckdb.map_or("—".into(), |v| format!("{v:.2}×")),
                match r.equal {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "—",
                }
            );
        }
        let a = &q.after_switch;
        let _ = writeln!(
            out,
            "   after a rebuild's switch, {} switches: the first count request {:.1} ms at most, {:.1} ms median",
            a.switches.len(),
            a.first_request_ms,
            a.first_request_median_ms
        );
        for s in &a.switches {
            let meanwhile = s.during_netting.as_ref().map_or("no request meanwhile".into(), |d| {
                format!(
                    "{} requests meanwhile, p50 {:.1} ms, max {:.1} ms (sent {:.2} s after the switch)",
                    d.runs,
                    d.p50_ms,
                    d.max_ms,
                    s.slowest_during_sent_after_s.unwrap_or(0.0)
                )
            });
            let _ = writeln!(
                out,
                "     {:.1} ms (answered from version {}); the new version served after {:.2} s; {meanwhile}; after it, p50 {:.1} ms, max {:.1} ms",
                s.first_request_ms,
                s.first_request_version,
                s.new_version_served_after_s,
                s.after_netting.p50_ms,
                s.after_netting.max_ms
            );
        }
        if let (Some(rss), Some(peak)) = (q.service_rss_mib, q.service_peak_rss_mib) {
            let lazy = q.service_lazy_free_mib.unwrap_or(0.0);
            let _ = writeln!(
                out,
                "   the query service after the switches: {rss:.0} MiB resident ({lazy:.0} MiB of it offered back to the kernel), peak {peak:.0} MiB"
            );
        }
        if !q.formats.is_empty() {
            let _ = writeln!(
                out,
                "   formats (public), p50 / p99 ms and ratio to the JSON of the same cells (target ≤ 1.2×):"
            );
            for f in &q.formats {
                let _ = writeln!(
                    out,
                    "   {:<26} JSON {:.1} / {:.1}",
                    f.label, f.json.p50_ms, f.json.p99_ms
                );
                for t in &f.formats {
                    let _ = writeln!(
                        out,
                        "   {:<26} {:<14} {:.1} / {:.1}  ({:.2}× / {:.2}×)",
                        "", t.format, t.latency.p50_ms, t.latency.p99_ms, t.p50_ratio, t.p99_ratio
                    );
                }
            }
        }
        for r in &q.queries {
            if let Some(note) = &r.note {
                let _ = writeln!(out, "   note ({}): {note}", r.name);
            }
            if let Some(difference) = &r.difference {
                let _ = writeln!(out, "   DIFFERENT ({}): {difference}", r.name);
            }
        }
    }
    if let Some(s) = &report.survey {
        let _ = writeln!(
            out,
            "\n5. survey estimation — {} respondents ({} strata, {} PSUs), mean + total by {} domains ({} estimates)",
            s.respondents, s.strata, s.psus, s.domains, s.estimates
        );
        let _ = writeln!(
            out,
            "   linearisation (stratified two-stage, fpc) p50 {:.0} ms (max {:.0});  {} JK1 replicates p50 {:.0} ms (max {:.0});  {:.1}× the cost",
            s.linearisation.p50_ms,
            s.linearisation.max_ms,
            s.replicates,
            s.jk1_replicates.p50_ms,
            s.jk1_replicates.max_ms,
            s.replicate_cost_ratio
        );
    }
    if !report.targets.is_empty() {
        let _ = writeln!(out, "\ntargets (goals, not assertions)");
        for t in &report.targets {
            let value = t.value.map_or("—".into(), |v| format!("{v:.2}"));
            let met = match t.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "n/a",
            };
            let _ = writeln!(out, "   {:<52} {:>9}  goal {:<28} {met}", t.name, value, t.goal);
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out, "total {:.0} s", report.total_seconds);
    out
}

/// Runs the benchmark.
pub async fn run(args: &BenchArgs) -> Result<()> {
    args.check().map_err(anyhow::Error::msg)?;
    // The figures' file is opened before a run that can take a quarter of an hour, not after it:
    // a path that cannot be written fails now, and the file appears whole or not at all.
    let json =
        args.json.as_deref().map(|path| figures_file(path).map(|file| (file, path))).transpose()?;
    let started = Instant::now();
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let temp = tempfile::Builder::new().prefix("observatory-bench-").tempdir_in(&parent)?;
    let work = temp.path().to_path_buf();
    eprintln!("observatory bench: working in {}", work.display());
    observatory_bus::find_nats_server()?;

    let machine = machine();
    let nats = if args.replicas > 1 { "the 3 nats-server nodes" } else { "nats-server" };
    let mut notes = vec![format!(
        "{} cores: the bench client, the service under test and {nats} share them, so every figure \
         includes that contention (the raw baselines compete with {nats} only)",
        machine.cores
    )];
    if cfg!(debug_assertions) {
        notes.push("debug build: figures are meaningless; build with cargo build --release".into());
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let wants = |stage: Stage| args.stages.contains(&stage);

    let ingest = if wants(Stage::Ingest) {
        let settings = ingest::Settings {
            records: args.ingest_records,
            per_request: args.batch_sizes.clone(),
            connections: args.connections,
            seed: args.seed,
            replicas: args.replicas,
        };
        Some(ingest::run(&work, &settings, &client).instrument(info_span!("ingest stage")).await?)
    } else {
        None
    };
    let mut pipeline = None;
    let projection = if wants(Stage::Projection) {
        let (report, state) = pipeline::run(
            &work,
            args.events,
            args.seed.wrapping_add(1),
            args.connections,
            args.replicas,
            args.projection_runs,
        )
        .instrument(info_span!("projection stage", events = args.events))
        .await?;
        pipeline = Some(state);
        Some(report)
    } else {
        None
    };
    let query = match (&pipeline, wants(Stage::Query)) {
        (Some(p), true) => Some(
            query::run(&work, &p.store, &p.service_dir, &p.manifest, args.query_runs, &client)
                .instrument(info_span!("query stage"))
                .await?,
        ),
        (None, true) => {
            notes.push("query stage skipped: it needs the projection stage".into());
            None
        }
        _ => None,
    };
    drop(pipeline);
    let survey = if wants(Stage::Survey) {
        let bar = progress_bar(0, "survey estimation, 1 000 000 respondents");
        let report = survey::run(args.survey_runs).instrument(info_span!("survey stage")).await?;
        bar.finish_and_clear();
        Some(report)
    } else {
        None
    };

    let mut versions = versions();
    if let Some(q) = &query {
        versions.duckdb = q.duckdb.version.clone();
        versions.python = q.duckdb.python.clone();
        if q.duckdb.status != "ran" {
            notes.push(format!("DuckDB comparison {}", q.duckdb.status));
        }
    }
    let mut report = Report {
        command: std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" "),
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine,
        versions,
        events: args.events,
        ingest_records: args.ingest_records,
        connections: args.connections,
        replicas: args.replicas,
        nats_figures: if args.replicas > 1 {
            "summed over the 3 nodes of the cluster"
        } else {
            "of the one nats-server"
        },
        notes,
        ingest,
        projection,
        query,
        survey,
        targets: Vec::new(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    report.targets = targets(&report);
    print!("{}", render(&report));
    if let Some((mut file, path)) = json {
        file.write_all(&serde_json::to_vec_pretty(&report)?)
            .and_then(|()| file.persist(path).map(drop).map_err(|e| e.error))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    if args.keep {
        let kept = temp.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    /// A zero (or no number) for any count is refused naming the flag, not run as an empty
    /// stage or quietly taken as 1; 1 is accepted.
    #[test]
    fn a_count_of_zero_is_refused_naming_its_flag() {
        for flag in [
            "--events",
            "--ingest-records",
            "--batch-sizes",
            "--connections",
            "--query-runs",
            "--projection-runs",
            "--survey-runs",
        ] {
            for (value, why) in [("0", "at least 1"), ("", "at least 1"), ("-3", "at least 1")] {
                let error = Bench::try_parse_from(["bench", &format!("{flag}={value}")])
                    .expect_err(flag)
                    .to_string();
                assert!(error.contains(flag) && error.contains(why), "{flag}={value}: {error}");
            }
            assert!(Bench::try_parse_from(["bench", flag, "1"]).is_ok(), "{flag} 1");
        }
        let error = Bench::try_parse_from(["bench", "--batch-sizes", "1000,0"]).unwrap_err();
        assert!(error.to_string().contains("--batch-sizes"), "{error}");
        let parsed = Bench::try_parse_from(["bench", "--batch-sizes", "1000,10000"]).unwrap();
        assert_eq!(parsed.args.batch_sizes, [1_000, 10_000]);
    }

    /// The figures' file is checked before the run and written whole at its end, readable as
    /// any file the user creates.
    #[test]
    fn the_figures_file_is_checked_first_and_appears_whole() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/out.json");
        let error = format!("{:#}", figures_file(&missing).unwrap_err());
        assert!(error.contains("--json") && error.contains("must exist"), "{error}");

        let path = dir.path().join("out.json");
        let mut file = figures_file(&path).unwrap();
        assert!(!path.exists(), "nothing at the path before the figures are written");
        file.write_all(b"{}").unwrap();
        file.persist(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, b"{}").unwrap();
        assert_eq!(mode(&path) & 0o777, mode(&plain) & 0o777, "the mode of any file created here");
    }

    #[test]
    fn a_batch_size_or_a_stage_listed_twice_is_refused() {
        let check = |args: &[&str]| {
            let mut argv = vec!["bench"];
            argv.extend_from_slice(args);
            Bench::try_parse_from(argv).unwrap().args.check()
        };
        assert_eq!(
            check(&["--batch-sizes", "500,1000,500"]),
            Err("--batch-sizes lists 500 twice; list each size once".into())
        );
        assert_eq!(
            check(&["--stages", "ingest,query,ingest"]),
            Err("--stages lists ingest twice; list each stage once".into())
        );
        assert_eq!(check(&["--batch-sizes", "500,1000", "--stages", "ingest,query"]), Ok(()));
        assert_eq!(check(&[]), Ok(()));
    }
}
