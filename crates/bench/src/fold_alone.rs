//! The projector's own work on the stream's events, timed on one thread with nothing else
//! running: decoding each payload, folding each decoded event (with record keys, as a
//! deployment folds), and encoding the state rows the fold hands over to Parquet. The
//! projection stage's rates move with nats-server's share of two busy cores, by a third from
//! one trial to the next; these figures do not, so a change to the fold is measured here.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use observatory_disclosure::RecordKeys;
use observatory_model::Envelope;
use observatory_projector::incidents::fold::Fold;
use observatory_projector::incidents::tables::{CHUNK_ROWS, state_encoder};
use serde::Serialize;

use crate::generate::Generator;

/// Events timed at most: the fold's tables outgrow the caches long before.
pub const MAX_EVENTS: u64 = 1_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct FoldAlone {
    /// The stream's first events (the same generator and seed as the fill).
    pub events: u64,
    pub decode_us_per_event: f64,
    pub fold_us_per_event: f64,
    /// Encoding the fold's state rows to Parquet (a rebuild's state files, not its counts).
    pub encode_us_per_event: f64,
    pub incidents: u64,
}

pub fn measure(events: u64, seed: u64) -> Result<FoldAlone> {
    let n = events.min(MAX_EVENTS);
    let mut generator = Generator::new(seed);
    let recorded_at = Utc::now();
    let payloads: Vec<_> =
        (0..n).map(|_| generator.next_event().outgoing(recorded_at).payload).collect();

    let started = Instant::now();
    let decoded = payloads
        .iter()
        .map(|payload| Envelope::decode_event(payload))
        .collect::<Result<Vec<_>, _>>()
        .context("decoding a generated event")?;
    let decode = started.elapsed();
    drop(payloads);

    // A fixed secret: the keys' values do not matter here, their cost does.
    let keys = RecordKeys::new(&[0x5a; 32]).context("record keys")?;
    let mut fold = Fold::with_crosswalks(&BTreeMap::new(), Some(keys))?;
    fold.reserve_incidents(usize::try_from(n).unwrap_or(usize::MAX));
    let mut batches = Vec::new();
    let started = Instant::now();
    for (sequence, (source, event)) in (1..).zip(decoded) {
        fold.apply(sequence, &source, event);
        if fold.pending_events() >= CHUNK_ROWS {
            batches.push(fold.take_changed());
        }
    }
    batches.push(fold.take_changed());
    let folded = started.elapsed();

    let started = Instant::now();
    let mut encoder = state_encoder("the bench's state rows")?;
    for batch in &batches {
        encoder.write(batch)?;
    }
    std::hint::black_box(encoder.finish()?);
    let encoded = started.elapsed();

    let per_event = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    Ok(FoldAlone {
        events: n,
        decode_us_per_event: per_event(decode),
        fold_us_per_event: per_event(folded),
        encode_us_per_event: per_event(encoded),
        incidents: fold.incident_count() as u64,
    })
}
