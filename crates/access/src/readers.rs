//! Readers: people and programs that see more than the public. A `researcher` reads exact
//! numbers; a `publisher` also creates releases. The readers file is separate from the agencies
//! file, so an agency's token never reads exact numbers.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::token_file::{TokenEntry, TokenFile, TokenFileError, hash_token, new_token};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads exact (unperturbed) numbers.
    Researcher,
    /// Reads exact numbers and creates releases.
    Publisher,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "researcher" => Some(Role::Researcher),
            "publisher" => Some(Role::Publisher),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Researcher => "researcher",
            Role::Publisher => "publisher",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reader {
    pub name: String,
    pub role: Role,
    pub token_sha256: String,
    #[serde(default)]
    pub added_at: String,
}

impl TokenEntry for Reader {
    const TABLE: &'static str = "reader";

    fn id(&self) -> &str {
        &self.name
    }

    fn token_sha256(&self) -> &str {
        &self.token_sha256
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("'{0}' is not a valid reader name: use 1 to 64 letters, digits, '.', '-', '_' or '@'")]
    InvalidName(String),
    #[error(transparent)]
    File(#[from] TokenFileError),
}

/// Adds a reader to the readers file and returns its token (shown once; only its hash is kept).
pub fn add_reader(path: &Path, name: &str, role: Role) -> Result<String, ReaderError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !valid {
        return Err(ReaderError::InvalidName(name.to_owned()));
    }
    let token = new_token("obr_");
    TokenFile::append(
        path,
        Reader {
            name: name.to_owned(),
            role,
            token_sha256: hash_token(&token),
            added_at: chrono::Utc::now().to_rfc3339(),
        },
    )?;
    Ok(token)
}

/// Token lookups against the readers file.
pub type ReaderRegistry = TokenFile<Reader>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_tokens_authenticate_their_reader_and_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readers.toml");
        let registry = ReaderRegistry::open(&path).unwrap();
        assert!(registry.entries().is_empty(), "a missing file has no readers");
        let ana = add_reader(&path, "ana@insee", Role::Researcher).unwrap();
        let pub_token = add_reader(&path, "ssmsi-publisher", Role::Publisher).unwrap();
        assert!(ana.starts_with("obr_") && ana != pub_token);
        // Added while running: seen without reopening.
        assert_eq!(registry.authenticate(&ana).unwrap().role, Role::Researcher);
        assert_eq!(registry.authenticate(&pub_token).unwrap().role, Role::Publisher);
        assert!(registry.authenticate("obr_wrong").is_none());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&ana) && !text.contains(&pub_token));
        assert!(text.contains("[[reader]]"), "{text}");
        assert!(matches!(
            add_reader(&path, "ana@insee", Role::Publisher),
            Err(ReaderError::File(TokenFileError::Exists { .. }))
        ));
        assert!(matches!(
            add_reader(&path, "a b", Role::Researcher),
            Err(ReaderError::InvalidName(_))
        ));
        let names: Vec<String> = registry.entries().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["ana@insee", "ssmsi-publisher"]);
    }
}
