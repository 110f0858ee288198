//! The pure fold of incident events into (a) the current state of every incident and
//! (b) counts at the aggregate grain. No IO: events in, deltas and snapshots out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use chrono::{Datelike, NaiveDate};
use observatory_disclosure::RecordKeys;
use observatory_model::{
    Channel, DEPARTEMENTS, Event, IncidentReported, PeriodClosed, Unit, VictimType,
    departement_index, incident_hash,
};
use observatory_reference::{Crosswalk, Crosswalks};

use super::index::IncidentIndex;
use super::restore::RestoreBatch;
use super::tables::StateBuilder;

/// One cell of the aggregate grain: (month of occurrence, département, ICCS, cyber,
/// victim type, channel, source). Strings are interned so a cell is a small `Copy` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// yyyy * 12 + (month - 1): sorts and buckets by year cheaply.
    pub month: u32,
    /// Index into [`DEPARTEMENTS`]; `NO_DEPARTEMENT` when unknown.
    pub departement: u16,
    pub iccs: u32,
    pub cyber: bool,
    pub victim_type: VictimType,
    pub channel: Channel,
    pub source: u32,
    pub unit: Unit,
}

pub const NO_DEPARTEMENT: u16 = u16::MAX;

impl Cell {
    pub fn year(&self) -> i32 {
        (self.month / 12) as i32
    }

    pub fn month_label(&self) -> String {
        format!("{:04}-{:02}", self.month / 12, self.month % 12 + 1)
    }
}

pub fn month_index(date: NaiveDate) -> u32 {
    date.year() as u32 * 12 + date.month0()
}

/// Count, loss (in cents, so sums are exact and a rebuild equals the incremental result) and
/// the sum of the record keys of the incidents counted (what the cell key of any aggregate
/// containing the cell is computed from).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub loss_cents: i64,
    pub key_sum: i64,
}

impl Tally {
    /// Wrapping: deltas net exactly modulo 2^64, so a total that fits in i64 is exact whatever
    /// the order of its terms. Per-record losses are bounded at ingest
    /// (`observatory_model::MAX_LOSS_EUR`), and the query refuses totals that do not fit.
    fn add(&mut self, sign: i64, loss_cents: i64, record_key: u8) {
        self.count = self.count.wrapping_add(sign);
        self.loss_cents = self.loss_cents.wrapping_add(sign.wrapping_mul(loss_cents));
        self.key_sum = self.key_sum.wrapping_add(sign * i64::from(record_key));
    }

    /// What was added since `before` (wrapping, as the additions were).
    fn since(&self, before: &Tally) -> Tally {
        Tally {
            count: self.count.wrapping_sub(before.count),
            loss_cents: self.loss_cents.wrapping_sub(before.loss_cents),
            key_sum: self.key_sum.wrapping_sub(before.key_sum),
        }
    }

    /// A delta that changes nothing. (Two incidents swapping cells net a count of 0 but move
    /// their keys: that delta is not zero.)
    pub fn is_zero(&self) -> bool {
        self.count == 0 && self.loss_cents == 0 && self.key_sum == 0
    }
}

/// What the fold keeps per incident: enough to decide on the next revision and to move its
/// count and key. The full record goes to the state table, not to memory. 16 bytes: the fold
/// holds one per incident ever reported, tens of millions in a national history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentState {
    pub revision: u32,
    /// Index of its cell in the fold's cell table; [`WITHDRAWN`] while withdrawn.
    cell: u32,
    /// The loss in cents shifted left 8 bits, and the record key in the low 8 bits: losses are
    /// bounded at ingest far below 2^55 cents, so both fit where the loss alone was.
    loss_and_key: i64,
}

const WITHDRAWN: u32 = u32::MAX;

impl IncidentState {
    pub(super) fn new(revision: u32, cell: u32, loss_cents: i64, record_key: u8) -> IncidentState {
        IncidentState { revision, cell, loss_and_key: (loss_cents << 8) | i64::from(record_key) }
    }

