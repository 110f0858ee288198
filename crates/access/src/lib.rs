//! Who may do what. Agencies write feeds; readers read exact numbers (`researcher`) or also
//! publish releases (`publisher`); everyone else reads the public, perturbed numbers. Each kind
//! lives in its own TOML file holding only SHA-256 hashes of tokens: a token is shown once, when
//! it is made, and an agency's token is never a reader's.
//!
//! [`TokenFile`] is the shared machinery: entries of any kind, appended atomically, reloaded
//! when the file changes so an entry added while a service runs works at once.

#[cfg(test)]
mod fuzz;
mod readers;
mod token_file;

/// The token of an `Authorization` header value: RFC 9110 says the scheme is case-insensitive;
/// one space, then a token without spaces. `None` when the value is not of that form.
pub fn bearer_token(value: &str) -> Option<&str> {
    value
        .split_once(' ')
        .filter(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer")
                && !token.is_empty()
                && !token.bytes().any(|b| b.is_ascii_whitespace())
        })
        .map(|(_, token)| token)
}

pub use readers::{Reader, ReaderError, ReaderRegistry, Role, add_reader};
pub use token_file::{TokenEntry, TokenFile, TokenFileError, hash_token, new_token, random_hex};
