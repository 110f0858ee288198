//! A small RFC 4180 reader: no IO, the caller hands over the text.
//!
//! Rules (chosen to read what R's `write.csv(..., na = "")` writes the way `read.csv` reads it):
//! - the first record is the header; a UTF-8 byte-order mark is ignored;
//! - fields are separated by commas, records by LF or CRLF; quoted fields may hold commas,
//!   line breaks and doubled quotes (`""`);
//! - an empty unquoted field, or an unquoted `NA`, is missing; a quoted value never is;
//! - a column is numeric when every non-missing value parses as a number (surrounding spaces
//!   allowed), otherwise text. Numeric columns keep their original text when it differs from the
//!   number's canonical form, so ids with leading zeros still print as written;
//! - completely empty lines are skipped; a record with the wrong number of fields is an error.

use crate::error::StatsError;
use crate::hash::fx_map;
use crate::table::{ColumnData, MISSING, Table, TextBuf, format_number};

struct RawColumn {
    text: TextBuf,
    missing: Vec<bool>,
}

pub(crate) fn parse(input: &str) -> Result<Table, StatsError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut reader = Reader { bytes: input.as_bytes(), src: input, pos: 0, line: 1 };

    let header = loop {
        match reader.record()? {
            None => {
                return Err(StatsError::Csv {
                    line: 1,
                    message: "the text is empty: a header line is needed".into(),
                });
            }
            Some(rec) if rec.is_blank() => continue,
            Some(rec) => break rec,
        }
    };
    let names: Vec<String> = header.fields.iter().map(|f| f.text.clone()).collect();
    let mut columns: Vec<RawColumn> =
        names.iter().map(|_| RawColumn { text: TextBuf::default(), missing: Vec::new() }).collect();

    while let Some(rec) = reader.record()? {
        if rec.is_blank() {
            continue;
        }
        if rec.fields.len() != names.len() {
            return Err(StatsError::Csv {
                line: rec.line,
                message: format!(
                    "{} fields but the header has {}; check quoting and separators",
                    rec.fields.len(),
                    names.len()
                ),
            });
        }
        for (col, field) in columns.iter_mut().zip(rec.fields) {
            let missing = !field.quoted && (field.text.is_empty() || field.text == "NA");
            col.missing.push(missing);
            col.text.push(if missing { "" } else { &field.text });
        }
    }

    let mut table = Table::new();
    for (name, raw) in names.into_iter().zip(columns) {
        let data = finish_column(raw);
        table.push_column(name, data)?;
    }
    Ok(table)
}

/// Decides numeric vs text once the whole column is known.
fn finish_column(raw: RawColumn) -> ColumnData {
    let n = raw.missing.len();
    let mut values = Vec::with_capacity(n);
    let mut numeric = true;
    let mut canonical = true;
    for row in 0..n {
        if raw.missing[row] {
            values.push(f64::NAN);
            continue;
        }
        let s = raw.text.get(row);
        match s.trim().parse::<f64>() {
            Ok(v) => {
                if canonical && format_number(v) != s {
                    canonical = false;
                }
                values.push(v);
            }
            Err(_) => {
                numeric = false;
                break;
            }
        }
    }
    if numeric {
        return ColumnData::Numeric { values, text: if canonical { None } else { Some(raw.text) } };
    }
    let mut dict = fx_map::<&str, u32>(64);
    let mut levels: Vec<String> = Vec::new();
    let mut codes = Vec::with_capacity(n);
    for row in 0..n {
        if raw.missing[row] {
            codes.push(MISSING);
            continue;
        }
        let s = raw.text.get(row);
        let next = levels.len() as u32;
        let c = *dict.entry(s).or_insert_with(|| {
            levels.push(s.to_string());
            next
        });
        codes.push(c);
    }
    ColumnData::Text { codes, levels }
}

struct Field {
    text: String,
    quoted: bool,
}

struct Record {
    fields: Vec<Field>,
    line: usize,
}

