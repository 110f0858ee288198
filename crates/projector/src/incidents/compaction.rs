//! Keeps the incident projection's file count bounded: a year of counts whose delta files
//! piled up becomes one snapshot of the in-memory totals, and the newest state files are
//! merged size-tiered (each row rewritten O(log n) times) under a row cap.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use observatory_model::incident_hash;
use observatory_store::layout::state;
use observatory_store::{DataFile, TableId};
use tracing::info;

use super::fold::Fold;
use super::sink::IncidentSinkError;
use super::tables::{
    CHUNK_ROWS, TableError, counts_batch, counts_schema, state_encoder, state_schema,
};
use crate::writer::{ProjectionWriter, Tables};

/// Rewrites a year whose delta files piled up as one snapshot of the in-memory totals,
/// which equal the sum of those files.
pub(super) async fn compact_counts(
    writer: &ProjectionWriter,
    fold: &Fold,
    tables: &mut Tables,
    last_sequence: u64,
) -> Result<(), IncidentSinkError> {
    let max_files = writer.compaction().max_count_files;
    let counts = tables.files_mut(&TableId::Counts);
    let mut per_year: BTreeMap<i32, usize> = BTreeMap::new();
    for file in counts.iter() {
        *per_year.entry(file.year.unwrap_or_default()).or_default() += 1;
    }
    for (year, files) in per_year {
        if files <= max_files {
            continue;
        }
        let first = counts
            .iter()
            .filter(|f| f.year == Some(year))
            .map(|f| f.first_sequence)
            .min()
            .unwrap_or(1);
        let totals = fold.totals_of_year(year);
        let chunks = totals.chunks(CHUNK_ROWS).map(|cells| counts_batch(fold, cells));
        let file = writer
            .write_batches(
                &TableId::Counts,
                Some(year),
                first,
                last_sequence,
                counts_schema(),
                chunks,
            )
            .await?;
        counts.retain(|f| f.year != Some(year));
        counts.push(file);
        info!(year, files, "counts compacted");
    }
    Ok(())
}

/// Merges the newest state files (and older ones not much bigger than them), keeping
/// the newest row of each incident: size-tiered, so each row is rewritten O(log n) times,
/// and capped, so a merge never holds more than `max_state_file_rows` rows.
pub(super) async fn compact_state(
    writer: &ProjectionWriter,
    tables: &mut Tables,
) -> Result<(), IncidentSinkError> {
    let compaction = writer.compaction();
    let cap = compaction.max_state_file_rows;
    let files = tables.files_mut(&TableId::State);
    let (mut open, sealed): (Vec<DataFile>, Vec<DataFile>) =
        files.drain(..).partition(|f| f.rows < cap);
    files.extend(sealed);
    if open.len() <= compaction.max_state_files {
        files.extend(open);
        return Ok(());
    }
    open.sort_by_key(|f| f.first_sequence);
    let mut take = 0;
    let mut rows: u64 = 0;
    while take < open.len() {
        let next = open[open.len() - take - 1].rows;
        let tiered = take < compaction.max_state_files / 2 || next <= 2 * rows;
        if !tiered || (take >= 2 && rows + next > cap) {
            break;
        }
        take += 1;
        rows += next;
    }
    let merged_files = open.split_off(open.len() - take);
    files.extend(open);
    let mut batches = Vec::new();
    for file in &merged_files {
        batches.extend(writer.read(file).await?);
    }
    let merged = newest_rows(&batches)
        .map_err(|source| IncidentSinkError::Table { path: TableId::State.dir(), source })?;
    drop(batches);
    let first = merged_files.iter().map(|f| f.first_sequence).min().expect("non-empty");
    let last = merged_files.iter().map(|f| f.last_sequence).max().expect("non-empty");
    let mut encoder = state_encoder(&TableId::State.dir())?;
    encoder.write(&merged)?;
    drop(merged);
    let file = writer.write_encoded(&TableId::State, None, first, last, encoder).await?;
    info!(merged = merged_files.len(), rows = file.rows, "state compacted");
    files.push(file);
    files.sort_by_key(|f| f.first_sequence);
    Ok(())
}

/// The newest row (highest sequence) of each incident among state batches, in sequence
/// order, gathered column by column from the inputs: no per-row records and no concatenated
/// copy of the inputs in memory.
fn newest_rows(batches: &[RecordBatch]) -> Result<RecordBatch, TableError> {
    let mut newest: HashMap<u128, (u64, u32, u32), foldhash::fast::RandomState> =
        HashMap::default();
    for (b, batch) in batches.iter().enumerate() {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| TableError::new(format!("column {name} missing")))
        };
        let source = column(state::SOURCE)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| TableError::new(format!("{} is not text", state::SOURCE)))?;
        let id = column(state::AGENCY_INCIDENT_ID)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| TableError::new(format!("{} is not text", state::AGENCY_INCIDENT_ID)))?;
        let sequence = column(state::SEQUENCE)?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| TableError::new(format!("{} is not u64", state::SEQUENCE)))?;
        for row in 0..batch.num_rows() {
            let key = incident_hash(source.value(row), id.value(row));
            let candidate = (sequence.value(row), b as u32, row as u32);
            newest
                .entry(key)
                .and_modify(|kept| *kept = (*kept).max(candidate))
                .or_insert(candidate);
        }
    }
    let mut rows: Vec<(u64, u32, u32)> = newest.into_values().collect();
    rows.sort_unstable();
    let indices: Vec<(usize, usize)> =
        rows.into_iter().map(|(_, b, row)| (b as usize, row as usize)).collect();
    if indices.is_empty() {
        return Ok(RecordBatch::new_empty(state_schema()));
    }
    let inputs: Vec<&RecordBatch> = batches.iter().collect();
    arrow::compute::interleave_record_batch(&inputs, &indices)
        .map_err(|e| TableError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incidents::tests::report;

    #[test]
    fn newest_rows_keeps_the_highest_sequence_per_incident_in_sequence_order() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", report(1, 1, 1));
        fold.apply(2, "pn", report(2, 1, 1));
        let first = fold.take_pending().unwrap().changed;
        fold.apply(3, "pn", report(1, 2, 3));
        fold.apply(4, "gn", report(1, 1, 1));
        let second = fold.take_pending().unwrap().changed;
        let merged =
            super::super::tables::state_rows(&newest_rows(&[first, second]).unwrap()).unwrap();
        let kept: Vec<(String, String, u64)> =
            merged.into_iter().map(|r| (r.source, r.agency_incident_id, r.sequence)).collect();
        assert_eq!(
            kept,
            vec![
                ("pn".into(), "I2".into(), 2),
                ("pn".into(), "I1".into(), 3),
                ("gn".into(), "I1".into(), 4)
            ]
        );
    }
}
