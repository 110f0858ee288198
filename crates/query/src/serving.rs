//! The serving manifest both query engines answer from: read it, wait (briefly) for it to reach
//! a client's `min_sequence`, and say what an answer reflects (`as_of`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use observatory_store::{Manifest, Projection, ProjectionId, StoreError};
use serde::Serialize;
use tokio::sync::watch;

/// Reads the manifest `CURRENT` points to in one projection, or, once an engine prepares each
/// new manifest in the background ([`ServingManifest::follow`]), the newest manifest it has
/// prepared: a request is then answered at once from the previous state, with that state's
/// `as_of`, while the next is being prepared, and never pays for the preparation itself.
pub struct ServingManifest {
    projection: Projection,
    /// How often a reader waiting on `min_sequence` looks again.
    poll_interval: Duration,
    /// The newest prepared manifest, when something prepares them (`None` inside: the
    /// projection has no manifest yet; the outer `None`: nothing prepared yet).
    front: std::sync::OnceLock<watch::Receiver<Option<Option<Manifest>>>>,
}

impl ServingManifest {
    pub fn new(projection: Projection) -> ServingManifest {
        ServingManifest {
            projection,
            poll_interval: Duration::from_millis(20),
            front: std::sync::OnceLock::new(),
        }
    }

    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// From now on serve what `front` says is prepared. Once only: `false` if already set.
    pub fn follow(&self, front: watch::Receiver<Option<Option<Manifest>>>) -> bool {
        self.front.set(front).is_ok()
    }

    /// Whether the manifest served is one prepared in the background (`None`: nothing
    /// prepares manifests; `Some(false)`: the first is still being prepared).
    pub fn prepared(&self) -> Option<bool> {
        self.front.get().map(|front| front.borrow().is_some())
    }

    /// The serving manifest now (`None` before the first commit): the newest prepared one
    /// when manifests are prepared in the background and one is, else `CURRENT`'s.
    pub async fn current(&self) -> Result<Option<Manifest>, StoreError> {
        if let Some(front) = self.front.get()
            && let Some(prepared) = front.borrow().clone()
        {
            return Ok(prepared);
        }
        self.committed().await
    }

    /// The manifest `CURRENT` points to, whether or not it is prepared.
    pub async fn committed(&self) -> Result<Option<Manifest>, StoreError> {
        self.projection.serving_manifest().await
    }

    /// The serving manifest, waiting up to `max_wait` for it to reach `min_sequence`.
    pub async fn wait_for(
        &self,
        min_sequence: Option<u64>,
        max_wait: Duration,
    ) -> Result<Option<Manifest>, ServingError> {
        let started = Instant::now();
        loop {
            let manifest = self.current().await?;
            let reached = manifest.as_ref().map_or(0, |m| m.last_sequence);
            match min_sequence {
                Some(wanted) if reached < wanted => {
                    if started.elapsed() >= max_wait {
                        return Err(ServingError::NotYet(NotYet {
                            projection: self.projection.id(),
                            reached,
                            wanted,
                            waited: started.elapsed(),
                        }));
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
                _ => return Ok(manifest),
            }
        }
    }
}

/// Why no manifest could be served.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotYet(#[from] NotYet),
}

/// The projection did not reach the sequence a client asked for within the wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {} has reached sequence {reached}, not the requested {wanted}, after waiting {waited:?}; \
     the projector may be behind or stopped: retry later",
    described(.projection)
)]
pub struct NotYet {
    pub projection: ProjectionId,
    pub reached: u64,
    pub wanted: u64,
    pub waited: Duration,
}

/// How a projection is named to clients (the words their messages have always used).
fn described(projection: &ProjectionId) -> &'static str {
    match projection {
        ProjectionId::Incidents => "projection",
        ProjectionId::Surveys => "survey projection",
    }
}

/// What an answer reflects: the `as_of` object of every JSON answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AsOf {
    /// Stream sequence of the manifest: every event up to it is reflected, none after.
    pub sequence: u64,
    pub version: u32,
    pub committed_at: Option<DateTime<Utc>>,
    /// Reference data the projection was computed with (ICCS, crosswalk versions); only
    /// projections that pin reference data say so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<BTreeMap<String, String>>,
    /// The release the answer comes from, when it was asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::vintage::ReleaseRef>,
}

