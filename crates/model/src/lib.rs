//! The observatory's event model: the envelope every event travels in, the incident events
//! agencies produce, and the validation that turns an agency's record into an event.
//!
//! Pure: no IO, no clock (callers pass `today`), no randomness except UUIDv7 generation
//! in [`Envelope::new`].

mod ascii;
mod envelope;
mod incident;
mod record;
mod revision;
pub mod survey;
mod validate;

pub use envelope::{
    DecodeError, Encoded, Envelope, Event, EventFamily, EventKind, LEGACY_INCIDENT_SUBJECTS,
    LEGACY_SURVEY_SUBJECTS, RecordedAt, incident_subject, source_matches_subject, survey_filter,
    survey_subject,
};
pub use incident::{
    Channel, Coding, DEPARTEMENTS, DedupeKey, IncidentReported, IncidentReportedV1,
    IncidentWithdrawn, PeriodClosed, VictimType, departement_index, incident_hash, is_departement,
};
pub use observatory_reference::Unit;
pub use record::{Field, IncidentRecord, Sent};
pub use revision::{RevisionStamp, content_fingerprint};
pub use validate::{
    FieldError, MAX_ID_LEN, MAX_LOSS_EUR, RecordFields, ValidatedRecord, validate_period_close,
    validate_record,
};

/// Subject prefix of every event; the stream captures `obs.>`.
pub const SUBJECT_ROOT: &str = "obs";

/// Whether `source` is a valid agency id: it becomes a NATS subject token, a file name
/// fragment and a query value, so it is kept to lowercase ASCII letters, digits, `-` and `_`.
pub fn is_valid_source_id(source: &str) -> bool {
    !source.is_empty()
        && source.len() <= 32
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
