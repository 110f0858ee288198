//! An agency's batch of incident records read, validated and encoded: the ingest's own work on
//! a request before it decides against the stream and publishes. No IO, so the bench times
//! it on one thread beside what serde_json alone costs for the same records.

use chrono::NaiveDate;
use observatory_bus::Outgoing;
use observatory_model::{DedupeKey, Envelope, Event, RecordedAt, RevisionStamp};
use observatory_reference::Crosswalk;

use crate::commit::Candidate;
use crate::parse::{BodyError, Format, parse_body};
use crate::upload::Rejection;

/// A batch ready to decide and publish.
pub struct Prepared {
    /// Records read, valid or not.
    pub records: usize,
    /// Each valid record's line and event, beside its candidate: a refusal names the
    /// incident's id and the line it came from.
    pub(crate) events: Vec<(u64, Event)>,
    pub(crate) candidates: Vec<Candidate>,
    /// Records refused by their fields, every problem of each.
    pub rejected: Vec<Rejection>,
}

impl Prepared {
    /// Valid records, each encoded as the event to publish.
    pub fn valid(&self) -> usize {
        self.candidates.len()
    }
}

/// Reads `body` in `format` as records of agency `source`, whose codes go through `crosswalk`,
/// validates each on `today` and encodes the valid ones as events recorded at `recorded_at`.
/// Fails only for the body as a whole (unreadable, over `max_records`).
pub fn prepare(
    source: &str,
    crosswalk: &Crosswalk,
    format: Format,
    body: &[u8],
    max_records: usize,
    today: NaiveDate,
    recorded_at: &RecordedAt,
) -> Result<Prepared, BodyError> {
    let parsed = parse_body(format, body, max_records)?;
    let records = parsed.len();
    let mut rejected = Vec::new();
    let mut events = Vec::with_capacity(records);
    for record in parsed {
        match record.event(today, crosswalk) {
            Ok(event) => events.push((record.line, event)),
            Err(problems) => {
                rejected.extend(problems.into_iter().map(|(field, error)| Rejection {
                    line: record.line,
                    field,
                    error,
                }))
            }
        }
    }
    let candidates = events
        .iter()
        .map(|(_, event)| {
            let (id, revision) = event.incident().expect("records are incident events");
            let key = DedupeKey::new(source, id, revision);
            let encoded = Envelope::encode_parts(event, source, recorded_at);
            let stamp = RevisionStamp::of_encoded(source, event, encoded.payload())
                .expect("records are incident events");
            Candidate {
                key,
                stamp,
                outgoing: Outgoing::incident(source, key, &stamp, encoded.bytes),
            }
        })
        .collect();
    Ok(Prepared { records, events, candidates, rejected })
}
