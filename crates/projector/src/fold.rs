//! The pure fold of incident events into (a) the current state of every incident and
//! (b) counts at the aggregate grain. No IO: events in, deltas and snapshots out.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use observatory_model::{Channel, DEPARTEMENTS, Event, IncidentReported, VictimType, incident_hash};

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

/// Count and loss (in cents, so sums are exact and a rebuild equals the incremental result).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub loss_cents: i64,
}

impl Tally {
    fn add(&mut self, sign: i64, loss_cents: i64) {
        self.count += sign;
        self.loss_cents += sign * loss_cents;
    }

    pub fn is_zero(&self) -> bool {
        self.count == 0 && self.loss_cents == 0
    }
}

/// What the fold keeps per incident: enough to decide on the next revision and to move its
/// count. The full record goes to the state table, not to memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentState {
    pub revision: u32,
    /// `None` while withdrawn.
    pub cell: Option<Cell>,
    pub loss_cents: i64,
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

/// A changed incident, as it goes to the state table.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub source: String,
    pub agency_incident_id: String,
    pub revision: u32,
    pub sequence: u64,
    /// `None` for a withdrawn incident.
    pub report: Option<IncidentReported>,
}

#[derive(Default)]
pub struct Interner {
    ids: HashMap<String, u32>,
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
}

pub fn loss_cents(loss_eur: Option<f64>) -> i64 {
    loss_eur.map_or(0, |euros| (euros * 100.0).round() as i64)
}

#[derive(Default)]
pub struct Fold {
    incidents: HashMap<u128, IncidentState>,
    totals: HashMap<Cell, Tally>,
    iccs: Interner,
    sources: Interner,
    /// Since the last flush: count deltas per cell and changed incidents.
    delta: HashMap<Cell, Tally>,
    changed: HashMap<u128, StateRow>,
    first_pending: Option<u64>,
    last_applied: u64,
    pub events_applied: u64,
    pub events_ignored: u64,
}

impl Fold {
    pub fn new() -> Fold {
        Fold::default()
    }

    pub fn cell_of(&mut self, source: &str, report: &IncidentReported) -> Cell {
        Cell {
            month: month_index(report.occurred_on),
            departement: report
                .departement
                .as_deref()
                .and_then(|d| DEPARTEMENTS.iter().position(|&known| known == d))
                .map_or(NO_DEPARTEMENT, |i| i as u16),
            iccs: self.iccs.id(&report.iccs),
            cyber: report.cyber,
            victim_type: report.victim_type,
            channel: report.channel,
            source: self.sources.id(source),
        }
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
    pub fn apply(&mut self, sequence: u64, source: &str, event: &Event) -> Outcome {
        if sequence <= self.last_applied {
            return Outcome::Duplicate;
        }
        self.last_applied = sequence;
        self.first_pending.get_or_insert(sequence);
        let key = incident_hash(source, event.agency_incident_id());
        let previous = self.incidents.get(&key).copied();
        if let Some(previous) = previous {
            if event.revision() <= previous.revision {
                self.events_ignored += 1;
                return if event.revision() == previous.revision { Outcome::Duplicate } else { Outcome::Stale };
            }
            if let Some(old_cell) = previous.cell {
                self.move_count(old_cell, -1, previous.loss_cents);
            }
        }
        let (cell, loss, report) = match event {
            Event::IncidentReported(report) => {
                let cell = self.cell_of(source, report);
                let loss = loss_cents(report.loss_eur);
                self.move_count(cell, 1, loss);
                (Some(cell), loss, Some(report.clone()))
            }
            Event::IncidentWithdrawn(_) => (None, 0, None),
        };
        self.incidents.insert(key, IncidentState { revision: event.revision(), cell, loss_cents: loss });
        self.changed.insert(
            key,
            StateRow {
                source: source.to_owned(),
                agency_incident_id: event.agency_incident_id().to_owned(),
                revision: event.revision(),
                sequence,
                report,
            },
        );
        self.events_applied += 1;
        Outcome::Applied
    }

    fn move_count(&mut self, cell: Cell, sign: i64, loss_cents: i64) {
        self.totals.entry(cell).or_default().add(sign, loss_cents);
        self.delta.entry(cell).or_default().add(sign, loss_cents);
    }

    /// Restores one incident from the state table (on restart), newest row per incident
    /// winning. Totals are derived from the restored state.
    pub fn restore(&mut self, row: &StateRow) {
        let key = incident_hash(&row.source, &row.agency_incident_id);
        if let Some(existing) = self.incidents.get(&key) {
            if existing.revision >= row.revision {
                return;
            }
            if let Some(cell) = existing.cell {
                let loss = existing.loss_cents;
                self.totals.entry(cell).or_default().add(-1, loss);
            }
        }
        let (cell, loss) = match &row.report {
            Some(report) => {
                let cell = self.cell_of(&row.source, report);
                let loss = loss_cents(report.loss_eur);
                self.totals.entry(cell).or_default().add(1, loss);
                (Some(cell), loss)
            }
            None => (None, 0),
        };
        self.incidents.insert(key, IncidentState { revision: row.revision, cell, loss_cents: loss });
    }

    /// Marks everything up to `sequence` as applied (the restored manifest's position).
    pub fn set_position(&mut self, sequence: u64) {
        self.last_applied = sequence;
    }

    pub fn last_applied(&self) -> u64 {
        self.last_applied
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
        let mut deltas: Vec<(Cell, Tally)> = self.delta.drain().filter(|(_, t)| !t.is_zero()).collect();
        deltas.sort_unstable_by_key(|(cell, _)| *cell);
        let mut changed: Vec<StateRow> = self.changed.drain().map(|(_, row)| row).collect();
        changed.sort_unstable_by_key(|row| row.sequence);
        Some(Pending { first_sequence, last_sequence: self.last_applied, deltas, changed })
    }

    /// Current totals of one year, non-zero cells only, sorted.
    pub fn totals_of_year(&self, year: i32) -> Vec<(Cell, Tally)> {
        let mut cells: Vec<(Cell, Tally)> =
            self.totals.iter().filter(|(c, t)| c.year() == year && !t.is_zero()).map(|(c, t)| (*c, *t)).collect();
        cells.sort_unstable_by_key(|(cell, _)| *cell);
        cells
    }

    /// Years with at least one non-zero cell.
    pub fn years(&self) -> Vec<i32> {
        let mut years: Vec<i32> = self.totals.iter().filter(|(_, t)| !t.is_zero()).map(|(c, _)| c.year()).collect();
        years.sort_unstable();
        years.dedup();
        years
    }

    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }

