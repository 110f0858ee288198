//! The ingest's idempotency index: every revision of every incident already on the stream,
//! with a fingerprint of its content. It outlives the NATS duplicate window because it is
//! rebuilt from the stream itself (headers only) when the ingest starts, and it tells a true
//! duplicate (same revision, same content) from a conflict (same revision, other content), a
//! stale revision (below the current one) and a withdrawal of an incident never reported.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use observatory_bus::{Bus, BusError, DEDUPE_HEADER, REVISION_HEADER};
use observatory_model::{DedupeKey, RevisionStamp};

/// Content fingerprint of a revision loaded from an event written before revision stamps
/// existed: any re-send of it is taken for a duplicate.
const UNKNOWN_CONTENT: u64 = 0;

/// What the index says of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not on the stream: publish it (or [`DedupeIndex::release`] it if that fails).
    New {
        /// The incident's highest revision before this claim, to restore on release.
        previous: Option<u32>,
    },
    /// The same revision with the same content is on the stream: nothing to do.
    Duplicate,
    /// The same revision is on the stream with other content.
    Conflict { current: u32 },
    /// A higher revision is already on the stream.
    Stale { current: u32 },
    /// A withdrawal of an incident this agency never reported.
    NeverReported,
}

#[derive(Default)]
struct Known {
    /// (source, agency_incident_id, revision) → content fingerprint.
    revisions: HashMap<u128, u64>,
    /// (source, agency_incident_id) → highest revision on the stream.
    current: HashMap<u128, u32>,
    /// Some events carried no revision stamp: their incidents' revisions are unknown, so a
    /// stale revision or a withdrawal of something never reported cannot be told.
    unstamped: bool,
}

#[derive(Default)]
pub struct DedupeIndex {
    known: Mutex<Known>,
}

impl DedupeIndex {
    pub fn new() -> DedupeIndex {
        DedupeIndex::default()
    }

    /// Decides, in order, what each record is; claims the new ones. A record decided `New`
    /// must be either published or [`release`](Self::release)d.
    pub fn claim(&self, records: &[(DedupeKey, RevisionStamp)]) -> Vec<Claim> {
        let mut known = self.known.lock().expect("not poisoned");
        records.iter().map(|(key, stamp)| known.claim(*key, stamp)).collect()
    }

    /// Gives back claims whose publish failed, so a retry is not mistaken for a duplicate.
    pub fn release(&self, claims: &[(DedupeKey, RevisionStamp, Option<u32>)]) {
        let mut known = self.known.lock().expect("not poisoned");
        for (key, stamp, previous) in claims {
            known.revisions.remove(&key.0);
            if known.current.get(&stamp.incident) == Some(&stamp.revision) {
                match previous {
                    Some(revision) => known.current.insert(stamp.incident, *revision),
                    None => known.current.remove(&stamp.incident),
                };
            }
        }
    }

    /// Revisions known.
    pub fn len(&self) -> usize {
        self.known.lock().expect("not poisoned").revisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads every revision from the headers of the incident events on the stream.
    pub async fn load_from_stream(&self, bus: &Bus) -> Result<u64, BusError> {
        let filter = "obs.incident.>";
        let total = crate::replay::messages_on(bus, filter).await?;
        if total == 0 {
            return Ok(0);
        }
        let mut messages = bus.ordered_replay(filter, true).await?;
        let mut seen = 0u64;
        let mut batch: Vec<(DedupeKey, Option<RevisionStamp>)> = Vec::with_capacity(4096);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| BusError::Consumer {
                stream: bus.config().stream.clone(),
                name: "dedupe replay".into(),
                message: e.to_string(),
            })?;
            seen += 1;
            let headers = message.headers.as_ref();
            if let Some(key) = headers
                .and_then(|h| h.get(DEDUPE_HEADER))
                .and_then(|v| DedupeKey::from_hex(v.as_str()))
            {
                let stamp = headers
                    .and_then(|h| h.get(REVISION_HEADER))
                    .and_then(|v| RevisionStamp::parse(v.as_str()));
                batch.push((key, stamp));
            }
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            if batch.len() >= 4096 || pending == 0 {
                self.known.lock().expect("not poisoned").load(&batch);
                batch.clear();
            }
            if pending == 0 {
                break;
            }
        }
        Ok(seen)
    }
}

