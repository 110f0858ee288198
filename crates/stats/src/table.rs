//! The input shape: named columns, numeric (NaN = missing) or text (dictionary-encoded).
//!
//! Numeric columns read from CSV keep their original text when it differs from the canonical
//! rendering of the number, so that an id such as `cds` = "01612910137588" is shown as written
//! while still grouping the way R groups it (by numeric value, since R reads it as a number).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::StatsError;
use crate::hash::fx_map;

/// Code used in dense code vectors for a missing value.
pub(crate) const MISSING: u32 = u32::MAX;

/// A table of equally long named columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    n_rows: usize,
    columns: Vec<Column>,
    by_name: HashMap<String, usize>,
}

/// One named column.
#[derive(Debug, Clone)]
pub struct Column {
    name: String,
    data: ColumnData,
}

#[derive(Debug, Clone)]
pub(crate) enum ColumnData {
    Numeric { values: Vec<f64>, text: Option<TextBuf> },
    Text { codes: Vec<u32>, levels: Vec<String> },
}

/// Per-row strings packed in one buffer (row i is `buf[ends[i-1]..ends[i]]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TextBuf {
    pub(crate) buf: String,
    pub(crate) ends: Vec<usize>,
}

impl TextBuf {
    pub(crate) fn get(&self, row: usize) -> &str {
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        &self.buf[start..self.ends[row]]
    }
    pub(crate) fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }
}

/// Dense integer codes for the distinct values of a column, as R's `factor()` would see them.
#[derive(Debug, Clone)]
pub(crate) struct Factor {
    /// Per row: the level index, or [`MISSING`].
    pub(crate) codes: Vec<u32>,
    /// Per level: the first row holding it (to render its label).
    pub(crate) first_row: Vec<u32>,
}

impl Factor {
    pub(crate) fn n_levels(&self) -> usize {
        self.first_row.len()
    }
}

impl Table {
    /// An empty table; the first column added fixes the number of rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses RFC 4180 CSV text: header line first; an empty unquoted field or an unquoted `NA`
    /// is missing; a column whose non-missing values all parse as numbers is numeric (keeping
    /// its original text when that differs, e.g. leading zeros), otherwise text.
    pub fn from_csv_str(text: &str) -> Result<Table, StatsError> {
        crate::csv::parse(text)
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn n_columns(&self) -> usize {
        self.columns.len()
    }

    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.by_name.get(name).map(|&i| &self.columns[i])
    }

    /// The column, or an error naming it, what it was wanted for and what exists.
    pub fn require(&self, name: &str, role: &str) -> Result<&Column, StatsError> {
        self.column(name).ok_or_else(|| {
            let mut available: Vec<&str> = self.column_names().collect();
            let total = available.len();
            available.truncate(40);
            let mut list = available.join(", ");
            if total > 40 {
                list.push_str(&format!(", … ({total} columns)"));
            }
            StatsError::UnknownColumn {
                column: name.to_string(),
                role: role.to_string(),
                available: list,
            }
        })
    }

    /// Adds a numeric column; NaN marks a missing value.
    pub fn add_numeric(
        &mut self,
        name: impl Into<String>,
        values: Vec<f64>,
    ) -> Result<&mut Self, StatsError> {
        let name = name.into();
        let n = values.len();
        self.push(Column { name, data: ColumnData::Numeric { values, text: None } }, n)
    }

    /// Adds a numeric column with explicit missing values.
    pub fn add_numeric_opt(
        &mut self,
        name: impl Into<String>,
        values: Vec<Option<f64>>,
    ) -> Result<&mut Self, StatsError> {
        let values = values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        self.add_numeric(name, values)
    }

    /// Adds a text (categorical) column; `None` marks a missing value.
    pub fn add_text<S: AsRef<str>>(
        &mut self,
        name: impl Into<String>,
        values: &[Option<S>],
    ) -> Result<&mut Self, StatsError> {
        let mut dict = fx_map::<String, u32>(64);
        let mut levels: Vec<String> = Vec::new();
        let codes = values
            .iter()
            .map(|v| match v {
                None => MISSING,
                Some(s) => {
                    let s = s.as_ref();
                    if let Some(&c) = dict.get(s) {
                        c
                    } else {
                        let c = levels.len() as u32;
                        dict.insert(s.to_string(), c);
                        levels.push(s.to_string());
                        c
                    }
                }
            })
            .collect();
        let n = values.len();
        self.push(Column { name: name.into(), data: ColumnData::Text { codes, levels } }, n)
    }

    pub(crate) fn push_column(&mut self, name: String, data: ColumnData) -> Result<(), StatsError> {
        let n = match &data {
            ColumnData::Numeric { values, .. } => values.len(),
            ColumnData::Text { codes, .. } => codes.len(),
        };
        self.push(Column { name, data }, n).map(|_| ())
    }

    fn push(&mut self, column: Column, n: usize) -> Result<&mut Self, StatsError> {
        if self.by_name.contains_key(&column.name) {
            return Err(StatsError::DuplicateColumn { column: column.name });
        }
        if self.columns.is_empty() {
            self.n_rows = n;
        } else if n != self.n_rows {
            return Err(StatsError::ColumnLength {
                column: column.name,
                expected: self.n_rows,
                actual: n,
            });
        }
        self.by_name.insert(column.name.clone(), self.columns.len());
        self.columns.push(column);
        Ok(self)
    }
}

