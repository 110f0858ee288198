//! The fold's memory as one file (the *image*): what a restart reads instead of re-deriving
//! every incident's cell from the state table.
//!
//! Restoring from the state table costs a decode and two random lookups (the cell table and
//! the incident index) per incident ever reported: 10.9 s at 10M events, growing with the
//! history. The image holds what those lookups produce — the interned names, every cell with
//! its totals, every incident's entry — so a restore only inserts fixed-size records, and
//! then applies the state rows committed after the image (the incidents changed since).
//!
//! It is an optimisation, never the source of truth: the state table still holds every
//! incident, an image that cannot be read (damaged, truncated, another format) is reported
//! and the restore falls back to the state table, and the image is checked whole (length and
//! checksum) before a fold built from it is used.
//!
//! Format (little-endian): `MAGIC`, the sequence it reflects (u64), ICCS names and source
//! names (u32 count, then u16 length + UTF-8 each), cells (u64 count, then [`CELL_BYTES`]
//! each: cell then totals), incidents (u64 count, then [`INCIDENT_BYTES`] each), and the
//! xxh3-64 of everything before it.

use std::io::Read;

use observatory_model::{Channel, VictimType};
use observatory_reference::Unit;
use xxhash_rust::xxh3::Xxh3;

use super::fold::{Cell, Fold, IncidentState, Slot, Tally};

pub const MAGIC: &[u8; 8] = b"OBSFOLD1";
pub const CELL_BYTES: usize = 4 + 2 + 4 + 1 + 1 + 1 + 4 + 1 + 3 * 8;
pub const INCIDENT_BYTES: usize = 16 + 4 + 4 + 8;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading the fold image failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the fold image is not one this projector writes or reads: {0}")]
    Format(String),
}

fn format(message: impl Into<String>) -> ImageError {
    ImageError::Format(message.into())
}

fn unit_code(unit: Unit) -> u8 {
    match unit {
        Unit::Offence => 0,
        Unit::Victim => 1,
        Unit::Report => 2,
    }
}

fn unit_of(code: u8) -> Option<Unit> {
    [Unit::Offence, Unit::Victim, Unit::Report].get(usize::from(code)).copied()
}

fn position<T: PartialEq>(all: &[T], value: &T) -> u8 {
    all.iter().position(|v| v == value).expect("every variant is in ALL") as u8
}

/// Writes the image of a fold in pieces, so a large fold never needs its image in memory:
/// each [`fill`](ImageWriter::fill) appends about `limit` bytes.
pub struct ImageWriter<'a> {
    fold: &'a Fold,
    sequence: u64,
    cells_written: usize,
    incidents: Box<dyn Iterator<Item = (u128, IncidentState)> + Send + 'a>,
    stage: Stage,
    hasher: Xxh3,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Cells,
    Incidents,
    Trailer,
    Done,
}

