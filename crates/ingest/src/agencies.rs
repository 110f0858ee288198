//! The agencies file: who may write, under which source id. Only a SHA-256 of each token
//! is stored; the token itself is shown once, when the agency is added.

use std::path::Path;

use observatory_access::{TokenEntry, TokenFile, TokenFileError, hash_token, new_token};
use serde::{Deserialize, Serialize};

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
    /// The public NKey the agency publishes to NATS with (`agency add --nats`); its seed is
    /// shown once and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_public_key: Option<String>,
}

fn identity_crosswalk() -> String {
    observatory_reference::IDENTITY.to_owned()
}

impl TokenEntry for Agency {
    const TABLE: &'static str = "agency";

    fn id(&self) -> &str {
        &self.id
    }

    fn token_sha256(&self) -> &str {
        &self.token_sha256
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgencyError {
    #[error(
        "'{0}' is not a valid agency id: use 1 to 32 lowercase letters, digits, '-' or '_' (it becomes part of NATS subjects)"
    )]
    InvalidId(String),
    #[error("unknown crosswalk '{0}'; available: {1}")]
    UnknownCrosswalk(String, String),
    #[error("agencies file: {0}")]
    File(#[from] TokenFileError),
}

/// What a new agency is given, once: its HTTP token and, with NATS access, its NKey seed.
#[derive(Debug)]
pub struct NewAgency {
    pub token: String,
    pub nats_seed: Option<String>,
}

/// Appends an agency to the file (created if missing) and returns its new credentials.
/// `crosswalk` names how its codes map to ICCS (default: the agency sends ICCS codes);
/// `nats` also gives it an NKey to publish to NATS with.
pub fn add_agency(
    path: &Path,
    id: &str,
    name: Option<&str>,
    crosswalk: Option<&str>,
    nats: bool,
) -> Result<NewAgency, AgencyError> {
    if !observatory_model::is_valid_source_id(id) {
        return Err(AgencyError::InvalidId(id.to_owned()));
    }
    let crosswalks = observatory_reference::Crosswalks::builtin();
    let crosswalk = crosswalk.unwrap_or(observatory_reference::IDENTITY);
    if crosswalks.latest(crosswalk).is_none() {
        let names: Vec<&str> = crosswalks.names().collect();
        return Err(AgencyError::UnknownCrosswalk(crosswalk.to_owned(), names.join(", ")));
    }
    let token = new_token("obs_");
    let nkey = nats.then(nkeys::KeyPair::new_user);
    let nats_seed = nkey.as_ref().map(|pair| pair.seed().expect("a new user key has a seed"));
    TokenFile::append(
        path,
        Agency {
            id: id.to_owned(),
            name: name.unwrap_or(id).to_owned(),
            token_sha256: hash_token(&token),
            added_at: chrono::Utc::now().to_rfc3339(),
            crosswalk: crosswalk.to_owned(),
            nats_public_key: nkey.as_ref().map(nkeys::KeyPair::public_key),
        },
    )?;
    Ok(NewAgency { token, nats_seed })
}

/// Token lookups against the agencies file, reloaded when the file changes so agencies
/// added while the service runs can write at once.
#[derive(Clone)]
pub struct AgencyRegistry {
    file: TokenFile<Agency>,
}

impl AgencyRegistry {
    pub fn open(path: &Path) -> Result<AgencyRegistry, AgencyError> {
        Ok(AgencyRegistry { file: TokenFile::open(path)? })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The agency a token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<Agency> {
        self.file.authenticate(token)
    }

    pub fn agencies(&self) -> Vec<Agency> {
        self.file.entries()
    }

    /// The agency with this id (the file is reread when it changed).
    pub fn by_id(&self, id: &str) -> Option<Agency> {
        self.file.entries().into_iter().find(|agency| agency.id == id)
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
        let pn =
            add_agency(&path, "pn", Some("Police nationale"), Some("natinf"), false).unwrap().token;
        let registry = AgencyRegistry::open(&path).unwrap();
        assert_eq!(registry.authenticate(&pn).unwrap().id, "pn");
        assert_eq!(registry.authenticate(&pn).unwrap().crosswalk, "natinf");
        let gn = add_agency(&path, "gn", None, None, true).unwrap();
        let seed = gn.nats_seed.clone().unwrap();
        let gn = gn.token;
        assert_eq!(registry.authenticate(&gn).unwrap().crosswalk, "iccs");
        // Added while running: seen without restart.
        assert_eq!(registry.authenticate(&gn).unwrap().id, "gn");
        assert!(registry.authenticate("obs_wrong").is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&pn) && !text.contains(&gn) && !text.contains(&seed));
        // Only the public key of the NKey is kept, and it is the seed's.
        let public = registry.by_id("gn").unwrap().nats_public_key.unwrap();
        assert_eq!(nkeys::KeyPair::from_seed(&seed).unwrap().public_key(), public);
        assert!(registry.by_id("pn").unwrap().nats_public_key.is_none());
        assert!(matches!(
            add_agency(&path, "pn", None, None, false),
            Err(AgencyError::File(TokenFileError::Exists { .. }))
        ));
        assert!(matches!(
            add_agency(&path, "Bad Id", None, None, false),
            Err(AgencyError::InvalidId(_))
        ));
        assert!(matches!(
            add_agency(&path, "x", None, Some("nope"), false),
            Err(AgencyError::UnknownCrosswalk(..))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
