//! The consumer loop every projection shares: reads events through an ordered consumer
//! starting right after the committed manifest, decodes them on a task of their own, folds
//! them, and commits a manifest on a timer or when enough is pending. The manifest is the
//! only checkpoint: nothing is acked, and a restart resumes from the newest manifest.
//! [`serve`] follows `CURRENT`; [`replay`] rebuilds a new version from sequence 1. Each
//! projection plugs in through [`Folding`].

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Message;
use observatory_bus::{Bus, BusError, OrderedConsumer};
use observatory_store::{Projection, StoreError};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::writer::{Compaction, ProjectionWriter};

/// What the consumer loop needs of a projection: each projection (incidents, surveys) decodes
/// and folds its own events and commits its own manifests; the loop and the rebuild are shared.
pub trait Folding: Sized + Send {
    type Error: std::error::Error + Send + Sync + 'static;
    /// A message made ready to fold.
    type Decoded: Send + 'static;
    /// Subject filter of the consumer this projection reads through (empty: the whole stream).
    const FILTER: &'static str;
    /// Subjects this projection folds; other messages the consumer delivers are passed over
    /// (not counted as rejected). A projection whose events have one subject per incident
    /// reads the whole stream rather than filter it: nats-server matches a wildcard filter
    /// against every subject it holds, which at ten million subjects made each delivery
    /// slower than the ordered consumer's heartbeat (its consumer was recreated over and over
    /// and delivered nothing).
    const SUBJECT_PREFIX: &'static str;
    /// Messages per pull request, and per chunk handed from the decoder to the fold.
    const BATCH: usize;
    /// Opens `version` of this projection at its newest committed manifest (restoring the fold
    /// from it), or empty when that version has committed nothing yet.
    fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        config: &ProjectorConfig,
    ) -> impl Future<Output = Result<Self, Self::Error>> + Send;
    /// The writer of the version being folded: its projection, version and committed
    /// sequence are the loop's, whatever the projection.
    fn writer(&self) -> &ProjectionWriter;
    /// Decodes and checks one message, on the decoder task (no access to the fold). An error
    /// says why the message is unusable: it is logged and skipped, since one bad event must
    /// not stop the projection.
    fn decode(message: &Message) -> Result<Self::Decoded, String>;
    /// Folds one decoded message, in stream order.
    fn apply(&mut self, sequence: u64, decoded: Self::Decoded);
    /// Marks an unusable event's sequence as passed.
    fn skip(&mut self, sequence: u64);
    /// Changes folded since the last flush.
    fn pending(&self) -> usize;
    /// A replay is about to fold `events` events: size memory for them up front rather than
    /// growing (and briefly holding the old and new tables) along the way.
    fn reserve(&mut self, _events: u64) {}
    /// A replay has folded the stream's last event: the flush that follows is its last.
    fn caught_up(&mut self) {}
    /// Writes what was folded and commits a manifest; the committed sequence, if anything was written.
    fn flush(
        &mut self,
        rejected_events: u64,
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sink(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "reading from the stream failed: {0}; the projector resumes from its last manifest when restarted"
    )]
    Consume(String),
}

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Flush at least this often while events are pending.
    pub flush_interval: Duration,
    /// Flush as soon as this many incident changes are pending.
    pub max_pending: usize,
    pub compaction: Compaction,
    /// Crosswalk versions a new projection version codes with (name → version); crosswalks
    /// not listed use their latest version.
    pub crosswalk_versions: std::collections::BTreeMap<String, u32>,
    /// The deployment's record keys (from its disclosure secret); `None` keys every record 0
    /// and records so in the manifest, which the public tier refuses to publish from.
    pub record_keys: Option<observatory_disclosure::RecordKeys>,
    /// A serving projector writes a fold image (what a restart loads) once this many events,
    /// and a quarter of the incidents known, have come since the last one.
    pub image_min_events: u64,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            flush_interval: Duration::from_secs(1),
            max_pending: 250_000,
            compaction: Compaction::default(),
            crosswalk_versions: Default::default(),
            record_keys: None,
            image_min_events: 1_000_000,
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
    /// Events delivered since the last commit.
    pub uncommitted_events: u64,
    /// How long the decoder waited for the consumer's next message, in all, and how many of
    /// those waits were stalls (over [`STALL`]): a replay that runs slower than the stream
    /// with idle cores is waiting here.
    pub waited_for_stream: Duration,
    pub stream_stalls: u64,
    /// The longest of those waits: one stall of seconds and many short pauses add up alike.
    pub longest_wait: Duration,
    /// How many times the consumer was recreated after a silence while the stream still owed
    /// messages ([`OrderedConsumer`]).
    pub consumer_resumes: u64,
}

/// A wait for the stream's next message long enough to be a stall rather than a scheduling
/// pause (the ordered consumer's idle heartbeat is one second).
pub const STALL: Duration = Duration::from_millis(500);

enum Stop {
    /// Shutdown requested (or caught up, in a rebuild).
    Done,
    /// Another version became current: reopen on it.
    Switch(u32),
}

