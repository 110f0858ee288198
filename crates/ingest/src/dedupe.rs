//! What a record is, given what the stream already holds of its incident: new (and after
//! which event of its incident's subject it must land), a duplicate of a revision already
//! stored with the same content, a conflict (same revision, other content), a stale revision
//! (below the current one) or a withdrawal of an incident never reported.
//!
//! Pure: [`crate::commit`] reads the incident's subject, asks [`decide`], and publishes the
//! new ones with the sequence the decision was made against, so the stream leader refuses
//! the event if the subject moved in between (another replica, a concurrent request).
//!
//! Streams written before incidents had subjects of their own hold revisions the subject
//! cannot show; [`LegacyIndex`] reads them once, from headers, when the ingest starts.

use std::collections::HashMap;

use observatory_bus::{Bus, BusError, DEDUPE_HEADER, REVISION_HEADER};
use observatory_model::{DedupeKey, LEGACY_INCIDENT_SUBJECTS, RevisionStamp};

/// Content fingerprint of a revision loaded from an event written before revision stamps
/// existed: any re-send of it is taken for a duplicate.
const UNKNOWN_CONTENT: u64 = 0;

/// What the stream holds of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not on the stream: publish it, expecting its incident's subject to end at this
    /// sequence (0: the subject is empty).
    New { expected_last_subject_sequence: u64 },
    /// The same revision with the same content is on the stream: nothing to do.
    Duplicate,
    /// The same revision is on the stream with other content.
    Conflict { current: u32 },
    /// A higher revision is already on the stream.
    Stale { current: u32 },
    /// A withdrawal of an incident this agency never reported.
    NeverReported,
    /// A higher revision is on the subject: every earlier one must be read to tell a
    /// duplicate of an old revision from a stale one.
    ReadAll,
}

/// What the ingest has read of one incident's subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The subject's last sequence (0: empty).
    pub last_sequence: u64,
    /// The revisions read, in stream order.
    pub stamps: Vec<RevisionStamp>,
    /// `stamps` holds every event of the subject, not only the last.
    pub complete: bool,
}

impl Seen {
    /// The assumption a first revision is published under: nothing on its subject yet. The
    /// stream leader checks it, so it costs nothing to make and one read to correct.
    pub fn empty() -> Seen {
        Seen { last_sequence: 0, stamps: Vec::new(), complete: true }
    }

    /// This request's own event, just acknowledged at `sequence`.
    pub fn push(&mut self, sequence: u64, stamp: RevisionStamp) {
        self.last_sequence = sequence;
        self.stamps.push(stamp);
    }
}

/// Decides what the record `(key, stamp)` is. Only [`Decision::New`] may rest on an
/// assumption (the leader checks the expected sequence); every refusal rests on events read.
pub fn decide(
    key: DedupeKey,
    stamp: &RevisionStamp,
    seen: &Seen,
    legacy: &LegacyIndex,
) -> Decision {
    let on_subject = seen.stamps.iter().map(|s| s.revision).max();
    let current = on_subject.max(legacy.current.get(&stamp.incident).copied());
    let same = seen
        .stamps
        .iter()
        .rev()
        .find(|s| s.revision == stamp.revision)
        .map(|s| s.content)
        .or_else(|| legacy.revisions.get(&key.0).copied());
    if let Some(content) = same {
        return if content == stamp.content || content == UNKNOWN_CONTENT {
            Decision::Duplicate
        } else {
            Decision::Conflict { current: current.unwrap_or(stamp.revision) }
        };
    }
    if !legacy.unstamped {
        match current {
            Some(current) if current > stamp.revision => {
                // The legacy index is complete; the subject may not have been read in full.
                let complete = seen.complete || on_subject.is_none_or(|s| s < current);
                return if complete { Decision::Stale { current } } else { Decision::ReadAll };
            }
            None if stamp.withdrawal => return Decision::NeverReported,
            _ => {}
        }
    }
    Decision::New { expected_last_subject_sequence: seen.last_sequence }
}

/// The revisions on the subjects incident events had before one subject per incident,
/// read once at start; never written afterwards (new revisions go to the new subjects).
#[derive(Default)]
pub struct LegacyIndex {
    /// (source, agency_incident_id, revision) → content fingerprint.
    revisions: HashMap<u128, u64>,
    /// (source, agency_incident_id) → highest revision.
    current: HashMap<u128, u32>,
    /// Some events carried no revision stamp: their incidents' revisions are unknown, so a
    /// stale revision or a withdrawal of something never reported cannot be told.
    unstamped: bool,
}

impl LegacyIndex {
    /// Revisions known.
    pub(crate) fn revisions(&self) -> usize {
        self.revisions.len()
    }

