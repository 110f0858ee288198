//! The survey projection over the shared [`ProjectionWriter`]: each flush writes, per wave
//! with new rows, one microdata file of those rows (stream order), a fresh snapshot of the
//! waves table, then commits. A wave that closes is rewritten as a single file (with
//! `final_weight` when the closure carried final weights), and an open wave whose files pile
//! up is merged, so readers open few files.

use async_nats::jetstream::Message;
use observatory_model::survey::{DecodedSurveyEvent, SurveyEvent};
use observatory_store::{CommitError, DataFile, Projection, StoreError, TableId};
use tracing::{Instrument, info, info_span};

use super::fold::{Pending, SurveyFold, WaveKey};
use super::tables::{
    TableError, microdata_batch, microdata_schema, respondent_ids, wave_rows, waves_batch,
    with_final_weights,
};
use crate::runner::{Folding, ProjectorConfig};
use crate::writer::{Compaction, ProjectionWriter};

#[derive(Debug, thiserror::Error)]
pub enum SurveySinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("{path}: {source}")]
    Table {
        path: String,
        #[source]
        source: TableError,
    },
    #[error(
        "the manifest names microdata of {survey}/{wave}, a wave its waves table does not declare"
    )]
    Orphan { survey: String, wave: String },
}

/// The survey fold of one projection version, over the writer of that version.
pub struct SurveySink {
    writer: ProjectionWriter,
    pub fold: SurveyFold,
}

