//! Property tests (fuzzing) of the incident feed's parsers: arbitrary bytes, and valid bodies
//! mutated byte by byte, through `parse_body` (NDJSON, JSON array, CSV), `read_csv`,
//! `json_record`, record validation (`ParsedRecord::event`) and the period closure. Each asserts
//! no panic and a well-formed answer: an error is a sentence, every rejection names its line,
//! and its field when the record could be read. A few hundred cases each by default;
//! `PROPTEST_CASES` sets more (`scripts/fuzz.sh` runs a million).
//!
//! [`support`] holds what the survey properties share: the mutations and the values.

use std::collections::BTreeSet;

use chrono::{NaiveDate, Utc};
use observatory_fuzzing::config;
use observatory_model::{Envelope, Event, RevisionStamp, validate_period_close};
use observatory_reference::{Crosswalk, Crosswalks};
use proptest::prelude::*;
use serde_json::{Map, Value};

use self::support::{body, json_value, mutated, text_cell};
use crate::parse::{
    DEFAULT_MAX_RECORDS, Format, JsonRecord, REPEATED_KEY, Record, json_record, parse_body,
    read_csv,
};
use observatory_model::{IncidentRecord, Sent};

pub(crate) mod support {
    //! What every fuzz property of the crate shares.

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::Value;

    /// Pieces a mutation inserts: what breaks parsers (quotes, separators, line ends, BOMs,
    /// NULs, escapes, huge and special numbers, invisible and multi-byte characters, invalid
    /// UTF-8) and the field names and values of the feeds.
    const PIECES: &[&[u8]] = &[
        b"\"",
        b"\"\"",
        b",",
        b":",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b" ",
        b"\t",
        b"\0",
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"\\uDFFF\\uD800",
        b"\\\"",
        "\u{feff}".as_bytes(),
        "\u{200b}".as_bytes(),
        "\u{202e}".as_bytes(),
        "é".as_bytes(),
        "😀".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"null",
        b"true",
        b"false",
        b"0",
        b"-0",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"NaN",
        b"inf",
        b"0.30000000000000004",
        b"18446744073709551616",
        b"99999999999999999999999999999999",
        b"-9223372036854775809",
        b"4294967296",
        b"1000000000.01",
        b"\"agency_incident_id\":",
        b"\"revision\":",
        b"\"withdrawn\":true",
        b"\"loss_eur\":",
        b"\"departement\":\"2A\"",
        b"agency_incident_id",
        b"2024-02-30",
        b"2024-03-05",
        b"9999-12-31",
        b"+2024-3-05",
    ];

    /// One edit of a byte string; positions are taken modulo its length.
    #[derive(Debug, Clone)]
    pub(crate) enum Edit {
        /// Replace one byte (ASCII mostly, so most bodies stay UTF-8).
        Set(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
        /// Copy a range elsewhere: a key, a field, a line sent twice.
        Duplicate(usize, usize, usize),
        /// Swap two lines' ends for another line end.
        LineEnds(usize, &'static [u8]),
    }

    const LINE_ENDS: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b""];

