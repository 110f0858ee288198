//! The survey consumer loop: its own durable consumer on `obs.survey.>`, starting right after
//! the committed manifest; flushes on a timer or when many rows are pending; acks only after
//! the manifest commits; follows `CURRENT` when a rebuild switches it.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Message;
use futures::StreamExt;
use observatory_bus::{Bus, BusError};
use observatory_model::survey::SurveyEvent;
use observatory_store::{Projection, StoreError};
use tracing::{info, warn};

use super::sink::{SurveySink, SurveySinkError};
use crate::runner::{Progress, ProjectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum SurveyProjectorError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sink(#[from] SurveySinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "reading survey events from the stream failed: {0}; the projector resumes from its last manifest when restarted"
    )]
    Consume(String),
}

const FILTER: &str = "obs.survey.>";

fn consumer_name(projection: &Projection, version: u32) -> String {
    format!("projector-{}-v{version}", projection.name())
}

enum Stop {
    Done,
    Switch(u32),
}

/// Serves the current survey version until `shutdown` resolves, following `CURRENT`.
/// Creates version 1 when the store has none.
pub async fn run_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SurveyProjectorError> {
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
        let sink = SurveySink::open(
            projection.clone(),
            version,
            &bus.config().stream,
            config.compaction,
        )
        .await?;
        match consume(bus, sink, config, false, &mut shutdown, |_| {}).await? {
            (Stop::Done, _) => return Ok(()),
            (Stop::Switch(next), _) => {
                info!(
                    from = version,
                    to = next,
                    "serving survey version changed; reloading"
                );
                version = next;
            }
        }
    }
}

/// Replays every survey event into a new version, then switches `CURRENT` to it.
pub async fn rebuild_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), SurveyProjectorError> {
    let version = projection.versions().await?.into_iter().max().unwrap_or(0) + 1;
    info!(version, "rebuilding surveys from sequence 1");
    let sink = SurveySink::open(
        projection.clone(),
        version,
        &bus.config().stream,
        config.compaction,
    )
    .await?;
    let mut never = std::pin::pin!(std::future::pending::<()>());
    let (_, sequence) = consume(bus, sink, config, true, &mut never, on_progress).await?;
    projection.set_current(version).await?;
    if let Ok(stream) = bus.stream().await {
        let _ = stream
            .delete_consumer(&consumer_name(projection, version))
            .await;
    }
    info!(
        version,
        sequence, "survey rebuild complete; CURRENT switched"
    );
    Ok((version, sequence))
}

async fn consume<F: Future<Output = ()>>(
    bus: &Bus,
    mut sink: SurveySink,
    config: &ProjectorConfig,
    until_caught_up: bool,
    shutdown: &mut std::pin::Pin<&mut F>,
    mut on_progress: impl FnMut(Progress),
) -> Result<(Stop, u64), SurveyProjectorError> {
    let version = sink.version();
    let projection = sink.projection().clone();
    let name = consumer_name(&projection, version);
    let consumer = bus
        .durable_from(&name, FILTER, sink.committed().last_sequence)
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1_000)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| SurveyProjectorError::Consume(e.to_string()))?;
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message: Option<Message> = None;
    let mut rejected = 0u64;
    let mut progress = Progress {
        committed_sequence: sink.committed().last_sequence,
        ..Default::default()
    };

    loop {
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                commit(&mut sink, &mut last_message, &mut rejected, &mut progress).await?;
                return Ok((Stop::Done, progress.committed_sequence));
            }
            next = messages.next() => {
                let Some(message) = next else {
                    return Err(SurveyProjectorError::Consume("the consumer's message stream ended".into()));
                };
                let message = message.map_err(|e| SurveyProjectorError::Consume(e.to_string()))?;
                let info = message.info().map_err(|e| SurveyProjectorError::Consume(e.to_string()))?;
                let (sequence, stream_pending) = (info.stream_sequence, info.pending);
                if !apply(&mut sink, sequence, &message) {
                    rejected += 1;
                    sink.fold.set_position(sequence.max(sink.fold.last_applied()));
                }
                progress.applied_sequence = sequence;
                progress.stream_pending = stream_pending;
                last_message = Some(message);
                let caught_up = until_caught_up && stream_pending == 0;
                if sink.fold.pending_rows() >= config.max_pending || caught_up {
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
                        .map_err(|e| SurveyProjectorError::Consume(e.to_string()))?;
                    let info = consumer.info().await.map_err(|e| SurveyProjectorError::Consume(e.to_string()))?;
                    if info.num_pending == 0 && info.num_ack_pending == 0 && last_message.is_none() {
                        return Ok((Stop::Done, progress.committed_sequence));
                    }
                } else if let Some(current) = projection.current_version().await?
                    && current != version
                {
                    return Ok((Stop::Switch(current), progress.committed_sequence));
                }
            }
        }
    }
}

/// Decodes and folds one message; `false` when it is unusable (logged, counted, skipped).
fn apply(sink: &mut SurveySink, sequence: u64, message: &Message) -> bool {
    let decoded = match SurveyEvent::decode(&message.payload) {
        Ok(decoded) => decoded,
        Err(error) => {
            warn!(sequence, subject = %message.subject, %error, "survey event skipped");
            return false;
        }
    };
    if message.subject.rsplit('.').next() != Some(decoded.source.as_str()) {
        warn!(sequence, subject = %message.subject, source = %decoded.source, "survey event skipped: source does not match its subject");
        return false;
    }
    sink.fold.apply(sequence, &decoded.source, &decoded.event);
    true
}

async fn commit(
    sink: &mut SurveySink,
    last_message: &mut Option<Message>,
    rejected: &mut u64,
    progress: &mut Progress,
) -> Result<(), SurveyProjectorError> {
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
