//! What this process last stored on the incident subjects it wrote recently, so that the next
//! revision of such an incident (an amendment, a withdrawal) is published without reading its
//! subject back first. Agencies amend what they reported lately, and each such read is a
//! request to nats-server, which looks the subject's last message up.
//!
//! A hint, never the truth. A record is published from it only when it decides
//! [`Decision::New`](crate::dedupe::Decision::New), with the remembered sequence as the
//! expected last subject sequence, which the stream leader checks: an entry made stale by
//! another replica or another request costs one refused publish and a read. Every other
//! decision (a duplicate, a refusal) is made again from a read, as it was without this memory,
//! since nothing checks an answer that publishes nothing.
//!
//! Bounded: two generations of at most `capacity` incidents each. When the newer is full the
//! older is dropped, so what was written most recently stays. Empty after a restart: the
//! ingest is ready as soon as it is connected, as before.

use std::sync::Mutex;

use foldhash::HashMap;
use observatory_model::RevisionStamp;

use crate::dedupe::Seen;

#[derive(Debug, Clone, Copy)]
struct Last {
    sequence: u64,
    stamp: RevisionStamp,
}

#[derive(Default)]
struct Generations {
    current: HashMap<u128, Last>,
    previous: HashMap<u128, Last>,
}

impl Generations {
    fn get(&self, incident: u128) -> Option<&Last> {
        self.current.get(&incident).or_else(|| self.previous.get(&incident))
    }
}

pub struct Written {
    capacity: usize,
    generations: Mutex<Generations>,
}

impl Written {
    /// Remembers up to `capacity` incidents per generation; 0 remembers nothing.
    pub fn new(capacity: usize) -> Written {
        Written { capacity, generations: Mutex::new(Generations::default()) }
    }

    /// For each incident, what its subject held after this process last wrote it, as a read
    /// of its last event would have found it then; `None` where nothing is remembered.
    pub fn recall(&self, incidents: impl ExactSizeIterator<Item = u128>) -> Vec<Option<Seen>> {
        if self.capacity == 0 {
            return incidents.map(|_| None).collect();
        }
        let generations = self.lock();
        incidents
            .map(|incident| {
                generations.get(incident).map(|last| Seen {
                    last_sequence: last.sequence,
                    stamps: vec![last.stamp],
                    complete: false,
                })
            })
            .collect()
    }

    /// Events this process stored: `(stamp, sequence)`. An event older than the one
    /// remembered for its incident (another request's, acknowledged later) changes nothing.
    pub fn remember(&self, stored: impl IntoIterator<Item = (RevisionStamp, u64)>) {
        if self.capacity == 0 {
            return;
        }
        let mut generations = self.lock();
        for (stamp, sequence) in stored {
            if generations.get(stamp.incident).is_some_and(|last| last.sequence >= sequence) {
                continue;
            }
            if generations.current.len() >= self.capacity {
                generations.previous = std::mem::take(&mut generations.current);
            }
            generations.current.insert(stamp.incident, Last { sequence, stamp });
        }
    }

    /// Incidents whose subject was found to have moved: they are read next time.
    pub fn forget(&self, incidents: impl IntoIterator<Item = u128>) {
        if self.capacity == 0 {
            return;
        }
        let mut generations = self.lock();
        for incident in incidents {
            generations.current.remove(&incident);
            generations.previous.remove(&incident);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps are consistent after every statement, so a panic elsewhere while one was
        // held leaves nothing half-written.
        self.generations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(incident: u128, revision: u32) -> RevisionStamp {
        RevisionStamp { incident, revision, content: 7, withdrawal: false }
    }

    fn recalled(written: &Written, incident: u128) -> Option<(u64, u32)> {
        written.recall([incident].into_iter()).remove(0).map(|seen| {
            assert!(!seen.complete, "only the last event is remembered");
            assert_eq!(seen.stamps.len(), 1);
            (seen.last_sequence, seen.stamps[0].revision)
        })
    }

    #[test]
    fn the_latest_event_of_each_incident_is_recalled_as_a_read_of_its_last_would_find_it() {
        let written = Written::new(10);
        written.remember([(stamp(1, 1), 5), (stamp(2, 1), 6), (stamp(1, 2), 9)]);
        assert_eq!(recalled(&written, 1), Some((9, 2)));
        assert_eq!(recalled(&written, 2), Some((6, 1)));
        assert_eq!(recalled(&written, 3), None);
        // Another request's earlier event, acknowledged after this one.
        written.remember([(stamp(1, 1), 5)]);
        assert_eq!(recalled(&written, 1), Some((9, 2)));
    }

    #[test]
    fn a_forgotten_incident_is_read_next_time() {
        let written = Written::new(10);
        written.remember([(stamp(1, 1), 5)]);
        written.forget([1]);
        assert_eq!(recalled(&written, 1), None);
        // And a later write is remembered again, whatever sequence it has.
        written.remember([(stamp(1, 3), 4)]);
        assert_eq!(recalled(&written, 1), Some((4, 3)));
    }

    #[test]
    fn memory_is_bounded_to_two_generations_and_keeps_the_most_recent() {
        let written = Written::new(3);
        written.remember((1..=7).map(|i| (stamp(i, 1), i as u64)));
        // 1–3 filled the first generation; 4 made it the previous one, and 7 made 4–6 the
        // previous one, dropping 1–3.
        for i in 1..=3 {
            assert_eq!(recalled(&written, i), None, "incident {i}");
        }
        for i in 4..=7 {
            assert_eq!(recalled(&written, i), Some((i as u64, 1)), "incident {i}");
        }
        let generations = written.lock();
        assert!(generations.current.len() + generations.previous.len() <= 2 * 3);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let written = Written::new(0);
        written.remember([(stamp(1, 1), 5)]);
        assert_eq!(recalled(&written, 1), None);
    }
}