impl<'a> ImageWriter<'a> {
    /// The image of `fold` as of the commit at `sequence`.
    pub fn new(fold: &'a Fold, sequence: u64) -> ImageWriter<'a> {
        ImageWriter {
            fold,
            sequence,
            cells_written: 0,
            incidents: Box::new(fold.incidents.iter()),
            stage: Stage::Header,
            hasher: Xxh3::new(),
        }
    }

    /// Appends the next bytes of the image to `out` (about `limit`); false once it is complete.
    pub fn fill(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        let start = out.len();
        while out.len() - start < limit && self.stage != Stage::Done {
            match self.stage {
                Stage::Header => {
                    out.extend_from_slice(MAGIC);
                    out.extend_from_slice(&self.sequence.to_le_bytes());
                    for names in [self.fold.iccs.names(), self.fold.sources.names()] {
                        out.extend_from_slice(&(names.len() as u32).to_le_bytes());
                        for name in names {
                            let length = u16::try_from(name.len()).expect("codes are short");
                            out.extend_from_slice(&length.to_le_bytes());
                            out.extend_from_slice(name.as_bytes());
                        }
                    }
                    out.extend_from_slice(&(self.fold.slots.len() as u64).to_le_bytes());
                    self.stage = Stage::Cells;
                }
                Stage::Cells => {
                    let Some(&Slot { cell, total: tally, .. }) =
                        self.fold.slots.get(self.cells_written)
                    else {
                        out.extend_from_slice(&(self.fold.incidents.len() as u64).to_le_bytes());
                        self.stage = Stage::Incidents;
                        continue;
                    };
                    self.cells_written += 1;
                    out.extend_from_slice(&cell.month.to_le_bytes());
                    out.extend_from_slice(&cell.departement.to_le_bytes());
                    out.extend_from_slice(&cell.iccs.to_le_bytes());
                    out.push(u8::from(cell.cyber));
                    out.push(position(VictimType::ALL, &cell.victim_type));
                    out.push(position(Channel::ALL, &cell.channel));
                    out.extend_from_slice(&cell.source.to_le_bytes());
                    out.push(unit_code(cell.unit));
                    out.extend_from_slice(&tally.count.to_le_bytes());
                    out.extend_from_slice(&tally.loss_cents.to_le_bytes());
                    out.extend_from_slice(&tally.key_sum.to_le_bytes());
                }
                Stage::Incidents => {
                    let Some((key, state)) = self.incidents.next() else {
                        self.stage = Stage::Trailer;
                        continue;
                    };
                    let (revision, cell, loss_and_key) = state.parts();
                    out.extend_from_slice(&key.to_le_bytes());
                    out.extend_from_slice(&revision.to_le_bytes());
                    out.extend_from_slice(&cell.to_le_bytes());
                    out.extend_from_slice(&loss_and_key.to_le_bytes());
                }
                Stage::Trailer => {
                    self.hasher.update(&out[start..]);
                    out.extend_from_slice(&self.hasher.digest().to_le_bytes());
                    self.stage = Stage::Done;
                    return false;
                }
                Stage::Done => {}
            }
        }
        self.hasher.update(&out[start..]);
        self.stage != Stage::Done
    }
}

/// A reader that checksums what it reads.
struct Checked<R> {
    inner: R,
    hasher: Xxh3,
}

impl<R: Read> Checked<R> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], ImageError> {
        let mut bytes = [0u8; N];
        self.inner.read_exact(&mut bytes)?;
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, ImageError> {
        Ok(u16::from_le_bytes(self.exact()?))
    }

    fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(self.exact()?))
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(self.exact()?))
    }

    fn names(&mut self) -> Result<Vec<String>, ImageError> {
        let count = self.u32()?;
        (0..count)
            .map(|_| {
                let length = usize::from(self.u16()?);
                let mut bytes = vec![0u8; length];
                self.inner.read_exact(&mut bytes)?;
                self.hasher.update(&bytes);
                String::from_utf8(bytes).map_err(|_| format("a name is not UTF-8"))
            })
            .collect()
    }
}

