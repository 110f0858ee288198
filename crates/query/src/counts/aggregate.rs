//! One counts request over the netted cells: filtered, its units checked, grouped and summed,
//! then flagged provisional and given rates; perturbed and its losses withheld or rounded for
//! the public tier.

use std::collections::HashMap;

use observatory_reference::Geography;
use polars::prelude::*;

use observatory_disclosure::Policy;

use crate::request::{CountsRequest, Dimension, Rate};

use super::netting::month_range;
use super::{COUNT, Context, QueryError, coded};

/// Filters the netted cells, checks units, groups and sums, then adds provisional flags and
/// rates. Pure over its inputs.
///
/// With a `policy` (the public tier) each row's count is perturbed from its own cell key (the
/// sum of its cells' key sums, modulo 256), rows published as zero leave grouped answers like
/// true zeros, and losses are withheld or rounded; see [`Policy::count`] and [`Policy::loss`].
pub fn aggregate(
    context: &Context,
    request: &CountsRequest,
    policy: Option<&Policy>,
) -> Result<DataFrame, QueryError> {
    let coded = &*context.coded;
    let mut keeps = Vec::new();
    // Months are "YYYY-MM" and sorted: a range of months is a range of codes.
    if request.from.is_some() || request.to.is_some() {
        let months = coded.code_range(
            Dimension::Month,
            request.from.as_deref().unwrap_or(""),
            &format!("{}\u{7f}", request.to.as_deref().unwrap_or("\u{7f}")),
        );
        let mut keep = coded.keep_none(Dimension::Month);
        keep.allow_range(months);
        keeps.push(keep);
    }
    for (dimension, values) in &request.filters {
        let mut keep = coded.keep_none(*dimension);
        for value in values {
            match dimension {
                // Codes are digit strings: the subtree of "09" is exactly "09" ≤ code < "0:".
                Dimension::Iccs => {
                    let mut upper = value.as_bytes().to_vec();
                    let Some(last) = upper.last_mut() else { continue };
                    *last += 1;
                    let upper = String::from_utf8_lossy(&upper);
                    keep.allow_range(coded.code_range(Dimension::Iccs, value, &upper));
                }
                _ => {
                    if let Some(code) = coded.code_of(*dimension, value) {
                        keep.allow(code);
                    }
                }
            }
        }
        keeps.push(keep);
    }
    // Grouped by unit as well: when `by` has no unit, more than one unit in the result means
    // the request would add different things together.
    let by_unit = request.by.contains(&Dimension::Unit);
    let mut keys = request.by.clone();
    if !by_unit {
        keys.push(Dimension::Unit);
    }
    let unit_at = keys.iter().position(|d| *d == Dimension::Unit).expect("grouped by unit");
    // What an ungrouped rate covers in time when from/to leave it open: the months with data.
    let time_grouped =
        request.by.contains(&Dimension::Year) || request.by.contains(&Dimension::Month);
    let span_wanted = request.rate.is_some() && !time_grouped;
    let groups = coded.scan(&keeps, &keys, span_wanted);
    let data_span = groups.months.and_then(|(first, last)| {
        let month = |code| coded.text(Dimension::Month, code).map(str::to_owned);
        month(first).zip(month(last))
    });
    let mut units: Vec<u32> = (0..groups.len()).map(|g| groups.key(g)[unit_at]).collect();
    units.sort_unstable();
    units.dedup();
    let units: Vec<&str> = units.iter().filter_map(|u| coded.text(Dimension::Unit, *u)).collect();
    if units.len() > 1 && !by_unit {
        return Err(QueryError::MixedUnits(units.join(", ")));
    }
    // Rows as (codes, sums); codes sort as their values do, absent values last.
    let mut rows: Vec<(&[u32], coded::Sums)> =
        (0..groups.len()).map(|g| (&groups.key(g)[..request.by.len()], groups.sums(g))).collect();
    if request.by.is_empty() && rows.is_empty() {
        // A total with no data is a zero only where every source has closed every month it
        // spans; otherwise nothing was reported, which is not zero: provisional.
        let open = i64::from(!zero_is_final(context, request));
        rows.push((&[], coded::Sums { open, ..coded::Sums::default() }));
    }
    if !request.by.is_empty() {
        // A cell whose deltas net to zero is no incident: drop it from grouped answers.
        rows.retain(|(_, sums)| sums.count() != 0);
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let mut counts: Vec<i64> = rows.iter().map(|(_, sums)| sums.count()).collect();
    // Euros from exact integer cents with one correctly rounded division, so 1234.56 prints
    // as 1234.56 and not as the sum of binary fractions.
    let mut losses: Vec<Option<f64>> =
        rows.iter().map(|(_, sums)| Some(sums.loss_cents as f64 / 100.0)).collect();
    let provisional: Vec<bool> = rows.iter().map(|(_, sums)| sums.open > 0).collect();
    let mut withheld = None;
    if let Some(policy) = policy {
        // Each count perturbed from its cell key; each loss published only above the
        // policy's count threshold, rounded, else null and flagged.
        for (count, (_, sums)) in counts.iter_mut().zip(&rows) {
            *count = policy.count(*count, sums.key_sum());
        }
        for (loss, count) in losses.iter_mut().zip(&counts) {
            *loss = loss.and_then(|l| policy.loss(*count, l));
        }
        withheld = Some(losses.iter().map(Option::is_none).collect::<Vec<bool>>());
    }
    // A grouped answer never lists a zero row, so a listed zero would say that the true count
    // is not zero: rows published as zero leave it.
    let listed: Vec<usize> = (0..rows.len())
        .filter(|&i| policy.is_none() || request.by.is_empty() || counts[i] > 0)
        .collect();
    let mut columns: Vec<Column> = Vec::new();
    for (at, dimension) in request.by.iter().enumerate() {
        columns.push(coded.decode(*dimension, listed.iter().map(|&i| rows[i].0[at])));
    }
    if !by_unit {
        // Every row says what it counts; with no data, the unit asked for (if any).
        let unit = units
            .first()
            .map(|u| (*u).to_owned())
            .or_else(|| request.filters.get(&Dimension::Unit).and_then(|u| u.first().cloned()));
        columns.push(Column::new(Dimension::Unit.name().into(), vec![unit; listed.len()]));
    }
    fn pick<T: Copy>(listed: &[usize], values: &[T]) -> Vec<T> {
        listed.iter().map(|&i| values[i]).collect()
    }
    columns.push(Column::new(COUNT.into(), pick(&listed, &counts)));
    columns.push(Column::new("loss_eur".into(), pick(&listed, &losses)));
    columns.push(Column::new("provisional".into(), pick(&listed, &provisional)));
    if let Some(withheld) = withheld {
        columns.push(Column::new(LOSS_WITHHELD.into(), pick(&listed, &withheld)));
    }
    let mut result = DataFrame::new_infer_height(columns)?;
    if request.rate == Some(Rate::Per100k) {
        add_rates(&mut result, request, data_span)?;
    }
    Ok(result)
}

/// The flag beside a public loss: `true` where the loss was withheld (`loss_eur` null).
pub const LOSS_WITHHELD: &str = "loss_withheld";

/// Whether a zero total is final: every source the request covers (its `source=` filter, or
/// every known source) has closed every month of the range (the request's, or the months the
/// projection knows), for the départements the request selects.
pub(super) fn zero_is_final(context: &Context, request: &CountsRequest) -> bool {
    let sources = match request.filters.get(&Dimension::Source) {
        Some(listed) => listed.clone(),
        None => context.sources(),
    };
    let known = context.known_months();
    let (Some(first), Some(last)) = (
        request.from.clone().or_else(|| known.as_ref().map(|k| k.0.clone())),
        request.to.clone().or_else(|| known.as_ref().map(|k| k.1.clone())),
    ) else {
        return false;
    };
    // Months named by a filter count whether or not anything is known of them.
    let within = |m: &String| {
        request.from.as_ref().is_none_or(|f| f <= m) && request.to.as_ref().is_none_or(|t| m <= t)
    };
    let months: Vec<String> =
        match (request.filters.get(&Dimension::Month), request.filters.get(&Dimension::Year)) {
            (Some(listed), _) => listed.iter().filter(|m| within(m)).cloned().collect(),
            (None, Some(years)) => years
                .iter()
                .flat_map(|y| month_range(&format!("{y}-01"), &format!("{y}-12")))
                .filter(within)
                .collect(),
            (None, None) => month_range(&first, &last),
        };
    let geography = Geography::france();
    let listed = request.filters.get(&Dimension::Departement);
    let regions = request.filters.get(&Dimension::Region);
    let departements: Option<Vec<&str>> = (listed.is_some() || regions.is_some()).then(|| {
        geography
            .departements()
            .iter()
            .filter(|d| {
                listed.is_none_or(|l| l.contains(&d.code))
                    && regions.is_none_or(|r| r.contains(&d.region))
            })
            .map(|d| d.code.as_str())
            .collect()
    });
    !sources.is_empty()
        && sources.iter().all(|source| {
            months.iter().all(|month| match &departements {
                None => context.coverage.is_closed(source, month, None),
                Some(list) => {
                    list.iter().all(|d| context.coverage.is_closed(source, month, Some(d)))
                }
            })
        })
}

/// The months a row counts, as "YYYY-MM" bounds: its month, its year within from/to, or the
/// requested range (from/to, else the months with data) when time is not grouped.
fn row_period(
    result: &DataFrame,
    request: &CountsRequest,
    data_span: &Option<(String, String)>,
    i: usize,
) -> Result<Option<(String, String)>, QueryError> {
    if request.by.contains(&Dimension::Month) {
        return Ok(result
            .column(Dimension::Month.name())?
            .str()?
            .get(i)
            .map(|m| (m.to_owned(), m.to_owned())));
    }
    if request.by.contains(&Dimension::Year) {
        return Ok(result.column(Dimension::Year.name())?.i32()?.get(i).map(|y| {
            let first = format!("{y:04}-01").max(request.from.clone().unwrap_or_default());
            let last = format!("{y:04}-12");
            let last = request.to.clone().map_or(last.clone(), |to| to.min(last));
            (first, last)
        }));
    }
    let first = request.from.clone().or_else(|| data_span.as_ref().map(|s| s.0.clone()));
    let last = request.to.clone().or_else(|| data_span.as_ref().map(|s| s.1.clone()));
    Ok(first.zip(last))
}

/// The départements a row counts (every filter and the row's own geography applied), and
/// how the answer names them: `FR`, `region 11`, `departement 75`, `departements 75,92`.
fn row_area(
    geography: &Geography,
    request: &CountsRequest,
    departement: Option<&str>,
    region: Option<&str>,
) -> (Vec<String>, String) {
    let all = geography.departements();
    let listed = request.filters.get(&Dimension::Departement);
    let regions = request.filters.get(&Dimension::Region);
    let by_departement = request.by.contains(&Dimension::Departement);
    let by_region = request.by.contains(&Dimension::Region);
    let codes: Vec<String> = all
        .iter()
        .filter(|d| listed.is_none_or(|l| l.contains(&d.code)))
        .filter(|d| regions.is_none_or(|r| r.contains(&d.region)))
        .filter(|d| !by_departement || departement == Some(d.code.as_str()))
        .filter(|d| !by_region || region == Some(d.region.as_str()))
        .map(|d| d.code.clone())
        .collect();
    let label = if codes.len() == all.len() {
        "FR".to_owned()
    } else {
        // Whole régions are named as régions; anything else by its départements.
        let mut touched: Vec<&str> =
            all.iter().filter(|d| codes.contains(&d.code)).map(|d| d.region.as_str()).collect();
        touched.sort_unstable();
        touched.dedup();
        let covered: usize = touched.iter().map(|r| geography.departements_of(r).count()).sum();
        let plural = |n: usize| if n > 1 { "s" } else { "" };
        if covered == codes.len() && !codes.is_empty() && !by_departement {
            format!("region{} {}", plural(touched.len()), touched.join(","))
        } else {
            format!("departement{} {}", plural(codes.len()), codes.join(","))
        }
    };
    (codes, label)
}

/// Adds `population`, `population_year`, `population_area`, `rate_period` and
/// `rate_per_100k`: the row's count over `rate_period` divided by the legal population of the
/// départements the row counts (`population_area`: its département or région within the
/// geographic filters, else France) for the latest reference year not after the period's
/// end. Over a period other than one year the rate is cumulative, not annualised.
fn add_rates(
    result: &mut DataFrame,
    request: &CountsRequest,
    data_span: Option<(String, String)>,
) -> Result<(), QueryError> {
    let geography = Geography::france();
    let height = result.height();
    let mut population: Vec<Option<i64>> = Vec::with_capacity(height);
    let mut population_year: Vec<Option<i32>> = Vec::with_capacity(height);
    let mut areas: Vec<Option<String>> = Vec::with_capacity(height);
    let mut periods: Vec<Option<String>> = Vec::with_capacity(height);
    let departements = if request.by.contains(&Dimension::Departement) {
        Some(result.column(Dimension::Departement.name())?.str()?.clone())
    } else {
        None
    };
    let regions = if request.by.contains(&Dimension::Region) {
        Some(result.column(Dimension::Region.name())?.str()?.clone())
    } else {
        None
    };
    type Area = (Option<(u64, i32)>, String);
    let mut memo: HashMap<(Option<String>, Option<String>, i32), Area> = HashMap::new();
    for i in 0..height {
        let period = row_period(result, request, &data_span, i)?;
        let year = period.as_ref().and_then(|(_, last)| last[..4].parse().ok()).unwrap_or(i32::MAX);
        let departement = departements.as_ref().and_then(|d| d.get(i)).map(str::to_owned);
        let region = regions.as_ref().and_then(|r| r.get(i)).map(str::to_owned);
        let (figure, label) = memo
            .entry((departement.clone(), region.clone(), year))
            .or_insert_with(|| {
                let (codes, label) =
                    row_area(geography, request, departement.as_deref(), region.as_deref());
                let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
                (geography.departements_population(&codes, year), label)
            })
            .clone();
        population.push(figure.map(|(p, _)| p as i64));
        population_year.push(figure.map(|(_, y)| y));
        areas.push(figure.map(|_| label));
        periods.push(period.map(|(first, last)| format!("{first}/{last}")));
    }
    let counts = result.column(COUNT)?.i64()?.clone();
    let rates: Vec<Option<f64>> = (0..height)
        .map(|i| match (counts.get(i), population[i]) {
            (Some(count), Some(pop)) if pop > 0 => Some(count as f64 * 100_000.0 / pop as f64),
            _ => None,
        })
        .collect();
    result.with_column(Column::new("population".into(), population))?;
    result.with_column(Column::new("population_year".into(), population_year))?;
    result.with_column(Column::new("population_area".into(), areas))?;
    result.with_column(Column::new("rate_period".into(), periods))?;
    result.with_column(Column::new("rate_per_100k".into(), rates))?;
    Ok(())
}