    pub(crate) fn edit() -> impl Strategy<Value = Edit> {
        let byte = prop_oneof![8 => 0u8..0x80, 1 => any::<u8>()];
        let piece = prop_oneof![
            4 => proptest::sample::select(PIECES).prop_map(<[u8]>::to_vec),
            1 => vec(any::<u8>(), 1..8),
        ];
        prop_oneof![
            3 => (any::<usize>(), byte).prop_map(|(at, b)| Edit::Set(at, b)),
            4 => (any::<usize>(), piece).prop_map(|(at, p)| Edit::Insert(at, p)),
            2 => (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
            1 => any::<usize>().prop_map(Edit::Truncate),
            2 => (any::<usize>(), 1usize..64, any::<usize>())
                .prop_map(|(from, n, to)| Edit::Duplicate(from, n, to)),
            1 => (any::<usize>(), proptest::sample::select(LINE_ENDS))
                .prop_map(|(at, end)| Edit::LineEnds(at, end)),
        ]
    }

    pub(crate) fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = *b;
            }
            Edit::Set(..) => {}
            Edit::Insert(i, piece) => {
                let i = at(*i, bytes.len());
                bytes.splice(i..i, piece.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Truncate(i) => {
                let i = at(*i, bytes.len());
                bytes.truncate(i);
            }
            Edit::Duplicate(from, n, to) => {
                let from = at(*from, bytes.len());
                let end = (from + n).min(bytes.len());
                let copy = bytes[from..end].to_vec();
                let to = at(*to, bytes.len());
                bytes.splice(to..to, copy);
            }
            Edit::LineEnds(i, end) => {
                // The n-th line end (of any kind) becomes `end`.
                let ends: Vec<usize> = (0..bytes.len()).filter(|&k| bytes[k] == b'\n').collect();
                if let Some(&k) = ends.get(i % ends.len().max(1)) {
                    let start = if k > 0 && bytes[k - 1] == b'\r' { k - 1 } else { k };
                    bytes.splice(start..=k, end.iter().copied());
                }
            }
        }
    }

    /// One of `seeds`, edited up to `max_edits` times.
    pub(crate) fn mutated(seeds: Vec<Vec<u8>>, max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
        (proptest::sample::select(seeds), vec(edit(), 0..=max_edits)).prop_map(|(seed, edits)| {
            let mut bytes = seed;
            for e in &edits {
                apply(&mut bytes, e);
            }
            bytes
        })
    }

    /// Any bytes: short, mostly ASCII, or wholly arbitrary.
    pub(crate) fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 0..256),
            vec(prop_oneof![0x20u8..0x7f, Just(b'\n'), Just(b'"'), Just(b',')], 0..256),
            ".{0,64}".prop_map(String::into_bytes),
        ]
    }

    /// Text a cell or a value may hold: the feeds' own values, near misses, and anything.
    pub(crate) fn text_cell() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(
                &[
                    "",
                    " ",
                    "A",
                    "PN-2024-000123",
                    " A",
                    "A\u{200b}",
                    "A\u{202e}",
                    "\u{feff}A",
                    "2024-03-05",
                    "2024-02-30",
                    "2024-3-05",
                    "+2024-03-05",
                    "9999-12-31",
                    "1950-01-01",
                    "1949-12-31",
                    "2025-06-02",
                    "2025-06-03",
                    "0903",
                    "0101",
                    "09",
                    "0999",
                    "1",
                    "0",
                    "-1",
                    "4294967296",
                    "1e400",
                    "NaN",
                    "inf",
                    "-0",
                    "true",
                    "false",
                    "TRUE",
                    "yes",
                    "75",
                    "2A",
                    "2B",
                    "976",
                    "20",
                    "individual",
                    "business",
                    "unknown",
                    "email",
                    "sms",
                    "323-1",
                    "entered twice",
                    "1000000000",
                    "1000000000.01",
                    "0.30000000000000004",
                    "\"",
                    ",",
                    "\n",
                    "\r\n",
                    "\0",
                ][..]
            )
            .prop_map(str::to_owned),
            ".{0,12}",
            "[ -~]{0,140}",
        ]
    }

    /// Any JSON value, nested a little.
    pub(crate) fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
            text_cell().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

/// The date validation is checked against (as the unit tests do).
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 1).unwrap()
}

/// The crosswalks an agency may be registered with: the identity (feeds coded in ICCS) and the
/// built-in agency codes.
fn crosswalks() -> Vec<&'static Crosswalk> {
    let all = Crosswalks::builtin();
    all.iter().collect()
}

const HEADER: &str = "agency_incident_id,revision,occurred_on,reported_on,iccs,cyber,departement,victim_type,channel,loss_eur";

