//! The projection floor: the least a projection from the stream to committed Parquet does
//! with the same parts. It reads the stream through the projector's own consumer loop
//! (ordered consumer, decoder task, chunks handed to the folding thread), decodes each event
//! with the projector's decoder, and writes one state row per event to Parquet with the
//! projector's state schema, encoder and commit, but folds nothing: no index of incidents, no
//! revisions compared, no cells, counts, record keys, coverage or fold image.
//!
//! `observatory bench` runs it as a process of its own shaped like `observatory rebuild` (the
//! hidden `bench-projection-floor` command, on one Tokio worker), between a raw replay and a
//! rebuild: the raw replay over the floor is what the parts cost a projection, the floor over
//! the rebuild what the fold costs.

use async_nats::jetstream::Message;
use observatory_bus::async_nats;
use observatory_model::Event;
use observatory_projector::incidents::tables::{CHUNK_ROWS, StateBuilder, state_encoder};
use observatory_projector::{Folding, IncidentSink, IncidentSinkError, ProjectionWriter};
use observatory_projector::{ProjectorConfig, Tables};
use observatory_store::{ParquetEncoder, Projection, StoreError, TableId};

/// The floor's sink: state rows straight from decoded events.
pub struct ProjectionFloor {
    writer: ProjectionWriter,
    rows: StateBuilder,
    /// The rows of the flush in progress, encoded [`CHUNK_ROWS`] at a time as the rebuild's are.
    encoded: Option<ParquetEncoder>,
    encode_error: Option<StoreError>,
    first_pending: Option<u64>,
    last: u64,
    events_written: u64,
}

impl ProjectionFloor {
    fn encode(&mut self) -> Result<(), StoreError> {
        let batch = self.rows.finish();
        let encoded = match &mut self.encoded {
            Some(encoded) => encoded,
            None => self.encoded.insert(state_encoder("state rows of the projection floor")?),
        };
        encoded.write(&batch)
    }
}

impl Folding for ProjectionFloor {
    type Error = IncidentSinkError;
    type Decoded = <IncidentSink as Folding>::Decoded;
    const FILTER: &'static str = IncidentSink::FILTER;
    const SUBJECT_PREFIX: &'static str = IncidentSink::SUBJECT_PREFIX;
    const BATCH: usize = IncidentSink::BATCH;

    async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        config: &ProjectorConfig,
    ) -> Result<ProjectionFloor, IncidentSinkError> {
        let writer = ProjectionWriter::open(projection, version, stream, config.compaction, || {
            Default::default()
        })
        .await?;
        let last = writer.committed_sequence();
        Ok(ProjectionFloor {
            writer,
            rows: StateBuilder::default(),
            encoded: None,
            encode_error: None,
            first_pending: None,
            last,
            events_written: 0,
        })
    }

    fn writer(&self) -> &ProjectionWriter {
        &self.writer
    }

    fn decode(message: &Message) -> Result<Self::Decoded, String> {
        IncidentSink::decode(message)
    }

    fn apply(&mut self, sequence: u64, (source, event): Self::Decoded) {
        self.first_pending.get_or_insert(sequence);
        self.last = sequence;
        match &event {
            Event::IncidentReported(r) => {
                self.rows.append(&source, &r.agency_incident_id, r.revision, sequence, 0, Some(r))
            }
            Event::IncidentWithdrawn(w) => {
                self.rows.append(&source, &w.agency_incident_id, w.revision, sequence, 0, None)
            }
            // A closure is a row of the small coverage table in a rebuild: nothing here.
            Event::PeriodClosed(_) => return,
        }
        self.events_written += 1;
        if self.rows.len() >= CHUNK_ROWS
            && self.encode_error.is_none()
            && let Err(error) = self.encode()
        {
            self.encode_error = Some(error);
        }
    }

    fn skip(&mut self, sequence: u64) {
        self.first_pending.get_or_insert(sequence);
        self.last = self.last.max(sequence);
    }

    fn pending(&self) -> usize {
        let encoded = self.encoded.as_ref().map_or(0, ParquetEncoder::rows);
        self.rows.len() + usize::try_from(encoded).unwrap_or(usize::MAX)
    }

    async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, IncidentSinkError> {
        let Some(first) = self.first_pending.take() else { return Ok(None) };
        if let Some(error) = self.encode_error.take() {
            return Err(error.into());
        }
        if !self.rows.is_empty() {
            self.encode()?;
        }
        let mut tables: Tables = self.writer.tables();
        if let Some(encoded) = self.encoded.take() {
            let file =
                self.writer.write_encoded(&TableId::State, None, first, self.last, encoded).await?;
            tables.files_mut(&TableId::State).push(file);
        }
        let written = std::mem::take(&mut self.events_written);
        self.writer
            .commit(self.last, tables, |stats| {
                *stats.entry("events_applied".into()).or_default() += written;
                *stats.entry("events_rejected".into()).or_default() += rejected_events;
            })
            .await?;
        Ok(Some(self.last))
    }
}
