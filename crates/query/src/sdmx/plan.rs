//! From an SDMX data query to counts requests and back. Each key alternative selects, per
//! dimension, codes at one or more levels (`_T`, a section, a division, ...); each combination of
//! levels is one `/v1/incidents/counts` request (grouped by the levels' columns, filtered on the
//! codes asked for), so every observation is the very cell the counts API publishes, with the same
//! perturbation. The rows come back as observations keyed by codes. Pure.

use std::collections::{BTreeMap, HashSet};

use polars::prelude::{AnyValue, DataFrame};

use super::dataflow::{self, Dataflow, Dim, NATIONAL, TOTAL};
use super::error::SdmxError;
use super::query::{Component, DataQuery, Key};
use crate::request::{CountsRequest, Dimension, Rate};

/// The most counts requests one SDMX query may turn into (a fully wildcarded key is 480).
pub const MAX_PARTS: usize = 4096;

/// One level of one dimension: the column it groups by and the codes it keeps.
#[derive(Debug, Clone)]
struct Choice {
    by: Option<Dimension>,
    /// `UNIT_MEASURE` codes of rates.
    rate: bool,
    /// The counts API values to filter on, `None` when the level is taken whole.
    filter: Option<Vec<String>>,
    /// The codes of this level the key selects.
    codes: HashSet<String>,
}

/// One counts request and how its rows become observations.
#[derive(Debug, Clone)]
pub struct Part {
    pub request: CountsRequest,
    levels: Vec<Choice>,
}

/// A number as the counts API published it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Count(i64),
    Rate(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Count(c) => c as f64,
            Value::Rate(r) => r,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Count(c) => write!(f, "{c}"),
            Value::Rate(r) => write!(f, "{r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// One code per [`Dim`], in DSD order.
    pub key: Vec<String>,
    pub period: String,
    pub value: Value,
    /// `OBS_STATUS`: `A` or `P`.
    pub status: &'static str,
    /// `DISCLOSURE`: `EXACT` or `CKM`.
    pub disclosure: &'static str,
}

/// Every counts request a query needs, at most [`MAX_PARTS`].
pub fn plan(query: &DataQuery, flow: &Dataflow) -> Result<Vec<Part>, SdmxError> {
    let (from, to) =
        query.filter(Component::TimePeriod).map(|f| f.month_window()).unwrap_or((None, None));
    let mut parts = Vec::new();
    for key in &query.keys {
        let mut per_dim: Vec<Vec<Choice>> = Vec::with_capacity(Dim::ALL.len());
        for dim in Dim::ALL {
            per_dim.push(choices(query, flow, key, dim)?);
        }
        let total: usize = per_dim.iter().map(Vec::len).product();
        if parts.len() + total > MAX_PARTS {
            return Err(SdmxError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the key needs {} cubes of counts (levels of every wildcarded dimension multiplied); \
                     the most one query may ask is {MAX_PARTS}: name codes for some dimensions",
                    parts.len() + total
                ),
            ));
        }
        for combination in product(&per_dim) {
            parts.push(part(combination, from.clone(), to.clone()));
        }
    }
    Ok(parts)
}

/// The levels of `dim` a key alternative selects codes at.
fn choices(
    query: &DataQuery,
    flow: &Dataflow,
    key: &Key,
    dim: Dim,
) -> Result<Vec<Choice>, SdmxError> {
    let selected = query.select(flow, key, dim)?;
    let mut levels: BTreeMap<(Option<Dimension>, bool), Vec<String>> = BTreeMap::new();
    for code in selected {
        let rate = dim == Dim::UnitMeasure && code.ends_with(dataflow::PER_100K);
        levels.entry((dataflow::level(dim, &code), rate)).or_default().push(code);
    }
    Ok(levels
        .into_iter()
        .map(|((by, rate), codes)| {
            // A level taken whole needs no filter (a filter on every ICCS class would cost a
            // range per class); FREQ is the time column itself.
            let whole = flow
                .codelist(dim)
                .codes
                .iter()
                .filter(|c| dataflow::level(dim, &c.id) == by)
                .filter(|c| dim != Dim::UnitMeasure || c.id.ends_with(dataflow::PER_100K) == rate)
                .count()
                == codes.len();
            let filter = (by.is_some() && dim != Dim::Freq && !whole)
                .then(|| codes.iter().map(|c| dataflow::api_value(dim, c).to_owned()).collect());
            Choice { by, rate, filter, codes: codes.into_iter().collect() }
        })
        .collect())
}

