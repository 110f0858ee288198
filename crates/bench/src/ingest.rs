//! Stage 1: events/s accepted by `POST /v1/incidents` (the real `observatory ingest` process)
//! next to raw pipelined JetStream publishes of the same serialised events from this process,
//! and next to the least an HTTP ingest of the same parts does (the floor ingest), each
//! publish on an empty nats-server of its own.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use observatory_bus::async_nats::jetstream;
use observatory_bus::async_nats::jetstream::context::PublishError;
use observatory_bus::async_nats::jetstream::publish::PublishAck;
use observatory_bus::{Bus, Outgoing};
use observatory_model::RecordedAt;
use observatory_reference::Crosswalks;
use serde::Serialize;
use tracing::{Instrument, info_span};

use crate::generate::{AGENCIES, Generator};
use crate::measure::Latency;
use crate::nats::Nats;
use crate::process::{Service, add_agency};
use crate::{cpu, progress_bar};

#[derive(Debug, Clone, Serialize)]
pub struct IngestRun {
    pub records_per_request: usize,
    pub records: usize,
    pub requests: usize,
    pub http_seconds: f64,
    pub http_events_per_s: f64,
    pub raw_seconds: f64,
    pub raw_events_per_s: f64,
    /// HTTP ingest over raw publish (target ≥ 0.9).
    pub ratio: f64,
    /// CPU microseconds per event of each process while the HTTP ingest ran.
    pub http_cpu_us_per_event: cpu::PerProcess,
    /// The same while the raw publishes ran (no ingest process involved).
    pub raw_cpu_us_per_event: cpu::PerProcess,
    /// Raw publishes of the same events with `Nats-Expected-Last-Subject-Sequence: 0` on the
    /// events of incidents with one event in the run, as the ingest sends on every event: the
    /// server-side cost of the idempotency the ingest relies on.
    pub raw_expected_events_per_s: f64,
    pub raw_expected_cpu_us_per_event: cpu::PerProcess,
    /// HTTP ingest over the raw publish with the ingest's headers just before it.
    pub ratio_to_expected: f64,
    /// The raw publish with the ingest's headers again, right after the HTTP ingest.
    pub raw_expected_after_events_per_s: f64,
    pub raw_expected_after_cpu_us_per_event: cpu::PerProcess,
    /// HTTP ingest over the raw publish of the same messages, headers included: the two raw
    /// publishes with the ingest's headers run just before and just after it, and their mean
    /// time per event (the harmonic mean of their rates) stands for a raw publish during it.
    /// Every publish has an empty server of its own, so this takes out the machine's drift
    /// over the stage, not the stream's growth.
    pub ratio_to_expected_bracketed: f64,
    /// Raw publishes of the same events on one subject per source (the layout before one
    /// subject per incident), message id only.
    pub raw_per_source_events_per_s: f64,
    /// The plain raw publish again, after the HTTP ingest.
    pub raw_after_events_per_s: f64,
    pub raw_after_cpu_us_per_event: cpu::PerProcess,
    /// HTTP ingest over the plain raw publish before it (`raw_events_per_s`) and after it
    /// (`raw_after_events_per_s`), as `ratio_to_expected_bracketed` does for the raw publish
    /// with the ingest's headers.
    pub ratio_bracketed: f64,
    /// Messages on the stream after each publish, in the order they ran (one subject per
    /// source, plain, expected sequence, floor, HTTP, floor after, expected sequence after,
    /// plain after): each publish's own, since each had an empty server.
    pub stream_messages: Vec<u64>,
    /// The floor ingest ([`floor_ingest`]) just before the HTTP ingest: the least an HTTP
    /// ingest built on the same parts does, on an empty server like every publish.
    pub floor_events_per_s: f64,
    /// The bench's process (client and floor ingest in one) and nats-server, CPU µs per event.
    pub floor_cpu_us_per_event: cpu::PerProcess,
    /// The floor ingest again, right after the HTTP ingest.
    pub floor_after_events_per_s: f64,
    /// The floor ingest before and after the HTTP ingest (harmonic mean) over the plain raw
    /// publish before and after it: the most any ingest of these parts could reach of the
    /// ratio the target is set on.
    pub floor_ratio_bracketed: f64,
    /// HTTP ingest over the floor ingest before and after it (harmonic mean): how much of
    /// what the parts allow the ingest reaches.
    pub ratio_to_floor_bracketed: f64,
    /// What the least an ingest does to a record costs with the parts it is built from,
    /// CPU µs per record on one thread: serde_json reads the record's line into a struct of
    /// the record's fields, borrowing its strings from the body, and writes that struct back
    /// as a JSON document (an event carries the record's fields). Beside
    /// `http_cpu_us_per_event.service` minus the raw client's, it says how much of the
    /// ingest's own work is the JSON it must read and write.
    pub json_floor_us_per_record: f64,
    /// The same read into a `serde_json::Value` (an owned string for each value), the way a
    /// service that checks fields it was not told about reads a record.
    pub json_value_us_per_record: f64,
    /// The ingest's own work on the same records before it decides and publishes (read,
    /// validated, encoded with their stamps and messages: `observatory_ingest::prepare`), CPU µs
    /// per record on one thread.
    pub prepare_us_per_record: f64,
    /// How long the ingest took to answer `GET /health` during the HTTP ingest, sent every
    /// 5 ms on a connection of its own: what any other request meets while large batches are
    /// read and published (a batch read on one of the runtime's workers would hold up every
    /// task queued there).
    pub health_during_ingest: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub connections: usize,
    pub record_bytes_avg: f64,
    pub event_bytes_avg: f64,
    pub runs: Vec<IngestRun>,
}

