//! The survey ingest's state: its agencies, its bus and the ledger of every wave, rebuilt at
//! start by replaying the survey events.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use observatory_bus::{Bus, BusError};
use observatory_model::survey::{SurveyEvent, SurveyLedger};
use tokio::sync::Mutex;

use super::SURVEY_SUBJECTS;
use crate::agencies::AgencyRegistry;

/// Room left in a message for the envelope around a payload.
pub(super) const ENVELOPE_ROOM: usize = 4 * 1024;

pub struct SurveyIngestState {
    pub(super) registry: AgencyRegistry,
    pub(super) bus: Bus,
    /// Held from checking a request against the ledger until its events are acknowledged,
    /// so a closure cannot overtake the responses accepted before it.
    pub(super) ledger: Mutex<SurveyLedger>,
    ready: AtomicBool,
}

impl SurveyIngestState {
    /// Not ready until [`load_from_stream`](Self::load_from_stream) has replayed the waves.
    pub fn new(registry: AgencyRegistry, bus: Bus) -> SurveyIngestState {
        SurveyIngestState {
            registry,
            bus,
            ledger: Mutex::new(SurveyLedger::new()),
            ready: AtomicBool::new(false),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Replays every survey event into the ledger, then marks the endpoints ready. Returns the
    /// number of events read.
    pub async fn load_from_stream(&self) -> Result<u64, BusError> {
        let bus = &self.bus;
        let stream_err = |e: &dyn std::fmt::Display| BusError::Stream {
            stream: bus.config().stream.clone(),
            message: e.to_string(),
        };
        let total = crate::replay::messages_on(bus, SURVEY_SUBJECTS).await?;
        let mut ledger = self.ledger.lock().await;
        let mut seen = 0u64;
        if total > 0 {
            let mut messages = bus.ordered_replay(SURVEY_SUBJECTS, false).await?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| BusError::Consumer {
                    stream: bus.config().stream.clone(),
                    name: "survey replay".into(),
                    message: e.to_string(),
                })?;
                seen += 1;
                let info = message.info().map_err(|e| stream_err(&e))?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                match SurveyEvent::decode(&message.payload) {
                    // The projector skips events whose source disagrees with the subject; so does this.
                    Ok(decoded)
                        if observatory_model::source_matches_subject(
                            &decoded.source,
                            &message.subject,
                        ) =>
                    {
                        ledger.apply(sequence, &decoded.source, &decoded.event);
                    }
                    Ok(_) => {
                        tracing::warn!(sequence, subject = %message.subject, "survey event skipped: source does not match its subject")
                    }
                    Err(error) => tracing::warn!(sequence, %error, "survey event skipped"),
                }
                if pending == 0 {
                    break;
                }
            }
        }
        drop(ledger);
        self.ready.store(true, Ordering::Release);
        Ok(seen)
    }

    /// Largest payload a survey event may have: the server's limit minus the envelope.
    pub(super) fn max_payload(&self) -> usize {
        let server = self.bus.client().server_info().max_payload;
        let server = if server == 0 { 1024 * 1024 } else { server };
        server.saturating_sub(ENVELOPE_ROOM).max(16 * 1024)
    }
}
