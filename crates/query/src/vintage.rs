//! Vintages: which committed state an answer reflects. By default the serving manifest (the
//! newest); `release=<id>` a release's frozen manifest; `as_of=<sequence>` any committed manifest
//! still kept (the newest of the serving version, and every release's); `as_of_time=<RFC 3339>`
//! the newest release made at or before that instant. The same vintage answers the same bytes
//! for as long as it exists, and a release exists forever.

use std::time::Duration;

use chrono::{DateTime, Utc};
use observatory_store::{Manifest, ProjectionId, Release, Releases, StoreError, is_release_id};
use serde::Serialize;

use crate::request::RequestError;
use crate::serving::{ServingError, ServingManifest};

/// Which committed state a request asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Vintage {
    /// The serving manifest (optionally once it reaches `min_sequence`).
    #[default]
    Current,
    Release(String),
    Sequence(u64),
    Time(DateTime<Utc>),
}

impl Vintage {
    /// Reads one of [`VINTAGE_PARAMETERS`] into `self`; `false` when `key` is not one of them.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, RequestError> {
        let chosen = match key {
            "release" if is_release_id(value) => Vintage::Release(value.to_owned()),
            "release" => {
                return Err(RequestError(format!(
                    "release='{value}' is not a release id; ids are r1, r2, … (GET /v1/releases lists them)"
                )));
            }
            "as_of" => Vintage::Sequence(value.parse().map_err(|_| {
                RequestError(format!(
                    "as_of='{value}' is not a stream sequence; send the `as_of.sequence` of an earlier answer \
                     (a non-negative integer), or release=<id>"
                ))
            })?),
            "as_of_time" => Vintage::Time(
                DateTime::parse_from_rfc3339(value)
                    .map_err(|e| {
                        // A '+' in a query string decodes to a space.
                        let hint = if value.contains(' ') {
                            " (a '+' in a URL reads as a space: write the offset as %2B01:00, or use Z)"
                        } else {
                            ""
                        };
                        RequestError(format!(
                            "as_of_time='{value}' is not an RFC 3339 instant ({e}){hint}; e.g. 2025-11-01T00:00:00Z"
                        ))
                    })?
                    .with_timezone(&Utc),
            ),
            _ => return Ok(false),
        };
        if *self != Vintage::Current {
            return Err(RequestError(
                "give one of release, as_of and as_of_time: each names a whole state".to_owned(),
            ));
        }
        *self = chosen;
        Ok(true)
    }

    /// Refuses `min_sequence` beside a fixed vintage (it waits for the newest state only).
    pub fn check_min_sequence(&self, min_sequence: Option<u64>) -> Result<(), RequestError> {
        match (self, min_sequence) {
            (Vintage::Current, _) | (_, None) => Ok(()),
            _ => Err(RequestError(
                "min_sequence waits for the newest state; it cannot be combined with release, as_of or as_of_time"
                    .to_owned(),
            )),
        }
    }
}

/// The release an answer comes from, as `as_of.release` says it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseRef {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl ReleaseRef {
    pub fn of(release: &Release) -> ReleaseRef {
        ReleaseRef {
            id: release.id.clone(),
            name: release.name.clone(),
            created_at: release.created_at,
        }
    }
}

/// A vintage resolved to a manifest of one projection.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `None`: nothing committed in that state (a release made before the first commit).
    pub manifest: Option<Manifest>,
    pub release: Option<ReleaseRef>,
    /// The newest serving manifest (its netting is kept up to date in place); any other state
    /// is netted beside it, so asking for an old one never evicts the serving netting.
    pub serving: bool,
}

impl Resolved {
    /// The serving manifest, as read now.
    pub fn serving(manifest: Option<Manifest>) -> Resolved {
        Resolved { manifest, release: None, serving: true }
    }

    /// A release's frozen manifest of one projection.
    pub fn release(release: &Release, projection: ProjectionId) -> Resolved {
        Resolved {
            manifest: release.manifest(projection).cloned(),
            release: Some(ReleaseRef::of(release)),
            serving: false,
        }
    }

    pub fn is_serving(&self) -> bool {
        self.serving
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VintageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serving(#[from] ServingError),
    #[error("release '{id}' does not exist; releases: {known} (GET /v1/releases)")]
    UnknownRelease { id: String, known: String },
    #[error(
        "as_of={sequence} is not a kept state of the {projection} projection; the oldest kept sequence is \
         {oldest} (older states are kept only by releases: {known}); use release=<id> for a state that lasts"
    )]
    NotKept { sequence: u64, projection: &'static str, oldest: String, known: String },
    #[error(
        "no release was made at or before {time}; the first is {first} (GET /v1/releases lists them)"
    )]
    NoReleaseBefore { time: DateTime<Utc>, first: String },
}

