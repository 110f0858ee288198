//! The consumer loop: pulls events from a durable consumer starting right after the
//! committed manifest, folds them, flushes on a timer or when enough is pending, and acks
//! only after the manifest commits.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Message;
use futures::StreamExt;
use observatory_bus::{Bus, BusError};
use observatory_model::Envelope;
use observatory_store::{Projection, StoreError};
use tracing::{info, warn};

use crate::sink::{Compaction, Sink, SinkError};

/// What the consumer loop needs of a projection: each projection (incidents, surveys) folds
/// its own events and commits its own manifests; the loop, the acks and the rebuild are shared.
pub trait Folding: Sized + Send {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Subject filter of the events this projection folds.
    const FILTER: &'static str;
    /// Messages per pull request.
    const BATCH: usize;
    fn version(&self) -> u32;
    fn projection(&self) -> &Projection;
    fn committed_sequence(&self) -> u64;
    /// Folds one message; `false` when it is unusable (logged and skipped: one bad event
    /// must not stop the projection).
    fn apply(&mut self, sequence: u64, message: &Message) -> bool;
    /// Marks an unusable event's sequence as passed.
    fn skip(&mut self, sequence: u64);
    /// Changes folded since the last flush.
    fn pending(&self) -> usize;
    /// Writes what was folded and commits a manifest; the committed sequence, if anything was written.
    fn flush(&mut self, rejected_events: u64) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sink(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading from the stream failed: {0}; the projector resumes from its last manifest when restarted")]
    Consume(String),
}

pub type ProjectorError = LoopError<SinkError>;

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Flush at least this often while events are pending.
    pub flush_interval: Duration,
    /// Flush as soon as this many incidents changed.
    pub max_pending: usize,
    pub compaction: Compaction,
    /// Crosswalk versions a new projection version codes with (name → version); crosswalks
    /// not listed use their latest version.
    pub crosswalk_versions: std::collections::BTreeMap<String, u32>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            flush_interval: Duration::from_secs(1),
            max_pending: 250_000,
            compaction: Compaction::default(),
            crosswalk_versions: Default::default(),
        }
    }
}

/// Progress of a run, for logs and progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub committed_sequence: u64,
    pub applied_sequence: u64,
    /// Messages the consumer has not yet delivered.
    pub stream_pending: u64,
}

fn consumer_name(projection: &Projection, version: u32) -> String {
    format!("projector-{}-v{version}", projection.name())
}

enum Stop {
    /// Shutdown requested (or caught up, in a rebuild).
    Done,
    /// Another version became current: reopen on it.
    Switch(u32),
}

/// Serves the current incident version until `shutdown` resolves, following `CURRENT` when a
/// rebuild switches it. Creates version 1 when the store is empty.
pub async fn run(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
    serve(bus, projection, config, shutdown, |version| open_incidents(bus, projection, config, version)).await
}

/// Replays the whole stream into a new incident version, then switches `CURRENT` to it. The
/// serving projector (if any) follows the switch. Returns the new version and its last sequence.
pub async fn rebuild(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), ProjectorError> {
    replay(bus, projection, config, on_progress, |version| open_incidents(bus, projection, config, version)).await
}

async fn open_incidents(bus: &Bus, projection: &Projection, config: &ProjectorConfig, version: u32) -> Result<Sink, SinkError> {
    Sink::open(projection.clone(), version, &bus.config().stream, config.compaction, &config.crosswalk_versions).await
}

/// The serving loop of any projection: opens the version `CURRENT` names (creating version 1
/// in an empty store), consumes until shutdown, and reopens when a rebuild switches `CURRENT`.
pub async fn serve<S: Folding, O: Future<Output = Result<S, S::Error>>>(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
    open: impl Fn(u32) -> O,
) -> Result<(), LoopError<S::Error>> {
    let mut version = match projection.current_version().await? {
        Some(v) => v,
        None => {
            let v = projection.versions().await?.into_iter().max().unwrap_or(1);
            projection.set_current(v).await?;
            v
        }
    };
    tokio::pin!(shutdown);
    loop {
        let sink = open(version).await.map_err(LoopError::Sink)?;
        match consume(bus, sink, config, false, &mut shutdown, |_| {}).await? {
            (Stop::Done, _) => return Ok(()),
            (Stop::Switch(next), _) => {
                info!(projection = projection.name(), from = version, to = next, "serving version changed; reloading");
                version = next;
            }
        }
    }
}

/// The rebuild of any projection: replays from sequence 1 into a new version until caught
/// up, then switches `CURRENT` to it.
pub async fn replay<S: Folding, O: Future<Output = Result<S, S::Error>>>(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
    open: impl Fn(u32) -> O,
) -> Result<(u32, u64), LoopError<S::Error>> {
    let version = projection.versions().await?.into_iter().max().unwrap_or(0) + 1;
    info!(projection = projection.name(), version, "rebuilding from sequence 1");
    let sink = open(version).await.map_err(LoopError::Sink)?;
    let mut never = std::pin::pin!(std::future::pending::<()>());
    let (_, sequence) = consume(bus, sink, config, true, &mut never, on_progress).await?;
    projection.set_current(version).await?;
    if let Ok(stream) = bus.stream().await {
        let _ = stream.delete_consumer(&consumer_name(projection, version)).await;
    }
    info!(projection = projection.name(), version, sequence, "rebuild complete; CURRENT switched");
    Ok((version, sequence))
}