impl Record {
    fn is_blank(&self) -> bool {
        self.fields.len() == 1 && !self.fields[0].quoted && self.fields[0].text.is_empty()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    src: &'a str,
    pos: usize,
    line: usize,
}

impl Reader<'_> {
    /// Reads one record, or `None` at the end of the text.
    fn record(&mut self) -> Result<Option<Record>, StatsError> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let line = self.line;
        let mut fields = Vec::new();
        loop {
            let field = self.field(line)?;
            fields.push(field);
            match self.bytes.get(self.pos) {
                None => break,
                Some(b',') => {
                    self.pos += 1;
                }
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    break;
                }
                Some(b'\r') => {
                    self.pos += 1;
                    if self.bytes.get(self.pos) == Some(&b'\n') {
                        self.pos += 1;
                    }
                    self.line += 1;
                    break;
                }
                Some(_) => unreachable!("field() stops only at a separator or the end"),
            }
        }
        Ok(Some(Record { fields, line }))
    }

    fn field(&mut self, record_line: usize) -> Result<Field, StatsError> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            let start = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b',' || b == b'\n' || b == b'\r' {
                    break;
                }
                if b == b'"' {
                    return Err(StatsError::Csv {
                        line: self.line,
                        message: "a quote inside an unquoted field; quote the whole field and double inner quotes (\"\")".into(),
                    });
                }
                self.pos += 1;
            }
            return Ok(Field { text: self.src[start..self.pos].to_string(), quoted: false });
        }
        self.pos += 1;
        let mut text = String::new();
        let mut start = self.pos;
        loop {
            match self.bytes.get(self.pos) {
                None => {
                    return Err(StatsError::Csv {
                        line: record_line,
                        message: "a quoted field is not closed before the end of the text".into(),
                    });
                }
                Some(b'"') => {
                    text.push_str(&self.src[start..self.pos]);
                    if self.bytes.get(self.pos + 1) == Some(&b'"') {
                        text.push('"');
                        self.pos += 2;
                        start = self.pos;
                    } else {
                        self.pos += 1;
                        break;
                    }
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
        match self.bytes.get(self.pos) {
            None | Some(b',') | Some(b'\n') | Some(b'\r') => Ok(Field { text, quoted: true }),
            Some(_) => Err(StatsError::Csv {
                line: self.line,
                message:
                    "text after a closing quote; a quoted field must end at a comma or line end"
                        .into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_missing_and_types() {
        let t = Table::from_csv_str(
            "\u{feff}\"id\",x,name,note\r\n\"007\",1.5,\"a, b\",\"say \"\"hi\"\"\"\n\"010\",,NA,\"\"\n\"011\",2,\"NA\",\"line\nbreak\"\n",
        )
        .unwrap();
        assert_eq!(t.n_rows(), 3);
        let id = t.column("id").unwrap();
        assert!(id.is_numeric(), "quoted digits are numbers, as read.csv reads them");
        assert_eq!(id.numeric().unwrap(), &[7.0, 10.0, 11.0]);
        assert_eq!(id.text(0).unwrap(), "007", "original text kept");
        let x = t.column("x").unwrap();
        assert_eq!(x.numeric().unwrap()[0], 1.5);
        assert!(x.is_missing(1), "empty unquoted field is missing");
        let name = t.column("name").unwrap();
        assert!(!name.is_numeric());
        assert_eq!(name.text(0).unwrap(), "a, b");
        assert!(name.is_missing(1), "unquoted NA is missing");
        assert_eq!(name.text(2).unwrap(), "NA", "quoted NA is a value");
        let note = t.column("note").unwrap();
        assert_eq!(note.text(0).unwrap(), "say \"hi\"");
        assert_eq!(note.text(1).unwrap(), "", "empty quoted field is an empty string, not missing");
        assert_eq!(note.text(2).unwrap(), "line\nbreak");
    }

    #[test]
    fn numeric_text_is_dropped_when_canonical() {
        let t = Table::from_csv_str("a\n1\n2.5\n\n-3\n").unwrap();
        assert_eq!(t.n_rows(), 3, "blank line skipped");
        assert_eq!(t.column("a").unwrap().text(2).unwrap(), "-3");
    }

    #[test]
    fn errors_say_where() {
        let e = Table::from_csv_str("a,b\n1,2\n3\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Table::from_csv_str("a,b\n\"1,2\n").unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
        let e = Table::from_csv_str("a,a\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("duplicate column"), "{e}");
        let e = Table::from_csv_str("a\nx\"y\n").unwrap_err();
        assert!(e.to_string().contains("unquoted"), "{e}");
    }

    #[test]
    fn mixed_column_is_text() {
        let t = Table::from_csv_str("a\n1\nx\n").unwrap();
        let a = t.column("a").unwrap();
        assert!(!a.is_numeric());
        assert_eq!(a.text(0).unwrap(), "1");
    }
}
