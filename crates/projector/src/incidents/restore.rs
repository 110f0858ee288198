//! Restoring the fold on restart: what a projector does before it folds its first new event.
//!
//! First the newest [fold image](super::image) the manifest names, if any: the fold's memory
//! as of the image's sequence, loaded on a blocking thread as its bytes arrive. Then the state
//! rows committed after it (all of them without an image): the state table holds every
//! incident's last record (a sealed rebuild's files hold each incident once; later flushes
//! add newer revisions). The fold needs only its cell, loss, record key and revision, so a
//! restore reads just those columns ([`COLUMNS`]) and decodes each batch into compact rows
//! ([`decode`]) on a blocking thread while the fold takes the previous batch on the
//! projector's own ([`Fold::restore`](super::fold::Fold::restore)): the two halves of the work
//! run on two cores, and no `String` is made per row. An image that cannot be loaded is
//! reported and the restore reads the whole state table instead: the image only saves time.

use std::io::Read;

use arrow::array::{Array, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use observatory_model::{departement_index, incident_hash};
use observatory_store::layout::state;
use observatory_store::{DataFile, TableId, parquet_batches};
use tracing::warn;

use super::fold::{Cell, CodedBy, Fold, Interner, NO_DEPARTEMENT, Pins, loss_cents, month_index};
use super::image;
use super::sink::IncidentSinkError;
use super::tables::{StateColumns, TableError, from_days};
use crate::writer::ProjectionWriter;

/// The state columns a restore reads (not the end date or reporting date).
pub const COLUMNS: &[&str] = &[
    state::SEQUENCE,
    state::SOURCE,
    state::AGENCY_INCIDENT_ID,
    state::REVISION,
    state::WITHDRAWN,
    state::RECORD_KEY,
    state::OCCURRED_ON,
    state::ICCS,
    state::OFFENCE_CODE,
    state::CYBER,
    state::DEPARTEMENT,
    state::VICTIM_TYPE,
    state::CHANNEL,
    state::LOSS_EUR,
    state::UNIT,
    state::CROSSWALK,
    state::CROSSWALK_VERSION,
    state::ICCS_FROM_CROSSWALK,
    state::CYBER_FROM_CROSSWALK,
];

/// Rows of a state batch as the fold keeps them. Cells name their ICCS code and source by
/// their position in this batch's `iccs` and `sources`; the fold interns them once per batch.
#[derive(Debug, Default)]
pub struct RestoreBatch {
    pub(super) iccs: Vec<String>,
    pub(super) sources: Vec<String>,
    pub(super) rows: Vec<RestoreRow>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RestoreRow {
    pub key: u128,
    pub revision: u32,
    pub record_key: u8,
    /// The incident's cell and loss in cents; `None` while withdrawn.
    pub placed: Option<(Cell, i64)>,
}

/// Decodes a batch of the state table (at least [`COLUMNS`]) into the rows a restore folds,
/// coding each record under the projection's pinned crosswalk versions. Rows committed at or
/// before `after` (in the fold image already) are passed over.
pub fn decode(batch: &RecordBatch, pins: &Pins, after: u64) -> Result<RestoreBatch, TableError> {
    let c = StateColumns::of(batch)?;
    // Numbered in order of first appearance in this batch.
    let mut iccs_names = Interner::default();
    let mut source_names = Interner::default();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        if c.sequence.value(i) <= after {
            continue;
        }
        let source_name = c.source.value(i);
        let placed = if c.withdrawn.value(i) {
            None
        } else {
            let coded_by = (!c.crosswalk.is_null(i)).then(|| CodedBy {
                crosswalk: c.crosswalk.value(i),
                version: c.crosswalk_version.value(i),
                iccs_from_crosswalk: c.iccs_from.value(i),
                cyber_from_crosswalk: c.cyber_from.value(i),
            });
            let (code, cyber, unit) = pins.coding(
                c.iccs.value(i),
                c.cyber.value(i),
                c.unit(i)?,
                (!c.offence_code.is_null(i)).then(|| c.offence_code.value(i)),
                coded_by,
            );
            let departement = if c.departement.is_null(i) {
                NO_DEPARTEMENT
            } else {
                departement_index(c.departement.value(i)).map_or(NO_DEPARTEMENT, |d| d as u16)
            };
            let cell = Cell {
                month: month_index(from_days(c.occurred_on.value(i))),
                departement,
                iccs: iccs_names.id(&code),
                cyber,
                victim_type: c.victim_type(i)?,
                channel: c.channel(i)?,
                source: source_names.id(source_name),
                unit,
            };
            let loss = loss_cents((!c.loss.is_null(i)).then(|| c.loss.value(i)));
            Some((cell, loss))
        };
        rows.push(RestoreRow {
            key: incident_hash(source_name, c.id.value(i)),
            revision: c.revision.value(i),
            record_key: c.record_key.value(i),
            placed,
        });
    }
    Ok(RestoreBatch { iccs: iccs_names.into_names(), sources: source_names.into_names(), rows })
}

/// Rows a restore decodes at a time (a state file holds up to a million).
pub(super) const RESTORE_BATCH_ROWS: usize = 16_384;

/// How a fold was restored, for the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restored {
    /// The sequence of the fold image loaded, if one was.
    pub image: Option<u64>,
    /// State rows read after it.
    pub state_rows: u64,
}

