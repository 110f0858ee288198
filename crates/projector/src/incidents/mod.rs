//! The `incidents` projection: folds `obs.incident.>` into the current state of every
//! incident, count aggregates and period closures, committed through the shared
//! [`ProjectionWriter`](crate::writer::ProjectionWriter) and consumed by the shared loop
//! ([`crate::runner`]).
//!
//! - [`fold`]: the pure fold (no IO).
//! - [`tables`]: Arrow schemas of `counts`, `state` and `coverage`, by the store's layout names.
//! - `index`: the fold's sharded index of every incident.
//! - [`image`]: the fold's memory as one file, what a restart loads.
//! - [`restore`]: decoding the state table into what a restarting fold keeps.
//! - [`sink`]: restore and flush over the writer, and the [`Folding`](crate::runner::Folding) impl.
//! - `compaction`: counts snapshots and size-tiered state merges.

mod compaction;
pub mod fold;
pub mod image;
mod index;
pub mod restore;
pub mod sink;
pub mod tables;

pub use sink::{IncidentSink, IncidentSinkError};

use crate::runner::LoopError;

/// What serving or rebuilding the incident projection fails with
/// (`runner::serve::<IncidentSink>`, `runner::replay::<IncidentSink>`).
pub type ProjectorError = LoopError<IncidentSinkError>;

#[cfg(test)]
pub(crate) mod tests {
    use chrono::NaiveDate;
    use observatory_model::{Channel, Event, IncidentReported, Unit, VictimType};

    /// Revision `revision` of incident `I<id>`, occurring in `month` of 2024 in Paris, with a
    /// loss of `id` euros.
    pub fn report(id: u32, revision: u32, month: u32) -> Event {
        Event::IncidentReported(IncidentReported {
            agency_incident_id: format!("I{id}"),
            revision,
            occurred_on: NaiveDate::from_ymd_opt(2024, month, 1).unwrap(),
            occurred_until: None,
            reported_on: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            iccs: "0903".into(),
            offence_code: None,
            cyber: true,
            departement: Some("75".into()),
            victim_type: VictimType::Individual,
            channel: Channel::Email,
            loss_eur: Some(f64::from(id)),
            unit: Unit::Offence,
            coding: None,
        })
    }
}
