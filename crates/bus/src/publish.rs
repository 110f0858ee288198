use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

/// One event ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id` (the event id): the server drops a repeat within its window.
    pub message_id: String,
    /// The idempotency key, sent as [`crate::DEDUPE_HEADER`].
    pub dedupe: String,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The server had already stored this message id within its duplicate window.
    pub duplicate: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("JetStream did not acknowledge the event: {0}; retry the batch (accepted records are reported as duplicates)")]
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
    pub async fn publish_all(&self, events: Vec<Outgoing>) -> Vec<Result<Published, PublishFailure>> {
        let mut pending: FuturesOrdered<AckOrFailure> = FuturesOrdered::new();
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.message_id.as_str());
            headers.insert(crate::DEDUPE_HEADER, event.dedupe.as_str());
            let sent = self.jetstream.publish_with_headers(event.subject, headers, event.payload).await;
            pending.push_back(await_ack(sent));
            // Drain acks that are already in, so memory stays bounded on large batches.
            while pending.len() > 16_384 {
                results.push(pending.next().await.expect("non-empty"));
            }
        }
        while let Some(result) = pending.next().await {
            results.push(result);
        }
        results
    }
}

type AckOrFailure = futures::future::BoxFuture<'static, Result<Published, PublishFailure>>;

fn await_ack(sent: Result<PublishAckFuture, jetstream::context::PublishError>) -> AckOrFailure {
    Box::pin(async move {
        let ack = sent.map_err(|e| PublishFailure(e.to_string()))?.await.map_err(|e| PublishFailure(e.to_string()))?;
        Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate })
    })
}