    pub(super) fn cell(&self) -> Option<u32> {
        (self.cell != WITHDRAWN).then_some(self.cell)
    }

    /// Revision, cell number and packed loss and key, as the fold image stores them.
    pub(super) fn parts(&self) -> (u32, u32, i64) {
        (self.revision, self.cell, self.loss_and_key)
    }

    pub(super) fn from_parts(revision: u32, cell: u32, loss_and_key: i64) -> IncidentState {
        IncidentState { revision, cell, loss_and_key }
    }

    pub fn loss_cents(&self) -> i64 {
        self.loss_and_key >> 8
    }

    pub fn record_key(&self) -> u8 {
        (self.loss_and_key & 0xff) as u8
    }
}

/// How one event changed the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new incident, or a higher revision that replaced the previous one.
    Applied,
    /// The same revision again: changes nothing.
    Duplicate,
    /// A lower revision arriving after a higher one: changes nothing.
    Stale,
}

/// A changed incident, as it goes to the state table: what tests read a state batch back into
/// (a restart reads only what the fold keeps, `restore::decode`).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub source: String,
    pub agency_incident_id: String,
    pub revision: u32,
    pub sequence: u64,
    pub record_key: u8,
    /// `None` for a withdrawn incident.
    pub report: Option<IncidentReported>,
}

#[derive(Default)]
pub struct Interner {
    ids: FastMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Every name, in the order of their ids.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

pub fn loss_cents(loss_eur: Option<f64>) -> i64 {
    loss_eur.map_or(0, |euros| (euros * 100.0).round() as i64)
}

/// Which departements of a month a source has closed; `None` means all of them.
pub type Closure = Option<BTreeSet<String>>;

/// How the ingest coded a record: which crosswalk version, and which of its codes it derived.
#[derive(Debug, Clone, Copy)]
pub struct CodedBy<'a> {
    pub crosswalk: &'a str,
    pub version: u32,
    pub iccs_from_crosswalk: bool,
    pub cyber_from_crosswalk: bool,
}

/// The crosswalk versions a projection codes with (pinned when its version is created).
#[derive(Debug, Clone, Default)]
pub struct Pins(BTreeMap<String, &'static Crosswalk>);

impl Pins {
    /// ICCS code, cyber flag and unit of a record under these versions: what the agency sent
    /// stays; what the ingest derived from `offence_code` is derived again with the pinned
    /// version, so a rebuild re-maps the whole history.
    pub fn coding<'a>(
        &self,
        iccs: &'a str,
        cyber: bool,
        unit: Unit,
        offence_code: Option<&str>,
        coded_by: Option<CodedBy<'_>>,
    ) -> (std::borrow::Cow<'a, str>, bool, Unit) {
        let remapped = coded_by.and_then(|coding| {
            let pinned = self.0.get(coding.crosswalk)?;
            if pinned.version == coding.version {
                return None;
            }
            let mapping = pinned.map(offence_code?).ok()?;
            let iccs =
                if coding.iccs_from_crosswalk { mapping.iccs.clone().into() } else { iccs.into() };
            let cyber = if coding.cyber_from_crosswalk { mapping.cyber } else { cyber };
            Some((iccs, cyber, mapping.unit))
        });
        remapped.unwrap_or((iccs.into(), cyber, unit))
    }
}

/// The per-event maps, keyed by 128-bit incident hashes and small `Copy` cells: SipHash cost
/// about a tenth of a rebuild; foldhash is several times cheaper and still randomly seeded.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Cell numbers, hashed by the cell they number in the fold's list of cells.
#[derive(Default)]
struct CellIds {
    table: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl CellIds {
    fn entry<'a>(
        &'a mut self,
        slots: &[Slot],
        cell: Cell,
    ) -> hashbrown::hash_table::Entry<'a, u32> {
        let hasher = &self.hasher;
        self.table.entry(
            hasher.hash_one(cell),
            |&id| slots[id as usize].cell == cell,
            |&id| hasher.hash_one(slots[id as usize].cell),
        )
    }
}