async fn consume<S: Folding, F: Future<Output = ()>>(
    bus: &Bus,
    mut sink: S,
    config: &ProjectorConfig,
    until_caught_up: bool,
    shutdown: &mut std::pin::Pin<&mut F>,
    mut on_progress: impl FnMut(Progress),
) -> Result<(Stop, u64), LoopError<S::Error>> {
    let version = sink.version();
    let projection = sink.projection().clone();
    let name = consumer_name(&projection, version);
    let consumer = bus.durable_from(&name, S::FILTER, sink.committed_sequence()).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(S::BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| LoopError::Consume(e.to_string()))?;
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message: Option<Message> = None;
    let mut rejected = 0u64;
    let mut progress = Progress { committed_sequence: sink.committed_sequence(), ..Default::default() };

    loop {
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                return Ok((Stop::Done, progress.committed_sequence));
            }
            next = messages.next() => {
                let Some(message) = next else {
                    return Err(LoopError::Consume("the consumer's message stream ended".into()));
                };
                let message = message.map_err(|e| LoopError::Consume(e.to_string()))?;
                let info = message.info().map_err(|e| LoopError::Consume(e.to_string()))?;
                let (sequence, stream_pending) = (info.stream_sequence, info.pending);
                if !sink.apply(sequence, &message) {
                    rejected += 1;
                    sink.skip(sequence);
                }
                progress.applied_sequence = sequence;
                progress.stream_pending = stream_pending;
                last_message = Some(message);
                let caught_up = until_caught_up && stream_pending == 0;
                if sink.pending() >= config.max_pending || caught_up {
                    commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                    on_progress(progress);
                }
                if caught_up {
                    return Ok((Stop::Done, progress.committed_sequence));
                }
            }
            _ = ticker.tick() => {
                // A replay is served only once complete, so it commits when enough is pending
                // or when caught up, not on the timer: a long rebuild writes a few large files
                // instead of one small flush per tick and the compactions that follow them.
                if !until_caught_up || last_message.is_none() {
                    commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                }
                on_progress(progress);
                if until_caught_up {
                    let mut consumer = bus.jetstream().get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(&name, &bus.config().stream).await
                        .map_err(|e| LoopError::Consume(e.to_string()))?;
                    let info = consumer.info().await.map_err(|e| LoopError::Consume(e.to_string()))?;
                    if info.num_pending == 0 && info.num_ack_pending == 0 && last_message.is_none() {
                        return Ok((Stop::Done, progress.committed_sequence));
                    }
                } else if let Some(current) = projection.current_version().await? {
                    if current != version {
                        return Ok((Stop::Switch(current), progress.committed_sequence));
                    }
                }
            }
        }
    }
}

impl Folding for Sink {
    type Error = SinkError;
    const FILTER: &'static str = "obs.incident.>";
    const BATCH: usize = 10_000;

    fn version(&self) -> u32 {
        Sink::version(self)
    }

    fn projection(&self) -> &Projection {
        Sink::projection(self)
    }

    fn committed_sequence(&self) -> u64 {
        self.committed().last_sequence
    }

    fn apply(&mut self, sequence: u64, message: &Message) -> bool {
        // Straight from the bytes to the event: no JSON tree of the payload (the hot path).
        let (source, event) = match Envelope::decode_event(&message.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                warn!(sequence, subject = %message.subject, %error, "event skipped");
                return false;
            }
        };
        // The subject's last token is the source the server let publish; the envelope must agree.
        if message.subject.rsplit('.').next() != Some(source.as_str()) {
            warn!(sequence, subject = %message.subject, %source, "event skipped: source does not match its subject");
            return false;
        }
        self.fold.apply(sequence, &source, &event);
        true
    }

    fn skip(&mut self, sequence: u64) {
        let position = sequence.max(self.fold.last_applied());
        self.fold.set_position(position);
    }

    fn pending(&self) -> usize {
        self.fold.pending_events()
    }

    async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, SinkError> {
        Sink::flush(self, rejected_events).await
    }
}

/// Flushes (if anything is pending) and then acks everything up to the last message.
async fn commit<S: Folding>(
    sink: &mut S,
    last_message: &mut Option<Message>,
    rejected: &mut u64,
    progress: &mut Progress,
) -> Result<(), LoopError<S::Error>> {
    if let Some(sequence) = sink.flush(*rejected).await.map_err(LoopError::Sink)? {
        *rejected = 0;
        progress.committed_sequence = sequence;
    }
    if let Some(message) = last_message.take() {
        // Flow control only: the manifest is already the checkpoint.
        if let Err(error) = message.ack().await {
            warn!(%error, "ack failed; the consumer will redeliver and the fold will skip it");
        }
    }
    Ok(())
}