impl AsOf {
    /// The id of the release the answer comes from, when it comes from one.
    pub fn release_id(&self) -> Option<&str> {
        self.release.as_ref().map(|r| r.id.as_str())
    }

    /// The `as_of` of an answer from `manifest` of `projection` (zeros before the first commit).
    pub fn of(projection: ProjectionId, manifest: Option<&Manifest>) -> AsOf {
        // Incidents pin their crosswalk versions per projection version; surveys pin nothing
        // and their answers have never carried `reference`.
        let pins_reference = match projection {
            ProjectionId::Incidents => true,
            ProjectionId::Surveys => false,
        };
        AsOf {
            sequence: manifest.map_or(0, |m| m.last_sequence),
            version: manifest.map_or(0, |m| m.version),
            committed_at: manifest.map(|m| m.committed_at),
            reference: pins_reference
                .then(|| manifest.map(|m| m.reference.clone()).unwrap_or_default()),
            release: None,
        }
    }

    /// The `as_of` of an answer from a resolved vintage.
    pub fn resolved(projection: ProjectionId, resolved: &crate::vintage::Resolved) -> AsOf {
        AsOf {
            release: resolved.release.clone(),
            ..AsOf::of(projection, resolved.manifest.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(projection: ProjectionId) -> Manifest {
        let mut manifest = Manifest::empty(projection, 3, "OBSERVATORY");
        manifest.last_sequence = 42;
        manifest.committed_at = "2024-05-01T12:00:00Z".parse().unwrap();
        manifest.reference.insert("crosswalk.natinf".into(), "2".into());
        manifest
    }

    /// Clients read these objects field by field: the shapes are the ones answers always had.
    #[test]
    fn as_of_keeps_the_shape_each_endpoint_answers() {
        let incidents = AsOf::of(ProjectionId::Incidents, Some(&manifest(ProjectionId::Incidents)));
        assert_eq!(
            serde_json::to_string(&incidents).unwrap(),
            r#"{"sequence":42,"version":3,"committed_at":"2024-05-01T12:00:00Z","reference":{"crosswalk.natinf":"2"}}"#
        );
        assert_eq!(
            serde_json::to_string(&AsOf::of(ProjectionId::Incidents, None)).unwrap(),
            r#"{"sequence":0,"version":0,"committed_at":null,"reference":{}}"#
        );
        let surveys = AsOf::of(ProjectionId::Surveys, Some(&manifest(ProjectionId::Surveys)));
        assert_eq!(
            serde_json::to_string(&surveys).unwrap(),
            r#"{"sequence":42,"version":3,"committed_at":"2024-05-01T12:00:00Z"}"#
        );
        assert_eq!(
            serde_json::to_string(&AsOf::of(ProjectionId::Surveys, None)).unwrap(),
            r#"{"sequence":0,"version":0,"committed_at":null}"#
        );
    }

    #[test]
    fn not_yet_names_the_projection_as_before() {
        let not_yet = |projection| NotYet {
            projection,
            reached: 3,
            wanted: 9,
            waited: Duration::from_millis(5),
        };
        assert_eq!(
            not_yet(ProjectionId::Incidents).to_string(),
            "the projection has reached sequence 3, not the requested 9, after waiting 5ms; \
             the projector may be behind or stopped: retry later"
        );
        assert!(
            not_yet(ProjectionId::Surveys)
                .to_string()
                .starts_with("the survey projection has reached sequence 3")
        );
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_sequence_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = observatory_store::Store::open(dir.path().to_str().unwrap()).unwrap();
        let projection = Projection::new(store, ProjectionId::Incidents);
        let reader = ServingManifest::new(projection.clone());
        assert!(reader.wait_for(None, Duration::ZERO).await.unwrap().is_none());
        let error = reader.wait_for(Some(1), Duration::ZERO).await.unwrap_err();
        assert!(
            matches!(error, ServingError::NotYet(NotYet { reached: 0, wanted: 1, .. })),
            "{error}"
        );
        // A commit landing while a reader waits is served as soon as it is seen.
        let waiting = tokio::spawn(async move {
            reader
                .wait_for(Some(42), Duration::from_secs(30))
                .await
                .map(|m| m.map(|m| m.last_sequence))
        });
        projection.commit(&manifest(ProjectionId::Incidents)).await.unwrap();
        projection.set_current(3).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), Some(42));
    }
}
