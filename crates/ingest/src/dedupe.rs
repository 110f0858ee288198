//! The ingest's idempotency index: every (source, agency_incident_id, revision) already on
//! the stream. It outlives the NATS duplicate window because it is rebuilt from the stream
//! itself (headers only) when the ingest starts.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::StreamExt;
use observatory_bus::{Bus, BusError, DEDUPE_HEADER};
use observatory_model::DedupeKey;

#[derive(Default)]
pub struct DedupeIndex {
    keys: Mutex<HashSet<u128>>,
}

impl DedupeIndex {
    pub fn new() -> DedupeIndex {
        DedupeIndex::default()
    }

    /// Claims each key not yet known; returns, per key, whether it was claimed now.
    /// A claimed key must be either published or [`release`](Self::release)d.
    pub fn claim(&self, keys: &[DedupeKey]) -> Vec<bool> {
        let mut set = self.keys.lock().expect("not poisoned");
        keys.iter().map(|key| set.insert(key.0)).collect()
    }

    /// Gives back keys whose publish failed, so a retry is not mistaken for a duplicate.
    pub fn release(&self, keys: &[DedupeKey]) {
        let mut set = self.keys.lock().expect("not poisoned");
        for key in keys {
            set.remove(&key.0);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads every key from the incident events on the stream.
    pub async fn load_from_stream(&self, bus: &Bus) -> Result<u64, BusError> {
        let filter = "obs.incident.>";
        let stream = bus.stream().await?;
        let info = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| BusError::Stream { stream: bus.config().stream.clone(), message: e.to_string() })?;
        let mut subjects = info;
        let mut total: u64 = 0;
        while let Some(entry) = subjects.next().await {
            let (_, count) = entry.map_err(|e| BusError::Stream { stream: bus.config().stream.clone(), message: e.to_string() })?;
            total += count as u64;
        }
        if total == 0 {
            return Ok(0);
        }
        let mut messages = bus.ordered_replay(filter, true).await?;
        let mut seen = 0u64;
        let mut batch = Vec::with_capacity(4096);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| BusError::Consumer {
                stream: bus.config().stream.clone(),
                name: "dedupe replay".into(),
                message: e.to_string(),
            })?;
            seen += 1;
            if let Some(key) = message.headers.as_ref().and_then(|h| h.get(DEDUPE_HEADER)).and_then(|v| DedupeKey::from_hex(v.as_str())) {
                batch.push(key);
            }
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            if batch.len() >= 4096 || pending == 0 {
                self.claim(&batch);
                batch.clear();
            }
            if pending == 0 {
                break;
            }
        }
        Ok(seen)
    }
}