impl Known {
    fn claim(&mut self, key: DedupeKey, stamp: &RevisionStamp) -> Claim {
        let current = self.current.get(&stamp.incident).copied();
        if let Some(&content) = self.revisions.get(&key.0) {
            return if content == stamp.content || content == UNKNOWN_CONTENT {
                Claim::Duplicate
            } else {
                Claim::Conflict { current: current.unwrap_or(stamp.revision) }
            };
        }
        if !self.unstamped {
            match current {
                Some(current) if current > stamp.revision => return Claim::Stale { current },
                None if stamp.withdrawal => return Claim::NeverReported,
                _ => {}
            }
        }
        self.revisions.insert(key.0, stamp.content);
        self.current
            .insert(stamp.incident, current.map_or(stamp.revision, |c| c.max(stamp.revision)));
        Claim::New { previous: current }
    }

    /// Revisions read back from the stream, in stream order.
    fn load(&mut self, batch: &[(DedupeKey, Option<RevisionStamp>)]) {
        for (key, stamp) in batch {
            match stamp {
                Some(stamp) => {
                    self.revisions.insert(key.0, stamp.content);
                    let current = self.current.entry(stamp.incident).or_insert(stamp.revision);
                    *current = (*current).max(stamp.revision);
                }
                None => {
                    self.revisions.entry(key.0).or_insert(UNKNOWN_CONTENT);
                    self.unstamped = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(
        id: u128,
        revision: u32,
        content: u64,
        withdrawal: bool,
    ) -> (DedupeKey, RevisionStamp) {
        (
            DedupeKey(id * 1000 + u128::from(revision)),
            RevisionStamp { incident: id, revision, content, withdrawal },
        )
    }

    #[test]
    fn duplicates_conflicts_stale_revisions_and_unknown_withdrawals() {
        let index = DedupeIndex::new();
        let claims = index.claim(&[
            stamp(1, 1, 10, false),
            stamp(1, 1, 10, false), // the same line twice in one batch
            stamp(1, 1, 11, false), // revision 1 again, other content
            stamp(1, 1, 12, true),  // a withdrawal at the revision of the report
            stamp(1, 3, 13, false),
            stamp(1, 2, 14, false), // lower than 3
            stamp(2, 1, 15, true),  // withdraws what was never reported
            stamp(1, 4, 16, true),
        ]);
        assert_eq!(
            claims,
            vec![
                Claim::New { previous: None },
                Claim::Duplicate,
                Claim::Conflict { current: 1 },
                Claim::Conflict { current: 1 },
                Claim::New { previous: Some(1) },
                Claim::Stale { current: 3 },
                Claim::NeverReported,
                Claim::New { previous: Some(3) },
            ]
        );
        // An old revision re-sent unchanged is still a duplicate, not stale.
        assert_eq!(index.claim(&[stamp(1, 1, 10, false)]), vec![Claim::Duplicate]);
    }

    #[test]
    fn a_released_claim_can_be_sent_again() {
        let index = DedupeIndex::new();
        let (key, s) = stamp(1, 1, 10, false);
        let Claim::New { previous } = index.claim(&[(key, s)])[0] else { panic!("new") };
        index.release(&[(key, s, previous)]);
        assert!(index.is_empty());
        assert_eq!(index.claim(&[stamp(1, 1, 11, true)]), vec![Claim::NeverReported]);
        assert_eq!(index.claim(&[(key, s)]), vec![Claim::New { previous: None }]);
    }

    #[test]
    fn events_without_stamps_are_duplicates_and_disable_the_revision_checks() {
        let mut known = Known::default();
        let (key, s) = stamp(1, 2, 10, false);
        known.load(&[(key, None)]);
        assert_eq!(known.claim(key, &s), Claim::Duplicate);
        assert_eq!(
            known.claim(stamp(1, 1, 10, false).0, &stamp(1, 1, 10, false).1),
            Claim::New { previous: None }
        );
        assert!(matches!(
            known.claim(stamp(5, 1, 1, true).0, &stamp(5, 1, 1, true).1),
            Claim::New { .. }
        ));
    }
}
