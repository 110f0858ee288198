//! One survey as this ingest replica has read it from the stream, and the write that keeps
//! replicas agreeing on it.
//!
//! The ingest keeps no survey state that must be rebuilt at start: a survey's events are on
//! subjects of their own (`obs.survey.id.<survey>.<source>`), read on the survey's first
//! request and caught up before each decision. Every event is published with
//! `Nats-Expected-Last-Subject-Sequence` checked against all of the survey's subjects, so the
//! stream leader refuses an event decided on a stale reading, whichever replica or agency
//! wrote in between; the writer then catches up and decides again. Within a replica a
//! survey's requests are serialised by its view's lock.

use observatory_bus::{Bus, BusError, Outgoing, PublishFailure, Stored};
use observatory_model::survey::{
    DecodedSurveyEvent, LedgerError, LedgerOutcome, SurveyEvent, SurveyLedger,
};
use observatory_model::{source_matches_subject, survey_filter, survey_subject};
use tokio::time::{Duration, Instant};

use crate::error::ApiError;

/// How many times a request decides again after another writer reached the survey first.
/// Each round reads only what the other wrote; a survey has one producing agency, so more
/// than a few rounds means something keeps writing to it.
pub(super) const MAX_ROUNDS: usize = 8;

/// How long an absence seen on a follower may take to be confirmed against the leader's
/// last sequence (a follower lags the leader by milliseconds).
const CONFIRM_FOR: Duration = Duration::from_secs(2);

pub(super) struct SurveyView {
    survey: String,
    pub(super) ledger: SurveyLedger,
    /// The last sequence on the survey's subjects applied to `ledger` (0: none read yet).
    last_sequence: u64,
}

/// One of this request's events as the stream answered it.
pub(super) enum Written {
    /// Stored at `sequence`; what the ledger did with it.
    Stored { sequence: u64, outcome: LedgerOutcome },
    /// Another event reached the survey first. The view has caught up: decide again.
    Moved,
}

impl SurveyView {
    /// A view of `survey` starting from what the stream's earlier subjects held for it.
    pub(super) fn new(survey: &str, legacy: SurveyLedger) -> SurveyView {
        SurveyView { survey: survey.to_owned(), ledger: legacy, last_sequence: 0 }
    }

    /// Applies what the survey's subjects hold after the last sequence read. Returns each
    /// event read with its message id and outcome, so a writer finds its own among them.
    pub(super) async fn catch_up(
        &mut self,
        bus: &Bus,
    ) -> Result<Vec<(String, u64, LedgerOutcome)>, ApiError> {
        let stored = bus
            .on_subject_after(&survey_filter(&self.survey), self.last_sequence)
            .await
            .map_err(unreadable)?;
        let mut read = Vec::with_capacity(stored.len());
        for message in stored {
            let id = message.header("Nats-Msg-Id").unwrap_or_default().to_owned();
            if let Some(outcome) = self.apply(&message) {
                read.push((id, message.sequence, outcome));
            }
            self.last_sequence = message.sequence;
        }
        Ok(read)
    }

    /// Applies one stored event; `None` when it is skipped, as the projector skips it.
    fn apply(&mut self, message: &Stored) -> Option<LedgerOutcome> {
        let decoded = usable(message.sequence, &message.subject, &message.payload)?;
        Some(self.ledger.apply(message.sequence, &decoded.source, &decoded.event))
    }

    /// Whether a refusal drawn from an absence (a wave not declared) could come from a
    /// lagging read: the leader's last sequence on the survey is compared with the view's,
    /// and the view catches up to it. `true`: the view moved, decide again.
    pub(super) async fn moved_under(
        &mut self,
        bus: &Bus,
        refusal: &LedgerError,
    ) -> Result<bool, ApiError> {
        if !matches!(refusal, LedgerError::NotDeclared { .. }) {
            return Ok(false);
        }
        let filter = survey_filter(&self.survey);
        let leader = bus.last_on_subject_at_leader(&filter).await.map_err(unreadable)?;
        let Some(leader) = leader.map(|m| m.sequence).filter(|&s| s > self.last_sequence) else {
            return Ok(false);
        };
        let started = Instant::now();
        while self.last_sequence < leader {
            self.catch_up(bus).await?;
            if self.last_sequence < leader {
                if started.elapsed() > CONFIRM_FOR {
                    return Err(ApiError::unavailable(format!(
                        "the survey's events up to sequence {leader} could not be read back; retry in a few seconds"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(true)
    }

    /// Publishes `event` from `source` if the survey still is as this view read it.
    pub(super) async fn write(
        &mut self,
        bus: &Bus,
        source: &str,
        event: &SurveyEvent,
        max_message: usize,
    ) -> Result<Written, ApiError> {
        let envelope = event.envelope(source, chrono::Utc::now());
        // A message id of its own (the envelope's event id): another replica writing the
        // same rows at the same moment must not pass for this request's lost ack.
        let mut message = Outgoing::from_envelope(&envelope, event.dedupe_key(source), None);
        message.subject = survey_subject(&self.survey, source);
        message.expected_last_subject_sequence = Some(self.last_sequence);
        message.expected_last_subject_filter = Some(survey_filter(&self.survey));
        if message.payload.len() > max_message {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the event would be {} bytes, over the bus limit of {max_message} bytes; for final weights of a very large wave, raise max_payload in nats-server",
                    message.payload.len(),
                ),
            ));
        }
        let id = message.message_id.clone();
        match bus.publisher().publish_one(message).await {
            Ok(published) if !published.duplicate => {
                let outcome = self.ledger.apply(published.sequence, source, event);
                self.last_sequence = published.sequence;
                Ok(Written::Stored { sequence: published.sequence, outcome })
            }
            // The server checks the expected sequence before its duplicate window, so a
            // retried publish whose first attempt was stored (its ack lost) is refused as
            // stale: it is then found, by its message id, among the events read back.
            Ok(_) | Err(PublishFailure::WrongLastSequence) => {
                let read = self.catch_up(bus).await?;
                Ok(match read.into_iter().find(|(stored, ..)| Some(stored) == id.as_ref()) {
                    Some((_, sequence, outcome)) => Written::Stored { sequence, outcome },
                    None => Written::Moved,
                })
            }
            Err(failure) => Err(crate::upload::not_acknowledged(failure)),
        }
    }
}

/// A survey event read from the stream, decoded, if it is usable: the projector skips an
/// event that does not decode or whose source disagrees with its subject, and so does the
/// ingest (logged).
pub(super) fn usable(sequence: u64, subject: &str, payload: &[u8]) -> Option<DecodedSurveyEvent> {
    match SurveyEvent::decode(payload) {
        Ok(decoded) if source_matches_subject(&decoded.source, subject) => Some(decoded),
        Ok(_) => {
            tracing::warn!(
                sequence,
                subject,
                "survey event skipped: source does not match its subject"
            );
            None
        }
        Err(error) => {
            tracing::warn!(sequence, %error, "survey event skipped");
            None
        }
    }
}

fn unreadable(error: BusError) -> ApiError {
    ApiError::unavailable(format!("cannot read the survey's events from the stream: {error}"))
}

/// The refusal when a survey kept changing under a request.
pub(super) fn contended(survey: &str) -> ApiError {
    ApiError::unavailable(format!(
        "survey '{survey}' changed {MAX_ROUNDS} times while this request was decided (other requests are writing to it); retry"
    ))
}
