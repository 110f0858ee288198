//! Splits a request body into records. Each record becomes a JSON object whatever the wire
//! format, so one validation serves all three; a record that cannot be read is an error on
//! its own line, never a failure of the batch.

use std::borrow::Cow;
use std::collections::HashSet;

use observatory_model::{
    Event, Field, FieldError, IncidentRecord, RecordFields, Sent, validate_record,
};
use observatory_reference::Crosswalk;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

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
        match crate::upload::essence(content_type).as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Format::Ndjson)
            }
            "application/json" => Some(Format::JsonArray),
            "text/csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// The fields of a period closure in the order sent, the first value of each key: a list that
/// notices a key sent twice (by a set of the keys while it is read), where a `serde_json::Map`
/// keeps one value silently. Lookups are linear; the validation makes a fixed number of them. Incident records, read by the
/// thousand, have a type of their own, [`IncidentRecord`], with a slot for each field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record(Vec<(String, Value)>);

impl Record {
    /// The value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value))
    }
}

impl std::ops::Index<&str> for Record {
    type Output = Value;

    /// The value sent for `name`; panics if there is none, as a `serde_json::Map` does.
    fn index(&self, name: &str) -> &Value {
        self.get(name).unwrap_or_else(|| panic!("the record has no field {name:?}"))
    }
}

impl RecordFields for Record {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.iter()
    }
}

/// One record of the body, its strings borrowed from it, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRecord<'a> {
    pub line: u64,
    /// Boxed: a record is some 600 bytes, and moving it on from the reader to the batch
    /// copied it several times (a fifth of the reading's time).
    pub record: Result<Box<IncidentRecord<'a>>, String>,
    /// Keys the record sent more than once (the map keeps the first value of each).
    pub repeated: Vec<String>,
}

/// What an agency is told about a key it sent twice.
pub const REPEATED_KEY: &str = "appears twice in the record; send each field once";

impl<'a> ParsedRecord<'a> {
    fn new(
        line: u64,
        record: Result<JsonRecord<Box<IncidentRecord<'a>>>, String>,
    ) -> ParsedRecord<'a> {
        match record {
            Ok(JsonRecord::Object(map, repeated)) => {
                ParsedRecord { line, record: Ok(map), repeated }
            }
            Ok(other) => ParsedRecord { line, record: other.into_object(), repeated: Vec::new() },
            Err(error) => ParsedRecord { line, record: Err(error), repeated: Vec::new() },
        }
    }

    /// The record's event, or every problem with it as (field, error), a record that could
    /// not be read having no field. A repeated key rejects the record, whose other problems
    /// are reported too so that the agency fixes it in one round trip.
    pub fn event(
        &self,
        today: chrono::NaiveDate,
        crosswalk: &Crosswalk,
    ) -> Result<Event, Vec<(Option<String>, String)>> {
        let record = self.record.as_ref().map_err(|error| vec![(None, error.clone())])?;
        let mut problems: Vec<(Option<String>, String)> =
            self.repeated.iter().map(|key| (Some(key.clone()), REPEATED_KEY.to_owned())).collect();
        match validate_record(record, today, crosswalk) {
            Ok(event) if problems.is_empty() => return Ok(event),
            Ok(_) => {}
            Err(errors) => problems
                .extend(errors.into_iter().map(|FieldError { field, error }| (Some(field), error))),
        }
        Err(problems)
    }
}

/// How many records one request may carry unless configured otherwise: ten times what the
/// bench and the demo send per request, and a few hundred MB of rejections at most.
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// Why a body is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not UTF-8, not a JSON array, no CSV header, a CSV column named twice: why.
    Unreadable(String),
    /// More records than one request may carry.
    TooManyRecords { max: usize },
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Unreadable(why) => f.write_str(why),
            BodyError::TooManyRecords { max } => write!(
                f,
                "the body holds more than {max} records, the most one request may carry; send them in several requests"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// Fails only when the body as a whole is unreadable (not UTF-8, not a JSON array, no CSV
/// header, a CSV column named twice) or holds more than `max_records` records; problems of
/// single records are returned per record. One leading byte-order mark is skipped, as
/// spreadsheet and Windows tools write one.
///
/// The cap bounds what a request costs in memory: a record refused for its missing fields
/// holds an error for each of them, so a body of empty records (`{}` lines, three bytes each)
/// took hundreds of times its size. Reading stops at the first record past the cap.
pub fn parse_body(
    format: Format,
    body: &[u8],
    max_records: usize,
) -> Result<Vec<ParsedRecord<'_>>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        BodyError::Unreadable(format!("body is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    match format {
        Format::Ndjson => parse_ndjson(strip_bom(text), max_records),
        Format::JsonArray => parse_json_array(strip_bom(text), max_records),
        Format::Csv => parse_csv(text, max_records),
    }
}