fn product(per_dim: &[Vec<Choice>]) -> Vec<Vec<Choice>> {
    per_dim.iter().fold(vec![Vec::new()], |acc, choices| {
        acc.iter()
            .flat_map(|prefix| {
                choices.iter().map(move |c| {
                    let mut next = prefix.clone();
                    next.push(c.clone());
                    next
                })
            })
            .collect()
    })
}

fn part(levels: Vec<Choice>, from: Option<String>, to: Option<String>) -> Part {
    let mut request = CountsRequest { from, to, ..CountsRequest::default() };
    for choice in &levels {
        if let Some(by) = choice.by {
            request.by.push(by);
            if let Some(values) = &choice.filter {
                request.filters.insert(by, values.clone());
            }
        }
        if choice.rate {
            request.rate = Some(Rate::Per100k);
        }
    }
    Part { request, levels }
}

fn text(frame: &DataFrame, column: &str, row: usize) -> Option<String> {
    match frame.column(column).ok()?.get(row).ok()? {
        AnyValue::String(s) => Some(s.to_owned()),
        AnyValue::StringOwned(s) => Some(s.to_string()),
        AnyValue::Boolean(b) => Some(b.to_string()),
        AnyValue::Int32(i) => Some(i.to_string()),
        AnyValue::Int64(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The observations of one part's answer; rows outside the key (a class-level row of a code
/// coded at section level, a row without a département) are dropped.
pub fn observations(part: &Part, frame: &DataFrame, exact: bool) -> Vec<Observation> {
    let disclosure = if exact { "EXACT" } else { "CKM" };
    let rate = part.request.rate.is_some();
    let mut out = Vec::with_capacity(frame.height());
    'rows: for row in 0..frame.height() {
        let mut key = Vec::with_capacity(Dim::ALL.len());
        let mut period = None;
        for (dim, choice) in Dim::ALL.into_iter().zip(&part.levels) {
            let code = match choice.by {
                None if dim == Dim::RefArea => NATIONAL.to_owned(),
                None => TOTAL.to_owned(),
                Some(by) => {
                    let Some(value) = text(frame, by.name(), row) else { continue 'rows };
                    if dim == Dim::Freq {
                        period = Some(value);
                        key.push(if by == Dimension::Year { "A" } else { "M" }.to_owned());
                        continue;
                    }
                    dataflow::code_of(dim, by, &value, choice.rate)
                }
            };
            if !choice.codes.contains(&code) {
                continue 'rows;
            }
            key.push(code);
        }
        let Some(period) = period else { continue };
        let value = if rate {
            match frame.column("rate_per_100k").ok().and_then(|c| c.f64().ok()?.get(row)) {
                Some(r) => Value::Rate(r),
                None => continue,
            }
        } else {
            match frame.column("count").ok().and_then(|c| c.i64().ok()?.get(row)) {
                Some(c) => Value::Count(c),
                None => continue,
            }
        };
        let provisional =
            frame.column("provisional").ok().and_then(|c| c.bool().ok()?.get(row)).unwrap_or(false);
        out.push(Observation {
            key,
            period,
            value,
            status: if provisional { "P" } else { "A" },
            disclosure,
        });
    }
    out
}

/// The observations the query keeps, once each, sorted by series key then period, with
/// `c[TIME_PERIOD]`, `c[OBS_VALUE]` and attribute filters applied and then `firstNObservations`
/// / `lastNObservations` per series.
pub fn select(query: &DataQuery, observations: Vec<Observation>) -> Vec<Observation> {
    let time = query.filter(Component::TimePeriod);
    let value = query.filter(Component::ObsValue);
    let status = query.filter(Component::Attr(dataflow::Attr::ObsStatus));
    let disclosure = query.filter(Component::Attr(dataflow::Attr::Disclosure));
    let mut series: BTreeMap<Vec<String>, BTreeMap<String, Observation>> = BTreeMap::new();
    for obs in observations {
        if time.is_some_and(|f| !f.accepts_period(&obs.period))
            || value.is_some_and(|f| !f.accepts_number(obs.value.as_f64()))
            || status.is_some_and(|f| !f.accepts_text(obs.status))
            || disclosure.is_some_and(|f| !f.accepts_text(obs.disclosure))
        {
            continue;
        }
        series.entry(obs.key.clone()).or_default().insert(obs.period.clone(), obs);
    }
    let mut out = Vec::new();
    for (_, periods) in series {
        let all: Vec<Observation> = periods.into_values().collect();
        let n = all.len();
        let keep = |i: usize| {
            query.first_n.is_some_and(|k| i < k)
                || query.last_n.is_some_and(|k| k >= n - i)
                || (query.first_n.is_none() && query.last_n.is_none())
        };
        out.extend(all.into_iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, o)| o));
    }
    out
}

#[cfg(test)]
mod tests {
    use polars::prelude::Column;

    use super::*;
    use crate::sdmx::query::raw_pairs;

    fn flow() -> Dataflow {
        Dataflow::new("OBSERVATORY", &["pn".into(), "gn".into()])
    }

    fn query(key: &str, params: &str) -> DataQuery {
        DataQuery::parse(key, &raw_pairs(Some(params))).unwrap()
    }

    #[test]
    fn the_acceptance_key_is_one_counts_request() {
        let parts =
            plan(&query("A.FR._T._T._T._T._T.offence", "c[TIME_PERIOD]=ge:2024+le:2025"), &flow())
                .unwrap();
        assert_eq!(parts.len(), 1);
        let r = &parts[0].request;
        assert_eq!(r.by, vec![Dimension::Year, Dimension::Unit]);
        assert_eq!(r.filters.get(&Dimension::Unit), Some(&vec!["offence".to_owned()]));
        assert_eq!((r.from.as_deref(), r.to.as_deref()), (Some("2024-01"), Some("2025-12")));
        assert_eq!(r.rate, None);
    }

    #[test]
    fn each_level_of_a_wildcard_is_a_request() {
        // REF_AREA: FR, régions, départements; ICCS: _T, sections, divisions, groups, classes.
        let parts = plan(&query("M.*.*._T._T._T._T.offence", ""), &flow()).unwrap();
        assert_eq!(parts.len(), 3 * 5);
        let whole = plan(&query("all", ""), &flow()).unwrap();
        // FREQ 2 × REF_AREA 3 × ICCS 5 × 4 binary totals × UNIT_MEASURE (counts, rates) 2.
        assert_eq!(whole.len(), 2 * 3 * 5 * 16 * 2);
        let regions = plan(&query("A.R11+R84+75.0903._T._T._T._T", ""), &flow()).unwrap();
        assert_eq!(regions.len(), 2 * 2, "régions and départements × counts and rates");
        let by_region = regions.iter().find(|p| p.request.by.contains(&Dimension::Region)).unwrap();
        assert_eq!(by_region.request.filters[&Dimension::Region], vec!["11", "84"]);
        assert_eq!(by_region.request.filters[&Dimension::IccsDivision], vec!["0903"]);
    }

    #[test]
    fn rows_become_observations_of_the_key() {
        let parts = plan(&query("A.R11.090321+09.true._T._T._T.offence", ""), &flow()).unwrap();
        let class = parts.iter().find(|p| p.request.by.contains(&Dimension::Iccs)).unwrap();
        let frame = DataFrame::new_infer_height(vec![
            Column::new("year".into(), vec![2024i32, 2024]),
            Column::new("region".into(), vec!["11", "11"]),
            Column::new("iccs".into(), vec!["090321", "09"]),
            Column::new("cyber".into(), vec![true, true]),
            Column::new("unit".into(), vec!["offence", "offence"]),
            Column::new("count".into(), vec![12i64, 40]),
            Column::new("provisional".into(), vec![true, false]),
        ])
        .unwrap();
        let obs = observations(class, &frame, false);
        assert_eq!(obs.len(), 1, "the row coded at section level is not the class: {obs:?}");
        assert_eq!(obs[0].key, ["A", "R11", "090321", "true", "_T", "_T", "_T", "offence"]);
        assert_eq!(
            (obs[0].period.as_str(), obs[0].value, obs[0].status),
            ("2024", Value::Count(12), "P")
        );
        assert_eq!(obs[0].disclosure, "CKM");
    }

    #[test]
    fn selection_filters_then_takes_the_first_and_last() {
        let obs = |period: &str, value: i64| Observation {
            key: vec!["M".into()],
            period: period.into(),
            value: Value::Count(value),
            status: "A",
            disclosure: "EXACT",
        };
        let all = vec![obs("2024-03", 5), obs("2024-01", 1), obs("2024-02", 30), obs("2024-01", 1)];
        let kept = select(&query("all", "lastNObservations=2"), all.clone());
        assert_eq!(
            kept.iter().map(|o| o.period.as_str()).collect::<Vec<_>>(),
            ["2024-02", "2024-03"]
        );
        let kept = select(&query("all", "c[OBS_VALUE]=lt:10&firstNObservations=1"), all.clone());
        assert_eq!(kept.iter().map(|o| o.period.as_str()).collect::<Vec<_>>(), ["2024-01"]);
        // Found by fuzzing: lastNObservations near usize::MAX overflowed (a panic in debug).
        let kept = select(&query("all", &format!("lastNObservations={}", usize::MAX)), all);
        assert_eq!(kept.len(), 3);
    }
}
