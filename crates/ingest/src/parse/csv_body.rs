//! CSV bodies (a header row first), for the incident and the survey feeds: physical line
//! numbers whatever the line ends, and a quote that never closes rejects its line only.

use std::borrow::Cow;

use observatory_model::{Field, IncidentRecord, Sent};

use super::{BodyError, ParsedRecord, strip_bom};

/// Fields whose CSV cells are typed before validation; every other cell stays a string.
fn typed_cell(column: &str, cell: &str) -> Sent<'static> {
    let text = || Sent::Str(Cow::Owned(cell.to_owned()));
    if cell.is_empty() {
        return Sent::Null;
    }
    match column {
        "cyber" | "withdrawn" => match cell.to_ascii_lowercase().as_str() {
            "true" | "1" => Sent::Bool(true),
            "false" | "0" => Sent::Bool(false),
            _ => text(),
        },
        "revision" => {
            cell.parse::<u64>().map(|n| Sent::Number(n.into())).unwrap_or_else(|_| text())
        }
        "loss_eur" => cell
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Sent::Number)
            .unwrap_or_else(text),
        _ => text(),
    }
}

pub(super) fn parse_csv(
    text: &str,
    max_records: usize,
) -> Result<Vec<ParsedRecord<'static>>, BodyError> {
    let mut records = Vec::new();
    read_csv(text, max_records, |header, line, row| {
        let record = row.map(|row| {
            let mut record = Box::<IncidentRecord>::default();
            for (column, cell) in header.iter().zip(row.iter()) {
                // A column of the feed is named by its field, without a copy of the header's.
                let key = Field::of_name(column).map_or_else(
                    || Cow::Owned(column.clone()),
                    |field| Cow::Borrowed(field.name()),
                );
                let kept = record.insert(key, typed_cell(column, cell));
                debug_assert!(kept.is_ok(), "a CSV header names each column once");
            }
            record
        });
        records.push(ParsedRecord { line, record, repeated: Vec::new() });
    })?;
    Ok(records)
}

/// Reads a CSV body (header row first) as the csv crate does, for the incident and the survey
/// feeds, calling `each` with the header, every record's physical line (the header is line 1;
/// CRLF line ends count once, a lone CR ends a line as LF does) and its cells, or why the record cannot be read: the wrong
/// number of cells, or a quote that never closes. Fails only for the body as a whole: no header,
/// a header with an unclosed quote, a column named twice, or more than `max_records` records
/// (readable or not; reading stops at the first past the cap). Skips one leading byte-order
/// mark.
///
/// The csv crate runs a quoted field that never closes to the end of the body, so one stray
/// quote would swallow every line after it. The body is therefore first scanned for such a
/// quote ([`unclosed_quote`]); the records before it are read, its line is rejected, and
/// reading goes on with the next line (loops for another).
pub(crate) fn read_csv<F>(
    text: &str,
    max_records: usize,
    mut each: F,
) -> Result<Vec<String>, BodyError>
where
    F: FnMut(&[String], u64, Result<&csv::StringRecord, String>),
{
    let mut records = 0;
    let mut each = |header: &[String], line: u64, row: Result<&csv::StringRecord, String>| {
        if records == max_records {
            return Err(BodyError::TooManyRecords { max: max_records });
        }
        records += 1;
        each(header, line, row);
        Ok(())
    };
    let unreadable = BodyError::Unreadable;
    let text = strip_bom(text);
    let mut lines = LineCounter::default();
    let mut header: Option<Vec<String>> = None;
    let mut row = csv::StringRecord::new();
    let mut start = 0;
    loop {
        let segment = &text[start..];
        let open = unclosed_quote(segment);
        let end = open.map_or(segment.len(), |(record, _)| record);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .from_reader(&segment.as_bytes()[..end]);
        loop {
            match reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {
                    let offset = start + row.position().map_or(0, |p| p.byte() as usize);
                    let line = lines.line_at(text, record_start(text, offset));
                    let Some(header) = &header else {
                        header = Some(read_header(&row).map_err(unreadable)?);
                        continue;
                    };
                    if row.len() == header.len() {
                        each(header, line, Ok(&row))?;
                        continue;
                    }
                    let mut error =
                        format!("{} cells, but the header has {} columns", row.len(), header.len());
                    let breaks: usize = row.iter().map(|cell| line_breaks(cell.as_bytes())).sum();
                    if breaks > 0 {
                        error.push_str(&format!(
                            "; this record spans lines {line}–{} (a quoted field with line breaks): a quote may be unbalanced",
                            line + breaks as u64
                        ));
                    }
                    each(header, line, Err(error))?;
                }
                Err(e) => {
                    let offset = start + e.position().map_or(0, |p| p.byte() as usize);
                    let line = lines.line_at(text, record_start(text, offset));
                    let Some(header) = &header else {
                        return Err(unreadable(format!("cannot read the CSV header row: {e}")));
                    };
                    each(header, line, Err(format!("unreadable CSV row: {e}")))?;
                    break;
                }
            }
        }
        let Some((record, quote)) = open else { break };
        let record_line = lines.line_at(text, record_start(text, start + record));
        let quote_line = lines.line_at(text, start + quote);
        let Some(header) = &header else {
            return Err(unreadable(format!(
                "the CSV header row has an unclosed quote: the field opened with \" on line {quote_line} never closes"
            )));
        };
        let mut error =
            "unclosed quote: the field opened with \" on this line never closes".to_owned();
        if record_line < quote_line {
            error.push_str(&format!(" (its record starts on line {record_line})"));
        }
        each(header, quote_line, Err(error))?;
        // Go on after the line of the quote.
        start = match text[start + quote..].find(['\n', '\r']) {
            Some(end) => {
                let end = start + quote + end;
                end + if text[end..].starts_with("\r\n") { 2 } else { 1 }
            }
            None => text.len(),
        };
    }
    header.ok_or_else(|| {
        unreadable("the CSV header row is empty; the first line must name the columns".to_owned())
    })
}