/// Valid bodies like those of `tests/e2e/ingest.rs`, to mutate.
fn seeds(format: Format) -> Vec<Vec<u8>> {
    let records = [
        r#"{"agency_incident_id":"PN-2024-000123","revision":1,"occurred_on":"2024-03-05","reported_on":"2024-03-07","offence_code":"323-1","iccs":"0903","cyber":true,"departement":"75","victim_type":"individual","channel":"email","loss_eur":1250.5}"#,
        r#"{"agency_incident_id":"PN-2024-000124","revision":2,"withdrawn":true,"reason":"entered twice"}"#,
        r#"{"agency_incident_id":"B","occurred_on":"2024-03-05","occurred_until":"2024-03-06","reported_on":"2024-03-07","iccs":"0903","cyber":true,"departement":null,"victim_type":"business","channel":"sms"}"#,
    ];
    match format {
        Format::Ndjson => vec![
            records.join("\n").into_bytes(),
            format!("{}\r\n", records.join("\r\n")).into_bytes(),
            format!("\u{feff}{}\n", records[0]).into_bytes(),
        ],
        Format::JsonArray => vec![
            format!("[{}]", records.join(",")).into_bytes(),
            format!("\u{feff}[\n{}\n]", records.join(",\n")).into_bytes(),
        ],
        Format::Csv => vec![
            format!(
                "{HEADER}\nA,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5\nB,2,2024-06-01,2024-06-02,0903,1,2A,individual,email,\n\"C,1\",1,2024-06-01,2024-06-02,0903,true,,unknown,unknown,0\n"
            )
            .into_bytes(),
            format!(
                "\u{feff}{HEADER},withdrawn,reason\r\nA,1,2024-06-01,2024-06-02,0903,true,75,business,sms,3.5,,\r\nA,2,,,,,,,,,true,\"doubled, sorry\"\r\n"
            )
            .into_bytes(),
        ],
    }
}

/// How many physical lines `body` has (a last line without its line end counts; CRLF, LF and a
/// lone CR each end a line).
fn physical_lines(body: &[u8]) -> u64 {
    let ends_line =
        |at: usize| body[at] == b'\n' || (body[at] == b'\r' && body.get(at + 1) != Some(&b'\n'));
    (0..body.len()).filter(|&at| ends_line(at)).count() as u64 + 1
}

/// What a body must make, in any format: a sentence for a body refused whole; else records in
/// line order, each readable or refused with a sentence, and every record's validation answered
/// with its problems named — by field when it could be read — or an event that travels.
fn check_body(format: Format, body: &[u8], crosswalk: &Crosswalk) -> Result<(), TestCaseError> {
    let records = match parse_body(format, body, DEFAULT_MAX_RECORDS) {
        Ok(records) => records,
        Err(error) => {
            prop_assert!(!error.to_string().trim().is_empty(), "an empty error for {body:?}");
            return Ok(());
        }
    };
    let lines = physical_lines(body);
    let mut previous = 0;
    for record in &records {
        prop_assert!(record.line > previous, "lines out of order: {records:?}");
        previous = record.line;
        if format != Format::JsonArray {
            prop_assert!(record.line <= lines, "line {} of {lines}: {body:?}", record.line);
        }
        if let Err(error) = &record.record {
            prop_assert!(!error.trim().is_empty(), "line {}: empty error", record.line);
        }
        check_event(record, crosswalk)?;
    }
    if format == Format::Ndjson {
        // One record for each line that is not blank.
        let text = std::str::from_utf8(body).unwrap();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let expected = text.split('\n').filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(records.len(), expected);
    }
    Ok(())
}

