//! Publishing incident revisions once, whichever ingest replica or request sends them.
//!
//! Each incident has its own subject. For each record the ingest reads what that subject
//! holds (nothing for a first revision: it assumes the subject is empty), [`decide`]s, and
//! publishes a new revision with `Nats-Expected-Last-Subject-Sequence` set to the sequence
//! it decided against. The stream leader enforces it before replication, for every replica at
//! once: anything that reached the subject in between makes it refuse the event (wrong last
//! sequence), and the ingest reads the subject again and decides anew. That includes its own
//! earlier attempt, stored but not acknowledged: a revision found on the subject in this
//! request's own bytes (each encoding has its own event id) is accepted, not answered as a
//! duplicate.
//!
//! The message carries no `Nats-Msg-Id`. The expectation already refuses any second copy,
//! on one server and on a cluster (whose leader refuses a publish to a subject with one still
//! in flight), so the duplicate window would decide nothing. Its map held an entry per event
//! for two minutes in nats-server's heap; without it nats-server spends 11 % less CPU per event
//! on the ingest (BENCHMARKS.md, fifteenth steps).
//!
//! Between requests the ingest keeps only a bounded memory of what it last stored on the
//! subjects it wrote recently ([`Written`]): a hint the leader checks like any assumption, so
//! an amendment of a recent incident is published without a read. Nothing else is held, so the
//! ingest is ready as soon as it is connected, however long the stream.

// foldhash, not SipHash: one lookup or more per record. Its seed is random per process, so
// an agency cannot choose ids that collide in these tables.
use foldhash::HashMap;
use futures::StreamExt;
use observatory_bus::{
    Bus, BusError, Outgoing, PublishFailure, Publisher, REVISION_HEADER, Stored,
};
use observatory_model::{DedupeKey, RevisionStamp};

use crate::dedupe::{Decision, LegacyIndex, Seen, decide};
use crate::written::Written;

/// What records are decided against and published through.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub bus: &'a Bus,
    pub publisher: &'a Publisher,
    pub legacy: &'a LegacyIndex,
    pub written: &'a Written,
}

/// One valid record, ready to publish.
pub struct Candidate {
    pub key: DedupeKey,
    pub stamp: RevisionStamp,
    pub outgoing: Outgoing,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        sequence: u64,
    },
    Duplicate,
    /// Conflict, stale revision or withdrawal of what was never reported.
    Refused(Decision),
    /// Not stored: the reason, for the answer; sending the record again is safe.
    Failed(String),
}

/// How many times a record is decided again because its subject moved under it, before the
/// request gives up on it (each time another writer won the race for the same incident).
const MAX_RACES: usize = 8;
/// Subject reads in flight at once.
const READS_IN_FLIGHT: usize = 64;

/// Publishes `candidates` once each; outcomes in input order.
pub async fn commit(parts: Parts<'_>, candidates: &mut [Candidate]) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; candidates.len()];
    // What this request knows of each incident's subject, kept across rounds; `None` once
    // the subject was found to have moved: it must be read, not assumed.
    let mut seen: HashMap<u128, Option<Seen>> =
        HashMap::with_capacity_and_hasher(candidates.len(), Default::default());
    let Rounds { rounds, followed } = rounds(candidates);
    for round in rounds {
        let mut todo = round;
        for _ in 0..MAX_RACES {
            if todo.is_empty() {
                break;
            }
            todo = race(parts, candidates, &todo, &followed, &mut seen, &mut outcomes).await;
        }
        for i in todo {
            outcomes[i] = Some(Outcome::Failed(
                "other sends changed this incident while this request was deciding; send the record again"
                    .into(),
            ));
        }
    }
    outcomes.into_iter().map(|o| o.expect("every record has an outcome")).collect()
}

/// Records split so that no incident appears twice in one round: the k-th record of an
/// incident in the batch goes in round k, after the earlier ones are on its subject.
struct Rounds {
    rounds: Vec<Vec<usize>>,
    /// For each record, whether a later record of the batch is of the same incident: only
    /// then is what the record leaves on its subject kept for deciding that one.
    followed: Vec<bool>,
}

