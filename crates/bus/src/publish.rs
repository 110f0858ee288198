//! Pipelined publishing: the message an event travels in ([`Outgoing`]), and a publisher that
//! sends a whole batch before awaiting its acks.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use observatory_model::{DedupeKey, Envelope, RevisionStamp};

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id` (the event id): the server drops a repeat within its window.
    pub message_id: String,
    /// The idempotency key, sent as [`crate::DEDUPE_HEADER`].
    pub dedupe: String,
    /// The revision stamp of an incident event, sent as [`crate::REVISION_HEADER`].
    pub revision: Option<String>,
    pub payload: Bytes,
}

impl Outgoing {
    /// The message that carries `envelope`: its subject, its event id as `Nats-Msg-Id` and its
    /// encoded bytes. `dedupe` is the event's idempotency key; `revision` is the stamp of an
    /// incident revision (none for other events).
    pub fn from_envelope(
        envelope: &Envelope,
        dedupe: DedupeKey,
        revision: Option<&RevisionStamp>,
    ) -> Outgoing {
        Outgoing {
            subject: envelope.subject(),
            message_id: envelope.event_id.to_string(),
            dedupe: dedupe.to_hex(),
            revision: revision.map(RevisionStamp::to_header),
            payload: Bytes::from(envelope.to_bytes()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The server had already stored this message id within its duplicate window.
    pub duplicate: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "JetStream did not acknowledge the event: {0}; retry the batch (accepted records are reported as duplicates)"
)]
pub struct PublishFailure(pub String);

/// Publishes with pipelined acks: every message is sent before any ack is awaited, the
/// context's in-flight limit applies backpressure, and every ack is awaited before returning.
#[derive(Clone)]
pub struct Publisher {
    jetstream: jetstream::Context,
}

impl Publisher {
    pub(crate) fn new(jetstream: jetstream::Context) -> Publisher {
        Publisher { jetstream }
    }

    /// Results are in input order; a failure of one event does not stop the others.
    pub async fn publish_all(
        &self,
        events: Vec<Outgoing>,
    ) -> Vec<Result<Published, PublishFailure>> {
        let mut pending: FuturesOrdered<AckOrFailure> = FuturesOrdered::new();
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.message_id.as_str());
            headers.insert(crate::DEDUPE_HEADER, event.dedupe.as_str());
            if let Some(revision) = &event.revision {
                headers.insert(crate::REVISION_HEADER, revision.as_str());
            }
            let publish =
                self.jetstream.publish_with_headers(event.subject, headers, event.payload);
            tokio::pin!(publish);
            // An ack future holds one of the context's in-flight permits until it completes, so
            // acks are collected while waiting for a permit: a batch (or concurrent batches)
            // larger than the in-flight limit would otherwise wait forever for permits that only
            // its own unpolled acks can give back.
            let sent = loop {
                tokio::select! {
                    biased;
                    sent = &mut publish => break sent,
                    Some(result) = pending.next(), if !pending.is_empty() => results.push(result),
                }
            };
            pending.push_back(await_ack(sent));
        }
        while let Some(result) = pending.next().await {
            results.push(result);
        }
        results
    }

    /// Publishes one event and waits for its ack.
    pub async fn publish_one(&self, event: Outgoing) -> Result<Published, PublishFailure> {
        self.publish_all(vec![event]).await.pop().expect("publish_all answers every event")
    }
}

type AckOrFailure = futures::future::BoxFuture<'static, Result<Published, PublishFailure>>;

fn await_ack(sent: Result<PublishAckFuture, jetstream::context::PublishError>) -> AckOrFailure {
    Box::pin(async move {
        let ack = sent
            .map_err(|e| PublishFailure(e.to_string()))?
            .await
            .map_err(|e| PublishFailure(e.to_string()))?;
        Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bus, BusConfig};

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
                .map(|i| Outgoing {
                    subject: "obs.incident.reported.pn".into(),
                    message_id: format!("{tag}-{i}"),
                    dedupe: format!("{i:032x}"),
                    revision: None,
                    payload: Bytes::from_static(b"{}"),
                })
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
}
