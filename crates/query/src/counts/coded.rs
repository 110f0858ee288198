//! The netted cells as small integer codes, and the scan that filters and groups them for a
//! request.
//!
//! A request is answered with plain loops on its own threads, not with polars: polars
//! computes on one global thread pool, and the background netting of the next manifest keeps
//! that pool busy for seconds after a flush, a compaction or a rebuild. A request queued
//! behind it waited as long (254–329 ms at 3M and 10M events, issue 14). Here it only shares
//! the cores, as the operating system divides them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use observatory_store::layout::counts as stored;
use polars::prelude::*;

use super::{OPEN, QueryError};
use crate::request::Dimension;

/// The code of an absent value (no département for a national report). It sorts after every
/// other code, as polars sorts nulls last.
pub const NULL: u32 = u32::MAX;

/// Rows scanned by one thread: below this, a second thread costs more than it saves. (Tests
/// lower this and the next two so that small frames take every path.)
#[cfg(not(test))]
const ROWS_PER_THREAD: usize = 256 * 1024;
#[cfg(test)]
const ROWS_PER_THREAD: usize = 64;

/// Group keys are looked up in an array when the product of their dimensions' sizes is at
/// most this (4 MiB of slots), else hashed.
#[cfg(not(test))]
const DENSE_SLOTS: u128 = 1 << 20;
#[cfg(test)]
const DENSE_SLOTS: u128 = 64;

/// Group keys are hashed as one number when the product of their dimensions' sizes fits in
/// 128 bits (and below this bound, if any), else as their codes.
#[cfg(not(test))]
const NUMBERED_SLOTS: Option<u128> = None;
#[cfg(test)]
const NUMBERED_SLOTS: Option<u128> = Some(4096);

/// A cell's count and cell key in one integer: `count · 2³² + (key_sum mod 256)`. Summing it
/// sums both at once (the low part stays below 2³² for fewer than 16 million cells, and only its
/// value modulo 256 is used), so the public tier's cell keys cost the exact path nothing: one sum
/// per request, as before keys existed.
const PACKED_LIMIT: i64 = 1 << 31;

/// The distinct values of one dimension, sorted, so that a code's order is its value's.
enum Values {
    Text(Vec<String>),
    Years(Vec<i32>),
    /// `false` is 0, `true` is 1.
    Flags,
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Text(values) => values.len(),
            Values::Years(values) => values.len(),
            Values::Flags => 2,
        }
    }
}

struct Codes {
    /// One code per cell.
    codes: Vec<u32>,
    values: Values,
}

/// Netted cells with every dimension as a code into its sorted values: requests filter and
/// group on small integers; sorted values keep order (an ICCS subtree or a month range is a
/// range of codes), so only the few result rows are decoded back.
pub struct Coded {
    /// In [`Dimension::ALL`] order.
    dimensions: Vec<Codes>,
    /// Per cell, `count · 2³² + (key_sum mod 256)`.
    packed: Vec<i64>,
    loss_cents: Vec<i64>,
    /// 1 where the cell's source has not closed its month and département.
    open: Vec<i64>,
}

fn position(dimension: Dimension) -> usize {
    Dimension::ALL.iter().position(|d| *d == dimension).expect("every dimension is in ALL")
}

/// The codes of one dimension a request keeps (an absent value is never kept, as a polars
/// comparison with a null is never true).
pub struct Keep {
    dimension: usize,
    codes: Vec<bool>,
}

impl Keep {
    pub fn allow(&mut self, code: u32) {
        if let Some(kept) = self.codes.get_mut(code as usize) {
            *kept = true;
        }
    }

    pub fn allow_range(&mut self, codes: Range<u32>) {
        for code in codes {
            self.allow(code);
        }
    }

    fn keeps(&self, code: u32) -> bool {
        self.codes.get(code as usize).copied().unwrap_or(false)
    }
}

