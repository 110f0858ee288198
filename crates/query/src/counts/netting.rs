//! Netting: the counts files' deltas summed per cell into the live table, checked, with each
//! cell's `open` flag from what the agencies declared closed (the coverage table).

use std::collections::{HashMap, HashSet};

use observatory_store::layout::{counts as stored, coverage as closures};
use polars::prelude::*;

use super::{OPEN, QueryError};

/// Every (source, month) that has a live cell.
pub(super) fn data_months(cells: &DataFrame) -> Result<HashSet<(String, String)>, QueryError> {
    let pairs = cells.select([stored::SOURCE, stored::MONTH])?.unique_stable(
        None,
        UniqueKeepStrategy::First,
        None,
    )?;
    let source = pairs.column(stored::SOURCE)?.str()?;
    let month = pairs.column(stored::MONTH)?.str()?;
    Ok(source
        .iter()
        .zip(month.iter())
        .filter_map(|(s, m)| Some((s?.to_owned(), m?.to_owned())))
        .collect())
}

/// Months from `first` to `last` inclusive, both "YYYY-MM".
pub(super) fn month_range(first: &str, last: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (month_index(first), month_index(last)) else { return Vec::new() };
    (a..=b).map(month_label).collect()
}

fn month_label(index: i32) -> String {
    format!("{:04}-{:02}", index / 12, index % 12 + 1)
}

fn empty_counts() -> LazyFrame {
    let text = |name: &str| Column::new(name.into(), Vec::<String>::new());
    let optional = |name: &str| Column::new(name.into(), Vec::<Option<String>>::new());
    let columns: Vec<Column> = vec![
        Column::new(stored::YEAR.into(), Vec::<i32>::new()),
        text(stored::MONTH),
        optional(stored::DEPARTEMENT),
        text(stored::ICCS),
        Column::new(stored::CYBER.into(), Vec::<bool>::new()),
        text(stored::VICTIM_TYPE),
        text(stored::CHANNEL),
        text(stored::SOURCE),
        text(stored::UNIT),
        text(stored::ICCS_SECTION),
        optional(stored::ICCS_DIVISION),
        optional(stored::ICCS_GROUP),
        optional(stored::REGION),
        Column::new(stored::COUNT.into(), Vec::<i64>::new()),
        Column::new(stored::LOSS_CENTS.into(), Vec::<i64>::new()),
        Column::new(stored::KEY_SUM.into(), Vec::<i64>::new()),
    ];
    DataFrame::new_infer_height(columns).expect("valid empty frame").lazy()
}

/// Which (source, month) an agency declared complete, as the coverage table says.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// source → month → `None`: the whole month; otherwise the closed départements.
    closed: HashMap<String, HashMap<String, Option<HashSet<String>>>>,
}

