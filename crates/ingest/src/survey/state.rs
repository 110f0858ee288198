//! The survey ingest's state: its agencies, its bus, and a view of each survey a request has
//! touched ([`SurveyView`]), read from the survey's own subjects when first needed. What
//! streams of earlier versions hold on the old subjects (one per event kind and source) is
//! read once at start: that part never grows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use observatory_bus::{Bus, BusError};
use observatory_model::LEGACY_SURVEY_SUBJECTS;
use observatory_model::survey::{SurveyEvent, SurveyLedger};
use tokio::sync::Mutex;

use super::view::{SurveyView, usable};
use crate::agencies::AgencyRegistry;

/// Room left in a message for the envelope around a payload.
pub(super) const ENVELOPE_ROOM: usize = 4 * 1024;

pub struct SurveyIngestState {
    pub(super) registry: AgencyRegistry,
    pub(super) bus: Bus,
    /// One view per survey, its lock held by a request from its first reading of the survey
    /// to its last event's acknowledgement.
    views: std::sync::Mutex<HashMap<String, Arc<Mutex<SurveyView>>>>,
    /// What the old subjects held, by survey; moved into a survey's view when it is made.
    legacy: std::sync::Mutex<HashMap<String, SurveyLedger>>,
    ready: AtomicBool,
    /// Most rows one upload may carry ([`crate::api::IngestConfig::max_records_per_request`]).
    pub(super) max_rows: usize,
}

impl SurveyIngestState {
    /// Not ready until [`load_legacy`](Self::load_legacy) has read the old subjects.
    pub fn new(
        registry: AgencyRegistry,
        bus: Bus,
        config: &crate::api::IngestConfig,
    ) -> SurveyIngestState {
        SurveyIngestState {
            registry,
            bus,
            views: Default::default(),
            legacy: Default::default(),
            ready: AtomicBool::new(false),
            max_rows: config.max_records_per_request,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The view of `survey`, made on first use (not read yet: its holder catches it up).
    pub(super) fn view(&self, survey: &str) -> Arc<Mutex<SurveyView>> {
        let mut views = self.views.lock().expect("survey views lock");
        views
            .entry(survey.to_owned())
            .or_insert_with(|| {
                let legacy = self.legacy.lock().expect("legacy lock").remove(survey);
                Arc::new(Mutex::new(SurveyView::new(survey, legacy.unwrap_or_default())))
            })
            .clone()
    }

    /// Reads the survey events that earlier versions published on the old subjects (a
    /// stream written only by this version has none), then marks the endpoints ready.
    /// Returns the number of events read.
    pub async fn load_legacy(&self) -> Result<u64, BusError> {
        let mut events = Vec::new();
        for filter in LEGACY_SURVEY_SUBJECTS {
            read_all(&self.bus, filter, &mut events).await?;
        }
        let read = events.len() as u64;
        // Three filters read one after the other: the ledger takes them in stream order.
        events.sort_by_key(|(sequence, ..)| *sequence);
        let mut legacy = self.legacy.lock().expect("legacy lock");
        for (sequence, source, event) in events {
            legacy.entry(event.survey().to_owned()).or_default().apply(sequence, &source, &event);
        }
        drop(legacy);
        self.ready.store(true, Ordering::Release);
        Ok(read)
    }

    /// Largest payload a survey event may have: the server's limit minus the envelope.
    pub(super) fn max_payload(&self) -> usize {
        let server = self.bus.client().server_info().max_payload;
        let server = if server == 0 { 1024 * 1024 } else { server };
        server.saturating_sub(ENVELOPE_ROOM).max(16 * 1024)
    }
}

/// Every decodable survey event on `filter`, with its sequence and source.
async fn read_all(
    bus: &Bus,
    filter: &str,
    into: &mut Vec<(u64, String, SurveyEvent)>,
) -> Result<(), BusError> {
    if crate::replay::messages_on(bus, filter).await? == 0 {
        return Ok(());
    }
    let mut messages = bus.ordered_replay(filter, false).await?.named("legacy survey replay");
    while let Some(delivered) = messages.next().await {
        let delivered = delivered?;
        let (message, sequence, pending) =
            (&delivered.message, delivered.stream_sequence, delivered.pending);
        if let Some(decoded) = usable(sequence, &message.subject, &message.payload) {
            into.push((sequence, decoded.source, decoded.event));
        }
        if pending == 0 {
            break;
        }
    }
    Ok(())
}
