//! Commits the fold to object storage: data files first, then one create-only manifest
//! naming them and the last applied sequence (invariant 3). Restores the fold from the
//! newest manifest on start, and keeps the file count bounded by compaction.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use observatory_model::incident_hash;
use observatory_store::{
    CommitError, DataFile, Manifest, Projection, StoreError, TableId, read_parquet, write_parquet,
};
use tracing::{Instrument, debug, info, info_span};

use crate::fold::{Cell, Fold, Tally};
use crate::tables::{
    COUNTS_TABLE, COVERAGE_TABLE, STATE_TABLE, TableError, counts_batch, coverage_batch,
    coverage_rows, state_rows,
};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("{path}: {source}")]
    Table { path: String, source: TableError },
    #[error("reference data: {0}")]
    Reference(#[from] observatory_reference::ReferenceError),
}

const CROSSWALK_PREFIX: &str = "crosswalk.";

/// Crosswalk versions a new projection version codes with: the requested ones, else the
/// latest of each built-in crosswalk.
fn choose_pins(requested: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    crosswalks
        .names()
        .filter(|name| *name != observatory_reference::IDENTITY)
        .filter_map(|name| {
            let version = requested
                .get(name)
                .copied()
                .or_else(|| crosswalks.latest(name).map(|c| c.version))?;
            Some((name.to_owned(), version))
        })
        .collect()
}

fn reference_record(pins: &BTreeMap<String, u32>) -> BTreeMap<String, String> {
    let mut reference: BTreeMap<String, String> = pins
        .iter()
        .map(|(name, version)| (format!("{CROSSWALK_PREFIX}{name}"), version.to_string()))
        .collect();
    reference.insert("iccs".into(), "1.0".into());
    reference
}

/// Tuning of file layout.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// A year partition of counts with more delta files than this is rewritten as one snapshot.
    pub max_count_files: usize,
    /// More state files than this (below `max_state_file_rows`) and the newest ones are merged.
    pub max_state_files: usize,
    /// A state file this large is never merged again, so compaction holds at most this many
    /// rows in memory however long the history (an LSM level cap). Rows of an incident amended
    /// since stay in the older file too; restore keeps the newest revision.
    pub max_state_file_rows: u64,
    /// Manifests kept per version; older ones and the files only they named are deleted.
    pub keep_manifests: usize,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            max_count_files: 16,
            max_state_files: 16,
            max_state_file_rows: 1_000_000,
            keep_manifests: 50,
        }
    }
}

/// The fold of one projection version plus what is committed of it.
pub struct Sink {
    projection: Projection,
    version: u32,
    stream: String,
    pub fold: Fold,
    committed: Manifest,
    compaction: Compaction,
    flushes: u64,
}