impl Coverage {
    pub(super) fn add(&mut self, frame: &DataFrame) -> Result<(), QueryError> {
        let source = frame.column(closures::SOURCE)?.str()?;
        let month = frame.column(closures::MONTH)?.str()?;
        let departement = frame.column(closures::DEPARTEMENT)?.str()?;
        for i in 0..frame.height() {
            let (Some(s), Some(m)) = (source.get(i), month.get(i)) else { continue };
            let entry = self
                .closed
                .entry(s.to_owned())
                .or_default()
                .entry(m.to_owned())
                .or_insert_with(|| Some(HashSet::new()));
            match (departement.get(i), entry.as_mut()) {
                (None, _) => *entry = None,
                (Some(d), Some(set)) => {
                    set.insert(d.to_owned());
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }

    pub fn is_closed(&self, source: &str, month: &str, departement: Option<&str>) -> bool {
        match self.entry(source, month) {
            Some(None) => true,
            Some(Some(listed)) => departement.is_some_and(|d| listed.contains(d)),
            None => false,
        }
    }

    /// Closed départements of a partially closed (source, month); `None` when wholly closed
    /// or not closed at all.
    pub fn entry(&self, source: &str, month: &str) -> Option<&Option<HashSet<String>>> {
        self.closed.get(source)?.get(month)
    }

    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.closed.keys().map(String::as_str)
    }

    /// Every closed (source, month).
    pub fn months(&self) -> impl Iterator<Item = (&str, &str)> {
        self.closed
            .iter()
            .flat_map(|(s, months)| months.keys().map(move |m| (s.as_str(), m.as_str())))
    }
}

/// Marks rows whose (source, month, département) the source has not closed yet.
fn open_flags(frame: &DataFrame, coverage: &Coverage) -> Result<Column, QueryError> {
    let source = frame.column(stored::SOURCE)?.str()?;
    let month = frame.column(stored::MONTH)?.str()?;
    let departement = frame.column(stored::DEPARTEMENT)?.str()?;
    let open: Vec<i64> = (0..frame.height())
        .map(|i| {
            let closed = match (source.get(i), month.get(i)) {
                (Some(s), Some(m)) => coverage.is_closed(s, m, departement.get(i)),
                _ => false,
            };
            i64::from(!closed)
        })
        .collect();
    Ok(Column::new(OPEN.into(), open))
}

/// Sums counts files (and a previous netted table) per cell, drops cells that net to
/// nothing, and flags the cells not yet closed. Pure over its inputs.
pub fn net(frames: Vec<LazyFrame>, coverage: &Coverage) -> Result<DataFrame, QueryError> {
    finish_netting(vec![net_cells(frames)?], coverage)
}

/// Sums `frames` per cell and drops the cells that net to zero (no `open` flag yet).
pub(super) fn net_cells(frames: Vec<LazyFrame>) -> Result<DataFrame, QueryError> {
    let frame =
        if frames.is_empty() { empty_counts() } else { concat(frames, UnionArgs::default())? };
    let keys: Vec<Expr> = stored::DIMENSIONS.iter().map(|c| col(*c)).collect();
    Ok(frame
        .group_by(keys)
        .agg([
            col(stored::COUNT).sum().alias(stored::COUNT),
            col(stored::LOSS_CENTS).sum().alias(stored::LOSS_CENTS),
            col(stored::KEY_SUM).sum().alias(stored::KEY_SUM),
        ])
        // An amendment that only changes the loss leaves a count of 0: keep it.
        .filter(col(stored::COUNT).neq(lit(0i64)).or(col(stored::LOSS_CENTS).neq(lit(0i64))))
        .collect()?)
}

/// Netted cells of disjoint groups (years) as one table, checked, with their `open` flags.
pub(super) fn finish_netting(
    parts: Vec<DataFrame>,
    coverage: &Coverage,
) -> Result<DataFrame, QueryError> {
    let mut parts = parts.into_iter();
    let mut cells = match parts.next() {
        Some(first) => first,
        None => net_cells(Vec::new())?,
    };
    for part in parts {
        cells.vstack_mut(&part)?;
    }
    cells.rechunk_mut();
    check_losses(&cells)?;
    let open = open_flags(&cells, coverage)?;
    cells.with_column(open)?;
    Ok(cells)
}

/// Deltas are summed with wrapping arithmetic, which is exact when the true totals fit in i64.
/// Losses are never negative, so a negative cell, or cells whose sum exceeds i64 (which any
/// request's sum could reach), mean a total that did not fit.
fn check_losses(cells: &DataFrame) -> Result<(), QueryError> {
    let mut total: i128 = 0;
    for loss in cells.column(stored::LOSS_CENTS)?.i64()?.iter().flatten() {
        if loss < 0 {
            return Err(QueryError::LossOverflow(format!("a cell totals {loss} cents")));
        }
        total += i128::from(loss);
    }
    if total > i128::from(i64::MAX) {
        return Err(QueryError::LossOverflow(format!("all cells total {total} cents")));
    }
    Ok(())
}

/// "YYYY-MM" as months since year 0.
pub(super) fn month_index(month: &str) -> Option<i32> {
    Some(month.get(..4)?.parse::<i32>().ok()? * 12 + month.get(5..7)?.parse::<i32>().ok()? - 1)
}