    pub fn counted_incidents(&self) -> i64 {
        self.totals.values().map(|t| t.count).sum()
    }
}

/// The changes one flush writes.
pub struct Pending {
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub deltas: Vec<(Cell, Tally)>,
    pub changed: Vec<StateRow>,
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
        })
    }

    fn withdraw(id: &str, revision: u32) -> Event {
        Event::IncidentWithdrawn(IncidentWithdrawn { agency_incident_id: id.into(), revision, reason: None })
    }

    fn counts(fold: &Fold) -> Vec<(String, String, i64, i64)> {
        let mut rows: Vec<_> = fold
            .years()
            .into_iter()
            .flat_map(|y| fold.totals_of_year(y))
            .map(|(c, t)| (c.month_label(), fold.departement_code(&c).unwrap().to_owned(), t.count, t.loss_cents))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn amendment_moves_the_count_and_lower_revisions_change_nothing() {
        let mut fold = Fold::new();
        assert_eq!(fold.apply(1, "pn", &report("A", 1, 3, "75", Some(10.5))), Outcome::Applied);
        assert_eq!(fold.apply(2, "pn", &report("A", 3, 4, "92", Some(20.0))), Outcome::Applied);
        assert_eq!(fold.apply(3, "pn", &report("A", 2, 5, "13", None)), Outcome::Stale);
        assert_eq!(fold.apply(4, "pn", &report("A", 3, 4, "92", Some(20.0))), Outcome::Duplicate);
        assert_eq!(counts(&fold), vec![("2024-04".into(), "92".into(), 1, 2000)]);
    }

    #[test]
    fn withdrawal_stops_counting_until_a_later_revision() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", &report("A", 1, 3, "75", None));
        fold.apply(2, "pn", &withdraw("A", 2));
        assert!(counts(&fold).is_empty());
        fold.apply(3, "pn", &report("A", 2, 3, "75", None));
        assert!(counts(&fold).is_empty(), "revision 2 was the withdrawal");
        fold.apply(4, "pn", &report("A", 3, 6, "75", None));
        assert_eq!(counts(&fold), vec![("2024-06".into(), "75".into(), 1, 0)]);
    }

    #[test]
    fn the_same_incident_id_from_two_sources_is_two_incidents() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", &report("A", 1, 3, "75", None));
        fold.apply(2, "gn", &report("A", 1, 3, "75", None));
        assert_eq!(fold.counted_incidents(), 2);
    }

    #[test]
    fn restore_from_state_rows_gives_the_same_totals() {
        let mut fold = Fold::new();
        fold.apply(1, "pn", &report("A", 1, 3, "75", Some(1.0)));
        fold.apply(2, "pn", &report("B", 1, 3, "75", Some(2.0)));
        fold.apply(3, "pn", &report("A", 2, 7, "2A", Some(3.0)));
        fold.apply(4, "pn", &withdraw("B", 2));
        let pending = fold.take_pending().unwrap();
        assert_eq!((pending.first_sequence, pending.last_sequence), (1, 4));
        let mut restored = Fold::new();
        // Older rows of the same incident may come in any order: the revision decides.
        for row in pending.changed.iter().rev() {
            restored.restore(row);
        }
        assert_eq!(counts(&restored), counts(&fold));
        // The pending deltas of the flush net out to the totals.
        let delta_total: i64 = pending.deltas.iter().map(|(_, t)| t.count).sum();
        assert_eq!(delta_total, 1);
    }

    #[test]
    fn redelivered_sequences_are_ignored() {
        let mut fold = Fold::new();
        fold.apply(5, "pn", &report("A", 1, 3, "75", None));
        assert_eq!(fold.apply(5, "pn", &report("B", 1, 3, "75", None)), Outcome::Duplicate);
        assert_eq!(fold.counted_incidents(), 1);
    }
}