/// One request's worth of records, as NDJSON for the HTTP side and as ready-to-publish events
/// (what the ingest would publish for them) for the raw side.
struct Batch {
    agency: usize,
    body: Bytes,
    events: Vec<Outgoing>,
}

fn batches(
    generator: &mut Generator,
    records: usize,
    per_request: usize,
) -> (Vec<Batch>, usize, usize) {
    let recorded_at = Utc::now();
    let mut pending: Vec<Batch> = (0..AGENCIES.len())
        .map(|agency| Batch { agency, body: Bytes::new(), events: Vec::new() })
        .collect();
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new(); AGENCIES.len()];
    let mut done = Vec::new();
    let (mut record_bytes, mut event_bytes) = (0, 0);
    let mut close = |agency: usize, pending: &mut Vec<Batch>, bodies: &mut Vec<Vec<u8>>| {
        let events = std::mem::take(&mut pending[agency].events);
        let body = Bytes::from(std::mem::take(&mut bodies[agency]));
        if !events.is_empty() {
            done.push(Batch { agency, body, events });
        }
    };
    for _ in 0..records {
        let generated = generator.next_event();
        let record = generated.record_json();
        let outgoing = generated.outgoing(recorded_at);
        record_bytes += record.len();
        event_bytes += outgoing.payload.len();
        let agency = generated.agency;
        bodies[agency].extend_from_slice(&record);
        bodies[agency].push(b'\n');
        pending[agency].events.push(outgoing);
        if pending[agency].events.len() == per_request {
            close(agency, &mut pending, &mut bodies);
        }
    }
    for agency in 0..AGENCIES.len() {
        close(agency, &mut pending, &mut bodies);
    }
    (done, record_bytes, event_bytes)
}

