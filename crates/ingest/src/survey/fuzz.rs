//! Property tests (fuzzing) of the survey uploads: respondent rows (CSV, NDJSON, Parquet) from
//! arbitrary and mutated bytes through `parse_rows` and the check against a declaration
//! (`validate_row`), closures (`parse_close`), and declarations (`declaration`, then
//! `SurveyWaveDeclared::validate`). No panic; every refusal a sentence naming its line or field;
//! what is accepted travels: the projector's re-check accepts it and it decodes back exactly.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use axum::http::StatusCode;
use chrono::Utc;
use observatory_fuzzing::config;
use observatory_model::survey::{
    Cell, SurveyEvent, SurveyResponsesRecorded, SurveyRow, SurveyWaveClosed, SurveyWaveDeclared,
    check_row, validate_row,
};
use proptest::prelude::*;

use super::handlers::declaration;
use super::parse::{BodyFormat, parse_close, parse_rows};
use crate::fuzz::support::{body, mutated, text_cell};
use crate::parse::DEFAULT_MAX_RECORDS;

/// The declaration of the model's fixtures (a stratified, clustered household survey).
const DECLARATION: &str = r#"{"survey":"cvs","wave":"2024","population":"households",
    "reference_period":{"from":"2024-01-01","to":"2024-12-31"},"respondent_id":"hh",
    "design":{"weights":"w","strata":"region","clusters":["psu"]},
    "variables":[{"name":"region","type":"categorical","values":["11","84"]},
                 {"name":"psu","type":"integer"},{"name":"w","type":"numeric","min":0},
                 {"name":"victim","type":"categorical","values":["yes","no"],"required":true},
                 {"name":"reported","type":"categorical","values":["yes","no"]},
                 {"name":"age","type":"integer","min":15,"max":120},
                 {"name":"note","type":"text","label":"free text"}],
    "victimisation_items":[{"name":"fraud","victim":"victim","reported":"reported","iccs":"0701"}]}"#;

fn fixture() -> SurveyWaveDeclared {
    serde_json::from_str(DECLARATION).unwrap()
}

fn csv_seeds() -> Vec<Vec<u8>> {
    vec![
        b"hh,region,psu,w,victim,reported,age,note\nH1,11,7,33.84699630737305,no,,NA,\nH2,84,8,1.5,yes,yes,40,\"a, b\"\nH3,11,7,2,yes,no,15,x\n".to_vec(),
        "\u{feff}hh,psu,region,w,victim\r\nH1,1,11,1e0,no\r\nH1,1,11,1,no\r\n".as_bytes().to_vec(),
    ]
}

fn ndjson_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"hh":"H1","region":"11","psu":7,"w":33.84699630737305,"victim":"no","age":null}
{"hh":"H2","region":84,"psu":8,"w":1.5,"victim":"yes","reported":"yes","age":40,"note":"x"}
{"hh":"H3","region":"11","psu":7.0,"w":2,"victim":"yes","reported":"no"}"#
            .to_vec(),
    ]
}

/// A Parquet body of respondent rows, as an agency's tools write one.
fn parquet_seed() -> Vec<u8> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("hh", Arc::new(StringArray::from(vec!["H1", "H2", "H3"]))),
        ("region", Arc::new(StringArray::from(vec![Some("11"), Some("84"), None]))),
        ("psu", Arc::new(Int64Array::from(vec![7, 8, 7]))),
        ("w", Arc::new(Float64Array::from(vec![33.84699630737305, 1.5, f64::NAN]))),
        ("victim", Arc::new(StringArray::from(vec!["no", "yes", "yes"]))),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// Three rows in each format: read with a cap of three, refused whole with a cap of two (for
/// Parquet from its footer's row count, before a page is decoded).
#[test]
fn a_body_over_the_row_cap_is_refused_whole_in_every_format() {
    use crate::parse::BodyError;
    let ndjson = b"{\"hh\":\"H1\"}\n\n{\"hh\":\"H2\"}\n{\"hh\":\"H3\"}\n".to_vec();
    let csv = b"hh\nH1\nH2\nH3\n".to_vec();
    for (format, body) in [
        (BodyFormat::Ndjson, ndjson),
        (BodyFormat::Csv, csv),
        (BodyFormat::Parquet, parquet_seed()),
    ] {
        assert_eq!(parse_rows(format, &body, 3).unwrap().len(), 3, "{format:?}");
        let refused = parse_rows(format, &body, 2).unwrap_err();
        assert_eq!(refused, BodyError::TooManyRecords { max: 2 }, "{format:?}");
        assert!(refused.to_string().contains("more than 2 records"), "{refused}");
    }
}