/// The groups of a scan: per group its codes (in the order asked for) and its sums.
pub struct Groups {
    width: usize,
    keys: Vec<u32>,
    sums: Vec<Sums>,
    /// The first and last month code among the kept cells, when asked for.
    pub months: Option<(u32, u32)>,
}

#[derive(Clone, Copy, Default)]
pub struct Sums {
    pub packed: i64,
    pub loss_cents: i64,
    pub open: i64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        self.packed = self.packed.wrapping_add(other.packed);
        self.loss_cents = self.loss_cents.wrapping_add(other.loss_cents);
        self.open = self.open.wrapping_add(other.open);
    }

    /// The summed count.
    pub fn count(&self) -> i64 {
        self.packed >> 32
    }

    /// The summed cell keys (only their value modulo 256 is used).
    pub fn key_sum(&self) -> i64 {
        self.packed & 0xffff_ffff
    }
}

impl Groups {
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    /// The codes of group `i`.
    pub fn key(&self, i: usize) -> &[u32] {
        &self.keys[i * self.width..(i + 1) * self.width]
    }

    pub fn sums(&self, i: usize) -> Sums {
        self.sums[i]
    }

    fn push(&mut self, key: &[u32], sums: Sums) -> usize {
        self.keys.extend_from_slice(key);
        self.sums.push(sums);
        self.sums.len() - 1
    }
}

impl Coded {
    /// Codes the netted cells (the stored columns, with [`OPEN`]).
    pub fn encode(cells: &DataFrame) -> Result<Coded, QueryError> {
        let mut dimensions = Vec::with_capacity(Dimension::ALL.len());
        for dimension in Dimension::ALL {
            let column = cells.column(dimension.column())?;
            dimensions.push(match dimension {
                Dimension::Year => {
                    let years = column.i32()?;
                    let (codes, values) = sorted_codes(|| years.iter());
                    Codes { codes, values: Values::Years(values) }
                }
                Dimension::Cyber => Codes {
                    codes: column.bool()?.iter().map(|b| b.map_or(NULL, u32::from)).collect(),
                    values: Values::Flags,
                },
                _ => {
                    let text = column.str()?;
                    let (codes, values) = sorted_codes(|| text.iter());
                    let values = values.into_iter().map(str::to_owned).collect();
                    Codes { codes, values: Values::Text(values) }
                }
            });
        }
        let numbers = |name: &str| -> Result<Vec<i64>, QueryError> {
            Ok(cells.column(name)?.i64()?.iter().map(|v| v.unwrap_or(0)).collect())
        };
        let counts = numbers(stored::COUNT)?;
        let keys = numbers(stored::KEY_SUM)?;
        let total: i64 = counts.iter().map(|c| (*c).max(0)).sum();
        if total >= PACKED_LIMIT || cells.height() >= 1 << 24 {
            return Err(QueryError::Capacity(format!(
                "{total} incidents in {} cells: the count netting holds fewer than 2^31 incidents and 2^24 cells",
                cells.height()
            )));
        }
        let packed = counts
            .iter()
            .zip(&keys)
            .map(|(count, key)| (count << 32) + key.rem_euclid(256))
            .collect();
        Ok(Coded {
            dimensions,
            packed,
            loss_cents: numbers(stored::LOSS_CENTS)?,
            open: numbers(OPEN)?,
        })
    }

    fn codes(&self, dimension: Dimension) -> &Codes {
        &self.dimensions[position(dimension)]
    }

    /// A filter on `dimension` that keeps nothing yet.
    pub fn keep_none(&self, dimension: Dimension) -> Keep {
        Keep {
            dimension: position(dimension),
            codes: vec![false; self.codes(dimension).values.len()],
        }
    }

    /// Codes of the values in `[low, high)` of a text dimension (its values are sorted).
    pub fn code_range(&self, dimension: Dimension, low: &str, high: &str) -> Range<u32> {
        let Values::Text(values) = &self.codes(dimension).values else { return 0..0 };
        let start = values.partition_point(|v| v.as_str() < low);
        let end = values.partition_point(|v| v.as_str() < high);
        start as u32..end as u32
    }

