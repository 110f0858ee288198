//! Reading single events back by subject or by sequence (JetStream direct get), for the
//! checks made before and after publishing an incident revision: what its incident's subject
//! already holds, and whether a copy the server reported as a duplicate is this request's
//! own earlier attempt.

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use bytes::Bytes;
use tokio::time::Instant;

use crate::{Bus, BusError, RetryPolicy};

/// One event as the stream stores it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sequence: u64,
    /// The subject it was published on (its last token is its source).
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }
}

/// Which message a direct get asks for.
#[derive(Clone, Copy)]
enum Get<'a> {
    LastOn(&'a str),
    /// The first message on the subject at or after the sequence.
    NextOn(&'a str, u64),
}

impl Bus {
    /// The last event on `subject`, if any.
    pub async fn last_on_subject(&self, subject: &str) -> Result<Option<Stored>, BusError> {
        self.direct(Get::LastOn(subject)).await
    }

    /// The last event on `subject` as the stream leader has it: for a conclusion drawn from
    /// an absence, which a lagging replica could give.
    pub async fn last_on_subject_at_leader(
        &self,
        subject: &str,
    ) -> Result<Option<Stored>, BusError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let stream: Stream<()> = self
            .jetstream
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| self.stream_error(&e))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(Stored {
                sequence: message.sequence,
                subject: message.subject.to_string(),
                headers: message.headers,
                payload: message.payload,
            })),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(self.stream_error(&e)),
        }
    }

    /// Every event on `subject`, in stream order.
    pub async fn all_on_subject(&self, subject: &str) -> Result<Vec<Stored>, BusError> {
        self.on_subject_after(subject, 0).await
    }

    /// Every event on `subject` (a filter: wildcards allowed) after sequence `after`, in stream
    /// order: the catch-up of a reader that has seen the subject up to `after`.
    pub async fn on_subject_after(
        &self,
        subject: &str,
        after: u64,
    ) -> Result<Vec<Stored>, BusError> {
        let mut all = Vec::new();
        let mut from = after + 1;
        while let Some(stored) = self.direct(Get::NextOn(subject, from)).await? {
            from = stored.sequence + 1;
            all.push(stored);
        }
        Ok(all)
    }

    /// A direct get, answered by any replica (a follower may lag the leader: callers only
    /// draw conclusions the leader checks again, through the expected-sequence header).
    /// Timeouts and failed requests (an election, a reconnection) are retried for the
    /// publisher's retry period.
    async fn direct(&self, get: Get<'_>) -> Result<Option<Stored>, BusError> {
        let stream: Stream<()> = self
            .jetstream
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| self.stream_error(&e))?;
        let RetryPolicy { retry_for, first_backoff, max_backoff, .. } = self.config.retry;
        let started = Instant::now();
        let mut backoff = first_backoff;
        loop {
            let answer = match get {
                Get::LastOn(subject) => stream.direct_get_last_for_subject(subject).await,
                Get::NextOn(subject, from) => {
                    stream.direct_get_next_for_subject(subject, Some(from)).await
                }
            };
            match answer {
                Ok(message) => {
                    return Ok(Some(Stored {
                        sequence: message.sequence,
                        subject: message.subject.to_string(),
                        headers: message.headers,
                        payload: message.payload,
                    }));
                }
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => return Ok(None),
                Err(e)
                    if matches!(
                        e.kind(),
                        DirectGetErrorKind::TimedOut | DirectGetErrorKind::Request
                    ) && started.elapsed() + backoff <= retry_for =>
                {
                    tracing::info!(error = %e, ?backoff, "direct get failed; asking again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                }
                Err(e) => return Err(self.stream_error(&e)),
            }
        }
    }

    fn stream_error(&self, e: &dyn std::fmt::Display) -> BusError {
        BusError::Stream { stream: self.config.stream.clone(), message: e.to_string() }
    }
}