/// Rows as the handler vets them: each refusal a sentence on its line, a repeated key named on
/// its own field; each row checked against `declaration`, every problem naming a column, and an
/// accepted row one the projector's re-check accepts and that decodes back exactly.
fn check_rows(
    format: BodyFormat,
    bytes: &[u8],
    declaration: &SurveyWaveDeclared,
) -> Result<(), TestCaseError> {
    let rows = match parse_rows(format, bytes, DEFAULT_MAX_RECORDS) {
        Ok(rows) => rows,
        Err(error) => {
            prop_assert!(!error.to_string().trim().is_empty());
            return Ok(());
        }
    };
    let mut previous = 0;
    let mut accepted = Vec::new();
    for (line, cells, repeated) in rows {
        prop_assert!(line > previous, "line {} after {}", line, previous);
        previous = line;
        let cells = match cells {
            Ok(cells) => {
                prop_assert!(repeated.is_empty());
                cells
            }
            Err(error) => {
                prop_assert!(!error.trim().is_empty(), "line {}: an empty error", line);
                for key in &repeated {
                    prop_assert!(
                        error.contains(&format!("'{key}'")),
                        "{} does not name {}",
                        error,
                        key
                    );
                }
                prop_assert!(
                    repeated.is_empty() || error.contains("twice in the record"),
                    "{}",
                    error
                );
                continue;
            }
        };
        let columns: Vec<String> = cells.iter().map(|(name, _)| name.clone()).collect();
        match validate_row(declaration, cells) {
            Ok(row) => accepted.push(row),
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "line {}: refused without a reason", line);
                for e in &errors {
                    prop_assert!(!e.error.trim().is_empty());
                    prop_assert!(
                        e.field == declaration.respondent_id
                            || declaration.variable(&e.field).is_some()
                            || columns.contains(&e.field),
                        "line {}: {:?} names no column",
                        line,
                        e
                    );
                }
            }
        }
    }
    check_accepted(declaration, accepted)
}

/// Accepted rows pass the projector's re-check unchanged and travel exactly.
fn check_accepted(
    declaration: &SurveyWaveDeclared,
    rows: Vec<SurveyRow>,
) -> Result<(), TestCaseError> {
    if rows.is_empty() {
        return Ok(());
    }
    for row in &rows {
        let again = check_row(declaration, row)
            .map_err(|e| TestCaseError::fail(format!("the projector refuses {row:?}: {e:?}")))?;
        prop_assert_eq!(&again, row);
    }
    let batch = SurveyResponsesRecorded {
        survey: declaration.survey.clone(),
        wave: declaration.wave.clone(),
        rows,
    };
    batch.validate_shape().map_err(TestCaseError::fail)?;
    travels(SurveyEvent::ResponsesRecorded(batch))
}

