//! Commits the fold to object storage: data files first, then one create-only manifest
//! naming them and the last applied sequence (invariant 3). Restores the fold from the
//! newest manifest on start, and keeps the file count bounded by compaction.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use observatory_model::incident_hash;
use observatory_store::{CommitError, DataFile, Manifest, Projection, StoreError, read_parquet, write_parquet};
use tracing::{info, info_span, Instrument};

use crate::fold::{Cell, Fold, StateRow, Tally};
use crate::tables::{
    COUNTS_TABLE, COVERAGE_TABLE, STATE_TABLE, TableError, counts_batch, coverage_batch, coverage_rows, state_batch,
    state_rows,
};

/// Name of the incident projection in the store.
pub const INCIDENTS: &str = "incidents";

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
            let version = requested.get(name).copied().or_else(|| crosswalks.latest(name).map(|c| c.version))?;
            Some((name.to_owned(), version))
        })
        .collect()
}

fn reference_record(pins: &BTreeMap<String, u32>) -> BTreeMap<String, String> {
    let mut reference: BTreeMap<String, String> =
        pins.iter().map(|(name, version)| (format!("{CROSSWALK_PREFIX}{name}"), version.to_string())).collect();
    reference.insert("iccs".into(), "1.0".into());
    reference
}

/// Tuning of file layout.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// A year partition of counts with more delta files than this is rewritten as one snapshot.
    pub max_count_files: usize,
    /// More state files than this and the newest ones are merged.
    pub max_state_files: usize,
    /// Manifests kept per version; older ones and the files only they named are deleted.
    pub keep_manifests: usize,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction { max_count_files: 16, max_state_files: 16, keep_manifests: 50 }
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
            .filter_map(|(key, value)| Some((key.strip_prefix(CROSSWALK_PREFIX)?.to_owned(), value.parse().ok()?)))
            .collect();
        let mut fold = Fold::with_crosswalks(&pins)?;
        let span = info_span!("restore", projection = projection.name(), version, sequence = committed.last_sequence);
        async {
            for file in committed.files(STATE_TABLE) {
                for row in read_state(&projection, version, file).await? {
                    fold.restore(&row);
                }
            }
            for file in committed.files(COVERAGE_TABLE) {
                let path = projection.object_path(version, &file.path);
                for batch in read_parquet(projection.store(), &path).await? {
                    let rows = coverage_rows(&batch).map_err(|source| SinkError::Table { path: path.to_string(), source })?;
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
            info!(version, sequence = committed.last_sequence, incidents = fold.incident_count(), "projection restored");
        }
        Ok(Sink { projection, version, stream: stream.to_owned(), fold, committed, compaction, flushes: 0 })
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
            changed = pending.changed.len()
        );
        self.flush_pending(pending, rejected_events).instrument(span).await.map(Some)
    }

    async fn flush_pending(&mut self, pending: crate::fold::Pending, rejected_events: u64) -> Result<u64, SinkError> {
        let range = format!("{}-{}", pending.first_sequence, pending.last_sequence);
        let mut tables = self.committed.tables.clone();

        let mut by_year: BTreeMap<i32, Vec<(Cell, Tally)>> = BTreeMap::new();
        for (cell, tally) in pending.deltas {
            by_year.entry(cell.year()).or_default().push((cell, tally));
        }
        let counts = tables.entry(COUNTS_TABLE.to_owned()).or_default();
        for (year, cells) in by_year {
            let path = format!("data/{COUNTS_TABLE}/year={year}/{range}.parquet");
            let file = self.write(&path, &counts_batch(&self.fold, &cells), Some(year), pending.first_sequence, pending.last_sequence).await?;
            counts.push(file);
        }
        if !pending.changed.is_empty() {
            let path = format!("data/{STATE_TABLE}/{range}.parquet");
            let file = self.write(&path, &state_batch(&pending.changed), None, pending.first_sequence, pending.last_sequence).await?;
            tables.entry(STATE_TABLE.to_owned()).or_default().push(file);
        }
        if pending.coverage_changed {
            // Small (sources × months): each change writes the whole table as one file.
            let path = format!("data/{COVERAGE_TABLE}/{range}.parquet");
            let batch = coverage_batch(self.fold.coverage().iter());
            let file = self.write(&path, &batch, None, pending.first_sequence, pending.last_sequence).await?;
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
        if self.flushes % 20 == 0 {
            let deleted = self.projection.collect_garbage(self.version, self.compaction.keep_manifests).await?;
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
        let bytes = write_parquet(self.projection.store(), &self.projection.object_path(self.version, relative), batch).await?;
        Ok(DataFile { path: relative.to_owned(), year, first_sequence, last_sequence, rows: batch.num_rows() as u64, bytes })
    }

    /// Rewrites a year whose delta files piled up as one snapshot of the in-memory totals,
    /// which equal the sum of those files.
    async fn compact_counts(&self, tables: &mut BTreeMap<String, Vec<DataFile>>, last_sequence: u64) -> Result<(), SinkError> {
        let counts = tables.entry(COUNTS_TABLE.to_owned()).or_default();
        let mut per_year: BTreeMap<i32, usize> = BTreeMap::new();
        for file in counts.iter() {
            *per_year.entry(file.year.unwrap_or_default()).or_default() += 1;
        }
        for (year, files) in per_year {
            if files <= self.compaction.max_count_files {
                continue;
            }
            let first = counts.iter().filter(|f| f.year == Some(year)).map(|f| f.first_sequence).min().unwrap_or(1);
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
    /// the newest row of each incident: size-tiered, so each row is rewritten O(log n) times.
    async fn compact_state(&self, tables: &mut BTreeMap<String, Vec<DataFile>>) -> Result<(), SinkError> {
        let files = tables.entry(STATE_TABLE.to_owned()).or_default();
        if files.len() <= self.compaction.max_state_files {
            return Ok(());
        }
        files.sort_by_key(|f| f.first_sequence);
        let mut take = self.compaction.max_state_files / 2;
        let mut rows: u64 = files[files.len() - take..].iter().map(|f| f.rows).sum();
        while take < files.len() && files[files.len() - take - 1].rows <= 2 * rows {
            take += 1;
            rows += files[files.len() - take].rows;
        }
        let merged_files = files.split_off(files.len() - take);
        let mut newest: HashMap<u128, StateRow> = HashMap::new();
        for file in &merged_files {
            for row in read_state(&self.projection, self.version, file).await? {
                let key = incident_hash(&row.source, &row.agency_incident_id);
                match newest.get(&key) {
                    Some(existing) if existing.sequence >= row.sequence => {}
                    _ => {
                        newest.insert(key, row);
                    }
                }
            }
        }
        let mut merged: Vec<StateRow> = newest.into_values().collect();
        merged.sort_unstable_by_key(|row| row.sequence);
        let first = merged_files.first().expect("non-empty").first_sequence;
        let last = merged_files.last().expect("non-empty").last_sequence;
        let path = format!("data/{STATE_TABLE}/{first}-{last}.parquet");
        let file = self.write(&path, &state_batch(&merged), None, first, last).await?;
        info!(merged = merged_files.len(), rows = file.rows, "state compacted");
        files.push(file);
        Ok(())
    }
}

async fn read_state(projection: &Projection, version: u32, file: &DataFile) -> Result<Vec<StateRow>, SinkError> {
    let path = projection.object_path(version, &file.path);
    let mut rows = Vec::with_capacity(file.rows as usize);
    for batch in read_parquet(projection.store(), &path).await? {
        rows.extend(state_rows(&batch).map_err(|source| SinkError::Table { path: path.to_string(), source })?);
    }
    Ok(rows)
}
