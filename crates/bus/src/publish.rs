//! Pipelined publishing: the message an event travels in ([`Outgoing`]), and a publisher that
//! sends a whole batch before awaiting its acks, and sends again what JetStream did not
//! acknowledge while a leader is being elected.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self};
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use observatory_model::{DedupeKey, Envelope, RevisionStamp, incident_subject};
use tokio::time::Instant;

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id`: the server answers a repeat within its duplicate window with the first
    /// copy's sequence instead of storing it again. An incident revision has none: it always
    /// carries an expected last subject sequence, which the leader checks first and which
    /// refuses a second copy by itself (see [`Outgoing::incident`]).
    pub message_id: Option<String>,
    /// The idempotency key, sent as [`crate::DEDUPE_HEADER`].
    pub dedupe: String,
    /// The revision stamp of an incident event, sent as [`crate::REVISION_HEADER`].
    pub revision: Option<String>,
    /// `Nats-Expected-Last-Subject-Sequence`: the server stores the event only if the
    /// subject's last message has this sequence (0: the subject has none).
    pub expected_last_subject_sequence: Option<u64>,
    /// `Nats-Expected-Last-Subject-Sequence-Subject`: the subjects (a wildcard filter) whose
    /// last message the expected sequence is checked against, instead of the event's own
    /// subject. A survey's events go to one subject per source and are checked against the
    /// survey's filter, so whichever source or replica wrote last, the next writer must
    /// have read it.
    pub expected_last_subject_filter: Option<String>,
    pub payload: Bytes,
}

impl Outgoing {
    /// The message that carries `envelope`, with its encoded bytes. An incident revision
    /// (`revision` given) goes to its incident's own subject without a message id; other
    /// events go to their kind's subject with their event id as message id.
    pub fn from_envelope(
        envelope: &Envelope,
        dedupe: DedupeKey,
        revision: Option<&RevisionStamp>,
    ) -> Outgoing {
        if let Some(stamp) = revision {
            return Outgoing::incident(&envelope.source, dedupe, stamp, envelope.to_bytes());
        }
        Outgoing {
            subject: envelope.subject(),
            message_id: Some(envelope.event_id.to_string()),
            dedupe: dedupe.to_hex(),
            revision: None,
            expected_last_subject_sequence: None,
            expected_last_subject_filter: None,
            payload: Bytes::from(envelope.to_bytes()),
        }
    }

    /// An incident revision's message: its encoded envelope ([`Envelope::encode`]) on its
    /// incident's own subject, without a message id. The same message
    /// [`from_envelope`](Self::from_envelope) makes, without an [`Envelope`] to hand.
    pub fn incident(
        source: &str,
        dedupe: DedupeKey,
        stamp: &RevisionStamp,
        payload: Vec<u8>,
    ) -> Outgoing {
        Outgoing {
            subject: incident_subject(source, stamp.incident),
            message_id: None,
            dedupe: dedupe.to_hex(),
            revision: Some(stamp.to_header()),
            expected_last_subject_sequence: None,
            expected_last_subject_filter: None,
            payload: Bytes::from(payload),
        }
    }

    /// The headers the message is sent with. Public so that the bench's raw publish sends
    /// exactly what the ingest sends, built the same way.
    pub fn headers(&self) -> HeaderMap {
        // Names built once: from a `&str`, every insert checked and copied the name again.
        const MSG_ID: HeaderName = HeaderName::from_static("Nats-Msg-Id");
        const DEDUPE: HeaderName = HeaderName::from_static(crate::DEDUPE_HEADER);
        const REVISION: HeaderName = HeaderName::from_static(crate::REVISION_HEADER);
        const EXPECTED: HeaderName = HeaderName::from_static("Nats-Expected-Last-Subject-Sequence");
        const EXPECTED_FILTER: HeaderName =
            HeaderName::from_static("Nats-Expected-Last-Subject-Sequence-Subject");
        let mut headers = HeaderMap::new();
        if let Some(id) = &self.message_id {
            headers.insert(MSG_ID, id.as_str());
        }
        headers.insert(DEDUPE, self.dedupe.as_str());
        if let Some(revision) = &self.revision {
            headers.insert(REVISION, revision.as_str());
        }
        if let Some(sequence) = self.expected_last_subject_sequence {
            headers.insert(EXPECTED, sequence.to_string());
            if let Some(filter) = &self.expected_last_subject_filter {
                headers.insert(EXPECTED_FILTER, filter.as_str());
            }
        }
        headers
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The server had already stored this message id within its duplicate window;
    /// `sequence` is the first copy's.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishFailure {
    /// The subject's last message is not the one the event expected: another event reached
    /// it first. Read the subject again and decide anew.
    #[error("another event reached the subject first (wrong last subject sequence)")]
    WrongLastSequence,
    #[error(
        "JetStream did not acknowledge the event within {retried_for:?} of retries: {reason}; retry the batch (accepted records are reported as duplicates)"
    )]
    Unavailable { reason: String, retried_for: Duration },
}

/// How long a publish that failed for a reason a cluster recovers from is sent again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Sending stops this long after the first attempt; what is still not acknowledged then
    /// is reported as [`PublishFailure::Unavailable`].
    pub retry_for: Duration,
    /// First pause between rounds; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one attempt waits for its ack. An ack takes milliseconds when a leader is
    /// there; during an election none comes, and waiting longer only leaves fewer attempts.
    pub ack_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 20 s: a crashed stream leader is replaced after a RAFT election timeout of 4 to 9 s
    /// (nats-server's raft.go), the client needs up to a few seconds more to reconnect to a
    /// surviving node, and an HTTP client waits 30 s or more for an answer. 250 ms first, as
    /// the Go and .NET clients retry no-responders.
    fn default() -> Self {
        RetryPolicy {
            retry_for: Duration::from_secs(20),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes with pipelined acks: every message is sent before any ack is awaited, the
/// context's in-flight limit applies backpressure, and every ack is awaited before returning.
/// Events not acknowledged because no server answered, the ack timed out or the connection
/// dropped are sent again, the same message, until [`RetryPolicy::retry_for`] has passed:
/// one stored whose ack was lost comes back as [`PublishFailure::WrongLastSequence`] if it
/// carries an expected last sequence (checked before the duplicate window; its caller then
/// finds its own copy on the subject), or else as a duplicate of itself by its message id.
#[derive(Clone)]
pub struct Publisher {
    jetstream: jetstream::Context,
    retry: RetryPolicy,
}

impl Publisher {
    pub(crate) fn new(jetstream: jetstream::Context, retry: RetryPolicy) -> Publisher {
        Publisher { jetstream, retry }
    }

    /// Results are in input order; a failure of one event does not stop the others.
    pub async fn publish_all(
        &self,
        events: Vec<Outgoing>,
    ) -> Vec<Result<Published, PublishFailure>> {
        self.publish_each(&events.iter().collect::<Vec<_>>()).await
    }

    /// [`publish_all`](Self::publish_all) for events the caller keeps (no copy of each).
    pub async fn publish_each(
        &self,
        events: &[&Outgoing],
    ) -> Vec<Result<Published, PublishFailure>> {
        let started = Instant::now();
        let mut results: Vec<Option<Result<Published, PublishFailure>>> = vec![None; events.len()];
        let mut todo: Vec<usize> = (0..events.len()).collect();
        let mut backoff = self.retry.first_backoff;
        let mut retries = 0u64;
        loop {
            let round = self.send_round(todo.iter().map(|&i| events[i])).await;
            let mut again = Vec::new();
            for (i, outcome) in todo.into_iter().zip(round) {
                match outcome {
                    Attempt::Done(result) => results[i] = Some(result),
                    Attempt::Retry(reason) => {
                        again.push(i);
                        results[i] = Some(Err(PublishFailure::Unavailable {
                            reason,
                            retried_for: started.elapsed(),
                        }));
                    }
                }
            }
            if again.is_empty() || started.elapsed() + backoff > self.retry.retry_for {
                if !again.is_empty() {
                    tracing::warn!(
                        events = again.len(),
                        retries,
                        "JetStream did not acknowledge events within the retry period"
                    );
                }
                break;
            }
            retries += 1;
            observatory_metrics::publish_retry_round();
            tracing::info!(events = again.len(), retry = retries, ?backoff, "publishing again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            todo = again;
        }
        results.into_iter().map(|r| r.expect("every event has an outcome")).collect()
    }

    /// Publishes one event and waits for its ack.
    pub async fn publish_one(&self, event: Outgoing) -> Result<Published, PublishFailure> {
        self.publish_each(&[&event]).await.pop().expect("publish_each answers every event")
    }

    /// One pipelined pass over `events`.
    ///
    /// Acks are awaited in the order of sending, the oldest only: a stream's leader answers
    /// one connection's publishes in order, so the oldest is the next to come, and an ack that
    /// came early waits in its future until its turn. A set of futures woken as each completes
    /// (FuturesOrdered) cost a task, a waker and a queue entry per event: a tenth of the
    /// ingest's CPU.
    async fn send_round<'a>(&self, events: impl Iterator<Item = &'a Outgoing>) -> Vec<Attempt> {
        let mut pending: VecDeque<AckFuture> = VecDeque::new();
        let mut outcomes = Vec::new();
        for event in events {
            let publish = self.jetstream.publish_with_headers(
                event.subject.clone(),
                event.headers(),
                event.payload.clone(),
            );
            tokio::pin!(publish);
            // An ack future holds one of the context's in-flight permits until it completes, so
            // acks are collected while waiting for a permit: a batch (or concurrent batches)
            // larger than the in-flight limit would otherwise wait forever for permits that only
            // its own unpolled acks can give back.
            let sent = loop {
                tokio::select! {
                    biased;
                    sent = &mut publish => break sent,
                    outcome = oldest(&mut pending), if !pending.is_empty() => outcomes.push(outcome),
                }
            };
            pending.push_back(AckFuture::start(sent));
        }
        while !pending.is_empty() {
            outcomes.push(oldest(&mut pending).await);
        }
        outcomes
    }
}

/// What one attempt to publish an event came to.
enum Attempt {
    Done(Result<Published, PublishFailure>),
    /// Worth sending again: the reason, for the answer if the retries run out.
    Retry(String),
}

/// Whether the server's own answer is one of an election in progress (no leader, no quorum),
/// or an ack that could not be read (the event may be stored: the same message id makes
/// sending it again safe). Limits, sizes and configuration errors are not retried.
fn transient(error: &jetstream::context::PublishError) -> bool {
    use jetstream::ErrorCode;
    match server_error(error) {
        Some(server) => [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::CLUSTER_NOT_ACTIVE,
            ErrorCode::CLUSTER_INCOMPLETE,
            ErrorCode::RAFT_GENERAL,
        ]
        .contains(&server.error_code()),
        None => true,
    }
}

type Acked = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>;

/// An ack awaited, or what came of the event already.
enum AckFuture {
    Waiting(<PublishAckFuture as std::future::IntoFuture>::IntoFuture),
    Ready(Option<Acked>),
}

impl AckFuture {
    /// Polls the ack once as soon as it is sent, with a waker that does nothing: that starts
    /// its timeout now, so acks lost together (a leader lost) time out together instead of one
    /// after another as each becomes the oldest. It is polled with the real waker when its
    /// turn comes.
    fn start(sent: Result<PublishAckFuture, jetstream::context::PublishError>) -> AckFuture {
        let mut ack = match sent {
            Ok(ack) => ack.into_future(),
            Err(error) => return AckFuture::Ready(Some(Err(error))),
        };
        match ack.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(acked) => AckFuture::Ready(Some(acked)),
            std::task::Poll::Pending => AckFuture::Waiting(ack),
        }
    }
}

/// The outcome of the oldest pending ack, removed once it is ready. Cancel-safe: until then
/// the future stays at the front, polled again next time.
async fn oldest(pending: &mut VecDeque<AckFuture>) -> Attempt {
    let acked = std::future::poll_fn(|cx| match pending.front_mut().expect("an ack is pending") {
        AckFuture::Waiting(ack) => ack.as_mut().poll(cx),
        AckFuture::Ready(acked) => {
            std::task::Poll::Ready(acked.take().expect("an outcome is taken once"))
        }
    })
    .await;
    pending.pop_front();
    attempt(acked)
}

/// The server's own error in an ack, if the ack was one.
fn server_error(error: &jetstream::context::PublishError) -> Option<&jetstream::Error> {
    std::error::Error::source(error).and_then(|s| s.downcast_ref::<jetstream::Error>())
}

/// Whether the server refused the event because its subject's last sequence was not the one
/// expected. A clustered stream's leader answers so with its own code (10164, "wrong last
/// sequence" without the number) when the subject has a message in flight in the RAFT group,
/// which async-nats does not map to `WrongLastSequence`: an R3 race between two writers of
/// one incident must be decided again, not answered 503.
fn wrong_last_sequence(error: &jetstream::context::PublishError) -> bool {
    error.kind() == PublishErrorKind::WrongLastSequence
        || server_error(error).is_some_and(|server| {
            server.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        })
}

/// What an ack (or the failure to send) says of an attempt.
fn attempt(acked: Acked) -> Attempt {
    match acked {
        Ok(ack) => {
            Attempt::Done(Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate }))
        }
        Err(error) if wrong_last_sequence(&error) => {
            Attempt::Done(Err(PublishFailure::WrongLastSequence))
        }
        Err(error) => match error.kind() {
            // No responders (no stream leader while one is elected, reported by async-nats
            // as "stream not found"), a lost ack, a dropped connection and a full in-flight
            // window all pass once a leader is back.
            PublishErrorKind::StreamNotFound
            | PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending => Attempt::Retry(error.to_string()),
            PublishErrorKind::Other if transient(&error) => Attempt::Retry(error.to_string()),
            _ => Attempt::Done(Err(PublishFailure::Unavailable {
                reason: error.to_string(),
                retried_for: Duration::ZERO,
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bus, BusConfig};

    /// An event with no revision and no expectation, `{}` as payload.
    fn plain(subject: String, message_id: String, i: usize) -> Outgoing {
        Outgoing {
            subject,
            message_id: Some(message_id),
            dedupe: format!("{i:032x}"),
            revision: None,
            expected_last_subject_sequence: None,
            expected_last_subject_filter: None,
            payload: Bytes::from_static(b"{}"),
        }
    }

    /// An incident revision goes without a message id: its expected last subject sequence
    /// refuses a second copy by itself, stored or still on its way, so a retry of a stored
    /// attempt is refused as stale rather than answered as a duplicate, and nats-server keeps
    /// no id of it. Other events keep their event id.
    #[tokio::test]
    async fn an_incident_revision_is_sent_once_by_its_expectation_not_by_a_message_id() {
        let stamp = RevisionStamp { incident: 42, revision: 1, content: 7, withdrawal: false };
        let mut revision = Outgoing::incident("pn", DedupeKey(42_001), &stamp, b"{}".to_vec());
        let headers = revision.headers();
        assert_eq!(headers.get("Nats-Msg-Id"), None);
        assert_eq!(
            headers.get(crate::DEDUPE_HEADER).map(|v| v.as_str()),
            Some(revision.dedupe.as_str())
        );
        assert_eq!(
            headers.get(crate::REVISION_HEADER).map(|v| v.as_str()),
            Some(stamp.to_header().as_str())
        );
        let other = plain("obs.incident.period_closed.pn".into(), "e-1".into(), 1);
        assert_eq!(other.headers().get("Nats-Msg-Id").map(|v| v.as_str()), Some("e-1"));

        let nats = observatory_test_support::TestNats::start();
        let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
        revision.expected_last_subject_sequence = Some(0);
        let results = bus.publisher().publish_all(vec![revision.clone(), revision.clone()]).await;
        let first = results[0].as_ref().expect("the first copy is stored");
        assert!(!first.duplicate);
        assert_eq!(results[1], Err(PublishFailure::WrongLastSequence));
        let stored = bus.last_on_subject(&revision.subject).await.unwrap().unwrap();
        assert_eq!((stored.sequence, stored.header("Nats-Msg-Id")), (first.sequence, None));
        assert_eq!(
            bus.publisher().publish_one(revision).await,
            Err(PublishFailure::WrongLastSequence)
        );
    }

    /// More events than the in-flight limit, in one call and in concurrent calls: every ack
    /// comes back, in input order.
    #[tokio::test]
    async fn batches_larger_than_the_inflight_limit_complete() {
        let nats = observatory_test_support::TestNats::start();
        let mut config = BusConfig::new(nats.url());
        config.max_inflight = 64;
        let bus = Bus::connect(config).await.unwrap();
        let batch = |tag: &str, n: usize| -> Vec<Outgoing> {
            (0..n)
                .map(|i| plain("obs.incident.reported.pn".into(), format!("{tag}-{i}"), i))
                .collect()
        };
        let publisher = bus.publisher();
        let one = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            publisher.publish_all(batch("a", 1000)),
        )
        .await
        .expect("a batch over the in-flight limit must not hang");
        let sequences: Vec<u64> = one.iter().map(|r| r.as_ref().unwrap().sequence).collect();
        assert_eq!(sequences, (1..=1000).collect::<Vec<_>>());
        let (b, c) = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            futures::future::join(
                publisher.publish_all(batch("b", 500)),
                publisher.publish_all(batch("c", 500)),
            ),
        )
        .await
        .expect("concurrent batches over the in-flight limit must not hang");
        assert!(b.iter().chain(&c).all(|r| r.as_ref().is_ok_and(|p| !p.duplicate)));
    }

    /// Acks that never come time out together, not one after another as each becomes the
    /// oldest: a batch sent while no stream answers (a subject only a silent subscriber
    /// hears) fails after about one ack timeout per round, not one per event.
    #[tokio::test]
    async fn lost_acks_time_out_together() {
        let nats = observatory_test_support::TestNats::start();
        let mut config = BusConfig::new(nats.url());
        config.retry = RetryPolicy {
            retry_for: Duration::from_millis(300),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(100),
            ack_timeout: Duration::from_millis(300),
        };
        let bus = Bus::connect(config).await.unwrap();
        // Outside the stream's subjects: the request reaches this subscriber, which never answers.
        let _silent = bus.client().subscribe("silent.>").await.unwrap();
        let events: Vec<Outgoing> =
            (0..200).map(|i| plain(format!("silent.{i}"), format!("s-{i}"), i)).collect();
        // One after another, 200 timeouts of 300 ms would take a minute.
        let results =
            tokio::time::timeout(Duration::from_secs(20), bus.publisher().publish_all(events))
                .await
                .expect("lost acks must time out together");
        assert!(results.iter().all(|r| matches!(r, Err(PublishFailure::Unavailable { .. }))));
    }
}
