//! Releases: what the observatory published at one moment, frozen. A release copies the
//! committed manifest of every projection (files, versions, stream sequences, reference-data
//! versions) and the disclosure parameters in force, and is written create-only under
//! `releases/`. Garbage collection keeps every file and manifest a release names, and a rebuild
//! writes a new version beside the old one, so a release answers the same bytes forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::layout::{self, ProjectionId};
use crate::{Manifest, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub format: u32,
    /// `r<N>`, numbered in order of creation.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub note: String,
    pub created_at: DateTime<Utc>,
    /// The committed manifest of each projection when the release was made; a projection
    /// that had committed nothing is absent.
    pub projections: BTreeMap<String, Manifest>,
    /// The disclosure parameters in force (the store keeps them as given).
    pub disclosure: serde_json::Value,
}

/// What a new release is made of; the store gives it its id and time.
#[derive(Debug, Clone)]
pub struct ReleaseDraft {
    pub name: Option<String>,
    pub note: Option<String>,
    pub projections: BTreeMap<String, Manifest>,
    pub disclosure: serde_json::Value,
}

impl Release {
    pub const FORMAT: u32 = 1;

    /// The manifest of `projection` this release froze.
    pub fn manifest(&self, projection: ProjectionId) -> Option<&Manifest> {
        self.projections.get(projection.name())
    }
}

fn number_of(id: &str) -> Option<u64> {
    id.strip_prefix('r')?.parse().ok().filter(|_| !id[1..].starts_with('0'))
}

/// Whether `id` can name a release (`r1`, `r2`, …): what a query parameter is checked against.
pub fn is_release_id(id: &str) -> bool {
    number_of(id).is_some_and(|n| n > 0)
}

/// The releases of a store. A release is written once and never changes, so each is read from
/// the store once and then kept: a query asking for a vintage, and the listing, read only the
/// directory and the releases made since. (Clones share what was read.)
#[derive(Clone, Debug)]
pub struct Releases {
    store: Store,
    read: Arc<Mutex<HashMap<String, Release>>>,
}

impl Releases {
    pub fn new(store: Store) -> Releases {
        Releases { store, read: Arc::default() }
    }

    fn remember(&self, release: &Release) {
        self.read.lock().expect("not poisoned").insert(release.id.clone(), release.clone());
    }

    /// Writes a new release, numbered after the newest; of two writers racing for a number,
    /// the create-only write lets one win and the other takes the next.
    pub async fn create(&self, draft: ReleaseDraft) -> Result<Release, StoreError> {
        let mut number = self.ids().await?.into_iter().max().unwrap_or(0) + 1;
        loop {
            let id = format!("r{number}");
            let release = Release {
                format: Release::FORMAT,
                name: draft.name.clone().unwrap_or_else(|| id.clone()),
                note: draft.note.clone().unwrap_or_default(),
                id,
                created_at: Utc::now(),
                projections: draft.projections.clone(),
                disclosure: draft.disclosure.clone(),
            };
            let body = serde_json::to_vec_pretty(&release).expect("releases serialise");
            match self.store.put_create(&layout::release(&release.id), Bytes::from(body)).await {
                Ok(()) => {
                    self.remember(&release);
                    return Ok(release);
                }
                Err(StoreError::AlreadyExists { .. }) => number += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn ids(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .store
            .list(&Path::from(layout::RELEASES))
            .await?
            .iter()
            .filter_map(|meta| layout::release_id(&meta.location).and_then(number_of))
            .collect())
    }

    /// One release, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<Release>, StoreError> {
        if !is_release_id(id) {
            return Ok(None);
        }
        if let Some(release) = self.read.lock().expect("not poisoned").get(id) {
            return Ok(Some(release.clone()));
        }
        let path = layout::release(id);
        let Some(bytes) = self.store.get(&path).await? else { return Ok(None) };
        let release: Release =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Invalid {
                path: path.to_string(),
                message: format!("not a valid release: {source}"),
            })?;
        self.remember(&release);
        Ok(Some(release))
    }

    /// Every release, newest first.
    pub async fn list(&self) -> Result<Vec<Release>, StoreError> {
        let mut ids = self.ids().await?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut releases = Vec::with_capacity(ids.len());
        for number in ids {
            if let Some(release) = self.get(&format!("r{number}")).await? {
                releases.push(release);
            }
        }
        Ok(releases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(name: Option<&str>, sequence: u64) -> ReleaseDraft {
        let mut manifest = Manifest::empty(ProjectionId::Incidents, 1, "TEST");
        manifest.last_sequence = sequence;
        ReleaseDraft {
            name: name.map(str::to_owned),
            note: None,
            projections: [("incidents".to_owned(), manifest)].into_iter().collect(),
            disclosure: serde_json::json!({"method": "cell-key"}),
        }
    }

    #[tokio::test]
    async fn releases_are_numbered_listed_newest_first_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let releases = Releases::new(store.clone());
        assert!(releases.list().await.unwrap().is_empty());
        let first = releases.create(draft(Some("October"), 10)).await.unwrap();
        assert_eq!((first.id.as_str(), first.name.as_str()), ("r1", "October"));
        let second = releases.create(draft(None, 20)).await.unwrap();
        assert_eq!((second.id.as_str(), second.name.as_str()), ("r2", "r2"));
        // Someone wrote r3 meanwhile: the next is r4, and r3 is untouched.
        store.put_create(&layout::release("r3"), Bytes::from("{}")).await.unwrap();
        let fourth = Releases::new(store.clone()).create(draft(None, 30)).await.unwrap();
        assert_eq!(fourth.id, "r4");
        assert!(releases.get("r3").await.is_err(), "a corrupt release is an error, not absent");
        store.delete(&layout::release("r3")).await.unwrap();
        let listed: Vec<String> =
            releases.list().await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(listed, ["r4", "r2", "r1"]);
        let got = releases.get("r1").await.unwrap().unwrap();
        assert_eq!(got, first);
        assert_eq!(got.manifest(ProjectionId::Incidents).unwrap().last_sequence, 10);
        assert!(got.manifest(ProjectionId::Surveys).is_none());
        for unknown in ["r9", "r0", "r01", "x", "", "../r1"] {
            assert!(releases.get(unknown).await.unwrap().is_none(), "{unknown}");
        }
        // Read once, then kept: a release never changes (were its file damaged, what was read
        // stands; a fresh reader sees the damage).
        store.put(&layout::release("r1"), Bytes::from("{}")).await.unwrap();
        assert_eq!(releases.get("r1").await.unwrap().unwrap(), first);
        assert!(Releases::new(store).get("r1").await.is_err());
    }
}
