//! What a data message holds, whatever its format: the dataflow, the observations the query
//! kept, which components to write and how the observations are arranged (series along
//! `dimensionAtObservation`), and the header that says which committed state it reflects.

use super::dataflow::{Attr, Dataflow, Dim, TIME_PERIOD};
use super::format::Labels;
use super::plan::Observation;
use super::query::AtObservation;

/// What a dataset does to a receiver's copy (`ACTION` in SDMX-CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A plain answer.
    Information,
    /// Observations new or changed since `updatedAfter`.
    Replace,
    /// Observations gone since `updatedAfter` (their keys only).
    Delete,
}

impl Action {
    pub fn csv(self) -> &'static str {
        match self {
            Action::Information => "I",
            Action::Replace => "R",
            Action::Delete => "D",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Information => "Information",
            Action::Replace => "Replace",
            Action::Delete => "Delete",
        }
    }

    /// Whether the dataset carries values and attributes (a deletion carries keys only).
    pub fn has_values(self) -> bool {
        self != Action::Delete
    }
}

/// One dataset of a message: a plain answer, the changes since `updatedAfter`, or one release
/// of `includeHistory` with the interval it stood.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSet {
    pub action: Action,
    pub valid_from: Option<String>,
    pub valid_to: Option<String>,
    pub observations: Vec<Observation>,
}

/// The message header: an id and a preparation time derived from the state answered (so the
/// same release answers the same bytes), and that state.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: String,
    /// RFC 3339, the commit time of the manifest answered.
    pub prepared: String,
    pub sequence: u64,
    pub release: Option<String>,
    pub tier: &'static str,
}

pub struct DataMessage<'a> {
    pub flow: &'a Dataflow,
    pub header: Header,
    pub datasets: Vec<DataSet>,
    pub attributes: Vec<Attr>,
    pub measures: bool,
    pub at_observation: AtObservation,
    pub labels: Labels,
}

/// The position of the dimension at observation level among the nine (`TIME_PERIOD` last);
/// `None` for `AllDimensions`.
pub fn observation_position(at: AtObservation) -> Option<usize> {
    match at {
        AtObservation::TimePeriod => Some(Dim::ALL.len()),
        AtObservation::Dim(dim) => Some(dim.position()),
        AtObservation::AllDimensions => None,
    }
}

/// The id of the dimension at a position among the nine.
pub fn dimension_id(position: usize) -> &'static str {
    Dim::ALL.get(position).map_or(TIME_PERIOD, |d| d.id())
}

/// The value of an observation at a position among the nine.
pub fn coordinate(obs: &Observation, position: usize) -> &str {
    obs.key.get(position).map_or(obs.period.as_str(), String::as_str)
}

impl DataMessage<'_> {
    /// Positions of the series-level dimensions, in DSD order.
    pub fn series_positions(&self) -> Vec<usize> {
        match observation_position(self.at_observation) {
            Some(at) => (0..=Dim::ALL.len()).filter(|p| *p != at).collect(),
            None => Vec::new(),
        }
    }

    /// Positions of the observation-level dimensions.
    pub fn observation_positions(&self) -> Vec<usize> {
        match observation_position(self.at_observation) {
            Some(at) => vec![at],
            None => (0..=Dim::ALL.len()).collect(),
        }
    }

    /// Every observation of every dataset.
    pub fn observations(&self) -> impl Iterator<Item = &Observation> {
        self.datasets.iter().flat_map(|d| &d.observations)
    }

    /// A dataset's observations grouped into series, in the order of their series keys.
    pub fn series<'s>(&self, dataset: &'s DataSet) -> Vec<(Vec<&'s str>, Vec<&'s Observation>)> {
        let positions = self.series_positions();
        let mut grouped: std::collections::BTreeMap<Vec<&str>, Vec<&Observation>> =
            Default::default();
        for obs in &dataset.observations {
            let key: Vec<&str> = positions.iter().map(|p| coordinate(obs, *p)).collect();
            grouped.entry(key).or_default().push(obs);
        }
        grouped.into_iter().collect()
    }
}