/// A record's validation: problems named as the answer shows them, or an event that can be
/// stamped, wrapped and decoded back as the projector will.
fn check_event(
    record: &crate::parse::ParsedRecord,
    crosswalk: &Crosswalk,
) -> Result<(), TestCaseError> {
    match record.event(today(), crosswalk) {
        Ok(event) => {
            prop_assert!(record.record.is_ok() && record.repeated.is_empty());
            check_travels(&event)?;
        }
        Err(problems) => {
            prop_assert!(!problems.is_empty(), "line {}: rejected without a reason", record.line);
            for (field, error) in &problems {
                prop_assert!(!error.trim().is_empty(), "line {}: empty error", record.line);
                prop_assert_eq!(
                    field.is_some(),
                    record.record.is_ok(),
                    "line {}: {:?} (a field when, and only when, the record was read)",
                    record.line,
                    problems
                );
            }
            for key in &record.repeated {
                prop_assert!(
                    problems.iter().any(|(f, e)| f.as_deref() == Some(key) && e == REPEATED_KEY),
                    "repeated key {key} not named: {problems:?}"
                );
            }
        }
    }
    Ok(())
}

/// An accepted event is what the ingest publishes: it has a revision stamp, and its envelope
/// decodes to the same event, its loss to the cent the projector sums. (Not to the bit: the
/// stream's JSON numbers are read by serde_json without `float_roundtrip`, which the long run
/// found 2 ulps off for a 17-digit loss such as 9.318519190132011e-259.)
fn check_travels(event: &Event) -> Result<(), TestCaseError> {
    prop_assert!(event.incident().is_some());
    prop_assert!(RevisionStamp::of("pn", event).is_some());
    let bytes = Envelope::new(event, "pn", Utc::now()).to_bytes();
    let (source, decoded) = Envelope::decode_event(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    prop_assert_eq!(source, "pn");
    match (event, &decoded) {
        (Event::IncidentReported(a), Event::IncidentReported(b)) => {
            // As `projector::incidents::fold::loss_cents` reads it.
            let cents = |loss: Option<f64>| loss.map(|euros| (euros * 100.0).round() as i64);
            let close = cents(a.loss_eur) == cents(b.loss_eur)
                && a.loss_eur.zip(b.loss_eur).is_none_or(|(x, y)| (x - y).abs() <= x.abs() * 1e-15);
            prop_assert!(close, "{a:?} became {b:?}");
            let mut b = b.clone();
            b.loss_eur = a.loss_eur;
            prop_assert_eq!(a, &b);
        }
        _ => prop_assert_eq!(event, &decoded),
    }
    Ok(())
}

/// An object's text from its pairs in order, keys possibly repeated.
fn object_text(pairs: &[(String, Value)]) -> String {
    let fields: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v)).collect();
    format!("{{{}}}", fields.join(","))
}

const FIELDS: &[&str] = &[
    "agency_incident_id",
    "revision",
    "occurred_on",
    "occurred_until",
    "reported_on",
    "iccs",
    "offence_code",
    "cyber",
    "departement",
    "victim_type",
    "channel",
    "loss_eur",
    "withdrawn",
    "reason",
];

/// A record as pairs: mostly the feed's fields with plausible, near and wrong values, keys
/// sometimes sent twice, sometimes unknown ones.
fn record_pairs() -> impl Strategy<Value = Vec<(String, Value)>> {
    let value = prop_oneof![
        3 => text_cell().prop_map(Value::String),
        1 => json_value(),
        1 => prop_oneof![Just(Value::Bool(true)), Just(Value::Bool(false)), (0u64..5).prop_map(Value::from)],
        1 => any::<f64>().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
    ];
    let key = prop_oneof![
        8 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => ".{0,8}",
    ];
    proptest::collection::vec((key, value), 0..16)
}

