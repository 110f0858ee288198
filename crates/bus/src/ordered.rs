//! An ordered consumer that does not wait on a pull request nobody answers.
//!
//! async-nats' ordered consumer recovers from a missed delivery by itself, but slowly: when a
//! pull request it sent is never answered, it sends the next one only after the request's
//! expiry plus five seconds (`jetstream/consumer/pull.rs`, "edge case of missing response").
//! Rebuilds were seen to stop for exactly that long (7.0 s, traced with async-nats' debug
//! log), a tenth of a 10M-event rebuild. While the stream still owes messages, a second of
//! silence is not a quiet stream but a lost request, so this wrapper recreates the consumer
//! from the last sequence it delivered: messages still arrive exactly once and in order.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::{FutureExt, StreamExt};
use tracing::warn;

use crate::BusError;

/// What one consumer reads: which messages, and how many per pull request.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub filter_subject: String,
    pub headers_only: bool,
    pub max_batch: usize,
}

/// One message with its place in the stream, as [`OrderedConsumer::next`] delivers it.
pub struct Delivered {
    pub message: jetstream::Message,
    pub stream_sequence: u64,
    /// Matching messages after this one when it was delivered.
    pub pending: u64,
}

/// An ordered, ephemeral consumer (see [`crate::Bus::ordered_from`]) that recreates itself
/// after `resume_after` without a message while messages are pending, waiting twice as long
/// before each further attempt that brings nothing.
pub struct OrderedConsumer {
    stream: stream::Stream,
    spec: Spec,
    inner: jetstream::consumer::pull::Ordered,
    last_sequence: u64,
    last_pending: u64,
    resume_after: Duration,
    quiet: Duration,
    resumed: u64,
    /// What errors call the consumer.
    name: &'static str,
}

/// What errors call a consumer not [`named`](OrderedConsumer::named).
const UNNAMED: &str = "ordered consumer";

/// The longest silence waited for before another resumption, as a multiple of the first.
const MAX_BACKOFF: u32 = 16;

impl OrderedConsumer {
    pub(crate) async fn open(
        stream: stream::Stream,
        spec: Spec,
        after_sequence: u64,
        resume_after: Duration,
    ) -> Result<(OrderedConsumer, u64), BusError> {
        let (inner, pending) = create(&stream, &spec, after_sequence).await?;
        let consumer = OrderedConsumer {
            stream,
            spec,
            inner,
            last_sequence: after_sequence,
            last_pending: pending,
            resume_after,
            quiet: resume_after,
            resumed: 0,
            name: UNNAMED,
        };
        Ok((consumer, pending))
    }

    /// The next message, waiting as long as it takes while nothing is pending (a live
    /// stream). `None` when the client's stream ends.
    pub async fn next(&mut self) -> Option<Result<Delivered, BusError>> {
        loop {
            // The timer is armed only when a message is not already there: most calls find one.
            let next = match self.inner.next().now_or_never() {
                Some(next) => next,
                None if self.last_pending == 0 || self.resume_after.is_zero() => {
                    self.inner.next().await
                }
                None => match tokio::time::timeout(self.quiet, self.inner.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.resume().await;
                        continue;
                    }
                },
            };
            return next.map(|next| self.delivered(next));
        }
    }

    /// The next message if the client already holds it, without waiting.
    pub fn next_ready(&mut self) -> Option<Option<Result<Delivered, BusError>>> {
        let next = self.inner.next().now_or_never()?;
        Some(next.map(|next| self.delivered(next)))
    }

    /// Names the consumer in its errors (what it reads for).
    pub fn named(self, name: &'static str) -> OrderedConsumer {
        OrderedConsumer { name, ..self }
    }

    /// How many times the consumer was recreated after a silence.
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    /// The client's consumer alone, without the resumption: what the bench's raw replay
    /// measures as the limit of reading the stream.
    pub fn into_inner(self) -> jetstream::consumer::pull::Ordered {
        self.inner
    }

    fn delivered(
        &mut self,
        next: Result<jetstream::Message, jetstream::consumer::pull::OrderedError>,
    ) -> Result<Delivered, BusError> {
        let message = next.map_err(|e| self.error(&e))?;
        let (stream_sequence, pending) = match message.reply.as_deref().and_then(place) {
            Some(place) => place,
            None => {
                let info = message.info().map_err(|e| self.error(&e))?;
                (info.stream_sequence, info.pending)
            }
        };
        self.last_sequence = stream_sequence;
        self.last_pending = pending;
        self.quiet = self.resume_after;
        Ok(Delivered { message, stream_sequence, pending })
    }

    /// Replaces the consumer with one starting after the last message delivered. A failure
    /// keeps the old one, which the client still recovers on its own timer.
    async fn resume(&mut self) {
        let waited = self.quiet;
        self.quiet = (self.quiet * 2).min(self.resume_after * MAX_BACKOFF);
        match create(&self.stream, &self.spec, self.last_sequence).await {
            Ok((inner, pending)) => {
                warn!(
                    filter = %self.spec.filter_subject,
                    after_sequence = self.last_sequence,
                    owed = self.last_pending,
                    pending,
                    waited_ms = waited.as_millis(),
                    "no message while the stream owed some; consumer recreated"
                );
                self.inner = inner;
                self.resumed += 1;
                // What the new consumer owes, not what the last message said: messages purged
                // meanwhile would otherwise keep it recreating a consumer that owes nothing.
                self.last_pending = pending;
            }
            Err(error) => warn!(%error, "recreating a silent consumer failed; still waiting"),
        }
    }

    fn error(&self, e: &dyn std::fmt::Display) -> BusError {
        consumer_error(&self.stream, self.name, e)
    }
}