/// A cell, its totals and whether the next flush has it pending, side by side in one list
/// that cannot fall out of step. An event reads all three of the cell it counts in, from one
/// or two cache lines where three lists took three (a gain inside the noise of the fold timed
/// alone: BENCHMARKS.md, eighteenth steps).
#[derive(Clone, Copy)]
pub(super) struct Slot {
    pub(super) total: Tally,
    pub(super) cell: Cell,
    touched: bool,
}

#[derive(Default)]
pub struct Fold {
    /// The deployment's record keys; `None` keys every record 0 (a projection without
    /// disclosure control, which the query refuses to publish from).
    record_keys: Option<RecordKeys>,
    pins: Pins,
    coverage: BTreeMap<(String, String), Closure>,
    coverage_changed: bool,
    pub(super) incidents: IncidentIndex,
    /// Every cell seen, numbered in order of appearance, with its totals. The table of
    /// numbers holds only the number: a cell is hashed and compared where it is listed, in
    /// `slots` (4 bytes a cell where a map of cells took 24).
    cell_ids: CellIds,
    pub(super) slots: Vec<Slot>,
    pub(super) iccs: Interner,
    pub(super) sources: Interner,
    /// The cells changed since the last flush, each once with its totals before the first
    /// change: a flush's delta of a cell is its total less that. (No hash per event, and
    /// memory for the changed cells only: a per-cell delta map cost a lookup per event and
    /// 69 MB at 1.5M cells.)
    touched: Vec<(u32, Tally)>,
    /// Since the last flush: a state row per applied change in
    /// sequence order (an incident changed twice has two rows; the newer one wins on restore
    /// and in compaction).
    changed: StateBuilder,
    first_pending: Option<u64>,
    last_applied: u64,
    pub events_applied: u64,
    pub events_ignored: u64,
}

impl Fold {
    pub fn new() -> Fold {
        Fold::default()
    }

    /// A fold that re-maps agency codes with the given crosswalk versions (name → version).
    pub fn with_crosswalks(
        pins: &BTreeMap<String, u32>,
        record_keys: Option<RecordKeys>,
    ) -> Result<Fold, observatory_reference::ReferenceError> {
        let mut fold = Fold { record_keys, ..Fold::new() };
        for (name, version) in pins {
            fold.pins.0.insert(name.clone(), Crosswalks::builtin().resolve(name, Some(*version))?);
        }
        Ok(fold)
    }