/// Publishes one batch with pipelined acks, straight on the async-nats context: each message
/// is sent without waiting for the previous acks, and acks are collected while sending. They
/// must be: an unawaited ack future holds one of the context's in-flight permits, so a batch
/// larger than `max_ack_inflight` that awaited nothing until the end would wait forever.
///
/// The acks are awaited oldest first, the way the ingest's publisher awaits them (a stream
/// answers one connection's publishes in order): a set of futures woken as each completes
/// costs a task and a waker per message, which would make this baseline slower than the
/// ingest's own publishing and the ratios kinder than they are. The headers are built by
/// [`Outgoing::headers`], as the ingest builds them, for the same reason.
pub async fn publish_raw(jetstream: &jetstream::Context, events: Vec<Outgoing>) -> Result<u64> {
    let mut pending: VecDeque<AckFuture> = VecDeque::new();
    let mut stored = 0;
    for event in events {
        let headers = event.headers();
        let publish = jetstream.publish_with_headers(event.subject, headers, event.payload);
        tokio::pin!(publish);
        let sent = loop {
            tokio::select! {
                biased;
                sent = &mut publish => break sent?,
                ack = oldest_ack(&mut pending), if !pending.is_empty() => stored += stored_once(ack)?,
            }
        };
        pending.push_back(sent.into_future());
    }
    while !pending.is_empty() {
        stored += stored_once(oldest_ack(&mut pending).await)?;
    }
    Ok(stored)
}

type AckFuture = <jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture;

/// The oldest pending ack, removed once it came. Cancel-safe: until then it stays in front.
async fn oldest_ack(pending: &mut VecDeque<AckFuture>) -> Result<PublishAck, PublishError> {
    let ack = std::future::poll_fn(|cx| {
        pending.front_mut().expect("an ack is pending").as_mut().poll(cx)
    })
    .await;
    pending.pop_front();
    ack
}

/// One event stored by a raw publish, or why not.
fn stored_once(ack: Result<PublishAck, PublishError>) -> Result<u64> {
    let ack = ack?;
    ensure!(!ack.duplicate, "raw publish was dropped as a duplicate (sequence {})", ack.sequence);
    Ok(1)
}

/// Sends each of `items` with `send`, `connections` at a time, counting on `bar` the events
/// each stored: their sum.
pub(crate) async fn sum_concurrently<T, Fut>(
    items: impl Stream<Item = T>,
    connections: usize,
    bar: &ProgressBar,
    send: impl Fn(T) -> Fut,
) -> Result<u64>
where
    Fut: Future<Output = Result<u64>>,
{
    items
        .map(|item| {
            let (bar, sent) = (bar.clone(), send(item));
            async move {
                let n = sent.await?;
                bar.inc(n);
                Ok::<_, anyhow::Error>(n)
            }
        })
        .buffer_unordered(connections)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await
}

#[derive(serde::Deserialize)]
struct Summary {
    accepted: u64,
    duplicates: u64,
    rejected: Vec<serde_json::Value>,
}

async fn post(client: &reqwest::Client, url: &str, token: &str, body: Bytes) -> Result<u64> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .context("POST /v1/incidents")?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!("POST /v1/incidents answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let summary: Summary = serde_json::from_slice(&bytes).context("ingest summary")?;
    // Requests run concurrently, so an incident's revision 2 may reach the ingest before its
    // revision 1 (answered as stale) or a withdrawal before its report (answered as never
    // reported). Both are answers, not failures: this stage measures throughput, and the
    // stream it fills is thrown away (the other stages check the numbers).
    let (stale, other): (Vec<_>, Vec<_>) = summary.rejected.iter().partition(|r| {
        let error = r["error"].as_str().unwrap_or_default();
        (r["field"] == "revision" && error.contains("is older than revision"))
            || (r["field"] == "withdrawn" && error.contains("has never been reported"))
    });
    ensure!(
        other.is_empty() && summary.duplicates == 0,
        "the ingest rejected {} and called {} duplicates; first rejection: {:?}",
        other.len(),
        summary.duplicates,
        other.first()
    );
    Ok(summary.accepted + stale.len() as u64)
}

pub struct Settings {
    pub records: usize,
    pub per_request: Vec<usize>,
    pub connections: usize,
    pub seed: u64,
    /// Stream replicas: 1 on one nats-server, 3 on a 3-node cluster.
    pub replicas: usize,
}