/// The text without one leading byte-order mark (U+FEFF).
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 { format!("{}…", &text[..text.floor_char_boundary(40)]) } else { text }
}

/// One JSON value read as a record. An object is built key by key so that a key sent twice is
/// noticed (a `serde_json::Map` keeps one of the values, silently): the keys sent more than
/// once are listed beside the record, and the record is rejected naming each.
/// Anything but an object is kept for the error message.
pub(crate) enum JsonRecord<R> {
    /// The object (first value of each key) and the keys it sent more than once, each once,
    /// in the order of their first repetition.
    Object(R, Vec<String>),
    Other(Value),
}

impl<R> JsonRecord<R> {
    pub(crate) fn into_object(self) -> Result<R, String> {
        match self {
            JsonRecord::Object(map, _) => Ok(map),
            JsonRecord::Other(other) => {
                Err(format!("expected a JSON object, got {}", short(&other)))
            }
        }
    }
}

/// A record that a JSON object is read into, key by key.
pub(crate) trait ReadObject<'de>: Sized {
    /// The object of `access` (the first value of each key) and each key it sent more than
    /// once, as often as it was repeated.
    fn read<A: MapAccess<'de>>(access: A) -> Result<(Self, Vec<String>), A::Error>;
}

impl<'de, R: ReadObject<'de>> Deserialize<'de> for JsonRecord<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonRecord<R>, D::Error> {
        deserializer.deserialize_any(RecordVisitor(std::marker::PhantomData))
    }
}

struct RecordVisitor<R>(std::marker::PhantomData<R>);

impl<'de> ReadObject<'de> for Record {
    fn read<A: MapAccess<'de>>(mut access: A) -> Result<(Record, Vec<String>), A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut repeated: Vec<String> = Vec::new();
        // A set of the keys keeps one huge object linear in its size.
        let mut keys: HashSet<String> = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if keys.insert(key.clone()) {
                fields.push((key, value));
            } else {
                repeated.push(key);
            }
        }
        Ok((Record(fields), repeated))
    }
}

/// An incident record's fields, matched to the feed's as they are read. Its keys and string
/// values are borrowed from the body unless they hold an escape.
impl<'de> ReadObject<'de> for Box<IncidentRecord<'de>> {
    fn read<A: MapAccess<'de>>(mut access: A) -> Result<(Self, Vec<String>), A::Error> {
        let mut record = Box::<IncidentRecord>::default();
        let mut repeated = Vec::new();
        while let Some(Key(key)) = access.next_key()? {
            let value: Sent<'de> = access.next_value()?;
            if let Err(key) = record.insert(key, value) {
                repeated.push(key.into_owned());
            }
        }
        Ok((record, repeated))
    }
}

/// An object's key, borrowed from the body unless it holds an escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

impl<'de, R: ReadObject<'de>> Visitor<'de> for RecordVisitor<R> {
    type Value = JsonRecord<R>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<JsonRecord<R>, A::Error> {
        let (record, mut repeated) = R::read(access)?;
        if !repeated.is_empty() {
            let mut once = HashSet::new();
            repeated.retain(|key| once.insert(key.clone()));
        }
        Ok(JsonRecord::Object(record, repeated))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonRecord<R>, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            values.push(value);
        }
        Ok(JsonRecord::Other(Value::Array(values)))
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<JsonRecord<R>, E> {
        Ok(JsonRecord::Other(Value::Null))
    }
}

/// One JSON value read as a [`JsonRecord`].
pub(crate) fn json_record<'de, R: ReadObject<'de>>(
    text: &'de str,
) -> Result<JsonRecord<R>, serde_json::Error> {
    serde_json::from_str(text)
}

fn parse_ndjson(text: &str, max_records: usize) -> Result<Vec<ParsedRecord<'_>>, BodyError> {
    at_most(
        max_records,
        ndjson_lines(text).map(|(line, text)| {
            ParsedRecord::new(line, json_record(text).map_err(|e| format!("invalid JSON: {e}")))
        }),
    )
}

