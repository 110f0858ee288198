//! Property tests (fuzzing) of what access reads from outside: the `Authorization` header
//! (`bearer_token`) and the token files an operator edits by hand (`TokenFile::open` on a
//! readers file, arbitrary or mutated TOML). No panic; a header is read only in its one form;
//! an unreadable file is an error naming its path, and a readable one authenticates its tokens.

use observatory_fuzzing::{config, mutated_text};
use proptest::prelude::*;

use crate::{Reader, ReaderRegistry, TokenFileError, bearer_token, hash_token};

const SEED: &str = "[[reader]]\nname = \"ana@insee\"\nrole = \"researcher\"\ntoken_sha256 = \"HASH\"\nadded_at = \"2025-11-01T00:00:00Z\"\n\n[[reader]]\nname = \"pub\"\nrole = \"publisher\"\ntoken_sha256 = \"HASH2\"\n";

const PIECES: &[&str] = &[
    "\n",
    "\"",
    "'",
    "[",
    "]",
    "[[reader]]\n",
    "[[agency]]\n",
    "=",
    "#",
    "\\",
    "\\u0000",
    "\u{feff}",
    "\0",
    "role = \"admin\"\n",
    "name = 1\n",
    "token_sha256 = \"\"\n",
    "reader = 3\n",
    "\"\"\"",
    "'''",
    "{",
    "}",
    ",",
    "é",
    "\r\n",
    "1e400",
    "inf",
    "nan",
];

proptest! {
    #![proptest_config(config(256))]

    /// `Authorization` values: the token when, and only when, the value is the scheme `Bearer`
    /// in any case, one space and one word.
    #[test]
    fn fuzz_bearer_tokens(value in prop_oneof![
        "(Bearer|bearer|BEARER|Basic|Bearer:)( {0,2})[!-~]{0,8}( [!-~]{0,3})?",
        ".{0,20}",
    ]) {
        match bearer_token(&value) {
            Some(token) => {
                prop_assert_eq!(format!("{}{token}", &value[..value.len() - token.len()]), value.clone());
                let scheme = &value[..value.len() - token.len() - 1];
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"), "{:?}", value);
                prop_assert!(!token.is_empty() && !token.bytes().any(|b| b.is_ascii_whitespace()));
            }
            None => prop_assert!(
                !value.to_ascii_lowercase().starts_with("bearer ")
                    || value.len() == 7
                    || value[7..].bytes().any(|b| b.is_ascii_whitespace()),
                "{:?} refused", value
            ),
        }
    }

    /// A readers file edited by hand: opened, or refused naming the file; every entry opened
    /// authenticates by its hash.
    #[test]
    fn fuzz_token_files(text in prop_oneof![4 => mutated_text(SEED, PIECES, 0..6, 1..6), 1 => ".{0,60}"]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readers.toml");
        std::fs::write(&path, &text).unwrap();
        match ReaderRegistry::open(&path) {
            Ok(registry) => {
                for reader in registry.entries() {
                    let Reader { token_sha256, .. } = &reader;
                    // Authentication hashes the token: a file's hash is never a token.
                    prop_assert!(registry.authenticate(token_sha256).is_none_or(|r| hash_token(token_sha256) == r.token_sha256));
                }
            }
            Err(error) => {
                prop_assert!(matches!(error, TokenFileError::Parse { .. }), "{}", error);
                prop_assert!(error.to_string().contains("readers.toml"), "{}", error);
            }
        }
    }
}
