//! HTTP feed endpoints: agencies authenticate with a bearer token (the token decides the
//! source), send NDJSON, a JSON array or CSV, and get per-record answers once JetStream has
//! acknowledged every accepted event.

mod agencies;
mod api;
mod dedupe;
mod parse;
pub mod survey;

pub use agencies::{Agency, AgencyError, AgencyRegistry, add_agency, hash_token};
pub use api::{IngestConfig, IngestState, IngestSummary, Rejection, router};
pub use dedupe::DedupeIndex;
pub use parse::{Format, ParsedRecord, parse_body};
