//! The commit skeleton every projection shares: one version of one projection, what is
//! committed of it, and a flush's steps — write data files of typed tables, read committed
//! ones back, then commit one create-only manifest naming them (invariant 3), collecting
//! garbage every few flushes. The incident and survey sinks decide *what* to write; this
//! decides *how* it is named, committed and cleaned up.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use chrono::Utc;
use observatory_store::{
    CommitError, DataFile, Manifest, ParquetEncoder, Projection, StoreError, TableId, read_parquet,
};
use tracing::debug;

/// Tuning of file layout.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// A year partition of counts with more delta files than this is rewritten as one
    /// snapshot (and an open survey wave with this many files is merged into one).
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

/// Garbage collection runs after every this many commits: listing a version's data is not
/// free, and files only wait a little longer to be deleted.
pub const GC_EVERY_FLUSHES: u64 = 20;

/// The live files of every table of the manifest a flush is building, keyed by [`TableId`]
/// so no sink spells a manifest key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tables(BTreeMap<String, Vec<DataFile>>);

impl Tables {
    pub fn files(&self, table: &TableId) -> &[DataFile] {
        self.0.get(&table.key()).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The files of `table`, to add to or filter (an absent table starts empty).
    pub fn files_mut(&mut self, table: &TableId) -> &mut Vec<DataFile> {
        self.0.entry(table.key()).or_default()
    }

    /// Replaces every file of `table` (a snapshot, or a rewrite of the whole table).
    pub fn set(&mut self, table: &TableId, files: Vec<DataFile>) {
        self.0.insert(table.key(), files);
    }
}

/// One version of one projection being written: the newest committed manifest and what the
/// next commit needs (stream, compaction settings, garbage-collection cadence).
pub struct ProjectionWriter {
    projection: Projection,
    version: u32,
    stream: String,
    committed: Manifest,
    compaction: Compaction,
    flushes: u64,
    /// Bytes of Parquet written since [`take_written_bytes`](Self::take_written_bytes).
    written: std::sync::atomic::AtomicU64,
}

impl ProjectionWriter {
    /// Opens `version` at its newest committed manifest, or — when it has none — at an empty
    /// one recording `reference` (the reference data a new version pins).
    pub async fn open(
        projection: Projection,
        version: u32,
        stream: &str,
        compaction: Compaction,
        reference: impl FnOnce() -> BTreeMap<String, String>,
    ) -> Result<ProjectionWriter, StoreError> {
        let committed = match projection.newest_manifest(version).await? {
            Some(manifest) => manifest,
            None => {
                let mut empty = Manifest::empty(projection.id(), version, stream);
                empty.reference = reference();
                empty
            }
        };
        Ok(ProjectionWriter {
            projection,
            version,
            stream: stream.to_owned(),
            committed,
            compaction,
            flushes: 0,
            written: Default::default(),
        })
    }

    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn compaction(&self) -> &Compaction {
        &self.compaction
    }

    /// The newest committed manifest (an empty one before the first commit).
    pub fn committed(&self) -> &Manifest {
        &self.committed
    }

    /// Records how a version that has committed nothing yet is written (its manifests carry it
    /// from then on, like the reference data).
    pub fn set_disclosure(&mut self, key: &str, value: &str) {
        debug_assert_eq!(self.committed.last_sequence, 0, "only a new version");
        self.committed.disclosure.insert(key.to_owned(), value.to_owned());
    }