pub async fn run(
    work: &Path,
    settings: &Settings,
    client: &reqwest::Client,
) -> Result<IngestReport> {
    let dir = work.join("ingest");
    let service_dir = dir.join("service");
    std::fs::create_dir_all(&service_dir)?;
    let tokens: Vec<String> =
        AGENCIES.iter().map(|a| add_agency(&service_dir, a.id, a.name)).collect::<Result<_>>()?;
    let stage = Stage { dir: &dir, service_dir: &service_dir, tokens: &tokens, client, settings };

    let mut generator = Generator::new(settings.seed);
    let mut runs = Vec::new();
    let (mut record_bytes, mut event_bytes, mut records_total) = (0, 0, 0);
    for &per_request in &settings.per_request {
        let (batches, rb, eb) = batches(&mut generator, settings.records, per_request);
        record_bytes += rb;
        event_bytes += eb;
        records_total += settings.records;
        let run = measure(&stage, batches, per_request)
            .instrument(info_span!("ingest", per_request))
            .await?;
        runs.push(run);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(IngestReport {
        connections: settings.connections,
        record_bytes_avg: record_bytes as f64 / records_total.max(1) as f64,
        event_bytes_avg: event_bytes as f64 / records_total.max(1) as f64,
        runs,
    })
}

/// What every measured publish of the stage shares.
struct Stage<'a> {
    dir: &'a Path,
    /// The ingest's data dir: its agencies and their tokens, kept across its restarts.
    service_dir: &'a Path,
    tokens: &'a [String],
    client: &'a reqwest::Client,
    settings: &'a Settings,
}

/// An empty nats-server (or cluster) for one measured publish. Each publish of the stage gets
/// its own: on a shared server a later publish meets a larger stream, a fuller message-id
/// window and a larger heap for Go's collector to scan than an earlier one, and nats-server
/// spent 9–46 % more CPU per event on the same messages published last than first (ten runs
/// of the eighth steps, BENCHMARKS.md): the order of the publishes, not what they send, would
/// decide the ratios.
struct Fresh {
    nats: Nats,
    bus: Bus,
    dir: PathBuf,
}

impl Fresh {
    async fn start(stage: &Stage<'_>, name: &str) -> Result<Fresh> {
        let dir = stage.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let nats = Nats::start(&dir, stage.settings.replicas).await?;
        let bus = nats.bus().await?;
        Ok(Fresh { nats, bus, dir })
    }

    fn pids(&self, service: Option<u32>) -> cpu::Pids {
        cpu::Pids { nats: self.nats.pids(), service }
    }

    /// Sends every item with `send`, the bench's connections at a time, behind a progress bar
    /// named `tag`: how many events were stored, in how long, what each of `pids` spent on
    /// them, and what the stream held afterwards.
    async fn measure<T, Fut>(
        &self,
        stage: &Stage<'_>,
        pids: &cpu::Pids,
        tag: &str,
        items: Vec<T>,
        send: impl Fn(T) -> Fut,
    ) -> Result<Phase>
    where
        Fut: Future<Output = Result<u64>>,
    {
        let bar = progress_bar(stage.settings.records as u64, tag);
        let before = cpu::sample(pids);
        let started = Instant::now();
        let stored =
            sum_concurrently(futures::stream::iter(items), stage.settings.connections, &bar, send)
                .await?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu::sample(pids).since(&before, stored);
        bar.finish_and_clear();
        let stream_messages = self.bus.stream().await?.info().await?.state.messages;
        Ok(Phase { stored, seconds, cpu, stream_messages })
    }