/// A valid report with some of its fields replaced, so validation goes deep.
fn near_valid_pairs() -> impl Strategy<Value = Vec<(String, Value)>> {
    let base: Vec<(String, Value)> = [
        ("agency_incident_id", Value::from("PN-1")),
        ("revision", Value::from(1)),
        ("occurred_on", Value::from("2024-03-05")),
        ("reported_on", Value::from("2024-03-07")),
        ("iccs", Value::from("0903")),
        ("cyber", Value::Bool(true)),
        ("departement", Value::from("75")),
        ("victim_type", Value::from("individual")),
        ("channel", Value::from("email")),
        ("loss_eur", Value::from(12.5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let change = (
        0usize..FIELDS.len(),
        prop_oneof![
            text_cell().prop_map(Value::String),
            json_value(),
            any::<f64>()
                .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ],
    );
    proptest::collection::vec((change, any::<bool>()), 0..4).prop_map(move |changes| {
        let mut pairs = base.clone();
        for ((field, value), replace) in changes {
            let name = FIELDS[field].to_owned();
            match pairs.iter_mut().find(|(k, _)| *k == name) {
                Some(slot) if replace => slot.1 = value,
                // Sent twice, or added.
                _ => pairs.push((name, value)),
            }
        }
        pairs
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_arbitrary_bytes_in_every_format(
        bytes in body(),
        format in proptest::sample::select(&[Format::Ndjson, Format::JsonArray, Format::Csv][..]),
    ) {
        check_body(format, &bytes, crosswalks()[0])?;
    }

    #[test]
    fn fuzz_mutated_ndjson_bodies(bytes in mutated(seeds(Format::Ndjson), 8), cw in 0usize..8) {
        let all = crosswalks();
        check_body(Format::Ndjson, &bytes, all[cw % all.len()])?;
    }

    #[test]
    fn fuzz_mutated_json_array_bodies(bytes in mutated(seeds(Format::JsonArray), 8), cw in 0usize..8) {
        let all = crosswalks();
        check_body(Format::JsonArray, &bytes, all[cw % all.len()])?;
    }

    #[test]
    fn fuzz_mutated_csv_bodies(bytes in mutated(seeds(Format::Csv), 8), cw in 0usize..8) {
        let all = crosswalks();
        check_body(Format::Csv, &bytes, all[cw % all.len()])?;
    }

    /// Records built field by field (keys repeated, values near and far from valid), in an
    /// NDJSON body and in a JSON array: each key sent twice is named, every problem has its
    /// field, and a good record's neighbours do not matter.
    #[test]
    fn fuzz_records_field_by_field(
        records in proptest::collection::vec(prop_oneof![record_pairs(), near_valid_pairs()], 1..6),
        cw in 0usize..8,
    ) {
        let all = crosswalks();
        let crosswalk = all[cw % all.len()];
        let texts: Vec<String> = records.iter().map(|r| object_text(r)).collect();
        let ndjson = texts.join("\n");
        check_body(Format::Ndjson, ndjson.as_bytes(), crosswalk)?;
        let parsed = parse_body(Format::Ndjson, ndjson.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        prop_assert_eq!(parsed.len(), records.len());
        for (record, pairs) in parsed.iter().zip(&records) {
            let mut seen = BTreeSet::new();
            let repeated: BTreeSet<&str> = pairs
                .iter()
                .filter(|(k, _)| !seen.insert(k.as_str()))
                .map(|(k, _)| k.as_str())
                .collect();
            prop_assert_eq!(record.repeated.iter().map(String::as_str).collect::<BTreeSet<_>>(), repeated);
        }
        let array = format!("[{}]", texts.join(","));
        check_body(Format::JsonArray, array.as_bytes(), crosswalk)?;
        // The same outcome whatever the format.
        let from_array = parse_body(Format::JsonArray, array.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        for (a, b) in parsed.iter().zip(&from_array) {
            prop_assert_eq!(&a.record, &b.record);
            prop_assert_eq!(&a.repeated, &b.repeated);
        }
    }

    /// One line of an NDJSON body replaced by anything (no line break): every other line is
    /// answered as if it were alone.
    #[test]
    fn fuzz_a_bad_ndjson_line_never_blocks_the_good_ones(
        line in proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).replace('\n', "")),
        at in 0usize..3,
    ) {
        let seed = String::from_utf8(seeds(Format::Ndjson)[0].clone()).unwrap();
        let mut lines: Vec<String> = seed.split('\n').map(str::to_owned).collect();
        lines[at] = line;
        let body = lines.join("\n");
        let records = parse_body(Format::Ndjson, body.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        let identity = crosswalks()[0];
        for record in records.iter().filter(|r| r.line != at as u64 + 1) {
            let alone = parse_body(Format::Ndjson, lines[record.line as usize - 1].as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
            prop_assert_eq!(record.event(today(), identity).is_ok(), alone[0].event(today(), identity).is_ok());
        }
        prop_assert!(records.iter().filter(|r| r.line != at as u64 + 1).count() == 2);
    }

    /// A CSV the csv crate writes (any cells: quotes, commas, line breaks, CRLF) reads back cell
    /// for cell, each record on the physical line it starts on.
    #[test]
    fn fuzz_csv_written_by_the_csv_crate_reads_back(
        columns in 1usize..5,
        cells in proptest::collection::vec(text_cell(), 0..24),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let header: Vec<String> = (0..columns).map(|i| format!("c_{i}")).collect();
        let rows: Vec<Vec<String>> = cells.chunks(columns)
            .filter(|c| c.len() == columns)
            .map(<[String]>::to_vec)
            .collect();
        let mut writer = csv::WriterBuilder::new()
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        writer.write_record(&header).unwrap();
        let mut starts = Vec::new();
        for row in &rows {
            writer.flush().unwrap();
            starts.push(writer.get_ref().len());
            writer.write_record(row).unwrap();
        }
        let mut text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let offset = if bom { text.insert(0, '\u{feff}'); 3 } else { 0 };
        let records = parse_body(Format::Csv, text.as_bytes(), DEFAULT_MAX_RECORDS).unwrap();
        prop_assert_eq!(records.len(), rows.len(), "{:?}", text);
        for ((record, row), start) in records.iter().zip(&rows).zip(&starts) {
            let line = physical_lines(&text.as_bytes()[..start + offset]);
            prop_assert_eq!(record.line, line, "{:?}", text);
            let map = record.record.as_ref().map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
            for (name, cell) in header.iter().zip(row) {
                let expected = if cell.is_empty() { Sent::Null } else { Sent::Str(cell.into()) };
                prop_assert_eq!(map.get_named(name), Some(&expected), "{:?}", text);
            }
        }
    }

    /// `read_csv` on any text: the header it returns is what each record was given, records come
    /// in line order, and an unreadable record says why.
    #[test]
    fn fuzz_read_csv_accounts_for_every_record(bytes in prop_oneof![body(), mutated(seeds(Format::Csv), 12)]) {
        let text = String::from_utf8_lossy(&bytes);
        let mut seen: Vec<(Vec<String>, u64, Result<usize, String>)> = Vec::new();
        let result = read_csv(&text, DEFAULT_MAX_RECORDS, |header, line, row| {
            seen.push((header.to_vec(), line, row.map(|r| r.len())));
        });
        match result {
            Ok(header) => {
                prop_assert!(!header.iter().all(String::is_empty));
                let lines = physical_lines(text.as_bytes());
                let mut previous = 1;
                for (h, line, row) in &seen {
                    prop_assert_eq!(h, &header);
                    prop_assert!(*line > previous && *line <= lines, "line {} after {}: {:?}", line, previous, text);
                    previous = *line;
                    match row {
                        Ok(cells) => prop_assert_eq!(*cells, header.len()),
                        Err(error) => prop_assert!(!error.trim().is_empty()),
                    }
                }
            }
            Err(error) => {
                prop_assert!(!error.to_string().trim().is_empty());
                prop_assert!(seen.is_empty(), "records before a header that fails: {:?}", text);
            }
        }
    }

    /// `json_record` on any text: an object, another value (refused naming what it got), or a
    /// syntax error; never a panic.
    #[test]
    fn fuzz_json_record(bytes in prop_oneof![body(), mutated(seeds(Format::Ndjson), 6)]) {
        let text = String::from_utf8_lossy(&bytes);
        match json_record::<Box<IncidentRecord>>(&text) {
            Ok(record) => {
                if let Err(error) = record.into_object() {
                    prop_assert!(error.starts_with("expected a JSON object, got "), "{}", error);
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// An incident record read straight from its text, its strings borrowed, is the record
    /// that its JSON object makes (when it names no key twice: the object keeps the last value).
    #[test]
    fn fuzz_a_record_read_from_text_is_its_json_object(
        bytes in prop_oneof![body(), mutated(seeds(Format::Ndjson), 6)],
        cw in 0usize..8,
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let all = crosswalks();
        let crosswalk = all[cw % all.len()];
        for line in text.split('\n') {
            let Ok(JsonRecord::Object(read, repeated)) = json_record::<Box<IncidentRecord>>(line)
            else {
                continue;
            };
            let Ok(object) = serde_json::from_str::<Map<String, Value>>(line) else { continue };
            if !repeated.is_empty() {
                continue;
            }
            let from_object = IncidentRecord::from(&object);
            prop_assert_eq!(&*read, &from_object, "{:?}", line);
            prop_assert_eq!(
                observatory_model::validate_record(&read, today(), crosswalk),
                observatory_model::validate_record(&from_object, today(), crosswalk)
            );
        }
    }

    /// `POST /v1/periods/close`: the body read as a record, then checked; every problem names
    /// `month` or `departements` or the unknown field.
    #[test]
    fn fuzz_period_closures(
        bytes in prop_oneof![
            body(),
            mutated(vec![
                br#"{"month":"2024-03"}"#.to_vec(),
                br#"{"month":"2024-03","departements":["75","2A","971"]}"#.to_vec(),
            ], 8),
        ],
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let Ok(parsed) = json_record::<Record>(&text) else { return Ok(()) };
        let Ok(record) = parsed.into_object() else { return Ok(()) };
        match validate_period_close(&record, today()) {
            Ok(closed) => {
                prop_assert!(closed.month.len() == 7 && closed.month.as_str() <= "2025-06");
                prop_assert!(closed.departements.as_ref().is_none_or(|d| !d.is_empty()));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.error.trim().is_empty());
                    prop_assert!(
                        e.field == "month" || e.field == "departements" || record.get(&e.field).is_some(),
                        "{:?}", errors
                    );
                }
            }
        }
    }

    /// Validation of any JSON object (not only what a body can carry): never a panic, the
    /// problems of a record each name a field of the feed or of the record.
    #[test]
    fn fuzz_validation_of_any_object(
        record in proptest::collection::btree_map(
            prop_oneof![proptest::sample::select(FIELDS).prop_map(str::to_owned), ".{0,8}"],
            json_value(),
            0..14,
        ),
        cw in 0usize..8,
    ) {
        let all = crosswalks();
        let record: Map<String, Value> = record.into_iter().collect();
        match observatory_model::validate_record(&IncidentRecord::from(&record), today(), all[cw % all.len()]) {
            Ok(event) => check_travels(&event)?,
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.error.trim().is_empty());
                    prop_assert!(FIELDS.contains(&e.field.as_str()) || record.get(&e.field).is_some(), "{:?}", e);
                }
            }
        }
    }

    /// The media types that select a body format: any header value is read or refused.
    #[test]
    fn fuzz_content_types(value in prop_oneof![
        ".{0,40}",
        "(application|text|APPLICATION)/(x-ndjson|json|csv|jsonl)( ?; ?charset=[a-z0-9-]{0,8})?",
    ]) {
        let format = Format::from_content_type(&value);
        let essence = crate::upload::essence(&value);
        prop_assert_eq!(format.is_some(), matches!(
            essence.as_str(),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json" | "text/csv"
        ));
    }
}
