//! Typed errors. Every message names the table (or crosswalk) and the offending code.

use thiserror::Error;

/// Errors raised while parsing the embedded tables or looking codes up in them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    /// A data file could not be parsed (bad header, bad field, duplicate key, broken link).
    #[error("table {table}: line {line}: {message}")]
    Parse { table: String, line: u64, message: String },

    /// A source code that the crosswalk does not know.
    #[error(
        "code '{code}' is not in crosswalk {crosswalk} v{version}; add it to \
         crates/reference/data/crosswalks/{crosswalk}/v{next}.csv or send an iccs code"
    )]
    UnmappedCode { code: String, crosswalk: String, version: u32, next: u32 },

    /// A code that is not part of the ICCS table.
    #[error("code '{code}' is not in table iccs {version}")]
    UnknownIccsCode { code: String, version: String },

    /// A crosswalk name (or name and version) that is not built in.
    #[error("crosswalk '{name}'{} is not built in; known crosswalks: {known}", version_suffix(.version))]
    UnknownCrosswalk { name: String, version: Option<u32>, known: String },

    /// A département code that is not in the geography table.
    #[error("code '{code}' is not in table departements")]
    UnknownDepartement { code: String },

    /// A région code that is not in the geography table.
    #[error("code '{code}' is not in table regions")]
    UnknownRegion { code: String },
}

fn version_suffix(version: &Option<u32>) -> String {
    match version {
        Some(v) => format!(" v{v}"),
        None => String::new(),
    }
}

impl ReferenceError {
    pub(crate) fn parse(table: impl Into<String>, line: u64, message: impl Into<String>) -> Self {
        ReferenceError::Parse { table: table.into(), line, message: message.into() }
    }
}