    /// The bytes of Parquet written since the last call: a flush's size, compactions included.
    pub fn take_written_bytes(&self) -> u64 {
        self.written.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn committed_sequence(&self) -> u64 {
        self.committed.last_sequence
    }

    /// The span a sink restores its fold from the committed manifest in.
    pub fn restore_span(&self) -> tracing::Span {
        tracing::info_span!(
            "restore",
            projection = self.projection.name(),
            version = self.version,
            sequence = self.committed.last_sequence
        )
    }

    /// The object path of a committed file, for errors that name it.
    pub fn path_of(&self, file: &DataFile) -> String {
        self.projection.object_path(self.version, &file.path).to_string()
    }

    /// The committed tables, as the starting point of the next flush.
    pub fn tables(&self) -> Tables {
        Tables(self.committed.tables.clone())
    }

    /// Writes `batch` as the file of `table` holding sequences `first..=last` (of `year`, for
    /// counts). Names come from the range, so a retry after a crash rewrites the same file.
    pub async fn write(
        &self,
        table: &TableId,
        year: Option<i32>,
        first_sequence: u64,
        last_sequence: u64,
        batch: &RecordBatch,
    ) -> Result<DataFile, StoreError> {
        let batches = std::iter::once(batch.clone());
        self.write_batches(table, year, first_sequence, last_sequence, batch.schema(), batches)
            .await
    }

    /// Writes an encoded Parquet file as the file of `table` holding sequences `first..=last`
    /// (of `year`, for counts), with one put: the object appears whole or not at all, so there
    /// is no multipart upload to abort after a crash.
    pub async fn write_encoded(
        &self,
        table: &TableId,
        year: Option<i32>,
        first_sequence: u64,
        last_sequence: u64,
        encoder: ParquetEncoder,
    ) -> Result<DataFile, StoreError> {
        let path = table.data_file(year, first_sequence, last_sequence);
        let rows = encoder.rows();
        let bytes = encoder.finish()?;
        let size = bytes.len() as u64;
        self.projection
            .store()
            .put(&self.projection.object_path(self.version, &path), bytes)
            .await?;
        self.written.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        Ok(DataFile { path, year, first_sequence, last_sequence, rows, bytes: size })
    }

    /// Writes `batches` (made one at a time) as one file of `table`: a large table is never
    /// held whole as rows, only encoded.
    pub async fn write_batches(
        &self,
        table: &TableId,
        year: Option<i32>,
        first_sequence: u64,
        last_sequence: u64,
        schema: arrow::datatypes::SchemaRef,
        batches: impl Iterator<Item = RecordBatch>,
    ) -> Result<DataFile, StoreError> {
        let mut encoder = ParquetEncoder::new(schema, &table.dir())?;
        for batch in batches {
            encoder.write(&batch)?;
        }
        self.write_encoded(table, year, first_sequence, last_sequence, encoder).await
    }

    /// Writes the file of `table` holding sequences `first..=last` from pieces (see
    /// [`Store::put_pieces`](observatory_store::Store::put_pieces)), for a file too large to
    /// hold whole in memory (a fold image). `rows` is what the manifest records of it.
    pub async fn write_pieces(
        &self,
        table: &TableId,
        first_sequence: u64,
        last_sequence: u64,
        rows: u64,
        fill: impl FnMut(&mut Vec<u8>) -> bool + Send,
    ) -> Result<DataFile, StoreError> {
        let path = table.data_file(None, first_sequence, last_sequence);
        let bytes = self
            .projection
            .store()
            .put_pieces(&self.projection.object_path(self.version, &path), fill)
            .await?;
        self.written.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(DataFile { path, year: None, first_sequence, last_sequence, rows, bytes })
    }

    /// The bytes of a committed file, for a reader that decodes it batch by batch
    /// ([`observatory_store::parquet_batches`]).
    pub async fn bytes(&self, file: &DataFile) -> Result<bytes::Bytes, StoreError> {
        let path = self.projection.object_path(self.version, &file.path);
        self.projection.store().get(&path).await?.ok_or_else(|| missing(&path))
    }

    /// The bytes of a committed file as they arrive.
    pub async fn pieces(
        &self,
        file: &DataFile,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, StoreError>>, StoreError>
    {
        let path = self.projection.object_path(self.version, &file.path);
        self.projection.store().get_pieces(&path).await?.ok_or_else(|| missing(&path))
    }

    /// Reads a file of this version back, whole.
    pub async fn read(&self, file: &DataFile) -> Result<Vec<RecordBatch>, StoreError> {
        read_parquet(
            self.projection.store(),
            &self.projection.object_path(self.version, &file.path),
        )
        .await
    }

    /// Commits `tables` as everything up to `last_sequence`, with the committed stats updated
    /// by `stats` and the version's reference unchanged. On [`CommitError::Conflict`] another
    /// writer owns this version: stop rather than double-count.
    pub async fn commit(
        &mut self,
        last_sequence: u64,
        tables: Tables,
        stats: impl FnOnce(&mut BTreeMap<String, u64>),
    ) -> Result<(), CommitError> {
        let mut next_stats = self.committed.stats.clone();
        stats(&mut next_stats);
        let manifest = Manifest {
            format: Manifest::FORMAT,
            projection: self.projection.name().to_owned(),
            version: self.version,
            stream: self.stream.clone(),
            last_sequence,
            committed_at: Utc::now(),
            tables: tables.0,
            stats: next_stats,
            reference: self.committed.reference.clone(),
            disclosure: self.committed.disclosure.clone(),
        };
        self.projection.commit(&manifest).await?;
        self.committed = manifest;
        self.flushes += 1;
        if self.flushes.is_multiple_of(GC_EVERY_FLUSHES) {
            let deleted = self
                .projection
                .collect_garbage(self.version, self.compaction.keep_manifests)
                .await?;
            debug!(deleted, "garbage collected");
        }
        Ok(())
    }
}

fn missing(path: &observatory_store::object_store::path::Path) -> StoreError {
    StoreError::Invalid {
        path: path.to_string(),
        message: "listed in a manifest but missing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use observatory_store::{ProjectionId, Store};
    use std::sync::Arc;

    fn projection(dir: &tempfile::TempDir) -> Projection {
        Projection::new(Store::open(dir.path().to_str().unwrap()).unwrap(), ProjectionId::Incidents)
    }

    fn batch(values: &[u64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("sequence", DataType::UInt64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(values.to_vec()))]).unwrap()
    }

    fn pinned() -> BTreeMap<String, String> {
        [("iccs".to_owned(), "1.0".to_owned())].into()
    }

    #[tokio::test]
    async fn a_new_version_starts_empty_with_its_reference() {
        let dir = tempfile::tempdir().unwrap();
        let writer =
            ProjectionWriter::open(projection(&dir), 3, "S", Compaction::default(), pinned)
                .await
                .unwrap();
        assert_eq!(writer.committed_sequence(), 0);
        assert_eq!(writer.committed().version, 3);
        assert_eq!(writer.committed().projection, "incidents");
        assert_eq!(writer.committed().reference, pinned());
        assert!(writer.committed().tables.is_empty());
    }

    #[tokio::test]
    async fn a_commit_is_restored_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            ProjectionWriter::open(projection(&dir), 1, "S", Compaction::default(), pinned)
                .await
                .unwrap();
        let mut tables = writer.tables();
        let file = writer.write(&TableId::State, None, 1, 3, &batch(&[1, 2, 3])).await.unwrap();
        assert_eq!(file.path, TableId::State.data_file(None, 1, 3));
        assert_eq!(file.rows, 3);
        tables.files_mut(&TableId::State).push(file.clone());
        writer
            .commit(3, tables, |stats| *stats.entry("events".into()).or_default() += 3)
            .await
            .unwrap();
        let committed = writer.committed().clone();

        let reopened =
            ProjectionWriter::open(projection(&dir), 1, "S", Compaction::default(), || {
                panic!("a committed version keeps the reference it recorded")
            })
            .await
            .unwrap();
        assert_eq!(reopened.committed(), &committed);
        assert_eq!(reopened.committed_sequence(), 3);
        assert_eq!(reopened.tables().files(&TableId::State), std::slice::from_ref(&file));
        assert_eq!(reopened.read(&file).await.unwrap(), vec![batch(&[1, 2, 3])]);
    }

    #[tokio::test]
    async fn a_second_writer_on_the_same_version_loses_the_commit_race() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || ProjectionWriter::open(projection(&dir), 1, "S", Compaction::default(), pinned);
        let (mut first, mut second) = (open().await.unwrap(), open().await.unwrap());
        first.commit(5, first.tables(), |_| {}).await.unwrap();
        let tables = second.tables();
        match second.commit(5, tables, |_| {}).await {
            Err(CommitError::Conflict { projection, version, sequence }) => {
                assert_eq!((projection, version, sequence), (ProjectionId::Incidents, 1, 5));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(second.committed_sequence(), 0, "a lost commit changes nothing");
    }

    /// Every `GC_EVERY_FLUSHES`-th commit deletes manifests beyond `keep_manifests`.
    #[tokio::test]
    async fn commits_collect_garbage_on_their_cadence() {
        let dir = tempfile::tempdir().unwrap();
        let compaction = Compaction { keep_manifests: 2, ..Compaction::default() };
        let projection = projection(&dir);
        let mut writer =
            ProjectionWriter::open(projection.clone(), 1, "S", compaction, pinned).await.unwrap();
        for sequence in 1..GC_EVERY_FLUSHES {
            writer.commit(sequence, writer.tables(), |_| {}).await.unwrap();
        }
        let before = projection.manifest_sequences(1).await.unwrap().len() as u64;
        assert_eq!(before, GC_EVERY_FLUSHES - 1);
        writer.commit(GC_EVERY_FLUSHES, writer.tables(), |_| {}).await.unwrap();
        assert_eq!(
            projection.manifest_sequences(1).await.unwrap(),
            vec![GC_EVERY_FLUSHES, GC_EVERY_FLUSHES - 1]
        );
    }
}
