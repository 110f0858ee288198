//! The survey estimates answer in JSON-stat 2.0 (`format=jsonstat`), Arrow and Parquet
//! (`format=arrow|parquet`), built from the JSON answer so that every format carries the same
//! numbers. JSON-stat: a `variable` dimension (`mean income`, `prop victim=yes`), one dimension per
//! `by=` column, and the metric dimension `measure` (estimate, SE, CI bounds, respondents); a
//! withheld domain is `null` with status `w`.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use serde_json::{Map, Value, json};

use crate::counts::QueryError;
use crate::tabular::{Column, from_columns, metadata};

const MEASURES: [(&str, &str, &str); 5] = [
    ("estimate", "estimate", "Estimate"),
    ("se", "se", "Standard error"),
    ("ci_lower", "ci_lower", "Lower confidence bound"),
    ("ci_upper", "ci_upper", "Upper confidence bound"),
    ("n", "n", "Respondents (unweighted)"),
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
    let mut categories: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
    let mut keys: Vec<Vec<usize>> = Vec::with_capacity(rows.len());
    for row in rows {
        let mut key = Vec::with_capacity(ids.len());
        for (d, id) in ids.iter().enumerate() {
            let code = if d == 0 { variable(row) } else { text(&row["domain"][id]) };
            let list = &mut categories[d];
            let position = list.iter().position(|c| *c == code).unwrap_or_else(|| {
                list.push(code);
                list.len() - 1
            });
            key.push(position);
        }
        keys.push(key);
    }
    let sizes: Vec<usize> = categories.iter().map(Vec::len).chain([MEASURES.len()]).collect();
    let cells: usize = sizes.iter().product();
    let mut values = vec![Value::Null; cells];
    let mut status = Map::new();
    for (row, key) in rows.iter().zip(&keys) {
        let base = key.iter().zip(&sizes).fold(0usize, |acc, (k, s)| acc * s + k) * MEASURES.len();
        let withheld = row["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == super::handlers::WITHHELD));
        for (m, (field, _, _)) in MEASURES.iter().enumerate() {
            values[base + m] = row[*field].clone();
            if withheld && *field != "n" {
                status.insert((base + m).to_string(), json!("w"));
            }
        }
    }
    let mut dimension = Map::new();
    for (id, list) in ids.iter().zip(&categories) {
        let index: Map<String, Value> =
            list.iter().enumerate().map(|(i, c)| (c.clone(), json!(i))).collect();
        dimension.insert(id.clone(), json!({"label": id, "category": {"index": index}}));
    }
    let index: Map<String, Value> =
        MEASURES.iter().enumerate().map(|(i, (_, id, _))| ((*id).to_owned(), json!(i))).collect();
    let labels: Map<String, Value> =
        MEASURES.iter().map(|(_, id, label)| ((*id).to_owned(), json!(label))).collect();
    let units: Map<String, Value> = MEASURES
        .iter()
        .map(|(_, id, _)| ((*id).to_owned(), json!({"decimals": if *id == "n" { 0 } else { 4 }})))
        .collect();
    dimension.insert(
        "measure".into(),
        json!({"label": "measure", "category": {"index": index, "label": labels, "unit": units}}),
    );
    ids.push("measure".into());
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