fn known(releases: &[Release]) -> String {
    if releases.is_empty() {
        return "none yet (a publisher creates one with POST /v1/releases)".to_owned();
    }
    releases
        .iter()
        .map(|r| format!("{} ({})", r.id, r.created_at.to_rfc3339()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves vintages against the store's releases and one projection's manifests.
#[derive(Clone, Debug)]
pub struct Vintages {
    releases: Releases,
}

impl Vintages {
    pub fn new(releases: Releases) -> Vintages {
        Vintages { releases }
    }

    pub fn releases(&self) -> &Releases {
        &self.releases
    }

    pub async fn resolve(
        &self,
        serving: &ServingManifest,
        vintage: &Vintage,
        min_sequence: Option<u64>,
        wait: Duration,
    ) -> Result<Resolved, VintageError> {
        let projection = serving.projection().id();
        let from_release = |release: &Release| Resolved::release(release, projection);
        match vintage {
            Vintage::Current => Ok(Resolved::serving(serving.wait_for(min_sequence, wait).await?)),
            Vintage::Release(id) => match self.releases.get(id).await? {
                Some(release) => Ok(from_release(&release)),
                None => Err(VintageError::UnknownRelease {
                    id: id.clone(),
                    known: known(&self.releases.list().await?),
                }),
            },
            Vintage::Time(time) => {
                let releases = self.releases.list().await?;
                match releases.iter().find(|r| r.created_at <= *time) {
                    Some(release) => Ok(from_release(release)),
                    None => Err(VintageError::NoReleaseBefore {
                        time: *time,
                        first: releases
                            .last()
                            .map(|r| format!("{} at {}", r.id, r.created_at.to_rfc3339()))
                            .unwrap_or_else(|| known(&[])),
                    }),
                }
            }
            Vintage::Sequence(sequence) => {
                let store = serving.projection();
                let version = store.current_version().await?;
                if let Some(version) = version
                    && let Some(manifest) = store.manifest(version, *sequence).await?
                {
                    return Ok(Resolved {
                        manifest: Some(manifest),
                        release: None,
                        serving: false,
                    });
                }
                let releases = self.releases.list().await?;
                // A release's manifest stays addressable by its sequence (newest release first:
                // after a rebuild two versions may hold the same sequence).
                if let Some(manifest) = releases
                    .iter()
                    .filter_map(|r| r.manifest(projection))
                    .find(|m| m.last_sequence == *sequence)
                {
                    return Ok(Resolved {
                        manifest: Some(manifest.clone()),
                        release: None,
                        serving: false,
                    });
                }
                let oldest = match version {
                    Some(version) => {
                        store.manifest_sequences(version).await?.last().map(u64::to_string)
                    }
                    None => None,
                };
                Err(VintageError::NotKept {
                    sequence: *sequence,
                    projection: projection.name(),
                    oldest: oldest.unwrap_or_else(|| "none (nothing committed yet)".to_owned()),
                    known: known(&releases),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vintage_per_request_each_checked() {
        let mut vintage = Vintage::default();
        assert!(!vintage.take("by", "year").unwrap());
        assert!(vintage.take("release", "r3").unwrap());
        assert_eq!(vintage, Vintage::Release("r3".into()));
        let error = vintage.take("as_of", "12").unwrap_err().0;
        assert!(error.contains("give one of"), "{error}");
        for (key, value, says) in [
            ("release", "3", "not a release id"),
            ("release", "", "not a release id"),
            ("as_of", "-1", "not a stream sequence"),
            ("as_of_time", "2025-13-01", "not an RFC 3339 instant"),
            ("as_of_time", "2025-11-01", "not an RFC 3339 instant"),
            ("as_of_time", "2025-11-01T00:00:00 01:00", "%2B01:00"),
        ] {
            let error = Vintage::default().take(key, value).unwrap_err().0;
            assert!(error.contains(says), "{key}={value}: {error}");
        }
        let mut time = Vintage::default();
        time.take("as_of_time", "2025-11-01T01:00:00+01:00").unwrap();
        assert_eq!(time, Vintage::Time("2025-11-01T00:00:00Z".parse().unwrap()));
        assert!(time.check_min_sequence(Some(3)).is_err());
        assert!(Vintage::Current.check_min_sequence(Some(3)).is_ok());
    }
}