/// A message's stream sequence and the messages pending after it, read from its ack subject
/// in either layout of ADR-15 (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
/// <consumer seq>.<timestamp>.<pending>`, or with a domain and an account hash before the
/// stream and optional tokens after the pending count). `Message::info` reads every field and
/// converts the timestamp; the client has already done so once for its own bookkeeping, and
/// the second time was 1.3 % of a rebuild's CPU. `None` for anything else: `info` then says
/// what is wrong with it.
fn place(reply: &str) -> Option<(u64, u64)> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens = [""; 9];
    let mut count = 0;
    for token in rest.split('.') {
        if let Some(slot) = tokens.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let (sequence, pending) = match count {
        7 => (tokens[3], tokens[6]),
        9.. => (tokens[5], tokens[8]),
        _ => return None,
    };
    Some((sequence.parse().ok()?, pending.parse().ok()?))
}

fn consumer_error(stream: &stream::Stream, name: &str, e: &dyn std::fmt::Display) -> BusError {
    BusError::Consumer {
        stream: stream.cached_info().config.name.clone(),
        name: name.to_owned(),
        message: e.to_string(),
    }
}

/// The client's ordered consumer from `after_sequence`, and how many messages it had to
/// deliver when created.
async fn create(
    stream: &stream::Stream,
    spec: &Spec,
    after_sequence: u64,
) -> Result<(jetstream::consumer::pull::Ordered, u64), BusError> {
    let deliver_policy = if after_sequence == 0 {
        jetstream::consumer::DeliverPolicy::All
    } else {
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: after_sequence + 1 }
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: spec.filter_subject.clone(),
            headers_only: spec.headers_only,
            deliver_policy,
            max_batch: i64::try_from(spec.max_batch).unwrap_or(i64::MAX),
            // Short pull requests, hence a 1 s idle heartbeat: when the client's count of
            // messages still owed goes wrong (it can under CPU contention) the stream stalls
            // until two heartbeats are missed and the consumer is recreated. With the
            // client's default 30 s expiry that stall was seen to last 35 s in a rebuild.
            max_expires: ORDERED_PULL_EXPIRY,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_error(stream, UNNAMED, &e))?;
    let pending = consumer.cached_info().num_pending;
    let messages = consumer.messages().await.map_err(|e| consumer_error(stream, UNNAMED, &e))?;
    Ok((messages, pending))
}

/// Expiry of an ordered consumer's pull requests (its idle heartbeat is half of it).
const ORDERED_PULL_EXPIRY: Duration = Duration::from_secs(2);

/// How long an ordered consumer waits for a message the stream owes before recreating
/// itself: half a pull request's expiry, as long as the client's own heartbeat.
pub const DEFAULT_RESUME_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::place;

    #[test]
    fn the_sequence_and_pending_count_are_read_from_either_ack_subject_layout() {
        // The layout nats-server sends without a domain, as this bus's consumers see it.
        assert_eq!(place("$JS.ACK.OBSERVATORY.c1.1.42.41.1733400000000000000.7"), Some((42, 7)));
        // With a domain and an account hash, with and without the trailing token.
        let v2 = "$JS.ACK.hub.ACCHASH.OBSERVATORY.c1.3.42.41.1733400000000000000.7";
        assert_eq!(place(v2), Some((42, 7)));
        assert_eq!(place(&format!("{v2}.r4nd0m")), Some((42, 7)));
        assert_eq!(
            place("$JS.ACK._.ACCHASH.S.c.1.18446744073709551615.1.0.0"),
            Some((u64::MAX, 0))
        );
        // Anything else is left to `Message::info`, which explains the fault.
        for bad in [
            "",
            "_INBOX.abc",
            "$JS.ACK.S.c.1.42.41.0",
            "$JS.ACK.S.c.1.42.41.0.7.x",
            "$JS.ACK.S.c.1.-42.41.0.7",
            "$JS.ACK.S.c.1.42.41.0.seven",
            "$JS.ACK.S.c.1.18446744073709551616.41.0.7",
            "$JS.ACKS.c.1.42.41.0.7.x",
        ] {
            assert_eq!(place(bad), None, "{bad:?}");
        }
    }
}
