//! The survey estimates answer in JSON-stat 2.0 (`format=jsonstat`), Arrow and Parquet
//! (`format=arrow|parquet`), built from the JSON answer so that every format carries the same
//! numbers. JSON-stat: a `variable` dimension (`mean income`, `prop victim=yes`), one dimension per
//! `by=` column, and the metric dimension `measure` (estimate, SE, CI bounds, respondents); a
//! withheld domain is `null` with status `w`.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use serde_json::{Map, Value, json};

use crate::counts::QueryError;
use crate::cube::{Cube, Metric};
use crate::tabular::{Column, from_columns, metadata};

/// The fields of an estimate along the metric dimension, with their labels.
const MEASURES: [(&str, &str); 5] = [
    ("estimate", "Estimate"),
    ("se", "Standard error"),
    ("ci_lower", "Lower confidence bound"),
    ("ci_upper", "Upper confidence bound"),
    ("n", "Respondents (unweighted)"),
];

fn rows(answer: &Value) -> &[Value] {
    answer["estimates"].as_array().map_or(&[], Vec::as_slice)
}

/// `mean income`, `prop victim=yes`: what one estimate estimates.
fn variable(row: &Value) -> String {
    let mut id = format!(
        "{} {}",
        row["statistic"].as_str().unwrap_or(""),
        row["variable"].as_str().unwrap_or("")
    );
    if let Some(level) = row["level"].as_str() {
        id.push('=');
        id.push_str(level);
    }
    id
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "_Z".to_owned(),
        other => other.to_string(),
    }
}

pub fn jsonstat(answer: &Value, by: &[String]) -> Value {
    let rows = rows(answer);
    let mut ids: Vec<String> = vec!["variable".to_owned()];
    ids.extend(by.iter().cloned());
    let metrics = MEASURES
        .iter()
        .map(|&(id, label)| Metric { id, label, decimals: if id == "n" { 0 } else { 4 } })
        .collect();
    let mut cube = Cube::new(ids, metrics);
    for row in rows {
        cube.push(std::iter::once(variable(row)).chain(by.iter().map(|d| text(&row["domain"][d]))));
    }
    let mut values = vec![Value::Null; cube.cells()];
    let mut status = Map::new();
    for (row, base) in rows.iter().zip(cube.offsets()) {
        let withheld = row["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == super::handlers::WITHHELD));
        for (m, (field, _)) in MEASURES.iter().enumerate() {
            values[base + m] = row[*field].clone();
            if withheld && *field != "n" {
                status.insert((base + m).to_string(), json!("w"));
            }
        }
    }
    let (ids, sizes, dimension) = cube.structure(|_, _| None);
    let mut dataset = json!({
        "version": "2.0",
        "class": "dataset",
        "label": format!("{} wave {}: design-based estimates", text(&answer["survey"]), text(&answer["wave"])),
        "source": "observatory",
        "id": ids,
        "size": sizes,
        "role": {"metric": ["measure"]},
        "dimension": dimension,
        "value": values,
        "note": ["Status w: withheld (a domain with too few respondents for the public tier)."],
        "extension": {
            "as_of": answer["as_of"],
            "disclosure": answer["disclosure"],
            "design": answer["design"],
            "respondents": answer["respondents"],
            "wave_status": answer["status"],
        },
    });
    if !status.is_empty() {
        dataset["status"] = Value::Object(status);
    }
    dataset
}

/// One row per estimate: what it estimates, its domain (one column per `by=`), the numbers and
/// the flags (comma-separated).
pub fn batch(answer: &Value, by: &[String]) -> Result<RecordBatch, QueryError> {
    let rows = rows(answer);
    let texts = |f: &dyn Fn(&Value) -> Option<String>| Column::Text(rows.iter().map(f).collect());
    let numbers = |field: &str| Column::Number(rows.iter().map(|r| r[field].as_f64()).collect());
    let integers = |field: &str| Column::Integer(rows.iter().map(|r| r[field].as_i64()).collect());
    let mut columns: Vec<(String, Column)> = vec![
        ("statistic".into(), texts(&|r| r["statistic"].as_str().map(str::to_owned))),
        ("variable".into(), texts(&|r| r["variable"].as_str().map(str::to_owned))),
        ("level".into(), texts(&|r| r["level"].as_str().map(str::to_owned))),
    ];
    for column in by {
        columns.push((column.clone(), texts(&|r| r["domain"][column].as_str().map(str::to_owned))));
    }
    for field in ["estimate", "se", "ci_lower", "ci_upper", "cv"] {
        columns.push((field.into(), numbers(field)));
    }
    columns.push(("df".into(), integers("df")));
    columns.push(("n".into(), integers("n")));
    columns.push(("ci_method".into(), texts(&|r| r["ci_method"].as_str().map(str::to_owned))));
    columns.push((
        "flags".into(),
        texts(&|r| {
            r["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        }),
    ));
    let mut meta = metadata(&answer["as_of"], &answer["disclosure"]);
    let context: BTreeMap<&str, &Value> =
        [("survey", &answer["survey"]), ("wave", &answer["wave"]), ("design", &answer["design"])]
            .into();
    meta.insert("observatory:survey".into(), serde_json::to_string(&context).expect("serialises"));
    from_columns(columns, meta)
}
