//! A report's tables: typed cells (numbers stay numbers in the workbook), the note that goes
//! with each table, and the API request it was read from.

use serde::Serialize;

/// One cell. A withheld or missing value is `Empty` with the reason in `Text` beside it,
/// never a zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    Int(i64),
    /// A number shown with `decimals` places (rates, percentages, estimates).
    Num {
        value: f64,
        decimals: u8,
    },
    Text(String),
    Empty,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    pub fn num(value: f64, decimals: u8) -> Cell {
        if value.is_finite() { Cell::Num { value, decimals } } else { Cell::Empty }
    }

    pub fn opt_int(value: Option<i64>) -> Cell {
        value.map_or(Cell::Empty, Cell::Int)
    }

    pub fn opt_num(value: Option<f64>, decimals: u8) -> Cell {
        value.map_or(Cell::Empty, |v| Cell::num(v, decimals))
    }

    /// The cell as the PDF prints it: thousands separated by a comma, fixed decimals, an
    /// en dash for nothing.
    pub fn display(&self) -> String {
        match self {
            Cell::Int(v) => group(*v),
            Cell::Num { value, decimals } => {
                let fixed = format!("{:.*}", *decimals as usize, value.abs());
                let (int, frac) =
                    fixed.split_once('.').map_or((fixed.as_str(), None), |(i, f)| (i, Some(f)));
                let int: i64 = int.parse().unwrap_or(0);
                let sign = if *value < 0.0 && fixed.bytes().any(|b| b.is_ascii_digit() && b != b'0')
                {
                    "-"
                } else {
                    ""
                };
                match frac {
                    Some(frac) => format!("{sign}{}.{frac}", group(int)),
                    None => format!("{sign}{}", group(int)),
                }
            }
            Cell::Text(s) => s.clone(),
            Cell::Empty => "–".to_owned(),
        }
    }

    /// The cell in CSV: plain digits, a dot for decimals, empty for nothing.
    pub fn csv(&self) -> String {
        match self {
            Cell::Int(v) => v.to_string(),
            Cell::Num { value, decimals } => format!("{:.*}", *decimals as usize, value),
            Cell::Text(s) => s.clone(),
            Cell::Empty => String::new(),
        }
    }
}

fn group(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// File and sheet name: short, `[a-z0-9_]`.
    pub id: String,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// What a reader must know to read it (units, provisional marks, perturbation).
    pub notes: Vec<String>,
    /// The API requests the table was read from, so anyone can ask them again.
    pub sources: Vec<String>,
}

impl Table {
    pub fn new(id: &str, title: impl Into<String>, columns: &[&str]) -> Table {
        Table {
            id: id.to_owned(),
            title: title.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            sources: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width of table {}", self.id);
        self.rows.push(row);
    }

    /// RFC 4180 CSV with a header line, `\n` line ends (byte-stable across platforms).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
            let fields: Vec<String> = cells.map(|c| quote(&c)).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        };
        line(&mut out, &mut self.columns.iter().cloned());
        for row in &self.rows {
            line(&mut out, &mut row.iter().map(Cell::csv));
        }
        out
    }
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_print_grouped_and_fixed() {
        assert_eq!(Cell::Int(1234567).display(), "1,234,567");
        assert_eq!(Cell::Int(-1000).display(), "-1,000");
        assert_eq!(Cell::Int(999).display(), "999");
        assert_eq!(Cell::num(12345.678, 1).display(), "12,345.7");
        assert_eq!(Cell::num(-0.04, 1).display(), "0.0");
        assert_eq!(Cell::num(-2.5, 1).display(), "-2.5");
        assert_eq!(Cell::num(3.0, 0).display(), "3");
        assert_eq!(Cell::num(f64::NAN, 1), Cell::Empty);
        assert_eq!(Cell::Empty.display(), "–");
        assert_eq!(Cell::num(12345.678, 2).csv(), "12345.68");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut t = Table::new("t", "T", &["name", "count"]);
        t.push(vec![Cell::text("Fraud, \"online\""), Cell::Int(3)]);
        t.push(vec![Cell::text("x"), Cell::Empty]);
        assert_eq!(t.to_csv(), "name,count\n\"Fraud, \"\"online\"\"\",3\nx,\n");
    }
}