    /// The code of `value` in `dimension`, if any cell has it. A flag is `true` or anything
    /// else for `false`, as the request parser has already refused other words.
    pub fn code_of(&self, dimension: Dimension, value: &str) -> Option<u32> {
        match &self.codes(dimension).values {
            Values::Text(values) => {
                values.binary_search_by(|v| v.as_str().cmp(value)).ok().map(|c| c as u32)
            }
            Values::Years(values) => {
                let year: i32 = value.parse().ok()?;
                values.binary_search(&year).ok().map(|c| c as u32)
            }
            Values::Flags => Some(u32::from(value == "true")),
        }
    }

    /// The text of a code of a text dimension.
    pub fn text(&self, dimension: Dimension, code: u32) -> Option<&str> {
        match &self.codes(dimension).values {
            Values::Text(values) => values.get(code as usize).map(String::as_str),
            _ => None,
        }
    }

    /// A result column of `dimension` from the codes of its rows, named by the dimension.
    pub fn decode(&self, dimension: Dimension, codes: impl Iterator<Item = u32>) -> Column {
        let name = dimension.name().into();
        match &self.codes(dimension).values {
            Values::Text(values) => {
                let text: Vec<Option<&str>> =
                    codes.map(|c| values.get(c as usize).map(String::as_str)).collect();
                Column::new(name, text)
            }
            Values::Years(values) => {
                let years: Vec<Option<i32>> =
                    codes.map(|c| values.get(c as usize).copied()).collect();
                Column::new(name, years)
            }
            Values::Flags => {
                let flags: Vec<Option<bool>> =
                    codes.map(|c| (c != NULL).then_some(c == 1)).collect();
                Column::new(name, flags)
            }
        }
    }

