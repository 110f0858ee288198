//! Splits a request body into records. Each record becomes a JSON object whatever the wire
//! format, so one validation serves all three; a record that cannot be read is an error on
//! its own line, never a failure of the batch. The JSON formats are read in [`json_body`], CSV
//! in [`csv_body`]; what both share (the formats, the parsed record, the body's errors and
//! its record cap) is here.

mod csv_body;
mod json_body;

use observatory_model::{Event, FieldError, IncidentRecord, RecordFields, validate_record};
use observatory_reference::Crosswalk;
use serde_json::Value;

use csv_body::parse_csv;
pub(crate) use csv_body::read_csv;
pub(crate) use json_body::{JsonRecord, json_record, ndjson_lines};
use json_body::{parse_json_array, parse_ndjson};

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

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_model::Sent;

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
