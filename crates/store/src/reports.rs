//! Published reports: `reports/<kind>/<period>/<release>/<file>`, the files of one report
//! written create-only and its `manifest.json` last, so a report exists exactly when its
//! manifest does. Reports are deterministic (the same release and parameters give the same
//! bytes), so a second writer of the same report — two schedulers firing at once, a run
//! resumed after a crash — finds identical files and leaves them; a file that differs is an
//! error, never an overwrite.

use bytes::Bytes;
use object_store::path::Path;

use crate::layout;
use crate::{Store, StoreError};

/// Where one report lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportKey {
    pub kind: String,
    pub period: String,
    pub release: String,
}

impl ReportKey {
    pub fn file(&self, name: &str) -> Path {
        layout::report_file(&self.kind, &self.period, &self.release, name)
    }
}

/// What writing a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The report was already there, byte for byte.
    AlreadyThere,
}

#[derive(Clone, Debug)]
pub struct Reports {
    store: Store,
}

impl Reports {
    pub fn new(store: Store) -> Reports {
        Reports { store }
    }

    /// Writes `files` (the manifest last), create-only.
    pub async fn write(
        &self,
        key: &ReportKey,
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Written, StoreError> {
        let (mut manifest, mut others) = (None, Vec::new());
        for (name, bytes) in files {
            if name == layout::REPORT_MANIFEST {
                manifest = Some(bytes);
            } else {
                others.push((name, bytes));
            }
        }
        let manifest = manifest.ok_or_else(|| StoreError::Invalid {
            path: key.file(layout::REPORT_MANIFEST).to_string(),
            message: "a report needs a manifest.json".to_owned(),
        })?;
        let mut created = false;
        for (name, bytes) in
            others.into_iter().chain([(layout::REPORT_MANIFEST.to_owned(), manifest)])
        {
            created |= self.create_or_same(&key.file(&name), bytes).await?;
        }
        Ok(if created { Written::Created } else { Written::AlreadyThere })
    }

    async fn create_or_same(&self, path: &Path, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let bytes = Bytes::from(bytes);
        match self.store.put_create(path, bytes.clone()).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => match self.store.get(path).await? {
                Some(existing) if existing == bytes => Ok(false),
                _ => Err(StoreError::Invalid {
                    path: path.to_string(),
                    message:
                        "a different file is already published here; a report's files never change \
                              (was it written by another version of the program?)"
                            .to_owned(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Every published report (those whose manifest is written), ordered by kind, period
    /// and release number.
    pub async fn list(&self) -> Result<Vec<ReportKey>, StoreError> {
        let mut keys: Vec<ReportKey> = self
            .store
            .list(&Path::from(layout::REPORTS))
            .await?
            .into_iter()
            .filter_map(|meta| layout::report_key_of_manifest(&meta.location))
            .collect();
        keys.sort_by(|a, b| {
            (&a.kind, &a.period, release_number(&a.release)).cmp(&(
                &b.kind,
                &b.period,
                release_number(&b.release),
            ))
        });
        Ok(keys)
    }

    /// Whether a report of `kind` for `period` is published, from any release.
    pub async fn published(&self, kind: &str, period: &str) -> Result<bool, StoreError> {
        Ok(self.list().await?.iter().any(|k| k.kind == kind && k.period == period))
    }

    /// Claims the scheduled run at `occurrence` (RFC 3339) of `kind` for `period`, create-only:
    /// of several schedulers firing the same run, exactly one gets `true` and publishes it.
    pub async fn claim(
        &self,
        kind: &str,
        period: &str,
        occurrence: &str,
        who: &str,
    ) -> Result<bool, StoreError> {
        let path = layout::report_claim(kind, period, occurrence);
        let body = format!("{{\"occurrence\":\"{occurrence}\",\"scheduler\":\"{who}\"}}\n");
        match self.store.put_create(&path, Bytes::from(body)).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One file of a report.
    pub async fn file(&self, key: &ReportKey, name: &str) -> Result<Option<Bytes>, StoreError> {
        self.store.get(&key.file(name)).await
    }
}

/// `r12` → 12 (unnumbered ids sort first).
pub fn release_number(id: &str) -> u64 {
    id.strip_prefix('r').and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, period: &str, release: &str) -> ReportKey {
        ReportKey { kind: kind.into(), period: period.into(), release: release.into() }
    }

    #[tokio::test]
    async fn a_report_is_written_once_and_listed_when_its_manifest_is() {
        let dir = tempfile::tempdir().unwrap();
        let reports = Reports::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let files = || {
            vec![
                ("manifest.json".to_owned(), b"{}".to_vec()),
                ("tables/a.csv".to_owned(), b"a\n1\n".to_vec()),
            ]
        };
        let k = key("monthly", "2025-10", "r2");
        assert_eq!(reports.write(&k, files()).await.unwrap(), Written::Created);
        assert_eq!(reports.write(&k, files()).await.unwrap(), Written::AlreadyThere);
        let other = vec![
            ("manifest.json".to_owned(), b"{}".to_vec()),
            ("tables/a.csv".to_owned(), b"a\n2\n".to_vec()),
        ];
        let err = reports.write(&k, other).await.unwrap_err().to_string();
        assert!(err.contains("different file"), "{err}");
        // A report without its manifest (a crashed writer) is not listed.
        reports
            .store
            .put(&key("annual", "2025", "r3").file("report.pdf"), Bytes::from_static(b"%PDF"))
            .await
            .unwrap();
        reports.write(&key("monthly", "2025-10", "r10"), files()).await.unwrap();
        let listed = reports.list().await.unwrap();
        assert_eq!(listed, vec![k.clone(), key("monthly", "2025-10", "r10")]);
        assert_eq!(
            reports.file(&k, "tables/a.csv").await.unwrap().unwrap(),
            Bytes::from_static(b"a\n1\n")
        );
        assert!(reports.write(&k, vec![("x".to_owned(), vec![])]).await.is_err(), "no manifest");
        assert!(reports.published("monthly", "2025-10").await.unwrap());
        assert!(!reports.published("annual", "2025").await.unwrap(), "no manifest, not published");
        let at = "2025-11-05T05:00:00Z";
        assert!(reports.claim("monthly", "2025-10", at, "a").await.unwrap());
        assert!(!reports.claim("monthly", "2025-10", at, "b").await.unwrap(), "one claim per run");
        assert_eq!(reports.list().await.unwrap().len(), 2, "a claim is not a report");
    }
}