/// The serving loop of any projection: opens the version `CURRENT` names (creating version 1
/// in an empty store), consumes until shutdown, and reopens when a rebuild switches `CURRENT`.
pub async fn serve<S: Folding>(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
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
        let sink = S::open(projection.clone(), version, &bus.config().stream, config)
            .await
            .map_err(LoopError::Sink)?;
        match consume(bus, sink, config, false, &mut shutdown, |_| {}).await? {
            (Stop::Done, _) => return Ok(()),
            (Stop::Switch(next), _) => {
                info!(
                    projection = projection.name(),
                    from = version,
                    to = next,
                    "serving version changed; reloading"
                );
                version = next;
            }
        }
    }
}

/// The rebuild of any projection: replays from sequence 1 into a new version until caught
/// up, then switches `CURRENT` to it.
pub async fn replay<S: Folding>(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), LoopError<S::Error>> {
    let version = projection.versions().await?.into_iter().max().unwrap_or(0) + 1;
    info!(projection = projection.name(), version, "rebuilding from sequence 1");
    let sink = S::open(projection.clone(), version, &bus.config().stream, config)
        .await
        .map_err(LoopError::Sink)?;
    let mut never = std::pin::pin!(std::future::pending::<()>());
    let (_, sequence) = consume(bus, sink, config, true, &mut never, on_progress).await?;
    projection.set_current(version).await?;
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
    let (version, committed) = (sink.writer().version(), sink.writer().committed_sequence());
    let projection = sink.writer().projection().clone();
    let ordered = bus.ordered_from(S::FILTER, false, committed, S::BATCH).await?;
    let mut progress = Progress {
        committed_sequence: committed,
        applied_sequence: committed,
        stream_pending: ordered.pending_at_start,
        uncommitted_events: 0,
        waited_for_stream: Duration::ZERO,
        stream_stalls: 0,
        longest_wait: Duration::ZERO,
        consumer_resumes: 0,
    };
    if until_caught_up {
        if ordered.pending_at_start == 0 {
            return Ok((Stop::Done, progress.committed_sequence));
        }
        sink.reserve(ordered.pending_at_start);
    }
    let mut decoded = Decoder::<S>::spawn(ordered.messages);
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rejected = 0u64;
    let mut position = Position::new(bus, projection.name());
    position.report(&progress).await;

    loop {
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                commit(&mut sink, &mut rejected, &mut progress).await?;
                position.report(&progress).await;
                return Ok((Stop::Done, progress.committed_sequence));
            }
            chunk = decoded.chunks.recv() => {
                let chunk = match chunk {
                    Some(Ok((chunk, waited, resumes))) => {
                        progress.consumer_resumes = resumes;
                        progress.waited_for_stream += waited;
                        progress.longest_wait = progress.longest_wait.max(waited);
                        if waited > STALL {
                            progress.stream_stalls += 1;
                            debug!(
                                waited_ms = waited.as_millis(),
                                applied = progress.applied_sequence,
                                "the stream's next message was late"
                            );
                        }
                        chunk
                    }
                    Some(Err(error)) => return Err(LoopError::Consume(error)),
                    None => return Err(LoopError::Consume("the decoder stopped".into())),
                };
                for Delivered { sequence, stream_pending, decoded } in chunk {
                    let decoded_here = decoded.is_some();
                    match decoded {
                        Some(Ok(decoded)) => sink.apply(sequence, decoded),
                        Some(Err(reason)) => {
                            warn!(sequence, %reason, "event skipped");
                            rejected += 1;
                            sink.skip(sequence);
                        }
                        None => sink.skip(sequence),
                    }
                    progress.applied_sequence = sequence;
                    progress.stream_pending = stream_pending;
                    // Another projection's event is not this one's to write.
                    progress.uncommitted_events += u64::from(decoded_here);
                    let caught_up = until_caught_up && stream_pending == 0;
                    if caught_up {
                        sink.caught_up();
                    }
                    if sink.pending() >= config.max_pending || caught_up {
                        commit(&mut sink, &mut rejected, &mut progress).await?;
                        position.report(&progress).await;
                        on_progress(progress);
                    }
                    if caught_up {
                        return Ok((Stop::Done, progress.committed_sequence));
                    }
                }
            }
            _ = ticker.tick() => {
                // A replay is served only once complete, so it commits by size or when caught
                // up, not on the timer: a long rebuild writes a few large files instead of one
                // small flush per tick and the compactions that follow them.
                if !until_caught_up {
                    commit(&mut sink, &mut rejected, &mut progress).await?;
                    position.report(&progress).await;
                    if let Some(current) = projection.current_version().await?
                        && current != version
                    {
                        return Ok((Stop::Switch(current), progress.committed_sequence));
                    }
                }
                on_progress(progress);
            }
        }
    }
}

