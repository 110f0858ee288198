//! Object-storage edge: where projections live, how a flush commits (data files first,
//! then one create-only manifest), and Parquet in and out.
//!
//! The layout under the store root (projections, tables, paths, columns) is [`layout`]: the
//! contract between the projector that writes and the query that reads.

pub mod layout;
mod manifest;
mod parquet_io;
mod projection;
mod releases;
mod reports;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub use layout::{ProjectionId, TableId};
pub use manifest::{DataFile, Manifest};
pub use object_store;
pub use parquet_io::{ParquetEncoder, parquet_batches, read_parquet};
pub use projection::{CommitError, Projection};
pub use releases::{Release, ReleaseDraft, Releases, is_release_id};
pub use reports::{ReportKey, Reports, Written, release_number};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open object store {location}: {message}")]
    Open { location: String, message: String },
    #[error("object store operation on {path} failed: {source}")]
    Object { path: String, source: object_store::Error },
    #[error("{path} already exists (another writer committed first)")]
    AlreadyExists { path: String },
    #[error("{path} is not a valid manifest: {source}; it may be corrupt or from a newer build")]
    Manifest { path: String, source: serde_json::Error },
    #[error("{path}: Parquet error: {message}")]
    Parquet { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// An object store plus the location it was opened from.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    location: String,
}

impl Store {
    /// Opens `location`: a local directory (created if missing), `file:///abs/path`, or
    /// `s3://bucket/prefix` configured from the usual `AWS_*` environment variables
    /// (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true` for a local S3-protocol server).
    pub fn open(location: &str) -> Result<Store, StoreError> {
        let open_err =
            |message: String| StoreError::Open { location: location.to_owned(), message };
        let inner: Arc<dyn ObjectStore> = if location.starts_with("s3://") {
            let url = url::Url::parse(location).map_err(|e| open_err(e.to_string()))?;
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_url(location)
                .build()
                .map_err(|e| open_err(e.to_string()))?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            }
        } else {
            let dir = location.strip_prefix("file://").unwrap_or(location);
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("cannot create directory: {e}")))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| open_err(e.to_string()))?
                .with_automatic_cleanup(true);
            Arc::new(store)
        };
        Ok(Store { inner, location: location.to_owned() })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.inner.clone()
    }

    fn object_err(path: &Path) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        move |source| StoreError::Object { path: path.to_string(), source }
    }

    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(path).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(Self::object_err(path))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::object_err(path)(e)),
        }
    }

    /// Overwrites `path` (atomic for readers on both the local store and S3).
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(Self::object_err(path))?;
        Ok(())
    }

    /// Writes `path` only if nothing is there yet.
    pub async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.inner.put_opts(path, PutPayload::from_bytes(bytes), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                Err(StoreError::AlreadyExists { path: path.to_string() })
            }
            Err(e) => Err(Self::object_err(path)(e)),
        }
    }

    /// Writes `path` from pieces `fill` appends to its buffer (returning true while more are
    /// coming), so an object larger than memory should hold is never held whole: a multipart
    /// upload (parts on S3, a temporary file renamed when complete on the local store; readers
    /// see the whole object or nothing). Returns the bytes written.
    pub async fn put_pieces(
        &self,
        path: &Path,
        mut fill: impl FnMut(&mut Vec<u8>) -> bool + Send,
    ) -> Result<u64, StoreError> {
        const PIECE: usize = 8 << 20;
        let upload = self.inner.put_multipart(path).await.map_err(Self::object_err(path))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PIECE);
        let mut buffer = Vec::with_capacity(PIECE);
        let mut written = 0u64;
        loop {
            let more = fill(&mut buffer);
            if let Err(e) = writer.wait_for_capacity(2).await {
                let _ = writer.abort().await;
                return Err(Self::object_err(path)(e));
            }
            writer.write(&buffer);
            written += buffer.len() as u64;
            buffer.clear();
            if !more {
                break;
            }
        }
        writer.finish().await.map_err(Self::object_err(path))?;
        Ok(written)
    }

    /// The bytes of `path` as they arrive, for a reader that decodes as it goes; `None` if
    /// there is no such object.
    pub async fn get_pieces(
        &self,
        path: &Path,
    ) -> Result<Option<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>>, StoreError>
    {
        match self.inner.get(path).await {
            Ok(result) => {
                let location = path.to_string();
                Ok(Some(Box::pin(
                    result.into_stream().map_err(move |source| StoreError::Object {
                        path: location.clone(),
                        source,
                    }),
                )))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::object_err(path)(e)),
        }
    }

    pub async fn list(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>, StoreError> {
        self.inner.list(Some(prefix)).try_collect().await.map_err(Self::object_err(prefix))
    }

    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::object_err(path)(e)),
        }
    }
}
