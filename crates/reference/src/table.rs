//! Small CSV helpers shared by the tables: strict header check, line numbers in errors.

use crate::ReferenceError;

/// Reads `text` as CSV with exactly the `expected` header and returns each record with its
/// 1-based line number.
pub(crate) fn records(
    table: &str,
    text: &str,
    expected: &[&str],
) -> Result<Vec<(u64, csv::StringRecord)>, ReferenceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::None)
        .from_reader(text.as_bytes());
    let headers =
        reader.headers().map_err(|e| ReferenceError::parse(table, 1, e.to_string()))?.clone();
    let got: Vec<&str> = headers.iter().collect();
    if got != expected {
        return Err(ReferenceError::parse(
            table,
            1,
            format!("header is {:?}, expected {:?}", got, expected),
        ));
    }
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            ReferenceError::parse(table, line, e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() != expected.len() {
            return Err(ReferenceError::parse(
                table,
                line,
                format!("{} fields, expected {}", rec.len(), expected.len()),
            ));
        }
        for (i, field) in rec.iter().enumerate() {
            if field != field.trim() {
                return Err(ReferenceError::parse(
                    table,
                    line,
                    format!("field {} ({:?}) has surrounding whitespace", expected[i], field),
                ));
            }
        }
        out.push((line, rec));
    }
    Ok(out)
}

pub(crate) fn parse_bool(
    table: &str,
    line: u64,
    field: &str,
    value: &str,
) -> Result<bool, ReferenceError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ReferenceError::parse(
            table,
            line,
            format!("{field} must be true or false, got {other:?}"),
        )),
    }
}