impl Sink {
    /// Opens `version`, restoring the fold from its newest manifest (empty if none). A new
    /// version pins its crosswalk versions (`requested`, else the latest); an existing one
    /// keeps those its manifest records, so its numbers never mix two versions.
    pub async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        compaction: Compaction,
        requested: &BTreeMap<String, u32>,
    ) -> Result<Sink, SinkError> {
        let committed = projection.newest_manifest(version).await?.unwrap_or_else(|| Manifest {
            format: Manifest::FORMAT,
            projection: projection.name().to_owned(),
            version,
            stream: stream.to_owned(),
            last_sequence: 0,
            committed_at: Utc::now(),
            tables: BTreeMap::new(),
            stats: BTreeMap::new(),
            reference: reference_record(&choose_pins(requested)),
        });
        let pins: BTreeMap<String, u32> = committed
            .reference
            .iter()
            .filter_map(|(key, value)| {
                Some((key.strip_prefix(CROSSWALK_PREFIX)?.to_owned(), value.parse().ok()?))
            })
            .collect();
        let mut fold = Fold::with_crosswalks(&pins)?;
        let span = info_span!(
            "restore",
            projection = projection.name(),
            version,
            sequence = committed.last_sequence
        );
        async {
            for file in committed.files(&TableId::State) {
                // Batch by batch: a state file can hold millions of rows.
                let path = projection.object_path(version, &file.path);
                for batch in read_parquet(projection.store(), &path).await? {
                    let rows = state_rows(&batch)
                        .map_err(|source| SinkError::Table { path: path.to_string(), source })?;
                    for row in &rows {
                        fold.restore(row);
                    }
                }
            }
            for file in committed.files(&TableId::Coverage) {
                let path = projection.object_path(version, &file.path);
                for batch in read_parquet(projection.store(), &path).await? {
                    let rows = coverage_rows(&batch)
                        .map_err(|source| SinkError::Table { path: path.to_string(), source })?;
                    for (source, month, departement) in rows {
                        fold.restore_closure(&source, &month, departement.as_deref());
                    }
                }
            }
            Ok::<_, SinkError>(())
        }
        .instrument(span)
        .await?;
        fold.set_position(committed.last_sequence);
        if committed.last_sequence > 0 {
            info!(
                version,
                sequence = committed.last_sequence,
                incidents = fold.incident_count(),
                "projection restored"
            );
        }
        Ok(Sink {
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
    /// sequence, or `None` when there was nothing to write.
    pub async fn flush(&mut self, rejected_events: u64) -> Result<Option<u64>, SinkError> {
        let Some(pending) = self.fold.take_pending() else { return Ok(None) };
        let span = info_span!(
            "flush",
            version = self.version,
            first = pending.first_sequence,
            last = pending.last_sequence,
            changed = pending.changed.num_rows()
        );
        self.flush_pending(pending, rejected_events).instrument(span).await.map(Some)
    }

    async fn flush_pending(
        &mut self,
        pending: crate::fold::Pending,
        rejected_events: u64,
    ) -> Result<u64, SinkError> {
        let started = std::time::Instant::now();
        let (changed, cells) = (pending.changed.num_rows(), pending.deltas.len());
        let range = format!("{}-{}", pending.first_sequence, pending.last_sequence);
        let mut tables = self.committed.tables.clone();

        let mut by_year: BTreeMap<i32, Vec<(Cell, Tally)>> = BTreeMap::new();
        for (cell, tally) in pending.deltas {
            by_year.entry(cell.year()).or_default().push((cell, tally));
        }
        let counts = tables.entry(COUNTS_TABLE.to_owned()).or_default();
        for (year, cells) in by_year {
            let path = format!("data/{COUNTS_TABLE}/year={year}/{range}.parquet");
            let file = self
                .write(
                    &path,
                    &counts_batch(&self.fold, &cells),
                    Some(year),
                    pending.first_sequence,
                    pending.last_sequence,
                )
                .await?;
            counts.push(file);
        }
        if pending.changed.num_rows() > 0 {
            let path = format!("data/{STATE_TABLE}/{range}.parquet");
            let file = self
                .write(&path, &pending.changed, None, pending.first_sequence, pending.last_sequence)
                .await?;
            tables.entry(STATE_TABLE.to_owned()).or_default().push(file);
        }
        if pending.coverage_changed {
            // Small (sources × months): each change writes the whole table as one file.
            let path = format!("data/{COVERAGE_TABLE}/{range}.parquet");
            let batch = coverage_batch(self.fold.coverage().iter());
            let file = self
                .write(&path, &batch, None, pending.first_sequence, pending.last_sequence)
                .await?;
            tables.insert(COVERAGE_TABLE.to_owned(), vec![file]);
        }
        self.compact_counts(&mut tables, pending.last_sequence).await?;
        self.compact_state(&mut tables).await?;

        let mut stats = self.committed.stats.clone();
        *stats.entry("events_applied".into()).or_default() += self.fold.events_applied;
        *stats.entry("events_ignored".into()).or_default() += self.fold.events_ignored;
        *stats.entry("events_rejected".into()).or_default() += rejected_events;
        self.fold.events_applied = 0;
        self.fold.events_ignored = 0;
        stats.insert("incidents_known".into(), self.fold.incident_count() as u64);
        stats.insert("incidents_counted".into(), self.fold.counted_incidents().max(0) as u64);
        let manifest = Manifest {
            format: Manifest::FORMAT,
            projection: self.projection.name().to_owned(),
            version: self.version,
            stream: self.stream.clone(),
            last_sequence: pending.last_sequence,
            committed_at: Utc::now(),
            tables,
            stats,
            reference: self.committed.reference.clone(),
        };
        self.projection.commit(&manifest).await?;
        self.committed = manifest;
        self.flushes += 1;
        debug!(
            sequence = pending.last_sequence,
            changed,
            cells,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        if self.flushes % 20 == 0 {
            let deleted = self
                .projection
                .collect_garbage(self.version, self.compaction.keep_manifests)
                .await?;
            tracing::debug!(deleted, "garbage collected");
        }
        Ok(pending.last_sequence)
    }

    async fn write(
        &self,
        relative: &str,
        batch: &arrow::array::RecordBatch,
        year: Option<i32>,
        first_sequence: u64,
        last_sequence: u64,
    ) -> Result<DataFile, SinkError> {
        let bytes = write_parquet(
            self.projection.store(),
            &self.projection.object_path(self.version, relative),
            batch,
        )
        .await?;
        Ok(DataFile {
            path: relative.to_owned(),
            year,
            first_sequence,
            last_sequence,
            rows: batch.num_rows() as u64,
            bytes,
        })
    }

    /// Rewrites a year whose delta files piled up as one snapshot of the in-memory totals,
    /// which equal the sum of those files.
    async fn compact_counts(
        &self,
        tables: &mut BTreeMap<String, Vec<DataFile>>,
        last_sequence: u64,
    ) -> Result<(), SinkError> {
        let counts = tables.entry(COUNTS_TABLE.to_owned()).or_default();
        let mut per_year: BTreeMap<i32, usize> = BTreeMap::new();
        for file in counts.iter() {
            *per_year.entry(file.year.unwrap_or_default()).or_default() += 1;
        }
        for (year, files) in per_year {
            if files <= self.compaction.max_count_files {
                continue;
            }
            let first = counts
                .iter()
                .filter(|f| f.year == Some(year))
                .map(|f| f.first_sequence)
                .min()
                .unwrap_or(1);
            let path = format!("data/{COUNTS_TABLE}/year={year}/{first}-{last_sequence}.parquet");
            let snapshot = counts_batch(&self.fold, &self.fold.totals_of_year(year));
            let file = self.write(&path, &snapshot, Some(year), first, last_sequence).await?;
            counts.retain(|f| f.year != Some(year));
            counts.push(file);
            info!(year, files, "counts compacted");
        }
        Ok(())
    }

    /// Merges the newest state files (and older ones not much bigger than them), keeping
    /// the newest row of each incident: size-tiered, so each row is rewritten O(log n) times,
    /// and capped, so a merge never holds more than `max_state_file_rows` rows.
    async fn compact_state(
        &self,
        tables: &mut BTreeMap<String, Vec<DataFile>>,
    ) -> Result<(), SinkError> {
        let cap = self.compaction.max_state_file_rows;
        let files = tables.entry(STATE_TABLE.to_owned()).or_default();
        let (mut open, sealed): (Vec<DataFile>, Vec<DataFile>) =
            files.drain(..).partition(|f| f.rows < cap);
        files.extend(sealed);
        if open.len() <= self.compaction.max_state_files {
            files.extend(open);
            return Ok(());
        }
        open.sort_by_key(|f| f.first_sequence);
        let mut take = 0;
        let mut rows: u64 = 0;
        while take < open.len() {
            let next = open[open.len() - take - 1].rows;
            let tiered = take < self.compaction.max_state_files / 2 || next <= 2 * rows;
            if !tiered || (take >= 2 && rows + next > cap) {
                break;
            }
            take += 1;
            rows += next;
        }
        let merged_files = open.split_off(open.len() - take);
        files.extend(open);
        let mut batches = Vec::new();
        for file in &merged_files {
            batches.extend(
                read_parquet(
                    self.projection.store(),
                    &self.projection.object_path(self.version, &file.path),
                )
                .await?,
            );
        }
        let merged = newest_rows(&batches)
            .map_err(|source| SinkError::Table { path: STATE_TABLE.into(), source })?;
        drop(batches);
        let first = merged_files.iter().map(|f| f.first_sequence).min().expect("non-empty");
        let last = merged_files.iter().map(|f| f.last_sequence).max().expect("non-empty");
        let path = format!("data/{STATE_TABLE}/{first}-{last}.parquet");
        let file = self.write(&path, &merged, None, first, last).await?;
        info!(merged = merged_files.len(), rows = file.rows, "state compacted");
        files.push(file);
        files.sort_by_key(|f| f.first_sequence);
        Ok(())
    }
}

/// The newest row (highest sequence) of each incident among state batches, in sequence
/// order, gathered column by column from the inputs: no per-row records and no concatenated
/// copy of the inputs in memory.
fn newest_rows(
    batches: &[arrow::array::RecordBatch],
) -> Result<arrow::array::RecordBatch, TableError> {
    use arrow::array::{Array, StringArray, UInt64Array};
    let mut newest: HashMap<u128, (u64, u32, u32), foldhash::fast::RandomState> =
        HashMap::default();
    for (b, batch) in batches.iter().enumerate() {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| TableError::new(format!("column {name} missing")))
        };
        let source = column("source")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| TableError::new("source is not text".into()))?;
        let id = column("agency_incident_id")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| TableError::new("agency_incident_id is not text".into()))?;
        let sequence = column("sequence")?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| TableError::new("sequence is not u64".into()))?;
        for row in 0..batch.num_rows() {
            let key = incident_hash(source.value(row), id.value(row));
            let candidate = (sequence.value(row), b as u32, row as u32);
            newest
                .entry(key)
                .and_modify(|kept| *kept = (*kept).max(candidate))
                .or_insert(candidate);
        }
    }
    let mut rows: Vec<(u64, u32, u32)> = newest.into_values().collect();
    rows.sort_unstable();
    let indices: Vec<(usize, usize)> =
        rows.into_iter().map(|(_, b, row)| (b as usize, row as usize)).collect();
    if indices.is_empty() {
        return Ok(arrow::array::RecordBatch::new_empty(crate::tables::state_schema()));
    }
    let inputs: Vec<&arrow::array::RecordBatch> = batches.iter().collect();
    arrow::compute::interleave_record_batch(&inputs, &indices)
        .map_err(|e| TableError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use observatory_model::{Channel, Event, IncidentReported, Unit, VictimType};
    use observatory_store::{ProjectionId, Store};

    fn report(id: u32, revision: u32, month: u32) -> Event {
        Event::IncidentReported(IncidentReported {
            agency_incident_id: format!("I{id}"),
            revision,
            occurred_on: NaiveDate::from_ymd_opt(2024, month, 1).unwrap(),
            occurred_until: None,
            reported_on: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            iccs: "0903".into(),
            offence_code: None,
            cyber: true,
            departement: Some("75".into()),
            victim_type: VictimType::Individual,
            channel: Channel::Email,
            loss_eur: Some(f64::from(id)),
            unit: Unit::Offence,
            coding: None,
        })
    }

    /// Many small flushes with amendments and a tiny compaction budget: the state files stay
    /// few, none beyond the cap is merged again, and a restart restores the same incidents and
    /// totals from them.
    #[tokio::test]
    async fn capped_state_compaction_keeps_the_newest_revision_of_every_incident() {
        let dir = tempfile::tempdir().unwrap();
        let projection = Projection::new(
            Store::open(dir.path().to_str().unwrap()).unwrap(),
            ProjectionId::Incidents,
        );
        let compaction = Compaction {
            max_count_files: 4,
            max_state_files: 4,
            max_state_file_rows: 120,
            keep_manifests: 3,
        };
        let mut sink =
            Sink::open(projection.clone(), 1, "TEST", compaction, &BTreeMap::new()).await.unwrap();
        let mut sequence = 0;
        for round in 0..30u32 {
            for i in 0..20u32 {
                // 200 incidents; every round amends some of them to a later month.
                let id = (round * 20 + i) % 200;
                sequence += 1;
                sink.fold.apply(sequence, "pn", report(id, round + 1, 1 + (round % 12)));
            }
            sink.flush(0).await.unwrap();
        }
        let files = sink.committed().files(&TableId::State);
        assert!(
            files.iter().any(|f| f.rows >= 120),
            "some file reached the cap and was sealed: {files:?}"
        );
        assert!(files.len() <= 4 + 4, "state files stay bounded: {}", files.len());
        let expected = (
            sink.fold.incident_count(),
            sink.fold.counted_incidents(),
            sink.fold.totals_of_year(2024),
        );
        assert_eq!(expected.0, 200);

        let restored =
            Sink::open(projection, 1, "TEST", compaction, &BTreeMap::new()).await.unwrap();
        assert_eq!(restored.committed().last_sequence, sequence);
        assert_eq!(
            (
                restored.fold.incident_count(),
                restored.fold.counted_incidents(),
                restored.fold.totals_of_year(2024)
            ),
            expected
        );
    }

    #[test]
    fn newest_rows_keeps_the_highest_sequence_per_incident_in_sequence_order() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", report(1, 1, 1));
        fold.apply(2, "pn", report(2, 1, 1));
        let first = fold.take_pending().unwrap().changed;
        fold.apply(3, "pn", report(1, 2, 3));
        fold.apply(4, "gn", report(1, 1, 1));
        let second = fold.take_pending().unwrap().changed;
        let merged = crate::tables::state_rows(&newest_rows(&[first, second]).unwrap()).unwrap();
        let kept: Vec<(String, String, u64)> =
            merged.into_iter().map(|r| (r.source, r.agency_incident_id, r.sequence)).collect();
        assert_eq!(
            kept,
            vec![
                ("pn".into(), "I2".into(), 2),
                ("pn".into(), "I1".into(), 3),
                ("gn".into(), "I1".into(), 4)
            ]
        );
    }
}