/// The records of an NDJSON body, for the incident and the survey feeds: each line that is
/// not blank, with its physical line number and without the CR of a CRLF.
pub(crate) fn ndjson_lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n')
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i as u64 + 1, line.trim_end_matches('\r')))
}

/// The records `read` makes, refusing the body at the first past `max_records` (read, not kept).
pub(crate) fn at_most<T>(
    max_records: usize,
    read: impl Iterator<Item = T>,
) -> Result<Vec<T>, BodyError> {
    let mut records = Vec::new();
    for record in read {
        if records.len() == max_records {
            return Err(BodyError::TooManyRecords { max: max_records });
        }
        records.push(record);
    }
    Ok(records)
}

fn parse_json_array(text: &str, max_records: usize) -> Result<Vec<ParsedRecord<'_>>, BodyError> {
    let unreadable =
        |e: serde_json::Error| BodyError::Unreadable(format!("body is not valid JSON: {e}"));
    // Elements are read as records, so a repeated key rejects its element and not the body.
    let values: Vec<JsonRecord<Box<IncidentRecord>>> = if text.trim_start().starts_with('[') {
        let too_many = std::cell::Cell::new(false);
        let mut reader = serde_json::Deserializer::from_str(text);
        let read = Records { max: max_records, too_many: &too_many }
            .deserialize(&mut reader)
            .and_then(|values| reader.end().map(|()| values));
        match read {
            Ok(values) => values,
            Err(_) if too_many.get() => {
                return Err(BodyError::TooManyRecords { max: max_records });
            }
            Err(e) => return Err(unreadable(e)),
        }
    } else {
        return match serde_json::from_str::<Value>(text) {
            Ok(other) => Err(BodyError::Unreadable(format!(
                "expected a JSON array of records, got {}",
                short(&other)
            ))),
            Err(e) => Err(unreadable(e)),
        };
    };
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| ParsedRecord::new(i as u64 + 1, Ok(v)))
        .collect())
}

/// A JSON array of records, read element by element and given up at the first past `max`
/// (noted in `too_many`: serde's error cannot carry it).
struct Records<'a> {
    max: usize,
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = Vec<JsonRecord<Box<IncidentRecord<'de>>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<JsonRecord<Box<IncidentRecord<'de>>>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<Vec<JsonRecord<Box<IncidentRecord<'de>>>>, A::Error> {
        let mut records = Vec::new();
        while let Some(record) = seq.next_element::<JsonRecord<Box<IncidentRecord<'de>>>>()? {
            if records.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many records"));
            }
            records.push(record);
        }
        Ok(records)
    }
}

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

