//! The survey projection in the shared consumer loop ([`crate::runner`]): its own ordered
//! consumer on `obs.survey.>`, starting right after the committed manifest; follows `CURRENT`
//! when a rebuild switches it.

use std::future::Future;

use async_nats::jetstream::Message;
use observatory_bus::Bus;
use observatory_model::survey::{DecodedSurveyEvent, SurveyEvent};
use observatory_store::Projection;

use super::sink::{SurveySink, SurveySinkError};
use crate::runner::{Folding, LoopError, Progress, ProjectorConfig, replay, serve};

pub type SurveyProjectorError = LoopError<SurveySinkError>;

impl Folding for SurveySink {
    type Error = SurveySinkError;
    type Decoded = DecodedSurveyEvent;
    const FILTER: &'static str = "obs.survey.>";
    // Response batches are large messages: pull and hold fewer at a time.
    const BATCH: usize = 64;

    fn version(&self) -> u32 {
        SurveySink::version(self)
    }

    fn projection(&self) -> &Projection {
        SurveySink::projection(self)
    }

    fn committed_sequence(&self) -> u64 {
        self.committed().last_sequence
    }

    fn decode(message: &Message) -> Result<DecodedSurveyEvent, String> {
        let decoded = SurveyEvent::decode(&message.payload)
            .map_err(|e| format!("{}: {e}", message.subject))?;
        if !observatory_model::source_matches_subject(&decoded.source, &message.subject) {
            return Err(format!(
                "source {} does not match its subject {}",
                decoded.source, message.subject
            ));
        }
        Ok(decoded)
    }

    fn apply(&mut self, sequence: u64, decoded: DecodedSurveyEvent) {
        self.fold.apply(sequence, &decoded.source, &decoded.event);
    }

    fn skip(&mut self, sequence: u64) {
        let position = sequence.max(self.fold.last_applied());
        self.fold.set_position(position);
    }

    fn pending(&self) -> usize {
        self.fold.pending_rows()
    }

    async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, SurveySinkError> {
        SurveySink::flush(self, rejected_events).await
    }
}

async fn open_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    version: u32,
) -> Result<SurveySink, SurveySinkError> {
    SurveySink::open(projection.clone(), version, &bus.config().stream, config.compaction).await
}

/// Serves the current survey version until `shutdown` resolves, following `CURRENT`.
/// Creates version 1 when the store has none.
pub async fn run_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SurveyProjectorError> {
    serve(bus, projection, config, shutdown, |version| {
        open_surveys(bus, projection, config, version)
    })
    .await
}

/// Replays every survey event into a new version, then switches `CURRENT` to it.
pub async fn rebuild_surveys(
    bus: &Bus,
    projection: &Projection,
    config: &ProjectorConfig,
    on_progress: impl FnMut(Progress),
) -> Result<(u32, u64), SurveyProjectorError> {
    replay(bus, projection, config, on_progress, |version| {
        open_surveys(bus, projection, config, version)
    })
    .await
}
