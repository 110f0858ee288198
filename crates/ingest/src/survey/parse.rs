//! Survey bodies: respondent rows as CSV, NDJSON or Parquet, each row kept with its line so
//! that a problem is answered on that line, and the final weights of a closure.

use std::collections::BTreeMap;

use bytes::Bytes;
use observatory_model::survey::{Cell, parse_close_json, parse_json_row};

use crate::parse::{BodyError, at_most, ndjson_lines, read_csv, strip_bom};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFormat {
    Csv,
    Ndjson,
    Parquet,
}

impl BodyFormat {
    pub(super) fn from_content_type(content_type: &str) -> Option<BodyFormat> {
        match crate::upload::essence(content_type).as_str() {
            "text/csv" => Some(BodyFormat::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(BodyFormat::Ndjson)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(BodyFormat::Parquet),
            _ => None,
        }
    }
}

/// One row of the body: its line (CSV/NDJSON physical line, the header being line 1; the
/// 1-based row number for Parquet), its cells or why they cannot be read, and the keys it sent
/// more than once (each is rejected on its own field).
pub(super) type BodyRow = (u64, Result<Vec<(String, Option<Cell>)>, String>, Vec<String>);

/// The rows of a body, at most `max_rows` of them (as for incident records, a refused row
/// holds an error per problem, and a compressed Parquet body can hold millions of rows):
/// beyond, the body is refused whole, before the rows past the cap are kept (Parquet: before
/// any is decoded, from the row count in its footer).
pub(super) fn parse_rows(
    format: BodyFormat,
    body: &[u8],
    max_rows: usize,
) -> Result<Vec<BodyRow>, BodyError> {
    match format {
        BodyFormat::Parquet => parse_parquet(body, max_rows),
        _ => {
            let text = std::str::from_utf8(body).map_err(|e| {
                BodyError::Unreadable(format!(
                    "body is not valid UTF-8 (at byte {})",
                    e.valid_up_to()
                ))
            })?;
            if format == BodyFormat::Csv {
                parse_csv(text, max_rows)
            } else {
                parse_ndjson(strip_bom(text), max_rows)
            }
        }
    }
}

fn parse_ndjson(text: &str, max_rows: usize) -> Result<Vec<BodyRow>, BodyError> {
    at_most(
        max_rows,
        ndjson_lines(text).map(|(at, line)| {
            let (row, repeated) = match parse_json_row(line) {
                Ok(row) => match row.repeated.as_slice() {
                    [] => (Ok(row.cells), row.repeated),
                    [key] => (
                        Err(format!("'{key}' appears twice in the record; send each field once")),
                        row.repeated.clone(),
                    ),
                    keys => (
                        Err(format!(
                            "'{}' each appear twice in the record; send each field once",
                            keys.join("', '")
                        )),
                        row.repeated.clone(),
                    ),
                },
                Err(error) => (Err(error), Vec::new()),
            };
            (at, row, repeated)
        }),
    )
}

/// CSV cells stay text; [`validate_row`](observatory_model::survey::validate_row) reads them by the declared type, as R reads a CSV.
/// The body is read as the incident feed's is ([`read_csv`]): a repeated column fails the
/// body, an unclosed quote rejects its line and reading goes on after it.
fn parse_csv(text: &str, max_rows: usize) -> Result<Vec<BodyRow>, BodyError> {
    let mut rows = Vec::new();
    read_csv(text, max_rows, |header, line, record| {
        let cells = record.map(|record| {
            header
                .iter()
                .zip(record.iter())
                .map(|(h, cell)| {
                    (h.clone(), (!cell.is_empty()).then(|| Cell::Text(cell.to_owned())))
                })
                .collect()
        });
        rows.push((line, cells, Vec::new()));
    })?;
    Ok(rows)
}

/// Parquet goes through the same Arrow conversion as `observatory estimate` and the survey
/// query: numeric columns as numbers, everything else as text.
///
/// The parquet and arrow-ipc crates still assert on some corrupt files (found by fuzzing: a
/// negative column offset, an embedded Arrow schema of type NONE): such a panic refuses the
/// body like any unreadable file instead of dropping the connection unanswered.
fn parse_parquet(body: &[u8], max_rows: usize) -> Result<Vec<BodyRow>, BodyError> {
    std::panic::catch_unwind(|| read_parquet(body, max_rows)).unwrap_or_else(|_| {
        Err(BodyError::Unreadable(
            "body is not a readable Parquet file: its metadata is corrupt".to_owned(),
        ))
    })
}

fn read_parquet(body: &[u8], max_rows: usize) -> Result<Vec<BodyRow>, BodyError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        BodyError::Unreadable(format!("body is not a readable Parquet file: {e}"))
    };
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        Bytes::copy_from_slice(body),
    )
    .map_err(|e| unreadable(&e))?;
    // The footer's row count, before a page is decompressed.
    let declared = builder.metadata().file_metadata().num_rows();
    let declared = usize::try_from(declared)
        .map_err(|_| unreadable(&format_args!("its footer declares {declared} rows")))?;
    if declared > max_rows {
        return Err(BodyError::TooManyRecords { max: max_rows });
    }
    let reader = builder.build().map_err(|e| unreadable(&e))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BodyError::Unreadable(format!("reading the Parquet body: {e}")))?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let table = observatory_stats::Table::from_record_batches(&batches)
        .map_err(|e| BodyError::Unreadable(e.to_string()))?;
    let columns: Vec<_> = table.column_names().filter_map(|n| table.column(n)).collect();
    Ok((0..table.n_rows())
        .map(|row| {
            let cells = columns
                .iter()
                .map(|column| {
                    let cell = match column.numeric() {
                        Some(values) => Some(values[row]).filter(|x| !x.is_nan()).map(Cell::Number),
                        None => column.text(row).map(|t| Cell::Text(t.into_owned())),
                    };
                    (column.name().to_owned(), cell)
                })
                .collect();
            (row as u64 + 1, Ok(cells), Vec::new())
        })
        .collect())
}