fn parse_csv(text: &str, max_records: usize) -> Result<Vec<ParsedRecord<'static>>, BodyError> {
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
    fn ndjson_keeps_physical_line_numbers_and_isolates_bad_lines() {
        let body = b"{\"a\":1}\n\nnot json\n[1]\n{\"b\":2}\r\n";
        let records = parse_body(Format::Ndjson, body, DEFAULT_MAX_RECORDS).unwrap();
        let lines: Vec<u64> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5]);
        assert!(records[0].record.is_ok() && records[3].record.is_ok());
        assert!(records[1].record.as_ref().unwrap_err().contains("invalid JSON"));
        assert!(records[2].record.as_ref().unwrap_err().contains("JSON object"));
    }

    #[test]
    fn csv_types_known_columns_and_nulls_empty_cells() {
        let body = "agency_incident_id,revision,cyber,loss_eur,departement\nA,2,true,12.5,\nB,x,yes,,75\nC,1\n";
        let records = parse_body(Format::Csv, body.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        let a = records[0].record.as_ref().unwrap();
        assert_eq!(records[0].line, 2);
        assert_eq!(a.get_named("revision"), Some(&Sent::Number(2.into())));
        assert_eq!(a.get_named("cyber"), Some(&Sent::Bool(true)));
        assert_eq!(a.get_named("departement"), Some(&Sent::Null));
        let b = records[1].record.as_ref().unwrap();
        assert_eq!(b.get_named("revision"), Some(&Sent::Str("x".into())));
        assert_eq!(b.get_named("cyber"), Some(&Sent::Str("yes".into())));
        assert_eq!(records[2].line, 4);
        assert!(records[2].record.as_ref().unwrap_err().contains("header has 5 columns"));
    }

    #[test]
    fn a_json_body_must_be_an_array() {
        assert!(
            parse_body(Format::JsonArray, b"{\"a\":1}", DEFAULT_MAX_RECORDS)
                .unwrap_err()
                .to_string()
                .contains("JSON array")
        );
        assert!(parse_body(Format::JsonArray, b"[{\"a\":1},", DEFAULT_MAX_RECORDS).is_err());
        let records =
            parse_body(Format::JsonArray, b"[{\"a\":1}, 3]", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records[1].line, 2);
        assert!(records[1].record.is_err());
    }

    /// What `POST /v1/incidents` makes of a body: the accepted lines, and every rejection as
    /// (line, field, error), a record that cannot be read having no field.
    type Rejections = Vec<(u64, Option<String>, String)>;

    fn outcome(format: Format, body: &str) -> (Vec<u64>, Rejections) {
        let today = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        let identity = observatory_reference::Crosswalks::builtin()
            .latest(observatory_reference::IDENTITY)
            .unwrap();
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        for parsed in parse_body(format, body.as_bytes(), DEFAULT_MAX_RECORDS).unwrap() {
            match parsed.event(today, identity) {
                Ok(_) => accepted.push(parsed.line),
                Err(problems) => rejected
                    .extend(problems.into_iter().map(|(field, error)| (parsed.line, field, error))),
            }
        }
        (accepted, rejected)
    }

    fn json_record(id: &str) -> String {
        format!(
            r#"{{"agency_incident_id":"{id}","occurred_on":"2024-03-05","reported_on":"2024-03-07","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual","channel":"email"}}"#
        )
    }

    const CSV_HEADER: &str = "agency_incident_id,revision,occurred_on,reported_on,iccs,cyber,departement,victim_type,channel,loss_eur";

    #[test]
    fn a_repeated_key_rejects_its_record_and_names_the_key() {
        let twice = r#"{"agency_incident_id":"B","departement":"976","occurred_on":"2024-03-05","reported_on":"2024-03-07","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual","channel":"email"}"#;
        let ndjson = format!("{}\n{twice}\n{}\n", json_record("A"), json_record("C"));
        let (accepted, rejected) = outcome(Format::Ndjson, &ndjson);
        assert_eq!(accepted, vec![1, 3]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!((rejected[0].0, rejected[0].1.as_deref()), (2, Some("departement")));
        assert!(rejected[0].2.contains("appears twice in the record"), "{rejected:?}");

        // In a JSON array the other elements are still read.
        let array = format!("[{}, {twice}, {}]", json_record("A"), json_record("C"));
        let (accepted, rejected) = outcome(Format::JsonArray, &array);
        assert_eq!(accepted, vec![1, 3]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!((rejected[0].0, rejected[0].1.as_deref()), (2, Some("departement")));

        // Each repeated key once, whatever else is wrong; nested objects are plain values.
        let body = r#"[{"a":1,"a":2,"a":3,"b":{"c":1,"c":2},"b":null}, 3, {"x":[1,{"y":2}]}]"#;
        let records = parse_body(Format::JsonArray, body.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records[1].record.as_ref().unwrap_err().contains("JSON object"));
        assert_eq!(records[2].record.as_ref().unwrap().get_named("x"), Some(&Sent::Array));
        let identity = observatory_reference::Crosswalks::builtin()
            .latest(observatory_reference::IDENTITY)
            .unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        let problems = records[0].event(today, identity).unwrap_err();
        let twice: Vec<&str> = problems
            .iter()
            .filter(|(_, e)| e.contains("appears twice"))
            .filter_map(|(f, _)| f.as_deref())
            .collect();
        assert_eq!(twice, vec!["a", "b"], "{problems:?}");
        assert!(problems.len() > 2, "the record's other problems are reported too: {problems:?}");
    }

    /// A body of exactly the cap is read; one record more refuses the body, in every format,
    /// however many records follow and whatever they hold. Blank lines and the CSV header do
    /// not count.
    #[test]
    fn a_body_over_the_record_cap_is_refused_whole_in_every_format() {
        let cap = 3;
        let many = |n: usize| (0..n).map(|i| json_record(&i.to_string())).collect::<Vec<_>>();
        let ndjson = |n| many(n).join("\n\n") + "\n";
        let array = |n| format!("[{}]", many(n).join(","));
        let csv = |n: usize| {
            let rows: String = (0..n)
                .map(|i| format!("{i},1,2024-03-05,2024-03-07,0903,true,75,individual,email,\n"))
                .collect();
            format!("{CSV_HEADER}\n{rows}")
        };
        let bodies: [(Format, &dyn Fn(usize) -> String); 3] =
            [(Format::Ndjson, &ndjson), (Format::JsonArray, &array), (Format::Csv, &csv)];
        for (format, body) in bodies {
            assert_eq!(parse_body(format, body(cap).as_bytes(), cap).unwrap().len(), cap);
            for over in [cap + 1, 10 * cap] {
                let refused = parse_body(format, body(over).as_bytes(), cap).unwrap_err();
                assert_eq!(refused, BodyError::TooManyRecords { max: cap }, "{format:?}");
                assert!(refused.to_string().contains("more than 3 records"), "{refused}");
            }
        }
        // Reading stops at the first record past the cap: what follows it, even text that is
        // not JSON, changes nothing.
        let tail = format!("{}\nnot json\n", ndjson(cap + 1));
        assert_eq!(
            parse_body(Format::Ndjson, tail.as_bytes(), cap),
            Err(BodyError::TooManyRecords { max: cap })
        );
        let tail = format!("[{},{{]", many(cap + 1).join(","));
        assert_eq!(
            parse_body(Format::JsonArray, tail.as_bytes(), cap),
            Err(BodyError::TooManyRecords { max: cap })
        );
        // An unreadable body is still said to be unreadable, whatever its size.
        assert!(matches!(
            parse_body(Format::JsonArray, b"[{}", cap),
            Err(BodyError::Unreadable(_))
        ));
    }

    /// Past [`IncidentRecord::KEYS_COMPARED_ONE_BY_ONE`] keys outside the feed an incident
    /// record's keys move to a set: the same record, first values and repeated keys, either
    /// side of the switch, and the same as a period closure's record reads.
    #[test]
    fn a_record_with_many_keys_keeps_first_values_and_names_each_repeat_once() {
        let switch = IncidentRecord::KEYS_COMPARED_ONE_BY_ONE;
        for distinct in [switch - 1, switch, 3 * switch] {
            let mut pairs: Vec<String> = (0..distinct).map(|i| format!("\"k{i}\":{i}")).collect();
            // Repeats of the first key, of the key where the set starts, and of the last, the
            // first of them twice; their values are dropped.
            let at_switch = switch.min(distinct - 1);
            for again in [distinct - 1, 0, at_switch, 0] {
                pairs.push(format!("\"k{again}\":\"again\""));
            }
            let text = format!("{{{}}}", pairs.join(","));
            let mut expected = vec![format!("k{}", distinct - 1), "k0".to_owned()];
            if at_switch != 0 && at_switch != distinct - 1 {
                expected.push(format!("k{at_switch}"));
            }
            let Ok(JsonRecord::Object(record, repeated)) = super::json_record::<Record>(&text)
            else {
                panic!("{text}")
            };
            assert_eq!(record.0.len(), distinct);
            for (i, (name, value)) in record.iter().enumerate() {
                assert_eq!((name, value), (format!("k{i}").as_str(), &Value::from(i)));
            }
            assert_eq!(repeated, expected, "{distinct} keys");
            // An incident record, whose keys outside the feed switch to a set the same way.
            let Ok(JsonRecord::Object(record, repeated)) =
                super::json_record::<Box<IncidentRecord>>(&text)
            else {
                panic!("{text}")
            };
            assert_eq!(record.len(), distinct);
            for (i, (name, value)) in record.fields().into_iter().enumerate() {
                assert_eq!((name, value), (format!("k{i}").as_str(), &Sent::Number(i.into())));
            }
            assert_eq!(repeated, expected, "{distinct} keys");
        }
    }

    #[test]
    fn a_repeated_csv_column_fails_the_body_naming_it_and_both_positions() {
        let error = parse_body(
            Format::Csv,
            b"agency_incident_id,departement,iccs,departement\nA,976,0903,75\n",
            DEFAULT_MAX_RECORDS,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("'departement'") && error.contains("twice"), "{error}");
        assert!(error.contains("2") && error.contains("4"), "{error}");
        // Compared as the columns are read: trimmed.
        assert!(
            parse_body(Format::Csv, b"a, b,b \n1,2,3\n", DEFAULT_MAX_RECORDS)
                .unwrap_err()
                .to_string()
                .contains("'b'")
        );
    }

    #[test]
    fn an_unclosed_quote_rejects_its_line_and_the_following_lines_are_read() {
        let body = format!(
            "{CSV_HEADER}\nG,1,2024-06-01,2024-06-02,0903,true,75,business,\"sms,3.5\nH,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5\n"
        );
        let (accepted, rejected) = outcome(Format::Csv, &body);
        assert_eq!(accepted, vec![3], "{rejected:?}");
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!((rejected[0].0, rejected[0].1.as_deref()), (2, None));
        assert!(rejected[0].2.contains("unclosed quote"), "{rejected:?}");

        // Without a final line break, and with the quote in the last line.
        let records = parse_body(Format::Csv, b"a,b\n1,2\n3,\"4", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(records[0].record.is_ok());
        assert!(records[1].record.as_ref().unwrap_err().contains("unclosed quote"));

        // An unclosed quote in the header fails the body.
        assert!(
            parse_body(Format::Csv, b"a,\"b\n1,2\n", DEFAULT_MAX_RECORDS)
                .unwrap_err()
                .to_string()
                .contains("unclosed quote")
        );
    }

    #[test]
    fn every_line_of_a_csv_with_stray_quotes_is_accounted_for() {
        // Line 2's stray quote closes on line 3 (one record over lines 2-3, the wrong size);
        // line 4's never closes; line 5 is good. CRLF line ends.
        let good = "H,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5";
        let body = format!(
            "{CSV_HEADER}\r\nA,1,2024-06-01,2024-06-02,0903,true,75,business,\"sms,1\r\nB,1,2024-06-01,2024-06-02,0903,true,75,\"business,sms,2\r\nC,1,2024-06-01,2024-06-02,0903,true,75,business,\"sms,3\r\n{good}\r\n"
        );
        let (accepted, rejected) = outcome(Format::Csv, &body);
        assert_eq!(accepted, vec![5], "{rejected:?}");
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4], "{rejected:?}");
        assert!(
            rejected[0].2.contains("spans lines 2–3") && rejected[0].2.contains("quote"),
            "{rejected:?}"
        );
        assert!(rejected[1].2.contains("unclosed quote"), "{rejected:?}");

        // A quoted field with a line break is fine when the record has the right size, and
        // the lines after it keep their physical numbers.
        let records =
            parse_body(Format::Csv, b"a,b\n1,\"x\ny\"\n2,3\n4\n", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4, 5]);
        assert_eq!(
            records[0].record.as_ref().unwrap().get_named("b"),
            Some(&Sent::Str("x\ny".into()))
        );
        let short = records[2].record.as_ref().unwrap_err();
        assert!(short.contains("1 cells") && !short.contains("spans"), "{short}");
    }

    /// Found by fuzzing: the csv crate ends a record at a lone CR (classic Mac line ends), and
    /// every record of such a body was answered on line 1.
    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        let records =
            parse_body(Format::Csv, b"a,b\r1,2\r3\r4,5\r\n6,7\n", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert!(records[1].record.as_ref().unwrap_err().contains("1 cells"));
        // An unclosed quote rejects its line only, whatever ends it.
        let records = parse_body(Format::Csv, b"a,b\r1,\"2\r3,4\r", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(records[0].record.as_ref().unwrap_err().contains("unclosed quote"));
        assert!(records[1].record.is_ok());
        // A record over two lines says so, counting a lone CR as a line break.
        let records =
            parse_body(Format::Csv, b"a,b\r1,\"2\r\",3\r4,5\r", DEFAULT_MAX_RECORDS).unwrap();
        assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4]);
        assert!(records[0].record.as_ref().unwrap_err().contains("spans lines 2–3"));
    }

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

    #[test]
    fn one_leading_byte_order_mark_is_skipped() {
        let (accepted, rejected) = outcome(
            Format::Ndjson,
            &format!("\u{feff}{}\n{}\n", json_record("A"), json_record("B")),
        );
        assert_eq!((accepted, rejected), (vec![1, 2], vec![]));
        let (accepted, rejected) =
            outcome(Format::JsonArray, &format!("\u{feff}[{}]", json_record("A")));
        assert_eq!((accepted, rejected), (vec![1], vec![]));
        let (accepted, rejected) = outcome(
            Format::Csv,
            &format!(
                "\u{feff}{CSV_HEADER}\nH,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5\n"
            ),
        );
        assert_eq!((accepted, rejected), (vec![2], vec![]));
        // Only one: a second is content.
        assert!(
            parse_body(Format::Ndjson, "\u{feff}\u{feff}{}".as_bytes(), DEFAULT_MAX_RECORDS)
                .unwrap()[0]
                .record
                .is_err()
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type("application/x-ndjson; charset=utf-8"),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::from_content_type("TEXT/CSV"), Some(Format::Csv));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
