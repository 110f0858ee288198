//! A TOML file of token-bearing entries, reloaded when it changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// What is stored of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (192 bits) with a prefix saying what it is for (`obs_` agencies,
/// `obr_` readers), so a token pasted in the wrong place is recognisable.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(24))
}

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut secret = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    hex::encode(secret)
}

/// An entry of a token file: an id and the hash of its token.
pub trait TokenEntry: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The table name of the entries in the TOML file (`[[agency]]`, `[[reader]]`).
    const TABLE: &'static str;
    fn id(&self) -> &str;
    fn token_sha256(&self) -> &str;
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot read {path}: {source}; fix its TOML (or move it aside and add the entries again)"
    )]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("'{id}' already exists in {path}; choose another name")]
    Exists { id: String, path: PathBuf },
}

/// The entries of one file, reloaded when its modification time changes.
#[derive(Clone)]
pub struct TokenFile<E> {
    path: PathBuf,
    loaded: Arc<RwLock<Loaded<E>>>,
}

impl<E> std::fmt::Debug for TokenFile<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenFile({})", self.path.display())
    }
}

struct Loaded<E> {
    modified: Option<SystemTime>,
    by_hash: HashMap<String, E>,
}

impl<E> Default for Loaded<E> {
    fn default() -> Self {
        Loaded { modified: None, by_hash: HashMap::new() }
    }
}

fn read_entries<E: TokenEntry>(path: &Path) -> Result<Vec<E>, TokenFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut table: toml::Table = toml::from_str(&text)
                .map_err(|source| TokenFileError::Parse { path: path.to_owned(), source })?;
            match table.remove(E::TABLE) {
                None => Ok(Vec::new()),
                Some(value) => value
                    .try_into()
                    .map_err(|source| TokenFileError::Parse { path: path.to_owned(), source }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TokenFileError::Read { path: path.to_owned(), source }),
    }
}

impl<E: TokenEntry> TokenFile<E> {
    pub fn open(path: &Path) -> Result<TokenFile<E>, TokenFileError> {
        let file = TokenFile { path: path.to_owned(), loaded: Arc::default() };
        file.reload_if_changed()?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reload_if_changed(&self) -> Result<(), TokenFileError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if self.loaded.read().expect("not poisoned").modified == modified && modified.is_some() {
            return Ok(());
        }
        let by_hash = read_entries::<E>(&self.path)?
            .into_iter()
            .map(|e| (e.token_sha256().to_owned(), e))
            .collect();
        *self.loaded.write().expect("not poisoned") = Loaded { modified, by_hash };
        Ok(())
    }

    /// The entry a token belongs to. An unreadable file keeps the previous entries (logged):
    /// a half-edited file must not lock everyone out.
    pub fn authenticate(&self, token: &str) -> Option<E> {
        if let Err(error) = self.reload_if_changed() {
            tracing::warn!(%error, "token file unreadable; keeping the previous entries");
        }
        self.loaded.read().expect("not poisoned").by_hash.get(&hash_token(token)).cloned()
    }

    /// Every entry, by id.
    pub fn entries(&self) -> Vec<E> {
        let _ = self.reload_if_changed();
        let mut list: Vec<E> =
            self.loaded.read().expect("not poisoned").by_hash.values().cloned().collect();
        list.sort_by(|a, b| a.id().cmp(b.id()));
        list
    }

    /// Appends `entry` to the file at `path` (created if missing), refusing a second entry with
    /// the same id. Written then renamed, so a running service never reads half a file.
    pub fn append(path: &Path, entry: E) -> Result<(), TokenFileError> {
        let mut entries = read_entries::<E>(path)?;
        if entries.iter().any(|e| e.id() == entry.id()) {
            return Err(TokenFileError::Exists {
                id: entry.id().to_owned(),
                path: path.to_owned(),
            });
        }
        entries.push(entry);
        let mut table = toml::Table::new();
        table.insert(
            E::TABLE.to_owned(),
            toml::Value::try_from(&entries).expect("token entries serialise"),
        );
        let text = toml::to_string_pretty(&table).expect("token entries serialise");
        let write_err = |source| TokenFileError::Write { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let temp = path.with_extension("toml.tmp");
        std::fs::write(&temp, text).map_err(write_err)?;
        std::fs::rename(&temp, path).map_err(write_err)?;
        Ok(())
    }
}