    fn finish(self) {
        drop(self.bus);
        drop(self.nats);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One measured publish: events stored, in how long, and each process's CPU per event.
struct Phase {
    stored: u64,
    seconds: f64,
    cpu: cpu::PerProcess,
    /// What the stream held once the publish was over.
    stream_messages: u64,
}

impl Phase {
    fn events_per_s(&self) -> f64 {
        self.stored as f64 / self.seconds
    }
}

/// The raw publishes and the HTTP ingest of one set of records, each on a server of its own.
async fn measure(stage: &Stage<'_>, batches: Vec<Batch>, per_request: usize) -> Result<IngestRun> {
    let settings = stage.settings;
    let requests = batches.len();
    let mut bodies = Vec::with_capacity(requests);
    let mut raw = Vec::with_capacity(requests);
    for batch in batches {
        bodies.push((batch.agency, batch.body));
        raw.push(batch.events);
    }

    let json_floor_us_per_record = json_floor(&bodies, |line, out| {
        let record: FloorRecord = serde_json::from_slice(line).expect("valid JSON");
        serde_json::to_writer(out, &record).expect("a record always serialises");
    });
    let json_value_us_per_record = json_floor(&bodies, |line, out| {
        let record: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
        serde_json::to_writer(out, &record).expect("a Value always serialises");
    });
    let prepare_us_per_record = prepare_work(&bodies)?;
    let per_source = raw_baseline(stage, &raw, Layout::Source).await?;
    let plain = raw_baseline(stage, &raw, Layout::Incident).await?;
    let expected = raw_baseline(stage, &raw, Layout::IncidentExpected).await?;
    let floor = floor_ingest(stage, &bodies, &raw, Layout::Floor).await?;
    let (http, health) = http_ingest(stage, bodies.clone(), per_request).await?;
    let floor_after = floor_ingest(stage, &bodies, &raw, Layout::FloorAfter).await?;
    let expected_after = raw_baseline(stage, &raw, Layout::IncidentExpectedAfter).await?;
    let plain_after = raw_baseline(stage, &raw, Layout::IncidentAfter).await?;
    ensure!(
        http.stored as usize == settings.records,
        "the ingest accepted (or superseded) {} of {} records",
        http.stored,
        settings.records
    );

    Ok(IngestRun {
        records_per_request: per_request,
        records: settings.records,
        requests,
        http_seconds: http.seconds,
        http_events_per_s: http.events_per_s(),
        raw_seconds: plain.seconds,
        raw_events_per_s: plain.events_per_s(),
        ratio: http.events_per_s() / plain.events_per_s(),
        http_cpu_us_per_event: http.cpu,
        raw_cpu_us_per_event: plain.cpu,
        raw_expected_events_per_s: expected.events_per_s(),
        raw_expected_cpu_us_per_event: expected.cpu,
        ratio_to_expected: http.events_per_s() / expected.events_per_s(),
        raw_expected_after_events_per_s: expected_after.events_per_s(),
        raw_expected_after_cpu_us_per_event: expected_after.cpu,
        ratio_to_expected_bracketed: http.events_per_s()
            / harmonic_mean(expected.events_per_s(), expected_after.events_per_s()),
        raw_per_source_events_per_s: per_source.events_per_s(),
        raw_after_events_per_s: plain_after.events_per_s(),
        raw_after_cpu_us_per_event: plain_after.cpu,
        ratio_bracketed: http.events_per_s()
            / harmonic_mean(plain.events_per_s(), plain_after.events_per_s()),
        stream_messages: [
            &per_source,
            &plain,
            &expected,
            &floor,
            &http,
            &floor_after,
            &expected_after,
            &plain_after,
        ]
        .map(|phase| phase.stream_messages)
        .to_vec(),
        floor_events_per_s: floor.events_per_s(),
        floor_cpu_us_per_event: floor.cpu,
        floor_after_events_per_s: floor_after.events_per_s(),
        floor_ratio_bracketed: harmonic_mean(floor.events_per_s(), floor_after.events_per_s())
            / harmonic_mean(plain.events_per_s(), plain_after.events_per_s()),
        ratio_to_floor_bracketed: http.events_per_s()
            / harmonic_mean(floor.events_per_s(), floor_after.events_per_s()),
        json_floor_us_per_record,
        json_value_us_per_record,
        prepare_us_per_record,
        health_during_ingest: health,
    })
}

/// An incident record's fields, its strings borrowed from the body where they hold no escape.
#[derive(serde::Deserialize, Serialize)]
struct FloorRecord<'a> {
    #[serde(borrow)]
    agency_incident_id: Cow<'a, str>,
    revision: Option<u32>,
    #[serde(borrow)]
    occurred_on: Option<Cow<'a, str>>,
    #[serde(borrow)]
    occurred_until: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reported_on: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iccs: Option<Cow<'a, str>>,
    #[serde(borrow)]
    offence_code: Option<Cow<'a, str>>,
    cyber: Option<bool>,
    #[serde(borrow)]
    departement: Option<Cow<'a, str>>,
    #[serde(borrow)]
    victim_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    loss_eur: Option<f64>,
    withdrawn: Option<bool>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

/// The cost of `read_write` reading each record of `bodies` and writing it out, CPU µs per
/// record of this thread ([`IngestRun::json_floor_us_per_record`]).
fn json_floor(bodies: &[(usize, Bytes)], read_write: impl Fn(&[u8], &mut Vec<u8>)) -> f64 {
    let started = cpu::thread_seconds();
    let (mut records, mut written) = (0usize, 0usize);
    let mut out = Vec::with_capacity(1024);
    for (_, body) in bodies {
        for line in body.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            out.clear();
            read_write(line, &mut out);
            written += out.len();
            records += 1;
        }
    }
    std::hint::black_box(written);
    (cpu::thread_seconds() - started) * 1e6 / records.max(1) as f64
}

/// [`IngestRun::prepare_us_per_record`]: what the ingest does to `bodies` before deciding.
fn prepare_work(bodies: &[(usize, Bytes)]) -> Result<f64> {
    let crosswalk = Crosswalks::builtin()
        .latest(observatory_reference::IDENTITY)
        .context("the identity crosswalk is built in")?;
    let now = Utc::now();
    let recorded_at = RecordedAt::new(now);
    let started = cpu::thread_seconds();
    let mut records = 0;
    for (agency, body) in bodies {
        let source = AGENCIES[*agency].id;
        let prepared = observatory_ingest::prepare(
            source,
            crosswalk,
            observatory_ingest::Format::Ndjson,
            body,
            usize::MAX,
            now.date_naive(),
            &recorded_at,
        )?;
        ensure!(prepared.rejected.is_empty(), "generated records refused: {:?}", prepared.rejected);
        records += prepared.valid();
        std::hint::black_box(&prepared);
    }
    Ok((cpu::thread_seconds() - started) * 1e6 / records.max(1) as f64)
}

/// The rate of a run whose time per event is the mean of the two runs' (equal event counts).
fn harmonic_mean(a: f64, b: f64) -> f64 {
    2.0 / (1.0 / a + 1.0 / b)
}

/// The real `observatory ingest`, started on an empty server, taking `bodies` over HTTP with
/// the bench's connections.
async fn http_ingest(
    stage: &Stage<'_>,
    bodies: Vec<(usize, Bytes)>,
    per_request: usize,
) -> Result<(Phase, Latency)> {
    let fresh = Fresh::start(stage, &format!("nats-http-{per_request}")).await?;
    let mut args: Vec<String> = vec!["ingest".into()];
    args.extend(fresh.nats.service_args());
    args.extend(["--data-dir".into(), stage.service_dir.to_string_lossy().into_owned()]);
    let log = stage.dir.join(format!("ingest-{per_request}.log"));
    let service = Service::start(&args, log, stage.client).await?;
    let url = format!("{}/v1/incidents", service.base_url);
    let url = url.as_str();
    let tag = format!("HTTP ingest, {per_request}/request");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let probe = tokio::spawn(probe_health(format!("{}/health", service.base_url), stopped));
    let phase = fresh
        .measure(stage, &fresh.pids(service.pid()), &tag, bodies, |(agency, body)| {
            post(stage.client, url, &stage.tokens[agency], body)
        })
        .await;
    let _ = stop.send(());
    let health = probe.await.context("the /health probe")??;
    service.stop().await?;
    fresh.finish();
    let health = Latency::of(&health).context("the /health probe answered nothing")?;
    Ok((phase?, health))
}

/// `GET url` every 5 ms until `stop`, at least once: each answer's latency in ms.
async fn probe_health(
    url: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::new();
    loop {
        tick.tick().await;
        let started = Instant::now();
        let response = client.get(&url).send().await.context("GET /health during the ingest")?;
        let status = response.status();
        response.bytes().await?;
        ensure!(status.is_success(), "GET /health answered {status} during the ingest");
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        if !matches!(stop.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Empty)) {
            return Ok(latencies);
        }
    }
}