    fn coding_of<'a>(
        &self,
        report: &'a IncidentReported,
    ) -> (std::borrow::Cow<'a, str>, bool, Unit) {
        let coded_by = report.coding.as_ref().map(|c| CodedBy {
            crosswalk: &c.crosswalk,
            version: c.version,
            iccs_from_crosswalk: c.iccs_from_crosswalk,
            cyber_from_crosswalk: c.cyber_from_crosswalk,
        });
        self.pins.coding(
            &report.iccs,
            report.cyber,
            report.unit,
            report.offence_code.as_deref(),
            coded_by,
        )
    }

    pub fn cell_of(&mut self, source: &str, report: &IncidentReported) -> Cell {
        let (iccs, cyber, unit) = self.coding_of(report);
        Cell {
            month: month_index(report.occurred_on),
            departement: report
                .departement
                .as_deref()
                .and_then(departement_index)
                .map_or(NO_DEPARTEMENT, |i| i as u16),
            iccs: self.iccs.id(&iccs),
            cyber,
            victim_type: report.victim_type,
            channel: report.channel,
            source: self.sources.id(source),
            unit,
        }
    }

    fn close_period(&mut self, source: &str, closed: &PeriodClosed) {
        let entry = self
            .coverage
            .entry((source.to_owned(), closed.month.clone()))
            .or_insert_with(|| Some(BTreeSet::new()));
        match (&closed.departements, entry.as_mut()) {
            (None, _) => *entry = None,
            (Some(listed), Some(set)) => set.extend(listed.iter().cloned()),
            (Some(_), None) => {}
        }
        self.coverage_changed = true;
    }

    /// Restores one closure row (on restart).
    pub fn restore_closure(&mut self, source: &str, month: &str, departement: Option<&str>) {
        let closed = PeriodClosed {
            month: month.to_owned(),
            departements: departement.map(|d| vec![d.to_owned()]),
        };
        self.close_period(source, &closed);
        self.coverage_changed = false;
    }

    /// Every closure: (source, month) → closed départements (`None` = all).
    pub fn coverage(&self) -> &BTreeMap<(String, String), Closure> {
        &self.coverage
    }

    /// Crosswalk versions in force for this fold.
    pub fn crosswalk_versions(&self) -> BTreeMap<String, u32> {
        self.pins.0.iter().map(|(name, c)| (name.clone(), c.version)).collect()
    }

    pub fn departement_code(&self, cell: &Cell) -> Option<&'static str> {
        (cell.departement != NO_DEPARTEMENT).then(|| DEPARTEMENTS[cell.departement as usize])
    }

    pub fn iccs_code(&self, cell: &Cell) -> &str {
        self.iccs.name(cell.iccs)
    }

    pub fn source_name(&self, cell: &Cell) -> &str {
        self.sources.name(cell.source)
    }

    /// Applies the event at stream position `sequence`. Sequences at or below the last
    /// applied one are redeliveries and are ignored.
    pub fn apply(&mut self, sequence: u64, source: &str, event: Event) -> Outcome {
        if sequence <= self.last_applied {
            return Outcome::Duplicate;
        }
        self.last_applied = sequence;
        self.first_pending.get_or_insert(sequence);
        let (agency_incident_id, revision, report) = match &event {
            Event::IncidentReported(report) => {
                (report.agency_incident_id.as_str(), report.revision, Some(report))
            }
            Event::IncidentWithdrawn(withdrawn) => {
                (withdrawn.agency_incident_id.as_str(), withdrawn.revision, None)
            }
            Event::PeriodClosed(closed) => {
                self.close_period(source, closed);
                self.events_applied += 1;
                return Outcome::Applied;
            }
        };
        let key = incident_hash(source, agency_incident_id);
        let previous = self.incidents.get(key);
        // The record key is computed once per incident and then kept: it never changes.
        let record_key = match previous {
            Some(previous) => previous.record_key(),
            None => self.record_key(source, agency_incident_id),
        };
        if let Some(previous) = previous {
            if revision <= previous.revision {
                self.events_ignored += 1;
                return if revision == previous.revision {
                    Outcome::Duplicate
                } else {
                    Outcome::Stale
                };
            }
            if let Some(old_cell) = previous.cell() {
                self.move_count(old_cell, -1, previous.loss_cents(), record_key);
            }
        }
        let (cell, loss) = match report {
            Some(report) => {
                let cell = self.cell_of(source, report);
                let cell = self.cell_id(cell);
                let loss = loss_cents(report.loss_eur);
                self.move_count(cell, 1, loss, record_key);
                (cell, loss)
            }
            None => (WITHDRAWN, 0),
        };
        self.incidents.insert(key, IncidentState::new(revision, cell, loss, record_key));
        self.changed.append(source, agency_incident_id, revision, sequence, record_key, report);
        self.events_applied += 1;
        Outcome::Applied
    }

    /// The number of `cell` in the cell table, adding it if new.
    fn cell_id(&mut self, cell: Cell) -> u32 {
        match self.cell_ids.entry(&self.slots, cell) {
            hashbrown::hash_table::Entry::Occupied(entry) => *entry.get(),
            hashbrown::hash_table::Entry::Vacant(entry) => {
                let id = self.slots.len() as u32;
                entry.insert(id);
                self.slots.push(Slot { total: Tally::default(), cell, touched: false });
                id
            }
        }
    }

    /// A count restored from what is committed: flushed already, so not a delta.
    fn restore_count(&mut self, cell: u32, sign: i64, loss_cents: i64, record_key: u8) {
        let slot = &mut self.slots[cell as usize];
        debug_assert!(!slot.touched, "a restore comes before any event");
        slot.total.add(sign, loss_cents, record_key);
    }

    fn record_key(&self, source: &str, agency_incident_id: &str) -> u8 {
        self.record_keys.as_ref().map_or(0, |keys| keys.key(source, agency_incident_id))
    }

    fn move_count(&mut self, cell: u32, sign: i64, loss_cents: i64, record_key: u8) {
        let slot = &mut self.slots[cell as usize];
        if !slot.touched {
            slot.touched = true;
            self.touched.push((cell, slot.total));
        }
        slot.total.add(sign, loss_cents, record_key);
    }

    /// Restores incidents from the state table (on restart). Rows may come in any order: the
    /// highest revision of an incident wins, and totals are derived from what is kept.
    pub fn restore(&mut self, batch: &RestoreBatch) {
        let iccs: Vec<u32> = batch.iccs.iter().map(|name| self.iccs.id(name)).collect();
        let sources: Vec<u32> = batch.sources.iter().map(|name| self.sources.id(name)).collect();
        for row in &batch.rows {
            if let Some(existing) = self.incidents.get(row.key) {
                if existing.revision >= row.revision {
                    continue;
                }
                if let Some(cell) = existing.cell() {
                    self.restore_count(cell, -1, existing.loss_cents(), existing.record_key());
                }
            }
            let (cell, loss) = match row.placed {
                Some((cell, loss)) => {
                    let cell = Cell {
                        iccs: iccs[cell.iccs as usize],
                        source: sources[cell.source as usize],
                        ..cell
                    };
                    let cell = self.cell_id(cell);
                    self.restore_count(cell, 1, loss, row.record_key);
                    (cell, loss)
                }
                None => (WITHDRAWN, 0),
            };
            self.incidents
                .insert(row.key, IncidentState::new(row.revision, cell, loss, row.record_key));
        }
    }

    /// Adds a cell with its totals, as a fold image lists them (numbered in that order);
    /// `Err` if the cell is there already.
    pub(super) fn load_cell(&mut self, cell: Cell, tally: Tally) -> Result<(), ()> {
        let id = self.slots.len() as u32;
        match self.cell_ids.entry(&self.slots, cell) {
            hashbrown::hash_table::Entry::Occupied(_) => return Err(()),
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert(id);
            }
        }
        self.slots.push(Slot { total: tally, cell, touched: false });
        Ok(())
    }

    /// Adds an incident as a fold image lists it.
    pub(super) fn load_incident(&mut self, key: u128, state: IncidentState) {
        self.incidents.insert(key, state);
    }

    /// What a restore decodes with: the crosswalk versions pinned.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Marks everything up to `sequence` as applied (the restored manifest's position).
    pub fn set_position(&mut self, sequence: u64) {
        self.last_applied = sequence;
    }

    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// The state rows appended since the last flush or take, as a batch (the flush in
    /// progress goes on: its first sequence and count deltas stay pending).
    pub fn take_changed(&mut self) -> arrow::array::RecordBatch {
        self.changed.finish()
    }

    pub fn has_pending(&self) -> bool {
        self.first_pending.is_some()
    }

    pub fn pending_events(&self) -> usize {
        self.changed.len()
    }

    /// Takes the changes since the last flush: the first sequence they cover, the count
    /// deltas (zero cells dropped) and the changed incidents sorted by sequence.
    pub fn take_pending(&mut self) -> Option<Pending> {
        let first_sequence = self.first_pending.take()?;
        let mut deltas = Vec::with_capacity(self.touched.len());
        for (id, before) in self.touched.drain(..) {
            let slot = &mut self.slots[id as usize];
            slot.touched = false;
            let delta = slot.total.since(&before);
            if !delta.is_zero() {
                deltas.push((slot.cell, delta));
            }
        }
        deltas.sort_unstable_by_key(|(cell, _)| *cell);
        let changed = self.changed.finish();
        let coverage_changed = std::mem::take(&mut self.coverage_changed);
        Some(Pending {
            first_sequence,
            last_sequence: self.last_applied,
            deltas,
            changed,
            coverage_changed,
        })
    }

    fn cells(&self) -> impl Iterator<Item = (Cell, Tally)> + '_ {
        self.slots.iter().map(|slot| (slot.cell, slot.total))
    }

    /// Current totals of one year, non-zero cells only, sorted.
    pub fn totals_of_year(&self, year: i32) -> Vec<(Cell, Tally)> {
        let mut cells: Vec<(Cell, Tally)> =
            self.cells().filter(|(c, t)| c.year() == year && !t.is_zero()).collect();
        cells.sort_unstable_by_key(|(cell, _)| *cell);
        cells
    }

    /// Years with at least one non-zero cell.
    pub fn years(&self) -> Vec<i32> {
        let mut years: Vec<i32> =
            self.cells().filter(|(_, t)| !t.is_zero()).map(|(c, _)| c.year()).collect();
        years.sort_unstable();
        years.dedup();
        years
    }

    /// Room for `additional` more incidents (a replay knows how many events are coming).
    pub fn reserve_incidents(&mut self, additional: usize) {
        self.incidents.reserve(additional);
    }

    /// Incidents the index holds before it grows.
    pub fn incident_capacity(&self) -> usize {
        self.incidents.capacity()
    }

    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }

    pub fn counted_incidents(&self) -> i64 {
        self.slots.iter().map(|slot| slot.total.count).sum()
    }
}

