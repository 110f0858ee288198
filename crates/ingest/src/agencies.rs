//! The agencies file: who may write, under which source id. Only a SHA-256 of each token
//! is stored; the token itself is shown once, when the agency is added.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub token_sha256: String,
    #[serde(default)]
    pub added_at: String,
    /// The crosswalk from the agency's own codes to ICCS (`iccs` for feeds already in ICCS).
    #[serde(default = "identity_crosswalk")]
    pub crosswalk: String,
}

fn identity_crosswalk() -> String {
    observatory_reference::IDENTITY.to_owned()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AgenciesFile {
    #[serde(default, rename = "agency")]
    agencies: Vec<Agency>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgencyError {
    #[error(
        "'{0}' is not a valid agency id: use 1 to 32 lowercase letters, digits, '-' or '_' (it becomes part of NATS subjects)"
    )]
    InvalidId(String),
    #[error("unknown crosswalk '{0}'; available: {1}")]
    UnknownCrosswalk(String, String),
    #[error("agency '{id}' already exists in {path}; choose another id")]
    Exists { id: String, path: PathBuf },
    #[error("cannot read agencies file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot read agencies file {path}: {source}; fix its TOML (see `observatory agency add`)"
    )]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("cannot write agencies file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn read_file(path: &Path) -> Result<AgenciesFile, AgencyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|source| AgencyError::Parse { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgenciesFile::default()),
        Err(source) => Err(AgencyError::Read { path: path.to_owned(), source }),
    }
}

/// Appends an agency to the file (created if missing) and returns its new token.
/// `crosswalk` names how its codes map to ICCS (default: the agency sends ICCS codes).
pub fn add_agency(
    path: &Path,
    id: &str,
    name: Option<&str>,
    crosswalk: Option<&str>,
) -> Result<String, AgencyError> {
    if !observatory_model::is_valid_source_id(id) {
        return Err(AgencyError::InvalidId(id.to_owned()));
    }
    let crosswalks = observatory_reference::Crosswalks::builtin();
    let crosswalk = crosswalk.unwrap_or(observatory_reference::IDENTITY);
    if crosswalks.latest(crosswalk).is_none() {
        let names: Vec<&str> = crosswalks.names().collect();
        return Err(AgencyError::UnknownCrosswalk(crosswalk.to_owned(), names.join(", ")));
    }
    let mut file = read_file(path)?;
    if file.agencies.iter().any(|a| a.id == id) {
        return Err(AgencyError::Exists { id: id.to_owned(), path: path.to_owned() });
    }
    let mut secret = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("obs_{}", hex::encode(secret));
    file.agencies.push(Agency {
        id: id.to_owned(),
        name: name.unwrap_or(id).to_owned(),
        token_sha256: hash_token(&token),
        added_at: chrono::Utc::now().to_rfc3339(),
        crosswalk: crosswalk.to_owned(),
    });
    let text = toml::to_string_pretty(&file).expect("agencies serialise");
    let write_err = |source| AgencyError::Write { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    // Write then rename, so a running ingest never reads half a file.
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text).map_err(write_err)?;
    std::fs::rename(&temp, path).map_err(write_err)?;
    Ok(token)
}

/// Token lookups against the agencies file, reloaded when the file changes so agencies
/// added while the service runs can write at once.
#[derive(Clone)]
pub struct AgencyRegistry {
    path: PathBuf,
    loaded: Arc<RwLock<Loaded>>,
}

#[derive(Default)]
struct Loaded {
    modified: Option<SystemTime>,
    by_hash: HashMap<String, Agency>,
}

impl AgencyRegistry {
    pub fn open(path: &Path) -> Result<AgencyRegistry, AgencyError> {
        let registry = AgencyRegistry { path: path.to_owned(), loaded: Arc::default() };
        registry.reload_if_changed()?;
        Ok(registry)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reload_if_changed(&self) -> Result<(), AgencyError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if self.loaded.read().expect("not poisoned").modified == modified && modified.is_some() {
            return Ok(());
        }
        let file = read_file(&self.path)?;
        let by_hash = file.agencies.into_iter().map(|a| (a.token_sha256.clone(), a)).collect();
        *self.loaded.write().expect("not poisoned") = Loaded { modified, by_hash };
        Ok(())
    }

    /// The agency a token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<Agency> {
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "agencies file unreadable; keeping the previous list");
        }
        self.loaded.read().expect("not poisoned").by_hash.get(&hash_token(token)).cloned()
    }

    pub fn agencies(&self) -> Vec<Agency> {
        let _ = self.reload_if_changed();
        let mut list: Vec<Agency> =
            self.loaded.read().expect("not poisoned").by_hash.values().cloned().collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_their_agency_only_and_are_not_stored() {
        let dir = std::env::temp_dir().join(format!("obs-agencies-{}", std::process::id()));
        let path = dir.join("agencies.toml");
        let _ = std::fs::remove_file(&path);
        let pn = add_agency(&path, "pn", Some("Police nationale"), Some("natinf")).unwrap();
        let registry = AgencyRegistry::open(&path).unwrap();
        assert_eq!(registry.authenticate(&pn).unwrap().id, "pn");
        assert_eq!(registry.authenticate(&pn).unwrap().crosswalk, "natinf");
        let gn = add_agency(&path, "gn", None, None).unwrap();
        assert_eq!(registry.authenticate(&gn).unwrap().crosswalk, "iccs");
        // Added while running: seen without restart.
        assert_eq!(registry.authenticate(&gn).unwrap().id, "gn");
        assert!(registry.authenticate("obs_wrong").is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&pn) && !text.contains(&gn));
        assert!(matches!(add_agency(&path, "pn", None, None), Err(AgencyError::Exists { .. })));
        assert!(matches!(add_agency(&path, "Bad Id", None, None), Err(AgencyError::InvalidId(_))));
        assert!(matches!(
            add_agency(&path, "x", None, Some("nope")),
            Err(AgencyError::UnknownCrosswalk(..))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