/// The column names, trimmed: none named twice, not all empty.
fn read_header(row: &csv::StringRecord) -> Result<Vec<String>, String> {
    let header: Vec<String> = row.iter().map(|h| h.trim().to_owned()).collect();
    if header.iter().all(String::is_empty) {
        return Err("the CSV header row is empty; the first line must name the columns".into());
    }
    let mut seen = std::collections::HashMap::new();
    for (position, name) in header.iter().enumerate() {
        if let Some(first) = seen.insert(name.as_str(), position) {
            let (first, second) = (first + 1, position + 1);
            return Err(if name.is_empty() {
                format!(
                    "the CSV header has two columns without a name (columns {first} and {second}); name every column"
                )
            } else {
                format!(
                    "the CSV header names column '{name}' twice (columns {first} and {second}); name each column once"
                )
            });
        }
    }
    Ok(header)
}

/// Where the record at `offset` really starts: the csv crate may place a record on the line
/// break before it (the `\n` of a CRLF).
fn record_start(text: &str, offset: usize) -> usize {
    offset + text.as_bytes()[offset..].iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// Whether the byte at `at` ends a line: a LF, or a CR not followed by a LF (the csv crate ends
/// a record at a lone CR too, as classic Mac spreadsheets write them), so CRLF counts once.
fn ends_line(bytes: &[u8], at: usize) -> bool {
    bytes[at] == b'\n' || (bytes[at] == b'\r' && bytes.get(at + 1) != Some(&b'\n'))
}

/// The line breaks in `bytes` (CRLF, LF or a lone CR each once).
fn line_breaks(bytes: &[u8]) -> usize {
    (0..bytes.len()).filter(|&at| ends_line(bytes, at)).count()
}

/// Physical line numbers of increasing byte offsets, in one pass over the text.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: u64,
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: usize) -> u64 {
        debug_assert!(offset >= self.offset, "offsets must increase");
        let bytes = text.as_bytes();
        self.line += (self.offset..offset).filter(|&at| ends_line(bytes, at)).count() as u64;
        self.offset = offset;
        self.line + 1
    }
}

/// Where a quote opened that is still open at the end of `text`, as the csv crate (default
/// dialect) reads it: the byte offsets of the record it belongs to and of the quote. A quote
/// opens a quoted field only at the start of a field (elsewhere it is a plain character); inside,
/// `""` is an escaped quote, any other `"` closes the field, and line breaks are part of it.
fn unclosed_quote(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut record, mut field_start, mut open) = (0, true, None);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if open.is_some() {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    open = None;
                }
            }
        } else {
            match b {
                b'"' if field_start => {
                    open = Some(i);
                    field_start = false;
                }
                b',' => field_start = true,
                b'\n' | b'\r' => {
                    field_start = true;
                    record = i + 1;
                }
                _ => field_start = false,
            }
        }
        i += 1;
    }
    open.map(|quote| (record, quote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quote_scanner_follows_the_csv_crate() {
        // Quotes open a field only at its start; "" inside is an escaped quote.
        for (text, open) in [
            ("a,b\n", None),
            ("a,\"b\n", Some((0, 2))),
            ("a\"b,c\n", None),
            ("\"a\"\"b\",c\n", None),
            ("\"a\"\"\n", Some((0, 0))),
            ("\"\"\n\"x\n", Some((3, 3))),
            ("x,\"a\nb\",\"c\n", Some((0, 8))),
            ("\"a\"b\"c\n", None),
        ] {
            assert_eq!(unclosed_quote(text), open, "{text:?}");
        }
    }

    #[test]
    fn the_quote_scanner_agrees_with_the_csv_crate_on_random_text() {
        // A record "zzz" after the text stays a record of its own exactly when no quote is left
        // open; otherwise the csv crate reads it into the open field, of the record the scanner
        // names.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = [b'a', b'"', b'"', b',', b'\n', b'\r'];
        for _ in 0..20_000 {
            let len = (state % 12) as usize;
            let mut text = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(alphabet[(state % alphabet.len() as u64) as usize] as char);
            }
            state = state.wrapping_add(1);
            let probe = format!("{text}\nzzz\n");
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(probe.as_bytes());
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            let last = rows.last().unwrap();
            match unclosed_quote(&text) {
                None => assert_eq!(last.iter().collect::<Vec<_>>(), vec!["zzz"], "{text:?}"),
                Some((record, quote)) => {
                    assert_eq!(text.as_bytes()[quote], b'"', "{text:?}");
                    assert!(
                        last.iter().next_back().unwrap().ends_with("\nzzz\n"),
                        "{text:?}: {last:?}"
                    );
                    let start = last.position().unwrap().byte() as usize;
                    assert_eq!(
                        record_start(&probe, start),
                        record_start(&probe, record),
                        "{text:?}"
                    );
                }
            }
        }
    }
}