/// Restores the fold of the committed manifest: its image if it names one (a fold from
/// `new_fold` loaded with it), then the state rows committed after. `new_fold` makes an
/// empty fold with the version's pins and record keys.
pub(super) async fn restore(
    writer: &ProjectionWriter,
    new_fold: impl Fn() -> Result<Fold, IncidentSinkError>,
) -> Result<(Fold, Restored), IncidentSinkError> {
    let image = writer.committed().files(&TableId::FoldImage).last().cloned();
    let (mut fold, after) = match image {
        None => (new_fold()?, 0),
        Some(file) => match load_image(writer, &file, new_fold()?).await {
            Ok((fold, sequence)) => (fold, sequence),
            Err(error) => {
                warn!(
                    path = writer.path_of(&file),
                    %error,
                    "the fold image cannot be loaded; restoring from the whole state table \
                     instead (slower, same result)"
                );
                (new_fold()?, 0)
            }
        },
    };
    let state_rows = restore_state(writer, &mut fold, after).await?;
    Ok((fold, Restored { image: (after > 0).then_some(after), state_rows }))
}

/// Loads the fold image `file` into `fold` on a blocking thread, handing it the bytes as they
/// arrive; the fold and the sequence the image reflects.
async fn load_image(
    writer: &ProjectionWriter,
    file: &DataFile,
    mut fold: Fold,
) -> Result<(Fold, u64), IncidentSinkError> {
    let mut pieces = writer.pieces(file).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let loading = tokio::task::spawn_blocking(move || {
        let reader = PieceReader { receiver, current: Bytes::new() };
        image::load(&mut fold, reader).map(|sequence| (fold, sequence))
    });
    let mut failed = None;
    while let Some(piece) = pieces.next().await {
        match piece {
            Ok(piece) => {
                // The loader stopped early (a format error it reports below).
                if sender.send(piece).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    drop(sender);
    let loaded = loading.await.map_err(|e| IncidentSinkError::Image {
        path: writer.path_of(file),
        source: image::ImageError::Format(format!("its loader stopped: {e}")),
    })?;
    if let Some(error) = failed {
        return Err(error.into());
    }
    let image_error = |source| IncidentSinkError::Image { path: writer.path_of(file), source };
    let (fold, sequence) = loaded.map_err(image_error)?;
    // The rows after it are chosen by its sequence: it must be the one the manifest names.
    if sequence != file.last_sequence {
        return Err(image_error(image::ImageError::Format(format!(
            "it reflects sequence {sequence} where the manifest says {}",
            file.last_sequence
        ))));
    }
    Ok((fold, sequence))
}

/// Reads the pieces of an object handed over a channel, blocking for the next.
struct PieceReader {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for PieceReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(piece) => self.current = piece,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Restores the fold from the state rows committed after `after`: each file that holds some
/// is fetched, then decoded batch by batch on a blocking thread ([`COLUMNS`] only) while this
/// task folds the batch before, two batches in flight at most. Returns the rows read.
async fn restore_state(
    writer: &ProjectionWriter,
    fold: &mut Fold,
    after: u64,
) -> Result<u64, IncidentSinkError> {
    let files: Vec<DataFile> = writer
        .committed()
        .files(&TableId::State)
        .iter()
        .filter(|f| f.last_sequence > after)
        .cloned()
        .collect();
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    if after == 0 {
        fold.reserve_incidents(usize::try_from(rows).unwrap_or(usize::MAX));
    }
    let (sender, mut receiver) =
        tokio::sync::mpsc::channel::<Result<RestoreBatch, IncidentSinkError>>(2);
    let pins = fold.pins().clone();
    let decode = async move {
        for file in files {
            // The fold stopped on an error of its own: nothing more to read.
            if sender.is_closed() {
                return;
            }
            let decoded = async {
                let bytes = writer.bytes(&file).await?;
                let path = writer.path_of(&file);
                let (sender, pins) = (sender.clone(), pins.clone());
                tokio::task::spawn_blocking(move || -> Result<(), IncidentSinkError> {
                    for batch in parquet_batches(bytes, &path, COLUMNS, RESTORE_BATCH_ROWS)? {
                        let decoded = decode(&batch?, &pins, after).map_err(|source| {
                            IncidentSinkError::Table { path: path.clone(), source }
                        })?;
                        if sender.blocking_send(Ok(decoded)).is_err() {
                            break;
                        }
                    }
                    Ok(())
                })
                .await?
            }
            .await;
            if let Err(error) = decoded {
                let _ = sender.send(Err(error)).await;
                return;
            }
        }
    };
    // Owns the receiver: when it stops on an error, the decoder's sends fail and it stops too.
    let apply = async move {
        while let Some(batch) = receiver.recv().await {
            fold.restore(&batch?);
        }
        Ok::<_, IncidentSinkError>(())
    };
    let ((), applied) = tokio::join!(decode, apply);
    applied.map(|()| rows)
}
