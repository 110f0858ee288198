//! HTTP feed endpoints: agencies authenticate with a bearer token (the token decides the
//! source), send NDJSON, a JSON array or CSV, and get per-record answers once JetStream has
//! acknowledged every accepted event.

mod agencies;
mod api;
mod commit;
mod dedupe;
mod error;
#[cfg(test)]
mod fuzz;
pub mod nats_auth;
mod parse;
mod prepare;
pub mod relay;
mod replay;
pub mod survey;
mod upload;
mod written;

pub use agencies::{Agency, AgencyError, AgencyRegistry, NewAgency, add_agency};
pub use api::{DEFAULT_REMEMBERED_INCIDENTS, IngestConfig, IngestState, router};
pub use error::ApiError;
pub use observatory_access::hash_token;
pub use parse::{BodyError, DEFAULT_MAX_RECORDS, Format, ParsedRecord, parse_body};
pub use prepare::{Prepared, prepare};
pub use upload::{IngestSummary, Rejection};
