//! Splits a request body into records. Each record becomes a JSON object whatever the wire
//! format, so one validation serves all three; a record that cannot be read is an error on
//! its own line, never a failure of the batch.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-ndjson`: one object per line; `line` is the physical line.
    Ndjson,
    /// `application/json`: an array of objects; `line` is the 1-based position in the array.
    JsonArray,
    /// `text/csv` with a header row; `line` is the physical line (the header is line 1).
    Csv,
}

impl Format {
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Some(Format::Ndjson),
            "application/json" => Some(Format::JsonArray),
            "text/csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One record of the body, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRecord {
    pub line: u64,
    pub record: Result<Map<String, Value>, String>,
}

/// Fails only when the body as a whole is unreadable (not UTF-8, not a JSON array, no CSV
/// header); problems of single records are returned per record.
pub fn parse_body(format: Format, body: &[u8]) -> Result<Vec<ParsedRecord>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    match format {
        Format::Ndjson => Ok(parse_ndjson(text)),
        Format::JsonArray => parse_json_array(text),
        Format::Csv => parse_csv(text),
    }
}

fn as_object(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("expected a JSON object, got {}", short(&other))),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 { format!("{}…", &text[..text.floor_char_boundary(40)]) } else { text }
}

fn parse_ndjson(text: &str) -> Vec<ParsedRecord> {
    text.split('\n')
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| ParsedRecord {
            line: i as u64 + 1,
            record: serde_json::from_str::<Value>(line.trim_end_matches('\r'))
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(as_object),
        })
        .collect()
}

fn parse_json_array(text: &str) -> Result<Vec<ParsedRecord>, String> {
    let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(values)) => values,
        Ok(other) => return Err(format!("expected a JSON array of records, got {}", short(&other))),
        Err(e) => return Err(format!("body is not valid JSON: {e}")),
    };
    Ok(values.into_iter().enumerate().map(|(i, v)| ParsedRecord { line: i as u64 + 1, record: as_object(v) }).collect())
}

/// Fields whose CSV cells are typed before validation; every other cell stays a string.
fn typed_cell(column: &str, cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    match column {
        "cyber" | "withdrawn" => match cell.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => Value::String(cell.to_owned()),
        },
        "revision" => cell.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(cell.to_owned())),
        "loss_eur" => cell
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(cell.to_owned())),
        _ => Value::String(cell.to_owned()),
    }
}

fn parse_csv(text: &str) -> Result<Vec<ParsedRecord>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header row: {e}"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err("the CSV header row is empty; the first line must name the columns".into());
    }
    let mut records = Vec::new();
    let mut row = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let line = row.position().map_or(line, |p| p.line());
                let record = if row.len() != header.len() {
                    Err(format!("{} cells, but the header has {} columns", row.len(), header.len()))
                } else {
                    Ok(header.iter().zip(row.iter()).map(|(h, cell)| (h.clone(), typed_cell(h, cell))).collect())
                };
                records.push(ParsedRecord { line, record });
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                records.push(ParsedRecord { line, record: Err(format!("unreadable CSV row: {e}")) });
                // A broken quote can swallow the rest of the body; stop rather than guess.
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    break;
                }
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_keeps_physical_line_numbers_and_isolates_bad_lines() {
        let body = b"{\"a\":1}\n\nnot json\n[1]\n{\"b\":2}\r\n";
        let records = parse_body(Format::Ndjson, body).unwrap();
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5]);
        assert!(records[0].record.is_ok() && records[3].record.is_ok());
        assert!(records[1].record.as_ref().unwrap_err().contains("invalid JSON"));
        assert!(records[2].record.as_ref().unwrap_err().contains("JSON object"));
    }

    #[test]
    fn csv_types_known_columns_and_nulls_empty_cells() {
        let body = "agency_incident_id,revision,cyber,loss_eur,departement\nA,2,true,12.5,\nB,x,yes,,75\nC,1\n";
        let records = parse_body(Format::Csv, body.as_bytes()).unwrap();
        let a = records[0].record.as_ref().unwrap();
        assert_eq!(records[0].line, 2);
        assert_eq!(a["revision"], Value::from(2));
        assert_eq!(a["cyber"], Value::Bool(true));
        assert_eq!(a["departement"], Value::Null);
        let b = records[1].record.as_ref().unwrap();
        assert_eq!(b["revision"], Value::String("x".into()));
        assert_eq!(b["cyber"], Value::String("yes".into()));
        assert_eq!(records[2].line, 4);
        assert!(records[2].record.as_ref().unwrap_err().contains("header has 5 columns"));
    }

    #[test]
    fn a_json_body_must_be_an_array() {
        assert!(parse_body(Format::JsonArray, b"{\"a\":1}").unwrap_err().contains("JSON array"));
        assert!(parse_body(Format::JsonArray, b"[{\"a\":1},").is_err());
        let records = parse_body(Format::JsonArray, b"[{\"a\":1}, 3]").unwrap();
        assert_eq!(records[1].line, 2);
        assert!(records[1].record.is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::from_content_type("application/x-ndjson; charset=utf-8"), Some(Format::Ndjson));
        assert_eq!(Format::from_content_type("TEXT/CSV"), Some(Format::Csv));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