    /// Reads the headers of every event on the legacy subjects; returns how many it read.
    /// A stream written by this version has none, so this costs one request per subject.
    pub async fn load(bus: &Bus) -> Result<(LegacyIndex, u64), BusError> {
        let mut index = LegacyIndex::default();
        let mut seen = 0u64;
        for filter in LEGACY_INCIDENT_SUBJECTS {
            if crate::replay::messages_on(bus, filter).await? == 0 {
                continue;
            }
            let mut messages =
                bus.ordered_replay(filter, true).await?.named("legacy dedupe replay");
            while let Some(delivered) = messages.next().await {
                let delivered = delivered?;
                let message = &delivered.message;
                seen += 1;
                let headers = message.headers.as_ref();
                if let Some(key) = headers
                    .and_then(|h| h.get(DEDUPE_HEADER))
                    .and_then(|v| DedupeKey::from_hex(v.as_str()))
                {
                    let stamp = headers
                        .and_then(|h| h.get(REVISION_HEADER))
                        .and_then(|v| RevisionStamp::parse(v.as_str()));
                    index.insert(key, stamp);
                }
                if delivered.pending == 0 {
                    break;
                }
            }
        }
        Ok((index, seen))
    }

    fn insert(&mut self, key: DedupeKey, stamp: Option<RevisionStamp>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
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

    fn seen(last_sequence: u64, stamps: &[(DedupeKey, RevisionStamp)], complete: bool) -> Seen {
        Seen { last_sequence, stamps: stamps.iter().map(|(_, s)| *s).collect(), complete }
    }

    #[test]
    fn duplicates_conflicts_stale_revisions_and_unknown_withdrawals() {
        let none = LegacyIndex::default();
        let (r1, r3) = (record(1, 1, 10, false), record(1, 3, 13, false));
        let decide = |(key, stamp): (DedupeKey, RevisionStamp), seen: &Seen| {
            decide(key, &stamp, seen, &none)
        };
        assert_eq!(decide(r1, &Seen::empty()), Decision::New { expected_last_subject_sequence: 0 });
        let after_r1 = seen(7, &[r1], true);
        assert_eq!(decide(r1, &after_r1), Decision::Duplicate);
        assert_eq!(decide(record(1, 1, 11, false), &after_r1), Decision::Conflict { current: 1 });
        // A withdrawal at the revision of the report is other content.
        assert_eq!(decide(record(1, 1, 12, true), &after_r1), Decision::Conflict { current: 1 });
        assert_eq!(decide(r3, &after_r1), Decision::New { expected_last_subject_sequence: 7 });
        // Only the last event read: an older revision cannot be told yet.
        let last_only = seen(9, &[r3], false);
        assert_eq!(decide(record(1, 2, 14, false), &last_only), Decision::ReadAll);
        assert_eq!(decide(r1, &last_only), Decision::ReadAll);
        let all = seen(9, &[r1, r3], true);
        assert_eq!(decide(record(1, 2, 14, false), &all), Decision::Stale { current: 3 });
        // An old revision re-sent unchanged is still a duplicate, not stale.
        assert_eq!(decide(r1, &all), Decision::Duplicate);
        assert_eq!(decide(record(2, 1, 15, true), &Seen::empty()), Decision::NeverReported);
        assert_eq!(
            decide(record(1, 4, 16, true), &all),
            Decision::New { expected_last_subject_sequence: 9 }
        );
    }

    #[test]
    fn legacy_revisions_count_with_the_subjects() {
        let mut legacy = LegacyIndex::default();
        let r2 = record(1, 2, 11, false);
        legacy.insert(r2.0, Some(r2.1));
        let empty = Seen::empty();
        let decide =
            |(key, stamp): (DedupeKey, RevisionStamp)| decide(key, &stamp, &empty, &legacy);
        assert_eq!(decide(r2), Decision::Duplicate);
        assert_eq!(decide(record(1, 2, 99, false)), Decision::Conflict { current: 2 });
        // Lower than a legacy revision, and the subject is empty: stale without reading more.
        assert_eq!(decide(record(1, 1, 10, false)), Decision::Stale { current: 2 });
        assert_eq!(
            decide(record(1, 3, 12, true)),
            Decision::New { expected_last_subject_sequence: 0 }
        );
        // The subject's later revisions count too.
        let r4 = record(1, 4, 13, false);
        let r3 = record(1, 3, 12, false);
        assert_eq!(decide_with(r3, &seen(30, &[r4], false), &legacy), Decision::ReadAll);
    }

    fn decide_with(
        (key, stamp): (DedupeKey, RevisionStamp),
        seen: &Seen,
        legacy: &LegacyIndex,
    ) -> Decision {
        decide(key, &stamp, seen, legacy)
    }

    #[test]
    fn events_without_stamps_are_duplicates_and_disable_the_revision_checks() {
        let mut legacy = LegacyIndex::default();
        let (key, stamp) = record(1, 2, 10, false);
        legacy.insert(key, None);
        assert_eq!(decide(key, &stamp, &Seen::empty(), &legacy), Decision::Duplicate);
        let r1 = record(1, 1, 10, false);
        assert!(matches!(decide(r1.0, &r1.1, &Seen::empty(), &legacy), Decision::New { .. }));
        let w = record(5, 1, 1, true);
        assert!(matches!(decide(w.0, &w.1, &Seen::empty(), &legacy), Decision::New { .. }));
    }
}