/// Loads an image into `fold` (new, with its pins and record keys, nothing folded yet) and
/// returns the sequence it reflects. On an error the fold is half loaded: drop it.
pub fn load(fold: &mut Fold, reader: impl Read) -> Result<u64, ImageError> {
    let mut input = Checked { inner: reader, hasher: Xxh3::new() };
    if &input.exact::<8>()? != MAGIC {
        return Err(format("it does not start with OBSFOLD1"));
    }
    let sequence = input.u64()?;
    let iccs = input.names()?;
    let sources = input.names()?;
    for (names, interner) in [(&iccs, &mut fold.iccs), (&sources, &mut fold.sources)] {
        for (i, name) in names.iter().enumerate() {
            // Cells name codes by position: a name listed twice would shift the others.
            if interner.id(name) as usize != i {
                return Err(format("a name is listed twice"));
            }
        }
    }
    let cells = input.u64()?;
    for _ in 0..cells {
        let bytes: [u8; CELL_BYTES] = input.exact()?;
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let cell = Cell {
            month: u32_at(0),
            departement: u16::from_le_bytes([bytes[4], bytes[5]]),
            iccs: u32_at(6),
            cyber: bytes[10] != 0,
            victim_type: *VictimType::ALL
                .get(usize::from(bytes[11]))
                .ok_or_else(|| format("a cell's victim type is unknown"))?,
            channel: *Channel::ALL
                .get(usize::from(bytes[12]))
                .ok_or_else(|| format("a cell's channel is unknown"))?,
            source: u32_at(13),
            unit: unit_of(bytes[17]).ok_or_else(|| format("a cell's unit is unknown"))?,
        };
        if cell.iccs as usize >= iccs.len() || cell.source as usize >= sources.len() {
            return Err(format("a cell names an ICCS code or source the image does not list"));
        }
        let tally = Tally { count: i64_at(18), loss_cents: i64_at(26), key_sum: i64_at(34) };
        fold.load_cell(cell, tally).map_err(|()| format("a cell is listed twice"))?;
    }
    let incidents = input.u64()?;
    fold.reserve_incidents(usize::try_from(incidents).map_err(|_| format("too many incidents"))?);
    for _ in 0..incidents {
        let bytes: [u8; INCIDENT_BYTES] = input.exact()?;
        let key = u128::from_le_bytes(bytes[..16].try_into().unwrap());
        let revision = u32::from_le_bytes(bytes[16..20].try_into().unwrap());
        let cell = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
        let loss_and_key = i64::from_le_bytes(bytes[24..32].try_into().unwrap());
        let state = IncidentState::from_parts(revision, cell, loss_and_key);
        if state.cell().is_some_and(|c| c as u64 >= cells) {
            return Err(format("an incident names a cell the image does not list"));
        }
        fold.load_incident(key, state);
    }
    let expected = input.hasher.digest();
    let mut trailer = [0u8; 8];
    input.inner.read_exact(&mut trailer)?;
    if u64::from_le_bytes(trailer) != expected {
        return Err(format("its checksum does not match its contents"));
    }
    if input.inner.read(&mut [0u8; 1])? != 0 {
        return Err(format("bytes follow its checksum"));
    }
    if fold.incident_count() as u64 != incidents {
        return Err(format("an incident is listed twice"));
    }
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use observatory_disclosure::RecordKeys;

    use super::*;
    use crate::incidents::tests::report;

    fn folded() -> Fold {
        let keys = RecordKeys::new(&[7; 32]).unwrap();
        let mut fold = Fold::with_crosswalks(&BTreeMap::new(), Some(keys)).unwrap();
        for id in 0..5_000u32 {
            fold.apply(
                u64::from(id) + 1,
                if id % 3 == 0 { "gn" } else { "pn" },
                report(id, 1, 1 + id % 12),
            );
        }
        for id in (0..5_000u32).step_by(11) {
            fold.apply(u64::from(id) + 10_000, "pn", report(id, 2, 12 - id % 12));
        }
        fold
    }

    fn image(fold: &Fold, limit: usize) -> Vec<u8> {
        let mut writer = ImageWriter::new(fold, 42);
        let mut out = Vec::new();
        while writer.fill(&mut out, limit) {}
        out
    }

    fn summary(fold: &Fold) -> (usize, i64, Vec<(Cell, Tally)>) {
        let cells = fold.years().into_iter().flat_map(|y| fold.totals_of_year(y)).collect();
        (fold.incident_count(), fold.counted_incidents(), cells)
    }

    #[test]
    fn an_image_loads_back_into_the_same_fold_whatever_the_piece_size() {
        let fold = folded();
        let whole = image(&fold, usize::MAX);
        assert_eq!(image(&fold, 1), whole);
        assert_eq!(image(&fold, 4096), whole);
        let mut loaded = Fold::with_crosswalks(&BTreeMap::new(), None).unwrap();
        assert_eq!(load(&mut loaded, whole.as_slice()).unwrap(), 42);
        assert_eq!(summary(&loaded), summary(&fold));
        // The loaded fold goes on like the original once flushed: a new revision moves the
        // same count, and the next flush has the same deltas (the image's totals are flushed).
        let mut original = folded();
        original.take_pending();
        for fold in [&mut original, &mut loaded] {
            fold.apply(20_000, "pn", report(7, 5, 3));
            fold.apply(20_001, "pn", report(8, 1, 3));
        }
        assert_eq!(summary(&loaded), summary(&original));
        let deltas = |fold: &mut Fold| fold.take_pending().unwrap().deltas;
        let expected = deltas(&mut original);
        assert_eq!(expected.len(), 2, "{expected:?}");
        assert_eq!(deltas(&mut loaded), expected);
    }

    #[test]
    fn a_damaged_or_truncated_image_is_refused() {
        let whole = image(&folded(), usize::MAX);
        let load_of = |bytes: &[u8]| {
            let mut fold = Fold::new();
            load(&mut fold, bytes).map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(load_of(&whole).is_ok());
        assert!(load_of(&whole[..whole.len() - 1]).is_err());
        assert!(load_of(&whole[..whole.len() / 2]).is_err());
        let mut flipped = whole.clone();
        // A bit of the last incident's key: every field still reads, the checksum does not.
        flipped[whole.len() - 8 - INCIDENT_BYTES] ^= 1;
        assert!(load_of(&flipped).unwrap_err().contains("checksum"));
        let mut longer = whole.clone();
        longer.push(0);
        assert!(load_of(&longer).unwrap_err().contains("follow"));
        assert!(load_of(b"PAR1 is not an image").unwrap_err().contains("OBSFOLD1"));
    }
}