impl Column {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self.data, ColumnData::Numeric { .. })
    }

    /// The values of a numeric column (NaN = missing), `None` for a text column.
    pub fn numeric(&self) -> Option<&[f64]> {
        match &self.data {
            ColumnData::Numeric { values, .. } => Some(values),
            ColumnData::Text { .. } => None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ColumnData::Numeric { values, .. } => values.len(),
            ColumnData::Text { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_missing(&self, row: usize) -> bool {
        match &self.data {
            ColumnData::Numeric { values, .. } => values[row].is_nan(),
            ColumnData::Text { codes, .. } => codes[row] == MISSING,
        }
    }

    /// The value of a row as text (as written in the CSV where that is known), `None` if missing.
    pub fn text(&self, row: usize) -> Option<Cow<'_, str>> {
        match &self.data {
            ColumnData::Numeric { values, text } => {
                if values[row].is_nan() {
                    None
                } else if let Some(t) = text {
                    Some(Cow::Borrowed(t.get(row)))
                } else {
                    Some(Cow::Owned(format_number(values[row])))
                }
            }
            ColumnData::Text { codes, levels } => {
                let c = codes[row];
                (c != MISSING).then(|| Cow::Borrowed(levels[c as usize].as_str()))
            }
        }
    }

    /// Numeric values, or an error naming the first non-numeric row.
    pub(crate) fn require_numeric(&self, role: &str) -> Result<&[f64], StatsError> {
        match &self.data {
            ColumnData::Numeric { values, .. } => Ok(values),
            ColumnData::Text { codes, levels } => {
                // Point at the first value that is not a number (the column may hold some).
                let not_number =
                    |c: u32| c != MISSING && levels[c as usize].trim().parse::<f64>().is_err();
                let row = codes
                    .iter()
                    .position(|&c| not_number(c))
                    .or_else(|| codes.iter().position(|&c| c != MISSING))
                    .unwrap_or(0);
                let value = codes
                    .get(row)
                    .filter(|&&c| c != MISSING)
                    .map(|&c| levels[c as usize].clone())
                    .unwrap_or_default();
                Err(StatsError::NotNumeric {
                    column: self.name.clone(),
                    role: role.to_string(),
                    row: row + 1,
                    value,
                })
            }
        }
    }

    /// Dense codes of the distinct values. Numeric columns group by numeric value (as R does once
    /// it has read the column as numbers), text columns by exact text. With `sorted`, levels are in
    /// R's `factor()` order (numeric order, or byte order of the text); otherwise in order of first
    /// appearance, which is cheaper and enough for cluster ids.
    pub(crate) fn factor(&self, sorted: bool) -> Factor {
        match &self.data {
            ColumnData::Text { codes, levels } => {
                let mut first_row = vec![u32::MAX; levels.len()];
                for (i, &c) in codes.iter().enumerate() {
                    if c != MISSING && first_row[c as usize] == u32::MAX {
                        first_row[c as usize] = i as u32;
                    }
                }
                // Levels never used (possible only for hand-built columns) are dropped.
                let mut order: Vec<u32> = (0..levels.len() as u32)
                    .filter(|&l| first_row[l as usize] != u32::MAX)
                    .collect();
                if sorted {
                    order.sort_by(|&a, &b| {
                        levels[a as usize].as_bytes().cmp(levels[b as usize].as_bytes())
                    });
                } else {
                    order.sort_by_key(|&l| first_row[l as usize]);
                }
                remap(codes, &order, levels.len(), &first_row)
            }
            ColumnData::Numeric { values, .. } => {
                let mut dict = fx_map::<u64, u32>(1024);
                let mut first_row: Vec<u32> = Vec::new();
                let mut codes = Vec::with_capacity(values.len());
                for (i, &v) in values.iter().enumerate() {
                    if v.is_nan() {
                        codes.push(MISSING);
                        continue;
                    }
                    // -0.0 and 0.0 are the same value to R.
                    let key = if v == 0.0 { 0u64 } else { v.to_bits() };
                    let next = first_row.len() as u32;
                    let c = *dict.entry(key).or_insert_with(|| {
                        first_row.push(i as u32);
                        next
                    });
                    codes.push(c);
                }
                if !sorted {
                    return Factor { codes, first_row };
                }
                let mut order: Vec<u32> = (0..first_row.len() as u32).collect();
                order.sort_by(|&a, &b| {
                    values[first_row[a as usize] as usize]
                        .total_cmp(&values[first_row[b as usize] as usize])
                });
                remap(&codes, &order, first_row.len(), &first_row)
            }
        }
    }
}

/// Renumbers `codes` so that old level `order[k]` becomes level k.
fn remap(codes: &[u32], order: &[u32], n_old: usize, first_row_old: &[u32]) -> Factor {
    let mut new_of_old = vec![MISSING; n_old];
    for (new, &old) in order.iter().enumerate() {
        new_of_old[old as usize] = new as u32;
    }
    let codes = codes
        .iter()
        .map(|&c| if c == MISSING { MISSING } else { new_of_old[c as usize] })
        .collect();
    let first_row = order.iter().map(|&old| first_row_old[old as usize]).collect();
    Factor { codes, first_row }
}

/// Shortest text that reads back to the same number (Rust's `Display` for f64), which matches
/// R's `as.character()` for the integers and short decimals that ids and codes use.
pub(crate) fn format_number(v: f64) -> String {
    format!("{v}")
}