/// Final weights from a two-column CSV (respondent id, weight), numbers parsed exactly.
fn parse_close_csv(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header =
        reader.headers().map_err(|e| format!("cannot read the CSV header row: {e}"))?.clone();
    if header.len() != 2 {
        return Err(format!(
            "expected two columns (respondent id, final weight), the header has {}",
            header.len()
        ));
    }
    let mut weights = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("unreadable CSV row: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record[0].to_owned();
        let weight = record[1].trim().parse::<f64>().map_err(|_| {
            format!("line {line}, column {}: '{}' is not a number", &header[1], &record[1])
        })?;
        if weights.insert(id.clone(), weight).is_some() {
            return Err(format!(
                "line {line}, column {}: respondent '{id}' has a second weight",
                &header[0]
            ));
        }
    }
    Ok(weights)
}

/// The final weights of a closure: none for an empty body (the design weights stay), a
/// two-column CSV when the body says `text/csv`, the JSON object otherwise.
pub(super) fn parse_close(
    text: &str,
    format: Option<BodyFormat>,
) -> Result<BTreeMap<String, f64>, String> {
    if text.trim().is_empty() {
        Ok(BTreeMap::new())
    } else if format == Some(BodyFormat::Csv) {
        parse_close_csv(text)
    } else {
        parse_close_json(text).map_err(|e| {
            format!(
                "expected {{}} or {{\"final_weights\": {{\"<respondent id>\": weight, …}}}}: {e}"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::DEFAULT_MAX_RECORDS;

    #[test]
    fn csv_keeps_lines_and_text_cells_and_refuses_repeated_columns() {
        let rows = parse_csv("id,x,y\nA,1.5,\nB,2\n", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(rows[0].0, 2);
        let a = rows[0].1.as_ref().unwrap();
        assert_eq!(a[1], ("x".to_owned(), Some(Cell::Text("1.5".into()))));
        assert_eq!(a[2], ("y".to_owned(), None));
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].1.as_ref().unwrap_err().contains("header has 3 columns"));
        assert!(
            parse_csv("id,x,x\n", DEFAULT_MAX_RECORDS).unwrap_err().to_string().contains("twice")
        );
    }

    #[test]
    fn a_repeated_column_or_key_is_refused_naming_it() {
        let error = parse_csv("id,x,y,x\nA,1,2,3\n", DEFAULT_MAX_RECORDS).unwrap_err().to_string();
        assert!(error.contains("'x'") && error.contains("columns 2 and 4"), "{error}");
        let rows = parse_rows(
            BodyFormat::Ndjson,
            b"{\"id\":\"A\",\"x\":1}\n{\"id\":\"B\",\"x\":1,\"x\":2}\n{\"id\":\"C\"}\n",
            DEFAULT_MAX_RECORDS,
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(rows[0].1.is_ok() && rows[2].1.is_ok());
        let error = rows[1].1.as_ref().unwrap_err();
        assert!(error.contains("'x'") && error.contains("appears twice in the record"), "{error}");
        assert_eq!(rows[1].2, ["x"], "the repeated key is named on its own");
    }

    #[test]
    fn an_unclosed_quote_rejects_its_line_and_the_next_lines_are_read() {
        let rows = parse_rows(BodyFormat::Csv, b"id,x\nA,\"1\nB,2\n", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3]);
        assert!(rows[0].1.as_ref().unwrap_err().contains("unclosed quote"));
        assert_eq!(rows[1].1.as_ref().unwrap()[1], ("x".to_owned(), Some(Cell::Text("2".into()))));
        // A record over several lines with the wrong size says so; CRLF lines count once.
        let rows = parse_rows(
            BodyFormat::Csv,
            b"id,x\r\nA,\"1\r\nB\",2,3\r\nC,4\r\n",
            DEFAULT_MAX_RECORDS,
        )
        .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4]);
        assert!(rows[0].1.as_ref().unwrap_err().contains("spans lines 2–3"), "{rows:?}");
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let rows = parse_rows(
            BodyFormat::Ndjson,
            "\u{feff}{\"id\":\"A\"}\n".as_bytes(),
            DEFAULT_MAX_RECORDS,
        )
        .unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap()[0].0, "id");
        let rows =
            parse_rows(BodyFormat::Csv, "\u{feff}id,x\nA,1\n".as_bytes(), DEFAULT_MAX_RECORDS)
                .unwrap();
        assert_eq!(rows[0].1.as_ref().unwrap()[0].0, "id");
        let weights = parse_close_csv("\u{feff}cds,w\nA,1.5\n").unwrap();
        assert_eq!(weights["A"], 1.5);
    }

    /// Found by fuzzing: a valid file with one byte changed made arrow-ipc panic on its embedded
    /// Arrow schema ("Type NONE not supported"), another made the parquet crate assert on a
    /// negative column offset. Both are refused.
    #[test]
    fn a_corrupt_parquet_file_is_refused() {
        for body in [
            &include_bytes!("../../testdata/fuzz-arrow-schema-type-none.parquet")[..],
            &include_bytes!("../../testdata/fuzz-negative-column-offset.parquet")[..],
        ] {
            let error =
                parse_rows(BodyFormat::Parquet, body, DEFAULT_MAX_RECORDS).unwrap_err().to_string();
            assert!(error.contains("not a readable Parquet file"), "{error}");
        }
    }

    #[test]
    fn close_bodies() {
        let csv = parse_close_csv("cds,w\nA,1.5\nB,2\n").unwrap();
        assert_eq!(csv["B"], 2.0);
        assert!(
            parse_close_csv("cds,w\nA,1.5\nA,2\n")
                .unwrap_err()
                .to_string()
                .contains("second weight")
        );
        assert!(parse_close_csv("cds,w\nA,heavy\n").unwrap_err().contains("line 2"));
        assert_eq!(parse_close_json("{}").unwrap().len(), 0);
        assert!(parse_close_json(r#"{"weights":{}}"#).is_err());
    }
}
