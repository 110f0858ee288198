//! One projection's versions in the store: `CURRENT`, manifests (create-only commits) and
//! garbage collection of what no kept manifest names.

use bytes::Bytes;
use object_store::path::Path;

use crate::layout::{self, ProjectionId, TableId};
use crate::releases::Releases;
use crate::{Manifest, Store, StoreError};

/// One projection (incidents, surveys) and its versions in the store.
#[derive(Clone, Debug)]
pub struct Projection {
    store: Store,
    id: ProjectionId,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another projector committed this sequence first: this one must stop and reload.
    #[error(
        "a manifest for sequence {sequence} of {projection} v{version} already exists; another projector is writing the same version"
    )]
    Conflict { projection: ProjectionId, version: u32, sequence: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Projection {
    pub fn new(store: Store, id: ProjectionId) -> Projection {
        Projection { store, id }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn id(&self) -> ProjectionId {
        self.id
    }

    pub fn name(&self) -> &'static str {
        self.id.name()
    }

    pub fn version_root(&self, version: u32) -> String {
        self.id.version_root(version)
    }

    /// Absolute object path of a file named relative to a version root.
    pub fn object_path(&self, version: u32, relative: &str) -> Path {
        self.id.object(version, relative)
    }

    /// The version that serves readers, if any was ever switched to.
    pub async fn current_version(&self) -> Result<Option<u32>, StoreError> {
        let path = self.id.current();
        let Some(bytes) = self.store.get(&path).await? else { return Ok(None) };
        let text = String::from_utf8_lossy(&bytes);
        let version =
            text.trim().strip_prefix('v').and_then(|v| v.parse().ok()).ok_or_else(|| {
                StoreError::Invalid {
                    path: path.to_string(),
                    message: format!("expected 'v<number>', found '{}'", text.trim()),
                }
            })?;
        Ok(Some(version))
    }

    /// Points readers at `version`: one small overwrite, atomic on every backend.
    pub async fn set_current(&self, version: u32) -> Result<(), StoreError> {
        self.store.put(&self.id.current(), Bytes::from(format!("v{version}\n"))).await
    }

    /// Every version present in the store, ascending.
    pub async fn versions(&self) -> Result<Vec<u32>, StoreError> {
        let mut versions: Vec<u32> = self
            .store
            .list(&Path::from(self.id.root()))
            .await?
            .iter()
            .filter_map(|meta| self.id.version_of(&meta.location))
            .collect();
        // A served version may have no object yet (no event ever flushed): it still exists,
        // and a rebuild must not pick its number and replace its consumer.
        versions.extend(self.current_version().await?);
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// Sequences of all committed manifests of a version, newest first.
    pub async fn manifest_sequences(&self, version: u32) -> Result<Vec<u64>, StoreError> {
        let mut sequences: Vec<u64> = self
            .store
            .list(&self.id.manifests(version))
            .await?
            .iter()
            .filter_map(|meta| layout::sequence_of_manifest_file_name(meta.location.filename()?))
            .collect();
        sequences.sort_unstable_by(|a, b| b.cmp(a));
        Ok(sequences)
    }

    pub async fn manifest(
        &self,
        version: u32,
        sequence: u64,
    ) -> Result<Option<Manifest>, StoreError> {
        let path = self.id.manifest(version, sequence);
        let Some(bytes) = self.store.get(&path).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Manifest { path: path.to_string(), source })
    }

    /// The newest committed manifest of a version.
    pub async fn newest_manifest(&self, version: u32) -> Result<Option<Manifest>, StoreError> {
        match self.manifest_sequences(version).await?.first() {
            Some(&sequence) => self.manifest(version, sequence).await,
            None => Ok(None),
        }
    }

    /// The newest manifest of the serving version.
    pub async fn serving_manifest(&self) -> Result<Option<Manifest>, StoreError> {
        match self.current_version().await? {
            Some(version) => self.newest_manifest(version).await,
            None => Ok(None),
        }
    }

    /// Commits a flush: the manifest is written create-only, so of two writers only one
    /// commits a given sequence. Data files must already be written.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), CommitError> {
        let path = self.id.manifest(manifest.version, manifest.last_sequence);
        let body = serde_json::to_vec_pretty(manifest).expect("manifests serialise");
        match self.store.put_create(&path, Bytes::from(body)).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => Err(CommitError::Conflict {
                projection: self.id,
                version: manifest.version,
                sequence: manifest.last_sequence,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps the newest `keep` manifests of a version and every manifest a release names, and
    /// deletes older ones, then deletes data files that no kept manifest names (superseded by
    /// compaction, or orphans of a flush that crashed before its manifest). Readers holding an
    /// older manifest have `keep` flushes of grace; a release keeps its files forever. (A
    /// release names the newest manifest when it is made, which a collection running at that
    /// moment keeps among its newest `keep`.)
    pub async fn collect_garbage(&self, version: u32, keep: usize) -> Result<usize, StoreError> {
        let sequences = self.manifest_sequences(version).await?;
        if sequences.is_empty() {
            return Ok(0);
        }
        let mut live = std::collections::HashSet::new();
        let mut released = std::collections::HashSet::new();
        let mut kept: Vec<(Manifest, bool)> = Vec::new();
        for release in Releases::new(self.store.clone()).list().await? {
            if let Some(manifest) = release.manifest(self.id).filter(|m| m.version == version) {
                released.insert(manifest.last_sequence);
                kept.push((manifest.clone(), true));
            }
        }
        for &sequence in sequences.iter().take(keep.max(1)) {
            kept.extend(self.manifest(version, sequence).await?.map(|m| (m, false)));
        }
        let image = TableId::FoldImage.key();
        for (manifest, released) in &kept {
            for (table, files) in &manifest.tables {
                // A release answers from its data, never restarts a projector: its fold image
                // (hundreds of megabytes at ten million incidents) is not kept for it.
                if *released && *table == image {
                    continue;
                }
                live.extend(files.iter().map(|f| self.object_path(version, &f.path)));
            }
        }
        let mut deleted = 0;
        for &sequence in sequences.iter().skip(keep.max(1)) {
            if released.contains(&sequence) {
                continue;
            }
            self.store.delete(&self.id.manifest(version, sequence)).await?;
            deleted += 1;
        }
        for meta in self.store.list(&self.id.data(version)).await? {
            // A file whose range ends after the newest commit may belong to a flush in
            // progress; leave it to a later pass.
            let in_progress = meta
                .location
                .filename()
                .and_then(layout::data_file_range)
                .is_none_or(|(_, last)| last > sequences[0]);
            if !live.contains(&meta.location) && !in_progress {
                self.store.delete(&meta.location).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataFile, TableId};

    fn projection(dir: &tempfile::TempDir) -> Projection {
        Projection::new(Store::open(dir.path().to_str().unwrap()).unwrap(), ProjectionId::Incidents)
    }

    /// Writes a placeholder data file (garbage collection never reads one) and describes it.
    async fn data_file(
        projection: &Projection,
        table: &TableId,
        first: u64,
        last: u64,
    ) -> DataFile {
        let year = (*table == TableId::Counts).then_some(2024);
        let path = table.data_file(year, first, last);
        projection.store().put(&projection.object_path(1, &path), Bytes::from("x")).await.unwrap();
        DataFile { path, year, first_sequence: first, last_sequence: last, rows: 1, bytes: 1 }
    }

    async fn commit(
        projection: &Projection,
        last_sequence: u64,
        tables: &[(&TableId, &[&DataFile])],
    ) {
        let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "TEST");
        manifest.last_sequence = last_sequence;
        for (table, files) in tables {
            manifest.tables.insert(table.key(), files.iter().map(|&f| f.clone()).collect());
        }
        projection.commit(&manifest).await.unwrap();
    }

    async fn exists(projection: &Projection, file: &DataFile) -> bool {
        projection.store().get(&projection.object_path(1, &file.path)).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn garbage_collection_keeps_what_kept_manifests_name_and_what_is_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let projection = projection(&dir);
        assert_eq!(projection.collect_garbage(1, 2).await.unwrap(), 0, "nothing committed yet");

        let state = TableId::State;
        let a = data_file(&projection, &state, 1, 10).await;
        commit(&projection, 10, &[(&state, &[&a])]).await;
        let b = data_file(&projection, &state, 11, 20).await;
        commit(&projection, 20, &[(&state, &[&a, &b])]).await;
        // A compaction merged a and b; the counts file is only in the newest manifest.
        let merged = data_file(&projection, &state, 1, 30).await;
        let counts = data_file(&projection, &TableId::Counts, 21, 30).await;
        commit(&projection, 30, &[(&state, &[&merged]), (&TableId::Counts, &[&counts])]).await;
        // Left by a flush that crashed before its manifest, and by one still writing.
        let orphan = data_file(&projection, &state, 25, 25).await;
        let in_progress = data_file(&projection, &state, 31, 40).await;

        // Keeping two manifests drops the oldest; `a` is still named by a kept one.
        assert_eq!(projection.collect_garbage(1, 2).await.unwrap(), 2, "one manifest, the orphan");
        assert_eq!(projection.manifest_sequences(1).await.unwrap(), vec![30, 20]);
        for kept in [&a, &b, &merged, &counts, &in_progress] {
            assert!(exists(&projection, kept).await, "{} was deleted", kept.path);
        }
        assert!(!exists(&projection, &orphan).await);

        // Keeping one drops the files only the dropped manifest named.
        assert_eq!(projection.collect_garbage(1, 1).await.unwrap(), 3, "one manifest, a and b");
        assert_eq!(projection.manifest_sequences(1).await.unwrap(), vec![30]);
        assert!(!exists(&projection, &a).await && !exists(&projection, &b).await);
        for kept in [&merged, &counts, &in_progress] {
            assert!(exists(&projection, kept).await, "{} was deleted", kept.path);
        }
        assert!(projection.newest_manifest(1).await.unwrap().is_some());
    }

    /// A fold image is a data file like the others: the newest manifest's is kept, the one
    /// it replaced goes with the manifests that named it.
    #[tokio::test]
    async fn garbage_collection_deletes_a_replaced_fold_image() {
        let dir = tempfile::tempdir().unwrap();
        let projection = projection(&dir);
        let image = TableId::FoldImage;
        let first = data_file(&projection, &image, 1, 10).await;
        commit(&projection, 10, &[(&image, &[&first])]).await;
        let second = data_file(&projection, &image, 1, 30).await;
        commit(&projection, 30, &[(&image, &[&second])]).await;
        assert_eq!(projection.collect_garbage(1, 1).await.unwrap(), 2, "a manifest, an image");
        assert!(!exists(&projection, &first).await);
        assert!(exists(&projection, &second).await);
    }

    /// An object written in pieces reads back whole, and in pieces.
    #[tokio::test]
    async fn an_object_written_in_pieces_reads_back_the_same() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let path = Path::from("pieces/object");
        let expected: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut offset = 0;
        let written = store
            .put_pieces(&path, |piece| {
                let end = (offset + 3_000_001).min(expected.len());
                piece.extend_from_slice(&expected[offset..end]);
                offset = end;
                offset < expected.len()
            })
            .await
            .unwrap();
        assert_eq!(written, expected.len() as u64);
        assert_eq!(store.get(&path).await.unwrap().unwrap(), expected);
        let pieces: Vec<Bytes> =
            store.get_pieces(&path).await.unwrap().unwrap().try_collect().await.unwrap();
        assert_eq!(pieces.concat(), expected);
        assert!(store.get_pieces(&Path::from("pieces/none")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn garbage_collection_keeps_what_a_release_names() {
        let dir = tempfile::tempdir().unwrap();
        let projection = projection(&dir);
        let state = TableId::State;
        let a = data_file(&projection, &state, 1, 10).await;
        let image = data_file(&projection, &TableId::FoldImage, 1, 10).await;
        commit(&projection, 10, &[(&state, &[&a]), (&TableId::FoldImage, &[&image])]).await;
        let released = projection.manifest(1, 10).await.unwrap().unwrap();
        let release = crate::Releases::new(projection.store().clone())
            .create(crate::ReleaseDraft {
                name: None,
                note: None,
                projections: [("incidents".to_owned(), released.clone())].into_iter().collect(),
                disclosure: serde_json::Value::Null,
            })
            .await
            .unwrap();
        // Compacted away and far behind: without the release both would go.
        let merged = data_file(&projection, &state, 1, 20).await;
        for sequence in 20..25 {
            commit(&projection, sequence, &[(&state, &[&merged])]).await;
        }
        projection.collect_garbage(1, 1).await.unwrap();
        assert!(exists(&projection, &a).await, "a file the release names was deleted");
        // Its fold image is not data: it goes once no newest manifest names it.
        assert!(!exists(&projection, &image).await);
        assert_eq!(projection.manifest_sequences(1).await.unwrap(), vec![24, 10]);
        assert_eq!(projection.manifest(1, 10).await.unwrap().unwrap(), released);
        // Another version's collection leaves it alone too.
        assert_eq!(projection.collect_garbage(2, 1).await.unwrap(), 0);
        assert_eq!(release.manifest(ProjectionId::Incidents), Some(&released));
    }

    #[tokio::test]
    async fn keeping_zero_manifests_still_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let projection = projection(&dir);
        let file = data_file(&projection, &TableId::State, 1, 5).await;
        commit(&projection, 5, &[(&TableId::State, &[&file])]).await;
        commit(&projection, 6, &[(&TableId::State, &[&file])]).await;
        assert_eq!(projection.collect_garbage(1, 0).await.unwrap(), 1);
        assert_eq!(projection.manifest_sequences(1).await.unwrap(), vec![6]);
        assert!(exists(&projection, &file).await);
    }

    #[tokio::test]
    async fn a_second_commit_of_the_same_sequence_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let projection = projection(&dir);
        commit(&projection, 7, &[]).await;
        let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "TEST");
        manifest.last_sequence = 7;
        assert!(matches!(
            projection.commit(&manifest).await,
            Err(CommitError::Conflict { version: 1, sequence: 7, .. })
        ));
    }
}
