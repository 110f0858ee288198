//! What the start-up replays (the dedupe index, the survey ledger) share: how many messages a
//! subject filter holds, since an ordered consumer over an empty filter would wait forever.

use futures::StreamExt;
use observatory_bus::{Bus, BusError};

/// The number of messages on the stream whose subjects match `filter`.
pub(crate) async fn messages_on(bus: &Bus, filter: &str) -> Result<u64, BusError> {
    let stream_err = |e: &dyn std::fmt::Display| BusError::Stream {
        stream: bus.config().stream.clone(),
        message: e.to_string(),
    };
    let stream = bus.stream().await?;
    let mut subjects = stream.info_with_subjects(filter).await.map_err(|e| stream_err(&e))?;
    let mut total: u64 = 0;
    while let Some(entry) = subjects.next().await {
        total += entry.map_err(|e| stream_err(&e))?.1 as u64;
    }
    Ok(total)
}
