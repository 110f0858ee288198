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

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading from the stream failed: {0}; the projector resumes from its last manifest when restarted")]
    Consume(String),
}

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

const FILTER: &str = "obs.incident.>";

fn consumer_name(projection: &Projection, version: u32) -> String {
    format!("projector-{}-v{version}", projection.name())
}

enum Stop {
    /// Shutdown requested (or caught up, in a rebuild).
    Done,
    /// Another version became current: reopen on it.
    Switch(u32),
}

/// Serves the current version until `shutdown` resolves, following `CURRENT` when a
/// rebuild switches it. Creates version 1 when the store is empty.
pub async fn run(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
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
        let sink = Sink::open(projection.clone(), version, &bus.config().stream, config.compaction, &config.crosswalk_versions).await?;
        match consume(bus, sink, config, false, &mut shutdown, |_| {}).await? {
            (Stop::Done, _) => return Ok(()),
            (Stop::Switch(next), _) => {
                info!(from = version, to = next, "serving version changed; reloading");
                version = next;
            }
        }
    }
}

/// Replays the whole stream into a new version, then switches `CURRENT` to it. The serving
/// projector (if any) follows the switch. Returns the new version and its last sequence.
pub async fn rebuild(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), ProjectorError> {
    let version = projection.versions().await?.into_iter().max().unwrap_or(0) + 1;
    info!(version, "rebuilding from sequence 1");
    let sink = Sink::open(projection.clone(), version, &bus.config().stream, config.compaction, &config.crosswalk_versions).await?;
    let mut never = std::pin::pin!(std::future::pending::<()>());
    let (_, sequence) = consume(bus, sink, config, true, &mut never, on_progress).await?;
    projection.set_current(version).await?;
    let consumer = consumer_name(projection, version);
    if let Ok(stream) = bus.stream().await {
        let _ = stream.delete_consumer(&consumer).await;
    }
    info!(version, sequence, "rebuild complete; CURRENT switched");
    Ok((version, sequence))
}

async fn consume<F: Future<Output = ()>>(
    bus: &Bus,
    mut sink: Sink,
    config: &ProjectorConfig,
    until_caught_up: bool,
    shutdown: &mut std::pin::Pin<&mut F>,
    mut on_progress: impl FnMut(Progress),
) -> Result<(Stop, u64), ProjectorError> {
    let version = sink.version();
    let projection = sink.projection().clone();
    let name = consumer_name(&projection, version);
    let consumer = bus.durable_from(&name, FILTER, sink.committed().last_sequence).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(10_000)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| ProjectorError::Consume(e.to_string()))?;
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message: Option<Message> = None;
    let mut rejected = 0u64;
    let mut progress = Progress { committed_sequence: sink.committed().last_sequence, ..Default::default() };

    loop {
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                return Ok((Stop::Done, progress.committed_sequence));
            }
            next = messages.next() => {
                let Some(message) = next else {
                    return Err(ProjectorError::Consume("the consumer's message stream ended".into()));
                };
                let message = message.map_err(|e| ProjectorError::Consume(e.to_string()))?;
                let info = message.info().map_err(|e| ProjectorError::Consume(e.to_string()))?;
                let (sequence, stream_pending) = (info.stream_sequence, info.pending);
                if !apply(&mut sink, sequence, &message) {
                    rejected += 1;
                    sink.fold.set_position(sequence.max(sink.fold.last_applied()));
                }
                progress.applied_sequence = sequence;
                progress.stream_pending = stream_pending;
                last_message = Some(message);
                let caught_up = until_caught_up && stream_pending == 0;
                if sink.fold.pending_events() >= config.max_pending || caught_up {
                    commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                    on_progress(progress);
                }
                if caught_up {
                    return Ok((Stop::Done, progress.committed_sequence));
                }
            }
            _ = ticker.tick() => {
                commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                on_progress(progress);
                if until_caught_up {
                    let mut consumer = bus.jetstream().get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(&name, &bus.config().stream).await
                        .map_err(|e| ProjectorError::Consume(e.to_string()))?;
                    let info = consumer.info().await.map_err(|e| ProjectorError::Consume(e.to_string()))?;
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

/// Decodes and folds one message; `false` when the event is unusable (logged, counted,
/// skipped: one bad event must not stop the projection).
fn apply(sink: &mut Sink, sequence: u64, message: &Message) -> bool {
    let envelope = match Envelope::from_bytes(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            warn!(sequence, subject = %message.subject, %error, "event skipped");
            return false;
        }
    };
    // The subject's last token is the source the server let publish; the envelope must agree.
    if message.subject.rsplit('.').next() != Some(envelope.source.as_str()) {
        warn!(sequence, subject = %message.subject, source = %envelope.source, "event skipped: source does not match its subject");
        return false;
    }
    match envelope.event() {
        Ok(event) => {
            sink.fold.apply(sequence, &envelope.source, &event);
            true
        }
        Err(error) => {
            warn!(sequence, %error, "event skipped");
            false
        }
    }
}

/// Flushes (if anything is pending) and then acks everything up to the last message.
async fn commit(
    sink: &mut Sink,
    last_message: &mut Option<Message>,
    rejected: &mut u64,
    progress: &mut Progress,
) -> Result<(), ProjectorError> {
    if let Some(sequence) = sink.flush(*rejected).await? {
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