/// The least an HTTP ingest built on the same parts does with a batch (hyper and axum for
/// HTTP, serde_json for the records, async-nats for JetStream): it takes the request's body,
/// reads each record into a struct of its fields and writes it back (serde_json's floor, as
/// [`IngestRun::json_floor_us_per_record`] times it), and publishes the batch's messages,
/// made by the bench beforehand, with the expected-sequence header where a raw publish can
/// carry it. No validation, no decision, no encoding of its own. What lies between it and the
/// raw publish is what HTTP and JSON cost with these parts; what lies between it and
/// `observatory ingest` is the ingest's own code. It runs in the bench's process, on its
/// runtime, so its CPU is counted with the client's.
async fn floor_ingest(
    stage: &Stage<'_>,
    bodies: &[(usize, Bytes)],
    raw: &[Vec<Outgoing>],
    layout: Layout,
) -> Result<Phase> {
    let (tag, kind) = describe(layout);
    let batches = layout_batches(raw, layout);
    let fresh = Fresh::start(stage, &format!("nats-floor{kind}")).await?;
    let floor = Arc::new(Floor {
        jetstream: fresh.bus.jetstream().clone(),
        batches: batches.into_iter().map(|batch| Mutex::new(Some(batch))).collect(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/floor/{batch}", axum::routing::post(floor_post))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(floor);
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    let items: Vec<(usize, Bytes)> =
        bodies.iter().enumerate().map(|(batch, (_, body))| (batch, body.clone())).collect();
    let phase = fresh
        .measure(stage, &fresh.pids(None), tag, items, |(batch, body)| {
            post_floor(stage.client, &base, batch, body)
        })
        .await;
    server.abort();
    fresh.finish();
    let phase = phase?;
    ensure!(
        phase.stored as usize == stage.settings.records,
        "the {tag} stored {} of {} events",
        phase.stored,
        stage.settings.records
    );
    Ok(phase)
}

/// The floor ingest's batches, each taken by the one request that sends it.
struct Floor {
    jetstream: jetstream::Context,
    batches: Vec<Mutex<Option<Vec<Outgoing>>>>,
}

async fn floor_post(
    State(floor): State<Arc<Floor>>,
    axum::extract::Path(batch): axum::extract::Path<usize>,
    body: Bytes,
) -> Result<String, (StatusCode, String)> {
    let mut out = Vec::with_capacity(1024);
    let mut written = 0;
    for line in body.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        out.clear();
        let record: FloorRecord = serde_json::from_slice(line)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("batch {batch}: {e}")))?;
        serde_json::to_writer(&mut out, &record)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        written += out.len();
    }
    std::hint::black_box(written);
    let events = floor
        .batches
        .get(batch)
        .and_then(|events| events.lock().expect("never poisoned").take())
        .ok_or((StatusCode::NOT_FOUND, format!("no batch {batch}, or it was sent already")))?;
    let stored = publish_raw(&floor.jetstream, events)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    Ok(stored.to_string())
}