impl SurveySink {
    /// Opens `version`, restoring the ledger from its newest manifest: declarations and
    /// closures from the waves table, the respondents of open waves from their microdata.
    pub async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        compaction: Compaction,
    ) -> Result<SurveySink, SurveySinkError> {
        let writer =
            ProjectionWriter::open(projection, version, stream, compaction, Default::default)
                .await?;
        let committed = writer.committed();
        let mut fold = SurveyFold::new();
        let span = writer.restore_span();
        let table_error = |file: &DataFile| {
            let path = writer.path_of(file);
            move |source| SurveySinkError::Table { path, source }
        };
        async {
            for file in committed.files(&TableId::Waves) {
                for batch in writer.read(file).await? {
                    for row in wave_rows(&batch).map_err(table_error(file))? {
                        let mut ids = Vec::new();
                        if row.closure.is_none() {
                            let d = &row.declaration;
                            for data in committed.files(&TableId::microdata(&d.survey, &d.wave)) {
                                for batch in writer.read(data).await? {
                                    ids.extend(
                                        respondent_ids(d, &batch).map_err(table_error(data))?,
                                    );
                                }
                            }
                        }
                        fold.ledger.restore_wave(
                            &row.source,
                            row.declaration,
                            row.declared_sequence,
                            row.closure,
                            ids,
                        );
                    }
                }
            }
            fold.ledger.settle_owners();
            Ok::<_, SurveySinkError>(())
        }
        .instrument(span)
        .await?;
        for table in committed.table_ids() {
            if let TableId::Microdata { survey, wave } = table
                && fold.ledger.wave(&survey, &wave).is_none()
            {
                return Err(SurveySinkError::Orphan { survey, wave });
            }
        }
        fold.set_position(committed.last_sequence);
        if committed.last_sequence > 0 {
            info!(
                version,
                sequence = committed.last_sequence,
                waves = fold.ledger.waves().count(),
                "survey projection restored"
            );
        }
        let sink = SurveySink { writer, fold };
        sink.count_open_waves();
        Ok(sink)
    }

    pub fn writer(&self) -> &ProjectionWriter {
        &self.writer
    }

    /// The `observatory_survey_waves_open` gauge, from the waves folded so far.
    fn count_open_waves(&self) {
        let open = self.fold.ledger.waves().filter(|w| w.closed.is_none()).count();
        observatory_metrics::survey_waves_open(open);
    }

    /// Writes what was folded since the last flush and commits it. Returns the committed
    /// sequence, or `None` when nothing was applied.
    pub async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, SurveySinkError> {
        let Some(pending) = self.fold.take_pending() else {
            return Ok(None);
        };
        let span = info_span!(
            "survey_flush",
            version = self.writer.version(),
            first = pending.first_sequence,
            last = pending.last_sequence,
            rows = pending.rows.values().map(Vec::len).sum::<usize>(),
            closed = pending.closed.len()
        );
        self.flush_pending(pending, rejected_events).instrument(span).await.map(Some)
    }

    async fn flush_pending(
        &mut self,
        mut pending: Pending,
        rejected_events: u64,
    ) -> Result<u64, SurveySinkError> {
        let (first, last) = (pending.first_sequence, pending.last_sequence);
        let writer = &self.writer;
        let mut tables = writer.tables();
        let mut touched: Vec<WaveKey> = pending.rows.keys().cloned().collect();
        touched.extend(pending.closed.keys().cloned());
        touched.sort();
        touched.dedup();
        for key in touched {
            let (survey, wave) = (&key.0, &key.1);
            let declaration = self
                .fold
                .ledger
                .wave(survey, wave)
                .expect("pending waves are declared")
                .declaration
                .clone();
            let new_rows = pending.rows.remove(&key).unwrap_or_default();
            let table = TableId::microdata(survey, wave);
            let existing = tables.files(&table).to_vec();
            let closing = pending.closed.remove(&key);
            if closing.is_none() && existing.len() < writer.compaction().max_count_files {
                let batch = microdata_batch(&declaration, &new_rows);
                let file = writer.write(&table, None, first, last, &batch).await?;
                tables.files_mut(&table).push(file);
                continue;
            }
            // One file for the wave: its committed files and the new rows, in stream order.
            let mut batches = Vec::new();
            for file in &existing {
                batches.extend(writer.read(file).await?);
            }
            batches.push(microdata_batch(&declaration, &new_rows));
            let schema = microdata_schema(&declaration, false);
            let mut merged = arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| SurveySinkError::Table { path: table.dir(), source: e.into() })?;
            if let Some(weights) = closing.as_ref().filter(|w| !w.is_empty()) {
                merged = with_final_weights(&declaration, &merged, weights)
                    .map_err(|source| SurveySinkError::Table { path: table.dir(), source })?;
            }
            let from = existing.iter().map(|f| f.first_sequence).min().unwrap_or(first);
            let file = writer.write(&table, None, from, last, &merged).await?;
            info!(survey = %survey, wave = %wave, files = existing.len() + 1, rows = file.rows, closed = closing.is_some(), "wave microdata merged");
            tables.set(&table, vec![file]);
        }
        let waves = writer
            .write(&TableId::Waves, None, first, last, &waves_batch(&self.fold.ledger))
            .await?;
        tables.set(&TableId::Waves, vec![waves]);

        let fold = &mut self.fold;
        self.writer
            .commit(last, tables, |stats| {
                *stats.entry("events_applied".into()).or_default() += fold.events_applied;
                *stats.entry("events_ignored".into()).or_default() += fold.events_ignored;
                *stats.entry("events_rejected".into()).or_default() += rejected_events;
                *stats.entry("rows_duplicate".into()).or_default() += fold.rows_duplicate;
                *stats.entry("rows_invalid".into()).or_default() += fold.rows_invalid;
                (
                    fold.events_applied,
                    fold.events_ignored,
                    fold.rows_duplicate,
                    fold.rows_invalid,
                ) = (0, 0, 0, 0);
                let ledger = &fold.ledger;
                stats.insert("waves".into(), ledger.waves().count() as u64);
                stats.insert(
                    "waves_closed".into(),
                    ledger.waves().filter(|w| w.closed.is_some()).count() as u64,
                );
                stats.insert(
                    "respondents".into(),
                    ledger
                        .waves()
                        .map(|w| w.closed.map_or(w.respondents() as u64, |c| c.respondents))
                        .sum(),
                );
            })
            .await?;
        self.count_open_waves();
        Ok(last)
    }
}

impl Folding for SurveySink {
    type Error = SurveySinkError;
    type Decoded = DecodedSurveyEvent;
    const FILTER: &'static str = "obs.survey.>";
    const SUBJECT_PREFIX: &'static str = "obs.survey.";
    // Response batches are large messages: pull and hold fewer at a time.
    const BATCH: usize = 64;

    async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        config: &ProjectorConfig,
    ) -> Result<SurveySink, SurveySinkError> {
        SurveySink::open(projection, version, stream, config.compaction).await
    }

    fn writer(&self) -> &ProjectionWriter {
        &self.writer
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
