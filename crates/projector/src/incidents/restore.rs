//! Restoring the fold from the committed state files, on restart, at the speed of reading
//! them: what a projector does before it folds its first new event.
//!
//! The state table holds every incident's last record (a sealed rebuild's files hold each
//! incident once; later flushes add newer revisions). The fold needs only its cell, loss,
//! record key and revision, so a restore reads just those columns ([`COLUMNS`]), decodes each
//! batch into compact rows ([`decode`]) on a blocking thread while the fold takes the previous
//! batch on the projector's own ([`Fold::restore`](super::fold::Fold::restore)): the two
//! halves of the work run on two cores, and no `String` is made per row.

use arrow::array::{
    Array, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray, UInt8Array,
    UInt32Array,
};
use observatory_model::{Channel, Unit, VictimType, departement_index, incident_hash};
use observatory_store::layout::state;

use super::fold::{Cell, CodedBy, FastMap, NO_DEPARTEMENT, Pins, loss_cents, month_index};
use super::tables::{TableError, column, from_days};

/// The state columns a restore reads (not the sequence, end date or reporting date).
pub const COLUMNS: &[&str] = &[
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

/// Names numbered in order of first appearance in one batch.
#[derive(Default)]
struct Local {
    ids: FastMap<String, u32>,
    names: Vec<String>,
}

impl Local {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }
}

/// Decodes a batch of the state table (at least [`COLUMNS`]) into the rows a restore folds,
/// coding each record under the projection's pinned crosswalk versions.
pub fn decode(batch: &RecordBatch, pins: &Pins) -> Result<RestoreBatch, TableError> {
    let source = column::<StringArray>(batch, state::SOURCE)?;
    let id = column::<StringArray>(batch, state::AGENCY_INCIDENT_ID)?;
    let revision = column::<UInt32Array>(batch, state::REVISION)?;
    let withdrawn = column::<BooleanArray>(batch, state::WITHDRAWN)?;
    let record_key = column::<UInt8Array>(batch, state::RECORD_KEY)?;
    let occurred_on = column::<Date32Array>(batch, state::OCCURRED_ON)?;
    let iccs = column::<StringArray>(batch, state::ICCS)?;
    let offence_code = column::<StringArray>(batch, state::OFFENCE_CODE)?;
    let cyber = column::<BooleanArray>(batch, state::CYBER)?;
    let departement = column::<StringArray>(batch, state::DEPARTEMENT)?;
    let victim_type = column::<StringArray>(batch, state::VICTIM_TYPE)?;
    let channel = column::<StringArray>(batch, state::CHANNEL)?;
    let loss = column::<Float64Array>(batch, state::LOSS_EUR)?;
    let unit = column::<StringArray>(batch, state::UNIT)?;
    let crosswalk = column::<StringArray>(batch, state::CROSSWALK)?;
    let crosswalk_version = column::<UInt32Array>(batch, state::CROSSWALK_VERSION)?;
    let iccs_from = column::<BooleanArray>(batch, state::ICCS_FROM_CROSSWALK)?;
    let cyber_from = column::<BooleanArray>(batch, state::CYBER_FROM_CROSSWALK)?;
    let mut iccs_names = Local::default();
    let mut source_names = Local::default();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let source_name = source.value(i);
        let placed = if withdrawn.value(i) {
            None
        } else {
            let coded_by = (!crosswalk.is_null(i)).then(|| CodedBy {
                crosswalk: crosswalk.value(i),
                version: crosswalk_version.value(i),
                iccs_from_crosswalk: iccs_from.value(i),
                cyber_from_crosswalk: cyber_from.value(i),
            });
            let unit = match unit.value(i) {
                "offence" => Unit::Offence,
                "victim" => Unit::Victim,
                "report" => Unit::Report,
                other => return Err(TableError::new(format!("unknown unit {other}"))),
            };
            let (code, cyber, unit) = pins.coding(
                iccs.value(i),
                cyber.value(i),
                unit,
                (!offence_code.is_null(i)).then(|| offence_code.value(i)),
                coded_by,
            );
            let cell = Cell {
                month: month_index(from_days(occurred_on.value(i))),
                departement: if departement.is_null(i) {
                    NO_DEPARTEMENT
                } else {
                    departement_index(departement.value(i)).map_or(NO_DEPARTEMENT, |d| d as u16)
                },
                iccs: iccs_names.id(&code),
                cyber,
                victim_type: VictimType::parse(victim_type.value(i)).ok_or_else(|| {
                    TableError::new(format!("unknown victim_type {}", victim_type.value(i)))
                })?,
                channel: Channel::parse(channel.value(i)).ok_or_else(|| {
                    TableError::new(format!("unknown channel {}", channel.value(i)))
                })?,
                source: source_names.id(source_name),
                unit,
            };
            let loss = loss_cents((!loss.is_null(i)).then(|| loss.value(i)));
            Some((cell, loss))
        };
        rows.push(RestoreRow {
            key: incident_hash(source_name, id.value(i)),
            revision: revision.value(i),
            record_key: record_key.value(i),
            placed,
        });
    }
    Ok(RestoreBatch { iccs: iccs_names.names, sources: source_names.names, rows })
}