/// Sends batch `batch` to the floor ingest at `base`: the events it stored.
async fn post_floor(
    client: &reqwest::Client,
    base: &str,
    batch: usize,
    body: Bytes,
) -> Result<u64> {
    let response = client
        .post(format!("{base}/floor/{batch}"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .context("POST to the floor ingest")?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "the floor ingest answered {status}: {text}");
    text.parse().with_context(|| format!("the floor ingest's answer {text:?}"))
}

/// Where a raw baseline publishes. Each layout has subjects and message ids of its own, as it
/// did when the publishes shared a server, so the figures stay comparable with earlier runs.
#[derive(Clone, Copy)]
enum Layout {
    /// What the ingest publishes: one subject per incident.
    Incident,
    /// The same, with `Nats-Expected-Last-Subject-Sequence: 0` on incidents with one event.
    IncidentExpected,
    /// One subject per source and event kind, as before.
    Source,
    /// [`IncidentExpected`](Layout::IncidentExpected) again, right after the HTTP ingest: with
    /// the one before it, it brackets the HTTP ingest against the machine's drift.
    IncidentExpectedAfter,
    /// [`Incident`](Layout::Incident) again, after the HTTP ingest, for the same reason.
    IncidentAfter,
    /// What the floor ingest publishes: the messages of
    /// [`IncidentExpected`](Layout::IncidentExpected), in a namespace of their own.
    Floor,
    /// The same, for the floor ingest after the HTTP ingest.
    FloorAfter,
}

/// What each publish of `layout` is called, and its number (which names its namespace).
fn describe(layout: Layout) -> (&'static str, usize) {
    match layout {
        Layout::Incident => ("raw publish", 1),
        Layout::IncidentExpected => ("raw publish, expected sequence", 2),
        Layout::Source => ("raw publish, subject per source", 3),
        Layout::IncidentAfter => ("raw publish, after the HTTP ingest", 4),
        Layout::IncidentExpectedAfter => {
            ("raw publish, expected sequence, after the HTTP ingest", 5)
        }
        Layout::Floor => ("floor ingest", 6),
        Layout::FloorAfter => ("floor ingest, after the HTTP ingest", 7),
    }
}

/// `raw`'s messages as `layout` publishes them.
fn layout_batches(raw: &[Vec<Outgoing>], layout: Layout) -> Vec<Vec<Outgoing>> {
    let (_, kind) = describe(layout);
    // Each run (batch size) in a namespace of its own: the generator revisits incidents.
    let root = format!("obs.raw{kind}r{}.", raw.first().map_or(0, Vec::len));
    let root = root.as_str();
    let expected = matches!(
        layout,
        Layout::IncidentExpected
            | Layout::IncidentExpectedAfter
            | Layout::Floor
            | Layout::FloorAfter
    );
    // An incident's later events need the sequence of its earlier one, which pipelined and
    // concurrent publishes do not wait for: the header goes on the events of incidents that have
    // one event in the run, which no other event can race.
    let mut events_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for event in raw.iter().flatten() {
        *events_of.entry(event.subject.as_str()).or_default() += 1;
    }
    raw.iter()
        .map(|events| {
            events
                .iter()
                .map(|original| {
                    let mut event = original.clone();
                    let rest = event.subject.strip_prefix("obs.").unwrap_or(&event.subject);
                    event.subject = match layout {
                        Layout::Source => {
                            let source = rest.rsplit('.').next().unwrap_or_default();
                            format!("{root}incident.reported.{source}")
                        }
                        _ => format!("{root}{rest}"),
                    };
                    if let Some(id) = &mut event.message_id {
                        *id = format!("{root}{id}");
                    }
                    if expected && events_of.get(original.subject.as_str()) == Some(&1) {
                        event.expected_last_subject_sequence = Some(0);
                    }
                    event
                })
                .collect()
        })
        .collect()
}

/// Publishes `raw` in `layout` with the bench's connections, on an empty server.
async fn raw_baseline(stage: &Stage<'_>, raw: &[Vec<Outgoing>], layout: Layout) -> Result<Phase> {
    let settings = stage.settings;
    let (tag, kind) = describe(layout);
    let batches = layout_batches(raw, layout);

    // Measured once the events are prepared, so the client's CPU is the publish's alone.
    let fresh = Fresh::start(stage, &format!("nats-raw{kind}")).await?;
    let jetstream = fresh.bus.jetstream();
    let phase = fresh
        .measure(stage, &fresh.pids(None), tag, batches, |events| publish_raw(jetstream, events))
        .await?;
    fresh.finish();
    ensure!(
        phase.stored as usize == settings.records,
        "{tag} stored {} of {} events",
        phase.stored,
        settings.records
    );
    Ok(phase)
}