/// A survey event decodes from its message bytes as it was (numbers exactly).
fn travels(event: SurveyEvent) -> Result<(), TestCaseError> {
    let bytes = event.envelope("ssmsi", Utc::now()).to_bytes();
    let decoded = SurveyEvent::decode(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    prop_assert_eq!(decoded.event, event);
    Ok(())
}

const COLUMNS: &[&str] =
    &["hh", "region", "psu", "w", "victim", "reported", "age", "note", "colour", ""];

/// A row built cell by cell from the fixture's columns (and strays), in NDJSON or CSV.
fn built_rows() -> impl Strategy<Value = (BodyFormat, Vec<u8>)> {
    let cell = prop_oneof![
        4 => text_cell(),
        1 => any::<f64>().prop_map(|x| x.to_string()),
        1 => any::<i64>().prop_map(|x| x.to_string()),
        1 => proptest::sample::select(&["11", "84", "yes", "no", "NA", "15", "120", "121", "7.0", "1e300", "-0"][..])
            .prop_map(str::to_owned),
    ];
    let header = proptest::collection::vec(proptest::sample::select(COLUMNS), 1..9);
    (header, proptest::collection::vec(proptest::collection::vec(cell, 9), 1..5), any::<bool>())
        .prop_map(|(header, rows, csv)| {
            if csv {
                let mut writer = csv::Writer::from_writer(Vec::new());
                writer.write_record(&header).unwrap();
                for row in &rows {
                    writer.write_record(&row[..header.len()]).unwrap();
                }
                (BodyFormat::Csv, writer.into_inner().unwrap())
            } else {
                let lines: Vec<String> = rows
                    .iter()
                    .map(|row| {
                        let fields: Vec<String> = header
                            .iter()
                            .zip(row)
                            .map(|(name, cell)| {
                                // Numbers bare when they read as JSON numbers, else strings.
                                let value = match serde_json::from_str::<serde_json::Value>(cell) {
                                    Ok(v) if v.is_number() => cell.clone(),
                                    _ => serde_json::Value::String(cell.clone()).to_string(),
                                };
                                format!("{}:{value}", serde_json::Value::String((*name).into()))
                            })
                            .collect();
                        format!("{{{}}}", fields.join(","))
                    })
                    .collect();
                (BodyFormat::Ndjson, lines.join("\n").into_bytes())
            }
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_survey_rows_from_any_bytes(
        bytes in prop_oneof![body(), mutated(csv_seeds(), 8), mutated(ndjson_seeds(), 8)],
        csv in any::<bool>(),
    ) {
        let format = if csv { BodyFormat::Csv } else { BodyFormat::Ndjson };
        check_rows(format, &bytes, &fixture())?;
    }

    #[test]
    fn fuzz_survey_rows_mutated_csv(bytes in mutated(csv_seeds(), 8)) {
        check_rows(BodyFormat::Csv, &bytes, &fixture())?;
    }

    #[test]
    fn fuzz_survey_rows_mutated_ndjson(bytes in mutated(ndjson_seeds(), 8)) {
        check_rows(BodyFormat::Ndjson, &bytes, &fixture())?;
    }

    #[test]
    fn fuzz_survey_rows_built_cell_by_cell((format, bytes) in built_rows()) {
        check_rows(format, &bytes, &fixture())?;
    }

    /// Parquet bodies: a valid file mutated, or any bytes; read or refused, never a panic.
    #[test]
    fn fuzz_survey_rows_parquet(bytes in prop_oneof![
        3 => mutated(vec![parquet_seed()], 4),
        1 => body(),
    ]) {
        check_rows(BodyFormat::Parquet, &bytes, &fixture())?;
    }

    /// Closures: `{}` or final weights as JSON or a two-column CSV, mutated; refused with a
    /// sentence, or weights the closure's shape check answers (and that travel exactly).
    #[test]
    fn fuzz_survey_close(
        bytes in prop_oneof![
            body(),
            mutated(vec![
                br#"{"final_weights":{"H1":1.5,"H2":0.30000000000000004}}"#.to_vec(),
                b"{}".to_vec(),
            ], 8),
            mutated(vec![b"hh,w\nH1,1.5\nH2,2\n".to_vec(), b"\xef\xbb\xbfhh,w\r\nH1,1e-3\r\n".to_vec()], 8),
        ],
        csv in any::<bool>(),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let format = csv.then_some(BodyFormat::Csv);
        match parse_close(&text, format) {
            Err(error) => prop_assert!(!error.trim().is_empty()),
            Ok(final_weights) => {
                let close = SurveyWaveClosed {
                    survey: "cvs".into(),
                    wave: "2024".into(),
                    respondents: final_weights.len() as u64,
                    final_weights,
                };
                match close.validate_shape() {
                    Ok(()) => travels(SurveyEvent::WaveClosed(close))?,
                    Err(error) => prop_assert!(error.starts_with("final_weights: "), "{}", error),
                }
            }
        }
    }

    /// Declarations: the fixture mutated, or any bytes. A body that is not one is a 400 saying
    /// so; a declaration is checked field by field; a valid one travels exactly and rows are
    /// checked against it without a panic.
    #[test]
    fn fuzz_survey_declarations(
        bytes in prop_oneof![1 => body(), 6 => mutated(vec![DECLARATION.as_bytes().to_vec()], 6)],
        rows in mutated(csv_seeds(), 4),
    ) {
        let declared = match declaration("cvs", &bytes) {
            Ok(declared) => declared,
            Err(error) => {
                prop_assert_eq!(error.status(), StatusCode::BAD_REQUEST);
                prop_assert!(
                    error.message().contains("declaration") || error.message().contains("\"survey\""),
                    "{}", error.message()
                );
                return Ok(());
            }
        };
        prop_assert_eq!(&declared.survey, "cvs");
        match declared.validate() {
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.field.is_empty() && !e.error.trim().is_empty(), "{:?}", e);
                }
            }
            Ok(()) => {
                travels(SurveyEvent::WaveDeclared(declared.clone()))?;
                check_rows(BodyFormat::Csv, &rows, &declared)?;
            }
        }
    }

    /// Cells of every kind against each declared variable: a number where a category is
    /// expected, huge and tiny numbers, text where a number is.
    #[test]
    fn fuzz_survey_cells_of_every_kind(
        cells in proptest::collection::vec(
            (
                proptest::sample::select(&["hh", "region", "psu", "w", "victim", "reported", "age", "note", "x"][..]),
                proptest::option::of(prop_oneof![
                    text_cell().prop_map(Cell::Text),
                    any::<i64>().prop_map(Cell::Integer),
                    any::<f64>().prop_map(Cell::Number),
                ]),
            ),
            0..10,
        ),
    ) {
        let declaration = fixture();
        let columns: Vec<String> = cells.iter().map(|(n, _)| (*n).to_owned()).collect();
        let cells: Vec<(String, Option<Cell>)> =
            cells.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        match validate_row(&declaration, cells) {
            Ok(row) => check_accepted(&declaration, vec![row])?,
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.error.trim().is_empty());
                    prop_assert!(columns.contains(&e.field) || declaration.variable(&e.field).is_some() || e.field == "hh");
                }
            }
        }
    }
}