fn rounds(candidates: &[Candidate]) -> Rounds {
    let mut occurrences: HashMap<u128, usize> =
        HashMap::with_capacity_and_hasher(candidates.len(), Default::default());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, candidate) in candidates.iter().enumerate() {
        let k = occurrences.entry(candidate.stamp.incident).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(i);
        *k += 1;
    }
    let mut followed = vec![false; candidates.len()];
    // Most batches report each incident once: one round, nothing followed.
    for (k, round) in rounds.iter().enumerate().take(rounds.len().saturating_sub(1)) {
        for &i in round {
            followed[i] = occurrences[&candidates[i].stamp.incident] > k + 1;
        }
    }
    Rounds { rounds, followed }
}

/// One pass: decide each record of `todo` against its subject, publish the new ones, settle
/// what the server answered. Returns the records to decide again.
async fn race(
    parts: Parts<'_>,
    candidates: &mut [Candidate],
    todo: &[usize],
    followed: &[bool],
    seen: &mut HashMap<u128, Option<Seen>>,
    outcomes: &mut [Option<Outcome>],
) -> Vec<usize> {
    let Parts { bus, publisher, legacy, written } = parts;
    let remembered = written.recall(todo.iter().map(|&i| candidates[i].stamp.incident));
    let known: Vec<Known> = todo
        .iter()
        .zip(remembered)
        .map(|(&i, remembered)| match (seen.get(&candidates[i].stamp.incident), remembered) {
            (None, None) => Known::Nothing,
            (None, Some(remembered)) => Known::Remembered(remembered),
            (Some(None), _) => Known::Moved,
            (Some(Some(seen)), _) => Known::Seen(seen.clone()),
        })
        .collect();
    // Most records are first reports, decided without a read, and most amendments are of
    // incidents this process wrote lately: only the others wait on one.
    let mut judged: Vec<Option<Judged>> = todo
        .iter()
        .zip(&known)
        .map(|(&i, known)| decide_unread(&candidates[i], known, legacy))
        .collect();
    let reads: Vec<(usize, Known)> =
        known.into_iter().enumerate().filter(|(at, _)| judged[*at].is_none()).collect();
    let shared: &[Candidate] = candidates;
    let read: Vec<(usize, Judged)> = futures::stream::iter(reads)
        .map(|(at, known)| async move {
            (at, read_and_decide(bus, legacy, &shared[todo[at]], known).await)
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    for (at, result) in read {
        judged[at] = Some(result);
    }
    let mut publish = Vec::new();
    for (&i, judged) in todo.iter().zip(judged) {
        let candidate = &mut candidates[i];
        match judged.expect("every record is decided") {
            Ok(Decided { decision, seen: subject, own }) => {
                seen.insert(candidate.stamp.incident, Some(subject));
                match decision {
                    Decision::New { expected_last_subject_sequence } => {
                        candidate.outgoing.expected_last_subject_sequence =
                            Some(expected_last_subject_sequence);
                        publish.push(i);
                    }
                    Decision::Duplicate => {
                        outcomes[i] = Some(match own {
                            // An attempt of this request was stored and its ack lost: the
                            // retry, refused as stale, sent the record back to be decided.
                            Some(sequence) => Outcome::Accepted { sequence },
                            None => Outcome::Duplicate,
                        })
                    }
                    refusal => outcomes[i] = Some(Outcome::Refused(refusal)),
                }
            }
            Err(e) => outcomes[i] = Some(Outcome::Failed(read_failure(&e))),
        }
    }
    let outgoing: Vec<&Outgoing> = publish.iter().map(|&i| &candidates[i].outgoing).collect();
    let results = publisher.publish_each(&outgoing).await;
    let mut again = Vec::new();
    let mut stored = Vec::new();
    for (i, result) in publish.into_iter().zip(results) {
        let stamp = candidates[i].stamp;
        match result {
            Ok(published) if !published.duplicate => {
                outcomes[i] = Some(Outcome::Accepted { sequence: published.sequence });
                if followed[i] {
                    push(seen, &stamp, published.sequence);
                }
                stored.push((stamp, published.sequence));
            }
            // Only a message id makes the leader answer "duplicate", and an incident's message
            // carries none (`Outgoing::incident`); should one ever come, the subject says whose
            // copy it is, as after a refusal.
            Ok(_) | Err(PublishFailure::WrongLastSequence) => {
                seen.insert(stamp.incident, None);
                again.push(i);
            }
            Err(failure @ PublishFailure::Unavailable { .. }) => {
                observatory_metrics::publish_failures(1);
                outcomes[i] = Some(Outcome::Failed(failure.to_string()))
            }
        }
    }
    // What the leader refused was decided against a subject that has moved since.
    written.forget(again.iter().map(|&i| candidates[i].stamp.incident));
    written.remember(stored);
    again
}

/// A record decided, or why its subject could not be read.
type Judged = Result<Decided, BusError>;

/// A record's decision, with what its subject was found (or assumed) to hold.
struct Decided {
    decision: Decision,
    seen: Seen,
    /// The sequence of this request's own copy of the record, if the reads found it there.
    own: Option<u64>,
}

/// What a request knows of an incident's subject before deciding one of its records.
enum Known {
    Nothing,
    /// What this process last stored on the subject, remembered from an earlier request.
    Remembered(Seen),
    /// The subject moved since it was read or assumed.
    Moved,
    Seen(Seen),
}

/// This request's own event is on the subject at `sequence`.
fn push(seen: &mut HashMap<u128, Option<Seen>>, stamp: &RevisionStamp, sequence: u64) {
    // A subject known to have moved stays unknown: it is read afresh next time.
    if let Some(subject) = seen.entry(stamp.incident).or_insert(None) {
        subject.push(sequence, *stamp);
    }
}

/// A record decided without a read where it may be: a first report, assumed to land on an
/// empty subject, or a record that is new after what this process remembers storing on its
/// subject. The leader checks both through the expected sequence. `None`: read first.
fn decide_unread(candidate: &Candidate, known: &Known, legacy: &LegacyIndex) -> Option<Judged> {
    let (key, stamp) = (candidate.key, &candidate.stamp);
    let empty = Seen::empty();
    let assumed = match known {
        Known::Remembered(remembered) => remembered,
        known if assume_empty(known, stamp) => &empty,
        _ => return None,
    };
    let decided = |decision, seen| Some(Ok(Decided { decision, seen, own: None }));
    match (known, decide(key, stamp, assumed, legacy)) {
        (_, decision @ Decision::New { .. }) => decided(decision, assumed.clone()),
        // Nothing checks an answer that publishes nothing: a memory refuses nothing.
        (Known::Remembered(_), _) | (_, Decision::ReadAll | Decision::NeverReported) => None,
        // The legacy index's refusals, made without a read as before.
        (_, decision) => decided(decision, empty),
    }
}

/// Most records are first reports: their subject is assumed empty, which the leader checks
/// (`Nats-Expected-Last-Subject-Sequence: 0`), instead of read.
fn assume_empty(known: &Known, stamp: &RevisionStamp) -> bool {
    matches!(known, Known::Nothing) && stamp.revision == 1 && !stamp.withdrawal
}

/// Reads what deciding `candidate` needs and decides.
async fn read_and_decide(
    bus: &Bus,
    legacy: &LegacyIndex,
    candidate: &Candidate,
    known: Known,
) -> Result<Decided, BusError> {
    let stamp = &candidate.stamp;
    let subject = &candidate.outgoing.subject;
    let payload = &candidate.outgoing.payload;
    let read = || observatory_metrics::ingest_subject_reads(1);
    let (mut seen, mut own) = match known {
        Known::Seen(seen) => (seen, None),
        known if assume_empty(&known, stamp) => (Seen::empty(), None),
        // A remembered subject that did not make the record new is read as it is now.
        Known::Nothing | Known::Moved | Known::Remembered(_) => {
            read();
            read_last(bus.last_on_subject(subject).await?, payload)
        }
    };
    let mut decision = decide(candidate.key, stamp, &seen, legacy);
    if decision == Decision::ReadAll {
        read();
        (seen, own) = read_all(bus.all_on_subject(subject).await?, payload);
        decision = decide(candidate.key, stamp, &seen, legacy);
    }
    if decision == Decision::NeverReported {
        // An absence is only believed from the leader: a replica may not have the report yet.
        read();
        (seen, own) = read_last(bus.last_on_subject_at_leader(subject).await?, payload);
        decision = decide(candidate.key, stamp, &seen, legacy);
        if decision == Decision::ReadAll {
            read();
            (seen, own) = read_all(bus.all_on_subject(subject).await?, payload);
            decision = decide(candidate.key, stamp, &seen, legacy);
        }
    }
    Ok(Decided { decision, seen, own })
}

/// Where `payload`, this request's encoding of a record, is among the events read.
fn own_copy<'a>(read: impl IntoIterator<Item = &'a Stored>, payload: &[u8]) -> Option<u64> {
    read.into_iter().find(|stored| stored.payload == payload).map(|stored| stored.sequence)
}

fn stamp_of(stored: &Stored) -> Option<RevisionStamp> {
    stored.header(REVISION_HEADER).and_then(RevisionStamp::parse)
}

/// What the subject's last event says, and whether it is `payload`, this request's own.
fn read_last(last: Option<Stored>, payload: &[u8]) -> (Seen, Option<u64>) {
    let own = own_copy(&last, payload);
    let seen = match last {
        None => Seen::empty(),
        Some(last) => Seen {
            last_sequence: last.sequence,
            stamps: stamp_of(&last).into_iter().collect(),
            complete: false,
        },
    };
    (seen, own)
}

/// What the subject's events say, and where `payload`, this request's own, is among them.
fn read_all(all: Vec<Stored>, payload: &[u8]) -> (Seen, Option<u64>) {
    let seen = Seen {
        last_sequence: all.last().map_or(0, |s| s.sequence),
        stamps: all.iter().filter_map(stamp_of).collect(),
        complete: true,
    };
    (seen, own_copy(&all, payload))
}

fn read_failure(e: &BusError) -> String {
    format!("could not read the incident's events back from JetStream ({e}); send the record again")
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_bus::BusConfig;

    /// A first revision whose envelope bytes are `payload` (the envelope's event id makes
    /// each request's bytes its own).
    fn candidate(payload: &str) -> Candidate {
        let stamp = RevisionStamp { incident: 7, revision: 1, content: 11, withdrawal: false };
        let key = DedupeKey(7_001);
        let outgoing = Outgoing::incident("pn", key, &stamp, payload.as_bytes().to_vec());
        Candidate { key, stamp, outgoing }
    }

    #[test]
    fn a_record_is_followed_when_a_later_one_of_the_batch_is_of_its_incident() {
        let of = |incident: u128| {
            let mut c = candidate("{}");
            c.stamp.incident = incident;
            c
        };
        let batch: Vec<Candidate> = [1, 2, 1, 1, 3].into_iter().map(of).collect();
        let planned = rounds(&batch);
        assert_eq!(planned.rounds, [vec![0, 1, 4], vec![2], vec![3]]);
        assert_eq!(planned.followed, [true, false, true, false, false]);
        let once: Vec<Candidate> = [1, 2, 3].into_iter().map(of).collect();
        assert_eq!(rounds(&once).followed, [false; 3]);
    }

    /// An attempt stored whose ack was lost is sent again with the expectation it had, and
    /// no message id: the retry is refused as stale, and
    /// the record, found on its subject in this request's own bytes, is accepted: not
    /// answered as a duplicate of a copy no answer ever acknowledged.
    #[tokio::test]
    async fn a_revision_stored_by_an_unacknowledged_attempt_is_accepted_once() {
        let nats = observatory_test_support::TestNats::start();
        let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
        let publisher = bus.publisher();
        let (legacy, written) = (LegacyIndex::default(), Written::new(16));
        let parts = Parts { bus: &bus, publisher: &publisher, legacy: &legacy, written: &written };

        let mut ours = [candidate(r#"{"event_id":"ours"}"#)];
        let mut lost = ours[0].outgoing.clone();
        lost.expected_last_subject_sequence = Some(0);
        let stored = publisher.publish_one(lost).await.unwrap();
        assert!(!stored.duplicate);
        let outcomes = commit(parts, &mut ours).await;
        assert_eq!(outcomes, [Outcome::Accepted { sequence: stored.sequence }]);

        // The same revision in another request's bytes is that request's duplicate.
        let mut theirs = [candidate(r#"{"event_id":"theirs"}"#)];
        assert_eq!(commit(parts, &mut theirs).await, [Outcome::Duplicate]);
        let last = bus.last_on_subject(&ours[0].outgoing.subject).await.unwrap().unwrap();
        assert_eq!(last.sequence, stored.sequence, "nothing stored twice");
    }
}