    /// Sums the cells every `keep` keeps, per distinct codes of `by` (in that order), and,
    /// when `months` is set, finds the first and last month among them. Groups come in no
    /// particular order.
    pub fn scan(&self, keeps: &[Keep], by: &[Dimension], months: bool) -> Groups {
        let rows = self.packed.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(rows.div_ceil(ROWS_PER_THREAD))
            .max(1);
        let chunk = rows.div_ceil(threads).max(1);
        let by: Vec<usize> = by.iter().map(|d| position(*d)).collect();
        if threads == 1 {
            return self.scan_rows(0..rows, keeps, &by, months);
        }
        let by = &by;
        let parts: Vec<Groups> = std::thread::scope(|scope| {
            // The first range is scanned here; a range whose thread cannot be started (the
            // process is at its thread limit) is scanned here too, after it.
            let mut here: Vec<Range<usize>> = Vec::with_capacity(threads);
            here.push(0..chunk.min(rows));
            let mut started = Vec::new();
            for t in 1..threads {
                let range = t * chunk..((t + 1) * chunk).min(rows);
                let scan = {
                    let range = range.clone();
                    move || self.scan_rows(range, keeps, by, months)
                };
                match std::thread::Builder::new()
                    .name("count scan".into())
                    .spawn_scoped(scope, scan)
                {
                    Ok(handle) => started.push(handle),
                    Err(_) => here.push(range),
                }
            }
            let mut parts: Vec<Groups> =
                here.into_iter().map(|range| self.scan_rows(range, keeps, by, months)).collect();
            for handle in started {
                match handle.join() {
                    Ok(part) => parts.push(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            parts
        });
        merge(parts, by.len())
    }

    fn scan_rows(&self, rows: Range<usize>, keeps: &[Keep], by: &[usize], months: bool) -> Groups {
        let filters: Vec<(&[u32], &Keep)> =
            keeps.iter().map(|k| (self.dimensions[k.dimension].codes.as_slice(), k)).collect();
        let columns: Vec<(&[u32], u128)> = by
            .iter()
            .map(|&d| {
                (self.dimensions[d].codes.as_slice(), self.dimensions[d].values.len() as u128 + 1)
            })
            .collect();
        let month_codes = &self.codes(Dimension::Month).codes;
        let mut groups =
            Groups { width: by.len(), keys: Vec::new(), sums: Vec::new(), months: None };
        let mut key = vec![0u32; by.len()];
        let slots = columns
            .iter()
            .try_fold(1u128, |product, (_, radix)| product.checked_mul(*radix))
            .filter(|n| NUMBERED_SLOTS.is_none_or(|most| *n <= most));
        // A key as one integer, each code (an absent one as the dimension's size) a digit.
        let number = |i: usize| {
            columns.iter().fold(0u128, |n, (codes, radix)| {
                let code = codes[i];
                n * radix + if code == NULL { radix - 1 } else { u128::from(code) }
            })
        };
        let mut dense = match slots {
            Some(n) if n <= DENSE_SLOTS => vec![u32::MAX; n as usize],
            _ => Vec::new(),
        };
        let mut hashed: HashMap<u128, u32, foldhash::fast::RandomState> = HashMap::default();
        let mut wide: HashMap<Vec<u32>, u32> = HashMap::new();
        for i in rows {
            if !filters.iter().all(|(codes, keep)| keep.keeps(codes[i])) {
                continue;
            }
            if months {
                let month = month_codes[i];
                if month != NULL {
                    groups.months = Some(match groups.months {
                        Some((first, last)) => (first.min(month), last.max(month)),
                        None => (month, month),
                    });
                }
            }
            let sums =
                Sums { packed: self.packed[i], loss_cents: self.loss_cents[i], open: self.open[i] };
            let fill = |key: &mut Vec<u32>| {
                for (k, (codes, _)) in key.iter_mut().zip(&columns) {
                    *k = codes[i];
                }
            };
            let group = match slots {
                Some(_) if !dense.is_empty() => {
                    let slot = &mut dense[number(i) as usize];
                    if *slot == u32::MAX {
                        fill(&mut key);
                        *slot = groups.push(&key, Sums::default()) as u32;
                    }
                    *slot
                }
                Some(_) => *hashed.entry(number(i)).or_insert_with(|| {
                    fill(&mut key);
                    groups.push(&key, Sums::default()) as u32
                }),
                None => {
                    fill(&mut key);
                    match wide.get(&key) {
                        Some(group) => *group,
                        None => {
                            let group = groups.push(&key, Sums::default()) as u32;
                            wide.insert(key.clone(), group);
                            group
                        }
                    }
                }
            };
            groups.sums[group as usize].add(sums);
        }
        groups
    }
}

/// A column's values as codes into its sorted distinct values (an absent value as [`NULL`]).
/// `column` gives the values, once to find them and once to code them.
fn sorted_codes<T: Copy + Ord + std::hash::Hash, I: Iterator<Item = Option<T>>>(
    column: impl Fn() -> I,
) -> (Vec<u32>, Vec<T>) {
    let mut values: Vec<T> = column().flatten().collect::<HashSet<_>>().into_iter().collect();
    values.sort_unstable();
    let index: HashMap<T, u32> = values.iter().enumerate().map(|(i, v)| (*v, i as u32)).collect();
    let codes = column().map(|v| v.map_or(NULL, |v| index[&v])).collect();
    (codes, values)
}

/// The groups of several scans of disjoint rows as one.
fn merge(parts: Vec<Groups>, width: usize) -> Groups {
    let mut merged = Groups { width, keys: Vec::new(), sums: Vec::new(), months: None };
    let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
    for part in parts {
        merged.months = match (merged.months, part.months) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (first, second) => first.or(second),
        };
        for i in 0..part.len() {
            let key = part.key(i);
            match index.get(key) {
                Some(&group) => merged.sums[group].add(part.sums(i)),
                None => {
                    let group = merged.push(key, part.sums(i));
                    index.insert(key.to_vec(), group);
                }
            }
        }
    }
    merged
}