/// Flushes what is pending; the manifest it commits is the only checkpoint. A flush that
/// wrote something is measured (`observatory_projector_flush_*`).
async fn commit<S: Folding>(
    sink: &mut S,
    rejected: &mut u64,
    progress: &mut Progress,
) -> Result<(), LoopError<S::Error>> {
    let started = Instant::now();
    if let Some(sequence) = sink.flush(*rejected).await.map_err(LoopError::Sink)? {
        let writer = sink.writer();
        observatory_metrics::projector_flushed(
            writer.projection().name(),
            started.elapsed(),
            progress.uncommitted_events,
            writer.take_written_bytes(),
        );
        *rejected = 0;
        progress.committed_sequence = sequence;
    }
    // Nothing left to write: what was delivered is committed, or changed nothing.
    progress.uncommitted_events = 0;
    Ok(())
}

/// How often the stream's last sequence is read for the lag, and how long a read may take
/// (the loop waits for it: a server that does not answer must not hold the projector).
const STREAM_READ_EVERY: Duration = Duration::from_secs(1);
const STREAM_READ_TIMEOUT: Duration = Duration::from_millis(250);

/// A projection's place in the stream as the metrics show it, updated at each commit and each
/// tick: the committed sequence, and the lag behind the stream's last sequence. A projection
/// reads only its own subjects, so its committed sequence stays below the stream's end when
/// the newest events are another projection's: the lag is 0 once the consumer has nothing
/// more for it and everything delivered is committed.
struct Position<'a> {
    bus: &'a Bus,
    projection: &'static str,
    stream_last: u64,
    read_at: Option<Instant>,
}

impl<'a> Position<'a> {
    fn new(bus: &'a Bus, projection: &'static str) -> Position<'a> {
        Position { bus, projection, stream_last: 0, read_at: None }
    }

    async fn report(&mut self, progress: &Progress) {
        if self.read_at.is_none_or(|at| at.elapsed() >= STREAM_READ_EVERY) {
            self.read_at = Some(Instant::now());
            match tokio::time::timeout(STREAM_READ_TIMEOUT, self.bus.last_sequence()).await {
                Ok(Ok(last)) => self.stream_last = last,
                Ok(Err(error)) => debug!(%error, "cannot read the stream's last sequence"),
                Err(_) => debug!("the stream's last sequence was not read in time"),
            }
        }
        // What was delivered and is still pending is on the stream, whenever it was read.
        let stream_last = self.stream_last.max(progress.applied_sequence + progress.stream_pending);
        let lag = if progress.stream_pending == 0 && progress.uncommitted_events == 0 {
            0
        } else {
            stream_last.saturating_sub(progress.committed_sequence)
        };
        observatory_metrics::projector_position(self.projection, progress.committed_sequence, lag);
    }
}

/// Chunks the decoder may be ahead of the fold (at most 256 messages each).
const DECODED_CHUNKS_AHEAD: usize = 256;

/// One message as the decoder hands it to the fold.
struct Delivered<D> {
    sequence: u64,
    /// Matching messages after this one when it was delivered.
    stream_pending: u64,
    /// `None`: another projection's event.
    decoded: Option<Result<D, String>>,
}

/// Decodes messages on a task of its own, ahead of the fold: decoding is about half of a
/// projector's work per event and needs no state, so it overlaps with folding and writing.
/// Chunks keep the hand-over cheap; the bounded channel keeps memory bounded (about 65 000
/// incident events, some 20 MB).
/// Decoded messages, with how long the wait for the first of them took and how many times
/// the consumer had been recreated by then.
type Chunk<D> = (Vec<Delivered<D>>, Duration, u64);

struct Decoder<S: Folding> {
    chunks: tokio::sync::mpsc::Receiver<Result<Chunk<S::Decoded>, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: Folding> Decoder<S> {
    fn spawn(mut messages: OrderedConsumer) -> Decoder<S> {
        // Room for a flush's worth of reading ahead: while the fold writes Parquet (a few
        // hundred milliseconds for 250 000 changes) the decoder and nats-server keep going.
        let (sender, chunks) = tokio::sync::mpsc::channel(DECODED_CHUNKS_AHEAD);
        let task = tokio::spawn(async move {
            loop {
                // Wait for one message, then take what is already there, up to a chunk.
                let waiting = Instant::now();
                let mut next = messages.next().await;
                let waited = waiting.elapsed();
                let mut chunk = Vec::with_capacity(S::BATCH.min(256));
                let failure = loop {
                    match next {
                        Some(Ok(observatory_bus::Delivered {
                            message,
                            stream_sequence,
                            pending,
                        })) => {
                            chunk.push(Delivered {
                                sequence: stream_sequence,
                                stream_pending: pending,
                                decoded: message
                                    .subject
                                    .starts_with(S::SUBJECT_PREFIX)
                                    .then(|| S::decode(&message)),
                            });
                        }
                        Some(Err(error)) => break Some(error.to_string()),
                        None => break Some("the consumer's message stream ended".to_owned()),
                    }
                    if chunk.len() == chunk.capacity() {
                        break None;
                    }
                    match messages.next_ready() {
                        Some(message) => next = message,
                        None => break None,
                    }
                };
                let resumed = messages.resumed();
                if !chunk.is_empty() && sender.send(Ok((chunk, waited, resumed))).await.is_err() {
                    return;
                }
                if let Some(error) = failure {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        });
        Decoder { chunks, task }
    }
}

impl<S: Folding> Drop for Decoder<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