/// The changes one flush writes.
pub struct Pending {
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub deltas: Vec<(Cell, Tally)>,
    /// State rows of the changed incidents (see [`crate::incidents::tables::state_schema`]).
    pub changed: arrow::array::RecordBatch,
    /// The coverage table changed: write a new snapshot of it.
    pub coverage_changed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_model::IncidentWithdrawn;

    fn report(id: &str, revision: u32, month: u32, dep: &str, loss: Option<f64>) -> Event {
        Event::IncidentReported(IncidentReported {
            agency_incident_id: id.into(),
            revision,
            occurred_on: NaiveDate::from_ymd_opt(2024, month, 5).unwrap(),
            occurred_until: None,
            reported_on: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            iccs: "0903".into(),
            offence_code: None,
            cyber: true,
            departement: Some(dep.into()),
            victim_type: VictimType::Individual,
            channel: Channel::Email,
            loss_eur: loss,
            unit: Unit::Offence,
            coding: None,
        })
    }

    fn withdraw(id: &str, revision: u32) -> Event {
        Event::IncidentWithdrawn(IncidentWithdrawn {
            agency_incident_id: id.into(),
            revision,
            reason: None,
        })
    }

    fn counts(fold: &Fold) -> Vec<(String, String, i64, i64)> {
        let mut rows: Vec<_> = fold
            .years()
            .into_iter()
            .flat_map(|y| fold.totals_of_year(y))
            .map(|(c, t)| {
                (
                    c.month_label(),
                    fold.departement_code(&c).unwrap().to_owned(),
                    t.count,
                    t.loss_cents,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn amendment_moves_the_count_and_lower_revisions_change_nothing() {
        let mut fold = Fold::new();
        assert_eq!(fold.apply(1, "pn", report("A", 1, 3, "75", Some(10.5))), Outcome::Applied);
        assert_eq!(fold.apply(2, "pn", report("A", 3, 4, "92", Some(20.0))), Outcome::Applied);
        assert_eq!(fold.apply(3, "pn", report("A", 2, 5, "13", None)), Outcome::Stale);
        assert_eq!(fold.apply(4, "pn", report("A", 3, 4, "92", Some(20.0))), Outcome::Duplicate);
        assert_eq!(counts(&fold), vec![("2024-04".into(), "92".into(), 1, 2000)]);
    }

    /// A cell's key sum is the sum of the keys of the incidents it counts now: an amendment
    /// moves the key with the count, a withdrawal removes it, and the flushed deltas add up to
    /// the totals (what the query nets).
    #[test]
    fn record_keys_move_with_their_incident() {
        let keys = RecordKeys::new(&[1; 32]).unwrap();
        let mut fold = Fold::with_crosswalks(&BTreeMap::new(), Some(keys.clone())).unwrap();
        let key = |id: &str| i64::from(keys.key("pn", id));
        let mut netted: HashMap<Cell, Tally> = HashMap::new();
        let mut flush = |fold: &mut Fold| {
            for (cell, delta) in fold.take_pending().map(|p| p.deltas).unwrap_or_default() {
                let total = netted.entry(cell).or_default();
                total.count += delta.count;
                total.loss_cents += delta.loss_cents;
                total.key_sum += delta.key_sum;
            }
            let mut live: Vec<(Cell, Tally)> =
                netted.iter().filter(|(_, t)| !t.is_zero()).map(|(c, t)| (*c, *t)).collect();
            live.sort_unstable_by_key(|(c, _)| *c);
            live
        };
        fold.apply(1, "pn", report("A", 1, 3, "75", None));
        fold.apply(2, "pn", report("B", 1, 3, "75", None));
        fold.apply(3, "pn", report("C", 1, 4, "75", None));
        let sums = |fold: &Fold| -> Vec<(String, i64, i64)> {
            fold.totals_of_year(2024)
                .iter()
                .map(|(c, t)| (c.month_label(), t.count, t.key_sum))
                .collect()
        };
        assert_eq!(
            sums(&fold),
            vec![("2024-03".into(), 2, key("A") + key("B")), ("2024-04".into(), 1, key("C"))]
        );
        assert_eq!(flush(&mut fold), fold.totals_of_year(2024));
        // A moves to April and C moves to March in one flush: March still counts 2 and April 1,
        // but the keys have moved (a zero count delta that is not a zero delta).
        fold.apply(4, "pn", report("A", 2, 4, "75", None));
        fold.apply(5, "pn", report("C", 2, 3, "75", None));
        assert_eq!(
            sums(&fold),
            vec![("2024-03".into(), 2, key("B") + key("C")), ("2024-04".into(), 1, key("A"))]
        );
        assert_eq!(flush(&mut fold), fold.totals_of_year(2024));
        fold.apply(6, "pn", withdraw("B", 2));
        assert_eq!(
            sums(&fold),
            vec![("2024-03".into(), 1, key("C")), ("2024-04".into(), 1, key("A"))]
        );
        assert_eq!(flush(&mut fold), fold.totals_of_year(2024));
        // The packed loss survives beside the key.
        fold.apply(7, "pn", report("D", 1, 5, "75", Some(123_456_789.01)));
        let d = fold.incidents.get(incident_hash("pn", "D")).unwrap();
        assert_eq!((d.loss_cents(), i64::from(d.record_key())), (12_345_678_901, key("D")));
    }

    #[test]
    fn withdrawal_stops_counting_until_a_later_revision() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", report("A", 1, 3, "75", None));
        fold.apply(2, "pn", withdraw("A", 2));
        assert!(counts(&fold).is_empty());
        fold.apply(3, "pn", report("A", 2, 3, "75", None));
        assert!(counts(&fold).is_empty(), "revision 2 was the withdrawal");
        fold.apply(4, "pn", report("A", 3, 6, "75", None));
        assert_eq!(counts(&fold), vec![("2024-06".into(), "75".into(), 1, 0)]);
    }

    #[test]
    fn incident_state_stays_small() {
        // The fold holds one per incident: its size is the projector's memory per incident.
        assert_eq!(std::mem::size_of::<IncidentState>(), 16);
    }

    #[test]
    fn the_same_incident_id_from_two_sources_is_two_incidents() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", report("A", 1, 3, "75", None));
        fold.apply(2, "gn", report("A", 1, 3, "75", None));
        assert_eq!(fold.counted_incidents(), 2);
    }

    #[test]
    fn restore_from_state_rows_gives_the_same_totals() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", report("A", 1, 3, "75", Some(1.0)));
        fold.apply(2, "pn", report("B", 1, 3, "75", Some(2.0)));
        fold.apply(3, "pn", report("A", 2, 7, "2A", Some(3.0)));
        fold.apply(4, "pn", withdraw("B", 2));
        let pending = fold.take_pending().unwrap();
        assert_eq!((pending.first_sequence, pending.last_sequence), (1, 4));
        let mut restored = Fold::new();
        // Older rows of the same incident may come in any order: the revision decides.
        let mut batch =
            super::super::restore::decode(&pending.changed, restored.pins(), 0).unwrap();
        batch.rows.reverse();
        restored.restore(&batch);
        assert_eq!(counts(&restored), counts(&fold));
        // The pending deltas of the flush net out to the totals.
        let delta_total: i64 = pending.deltas.iter().map(|(_, t)| t.count).sum();
        assert_eq!(delta_total, 1);
    }

    #[test]
    fn pinned_crosswalk_versions_remap_derived_codes_only() {
        let coded = |iccs_from_crosswalk| {
            let Event::IncidentReported(mut r) = report("A", 1, 3, "75", None) else {
                unreachable!()
            };
            r.offence_code = Some("323-2".into());
            r.iccs = "09032".into();
            r.coding = Some(observatory_model::Coding {
                crosswalk: "natinf".into(),
                version: 1,
                iccs_from_crosswalk,
                cyber_from_crosswalk: false,
            });
            r
        };
        let v1 = Fold::with_crosswalks(&[("natinf".to_owned(), 1)].into(), None).unwrap();
        let v2 = Fold::with_crosswalks(&[("natinf".to_owned(), 2)].into(), None).unwrap();
        assert_eq!(v1.coding_of(&coded(true)).0, "09032");
        let remapped = v2.coding_of(&coded(true)).0.into_owned();
        assert_ne!(remapped, "09032", "natinf v2 maps 323-2 to a more specific class");
        assert!(remapped.starts_with("09032"));
        assert_eq!(v2.coding_of(&coded(false)).0, "09032", "an ICCS code the agency sent is kept");
    }

    #[test]
    fn period_closures_merge() {
        let mut fold = Fold::new();
        let close = |deps: Option<Vec<&str>>| {
            Event::PeriodClosed(PeriodClosed {
                month: "2024-03".into(),
                departements: deps.map(|d| d.into_iter().map(String::from).collect()),
            })
        };
        fold.apply(1, "pn", close(Some(vec!["75"])));
        fold.apply(2, "pn", close(Some(vec!["92"])));
        let key = ("pn".to_owned(), "2024-03".to_owned());
        assert_eq!(fold.coverage()[&key].as_ref().unwrap().len(), 2);
        fold.apply(3, "pn", close(None));
        assert!(fold.coverage()[&key].is_none());
        assert!(fold.take_pending().unwrap().coverage_changed);
    }

    #[test]
    fn redelivered_sequences_are_ignored() {
        let mut fold = Fold::new();
        fold.apply(5, "pn", report("A", 1, 3, "75", None));
        assert_eq!(fold.apply(5, "pn", report("B", 1, 3, "75", None)), Outcome::Duplicate);
        assert_eq!(fold.counted_incidents(), 1);
    }
}
