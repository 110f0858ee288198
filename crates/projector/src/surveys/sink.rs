//! Commits the survey fold: each flush writes, per wave with new rows, one microdata file of
//! those rows (stream order), a fresh snapshot of the waves table, then one create-only
//! manifest naming them and the last applied sequence. A wave that closes is rewritten as a
//! single file (with `final_weight` when the closure carried final weights), and an open wave
//! whose files pile up is merged, so readers open few files.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use chrono::Utc;
use observatory_store::{
    CommitError, DataFile, Manifest, Projection, StoreError, TableId, read_parquet, write_parquet,
};
use tracing::{Instrument, info, info_span};

use super::fold::{Pending, SurveyFold};
use super::tables::{
    TableError, WAVES_TABLE, microdata_batch, microdata_dir, microdata_schema, microdata_table,
    respondent_ids, wave_rows, waves_batch, with_final_weights,
};
use crate::sink::Compaction;

#[derive(Debug, thiserror::Error)]
pub enum SurveySinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("{path}: {source}")]
    Table { path: String, source: TableError },
    #[error(
        "the manifest names microdata of {survey}/{wave}, a wave its waves table does not declare"
    )]
    Orphan { survey: String, wave: String },
}

/// The survey fold of one projection version plus what is committed of it.
pub struct SurveySink {
    projection: Projection,
    version: u32,
    stream: String,
    pub fold: SurveyFold,
    committed: Manifest,
    compaction: Compaction,
    flushes: u64,
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
        let committed = projection.newest_manifest(version).await?.unwrap_or_else(|| Manifest {
            format: Manifest::FORMAT,
            projection: projection.name().to_owned(),
            version,
            stream: stream.to_owned(),
            last_sequence: 0,
            committed_at: Utc::now(),
            tables: BTreeMap::new(),
            stats: BTreeMap::new(),
            reference: BTreeMap::new(),
        });
        let mut fold = SurveyFold::new();
        let span = info_span!(
            "restore",
            projection = projection.name(),
            version,
            sequence = committed.last_sequence
        );
        async {
            for file in committed.files(&TableId::Waves) {
                let path = projection.object_path(version, &file.path);
                for batch in read_parquet(projection.store(), &path).await? {
                    let rows = wave_rows(&batch).map_err(|source| SurveySinkError::Table {
                        path: path.to_string(),
                        source,
                    })?;
                    for row in rows {
                        let mut ids = Vec::new();
                        if row.closure.is_none() {
                            let d = &row.declaration;
                            for data in committed.files(&TableId::microdata(&d.survey, &d.wave)) {
                                let path = projection.object_path(version, &data.path);
                                for batch in read_parquet(projection.store(), &path).await? {
                                    ids.extend(respondent_ids(d, &batch).map_err(|source| {
                                        SurveySinkError::Table { path: path.to_string(), source }
                                    })?);
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
        for table in committed.tables.keys().filter_map(|t| t.strip_prefix("microdata/")) {
            let (survey, wave) = table.split_once('/').unwrap_or((table, ""));
            if fold.ledger.wave(survey, wave).is_none() {
                return Err(SurveySinkError::Orphan { survey: survey.into(), wave: wave.into() });
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
        Ok(SurveySink {
            projection,
            version,
            stream: stream.to_owned(),
            fold,
            committed,
            compaction,
            flushes: 0,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn committed(&self) -> &Manifest {
        &self.committed
    }

    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Writes what was folded since the last flush and commits it. Returns the committed
    /// sequence, or `None` when nothing was applied.
    pub async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, SurveySinkError> {
        let Some(pending) = self.fold.take_pending() else {
            return Ok(None);
        };
        let span = info_span!(
            "survey_flush",
            version = self.version,
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
        let mut tables = self.committed.tables.clone();
        let mut touched: Vec<(String, String)> = pending.rows.keys().cloned().collect();
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
            let table = microdata_table(survey, wave);
            let existing = tables.get(&table).cloned().unwrap_or_default();
            let closing = pending.closed.remove(&key);
            let dir = microdata_dir(survey, wave);
            if closing.is_none() && existing.len() < self.compaction.max_count_files {
                let path = format!("{dir}/{first}-{last}.parquet");
                let file = self
                    .write(&path, &microdata_batch(&declaration, &new_rows), first, last)
                    .await?;
                tables.entry(table).or_default().push(file);
                continue;
            }
            // One file for the wave: its committed files and the new rows, in stream order.
            let mut batches = Vec::new();
            for file in &existing {
                batches.extend(self.read(&file.path).await?);
            }
            batches.push(microdata_batch(&declaration, &new_rows));
            let schema = microdata_schema(&declaration, false);
            let mut merged = arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| SurveySinkError::Table { path: dir.clone(), source: e.into() })?;
            if let Some(weights) = closing.as_ref().filter(|w| !w.is_empty()) {
                merged = with_final_weights(&declaration, &merged, weights)
                    .map_err(|source| SurveySinkError::Table { path: dir.clone(), source })?;
            }
            let from = existing.iter().map(|f| f.first_sequence).min().unwrap_or(first);
            let path = format!("{dir}/{from}-{last}.parquet");
            let file = self.write(&path, &merged, from, last).await?;
            info!(survey = %survey, wave = %wave, files = existing.len() + 1, rows = file.rows, closed = closing.is_some(), "wave microdata merged");
            tables.insert(table, vec![file]);
        }
        let waves = self
            .write(
                &format!("data/{WAVES_TABLE}/{first}-{last}.parquet"),
                &waves_batch(&self.fold.ledger),
                first,
                last,
            )
            .await?;
        tables.insert(WAVES_TABLE.to_owned(), vec![waves]);

        let mut stats = self.committed.stats.clone();
        *stats.entry("events_applied".into()).or_default() += self.fold.events_applied;
        *stats.entry("events_ignored".into()).or_default() += self.fold.events_ignored;
        *stats.entry("events_rejected".into()).or_default() += rejected_events;
        *stats.entry("rows_duplicate".into()).or_default() += self.fold.rows_duplicate;
        *stats.entry("rows_invalid".into()).or_default() += self.fold.rows_invalid;
        (
            self.fold.events_applied,
            self.fold.events_ignored,
            self.fold.rows_duplicate,
            self.fold.rows_invalid,
        ) = (0, 0, 0, 0);
        let ledger = &self.fold.ledger;
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
        let manifest = Manifest {
            format: Manifest::FORMAT,
            projection: self.projection.name().to_owned(),
            version: self.version,
            stream: self.stream.clone(),
            last_sequence: last,
            committed_at: Utc::now(),
            tables,
            stats,
            reference: self.committed.reference.clone(),
        };
        self.projection.commit(&manifest).await?;
        self.committed = manifest;
        self.flushes += 1;
        if self.flushes.is_multiple_of(20) {
            let deleted = self
                .projection
                .collect_garbage(self.version, self.compaction.keep_manifests)
                .await?;
            tracing::debug!(deleted, "garbage collected");
        }
        Ok(last)
    }

    async fn write(
        &self,
        relative: &str,
        batch: &RecordBatch,
        first_sequence: u64,
        last_sequence: u64,
    ) -> Result<DataFile, SurveySinkError> {
        let bytes = write_parquet(
            self.projection.store(),
            &self.projection.object_path(self.version, relative),
            batch,
        )
        .await?;
        Ok(DataFile {
            path: relative.to_owned(),
            year: None,
            first_sequence,
            last_sequence,
            rows: batch.num_rows() as u64,
            bytes,
        })
    }

    async fn read(&self, relative: &str) -> Result<Vec<RecordBatch>, SurveySinkError> {
        Ok(read_parquet(
            self.projection.store(),
            &self.projection.object_path(self.version, relative),
        )
        .await?)
    }
}
