//! The fold's index of every incident ever reported: 128-bit incident hash → [`IncidentState`].
//!
//! It is the projector's largest structure (one entry per incident in the history: 9.4M at
//! 10M events), so two things about it are deliberate:
//!
//! - **Shards sized to what is coming.** A single `HashMap` grows by doubling: reserved for
//!   10M events it takes 2^24 buckets (553 MB at 33 bytes a bucket) to hold 9.4M incidents,
//!   and growing without a reservation holds the old and new tables at once. Here the table
//!   is cut into shards of at most [`SHARD_ITEMS`] entries, their number chosen from the
//!   reservation: 10M events take 44 shards of 2^18 buckets (380 MB), and a shard that
//!   outgrows its room doubles alone.
//! - **No second hash.** Keys are already xxh3 digests: the shard is chosen from the high 64
//!   bits and the bucket from the low 64, with no hashing of the key again.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use super::fold::IncidentState;

/// Entries a shard holds before it doubles: 7/8 of 2^18 buckets, hashbrown's largest load.
pub const SHARD_ITEMS: usize = (1 << 18) / 8 * 7;

#[derive(Default, Clone, Copy)]
pub struct KeyIsHash;

/// Takes the low 64 bits of a `u128` key as its hash: the key is a uniformly distributed
/// digest already.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here; anything else still gets a usable (slow) hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

impl BuildHasher for KeyIsHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

type Shard = HashMap<u128, IncidentState, KeyIsHash>;

pub struct IncidentIndex {
    shards: Vec<Shard>,
    len: usize,
}

impl Default for IncidentIndex {
    fn default() -> IncidentIndex {
        IncidentIndex { shards: vec![Shard::default()], len: 0 }
    }
}

impl IncidentIndex {
    fn shard_of(&self, key: u128) -> usize {
        // Multiply-shift maps the high 64 bits onto 0..shards without a division.
        (((key >> 64) * self.shards.len() as u128) >> 64) as usize
    }

    pub fn get(&self, key: u128) -> Option<IncidentState> {
        self.shards[self.shard_of(key)].get(&key).copied()
    }

    pub fn insert(&mut self, key: u128, state: IncidentState) {
        let shard = self.shard_of(key);
        if self.shards[shard].insert(key, state).is_none() {
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, shard by shard.
    pub fn iter(&self) -> impl Iterator<Item = (u128, IncidentState)> + '_ {
        self.shards.iter().flat_map(|shard| shard.iter().map(|(k, v)| (*k, *v)))
    }

    /// Room for `additional` more incidents. An empty index is re-cut into as many shards as
    /// that takes; a filled one grows each shard by its share.
    pub fn reserve(&mut self, additional: usize) {
        if self.is_empty() {
            let shards = additional.div_ceil(SHARD_ITEMS).max(1);
            let per_shard = additional.div_ceil(shards);
            self.shards = (0..shards)
                .map(|_| Shard::with_capacity_and_hasher(per_shard, KeyIsHash))
                .collect();
        } else {
            let per_shard = additional.div_ceil(self.shards.len());
            for shard in &mut self.shards {
                shard.reserve(per_shard);
            }
        }
    }

    /// Entries the shards hold before any of them grows (buckets are 8/7 of it, about 33
    /// bytes each: what the index costs in memory).
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(revision: u32) -> IncidentState {
        IncidentState::new(revision, 0, 0, 0)
    }

    #[test]
    fn keys_are_found_in_whatever_shard_they_went_to() {
        let mut index = IncidentIndex::default();
        index.reserve(3 * SHARD_ITEMS);
        assert_eq!(index.shards.len(), 3);
        let keys: Vec<u128> = (0..10_000u128)
            .map(|i| observatory_model::incident_hash("pn", &i.to_string()))
            .collect();
        for (i, &key) in keys.iter().enumerate() {
            index.insert(key, state(i as u32));
        }
        index.insert(keys[0], state(99));
        assert_eq!(index.len(), 10_000);
        assert_eq!(index.get(keys[0]).unwrap().revision, 99);
        assert_eq!(index.get(keys[9_999]).unwrap().revision, 9_999);
        assert!(index.get(observatory_model::incident_hash("gn", "0")).is_none());
        // Every shard gets a share: the shard is drawn from the hash, not from the order.
        assert!(index.shards.iter().all(|s| s.len() > 3_000));
    }

    #[test]
    fn a_reservation_takes_shards_of_the_largest_load_not_the_next_power_of_two() {
        let mut index = IncidentIndex::default();
        index.reserve(10_000_000);
        assert_eq!(index.shards.len(), 44);
        // 44 × 2^18 buckets, where one table would take 2^24.
        assert_eq!(index.capacity(), 44 * SHARD_ITEMS);
        let one_table = HashMap::<u128, IncidentState>::with_capacity(10_000_000).capacity();
        assert_eq!(one_table, (1 << 24) / 8 * 7);
        assert!(index.capacity() < one_table * 7 / 10);
    }
}
