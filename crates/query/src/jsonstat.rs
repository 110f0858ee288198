//! JSON-stat 2.0 (`format=jsonstat` on `/v1/incidents/counts`): the answer as a cube whose
//! dimensions are the `by=` columns, `unit` and a metric dimension (`count`, `loss_eur`, and
//! `rate_per_100k` when asked), values row-major (the last dimension varies fastest). A
//! combination of categories the answer has no row for is a zero count, as in the JSON answer;
//! a withheld loss is `null` with status `w`, a provisional count has status `p`. Labels come
//! from the reference data; `extension` carries `as_of` and the disclosure metadata.

use observatory_reference::{Geography, Iccs};
use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Map, Value, json};

use crate::api::RATE_DEFINITION;
use crate::counts::{LOSS_WITHHELD, QueryError};
use crate::cube::{Cube, Metric};
use crate::request::{CountsRequest, Dimension};
use crate::serving::AsOf;

/// A category id for a missing value of a dimension (an incident without a département).
const NOT_STATED: &str = "_Z";

fn text(value: AnyValue<'_>) -> String {
    match value {
        AnyValue::Null => NOT_STATED.to_owned(),
        AnyValue::String(s) => s.to_owned(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn label(dimension: &str, id: &str) -> String {
    if id == NOT_STATED {
        return "not stated".to_owned();
    }
    let name = match dimension {
        "departement" => Geography::france().departement(id).map(|d| d.name.clone()),
        "region" => Geography::france().region(id).map(|r| r.name.clone()),
        "iccs" | "iccs_section" | "iccs_division" | "iccs_group" => {
            Iccs::v1_0().get(id).map(|e| e.label.clone())
        }
        _ => None,
    };
    name.unwrap_or_else(|| id.to_owned())
}

pub fn counts(
    frame: &DataFrame,
    request: &CountsRequest,
    as_of: &AsOf,
    disclosure: Value,
) -> Result<Value, QueryError> {
    let mut ids: Vec<String> = request.by.iter().map(|d| d.name().to_owned()).collect();
    if !request.by.contains(&Dimension::Unit) {
        ids.push(Dimension::Unit.name().to_owned());
    }
    let mut metrics = vec![
        Metric { id: "count", label: "Number (published to this tier)", decimals: 0 },
        Metric { id: "loss_eur", label: "Declared loss, euros", decimals: 2 },
    ];
    if request.rate.is_some() {
        metrics.push(Metric {
            id: "rate_per_100k",
            label: "Count per 100 000 inhabitants",
            decimals: 2,
        });
    }
    // Categories in the answer's order (it is sorted by the grouping columns).
    let mut cube = Cube::new(ids.clone(), metrics);
    let columns = ids.iter().map(|id| frame.column(id)).collect::<Result<Vec<_>, _>>()?;
    for row in 0..frame.height() {
        let codes = columns.iter().map(|c| c.get(row).map(text)).collect::<Result<Vec<_>, _>>()?;
        cube.push(codes);
    }
    let cells = cube.cells();
    let public = disclosure["tier"] == "public";
    // Absent rows are zero counts; their loss is zero (exact) or withheld (public: under the
    // threshold); their rate is unknown.
    let mut values: Vec<Value> = (0..cells)
        .map(|i| match cube.metric_of(i) {
            "count" => json!(0),
            "loss_eur" if !public => json!(0.0),
            _ => Value::Null,
        })
        .collect();
    let mut status: Map<String, Value> = Map::new();
    if public {
        for i in (0..cells).filter(|i| cube.metric_of(*i) == "loss_eur") {
            status.insert(i.to_string(), json!("w"));
        }
    }
    let count = frame.column("count")?.i64()?.clone();
    let loss = frame.column("loss_eur")?.f64()?.clone();
    let provisional = frame.column("provisional")?.bool()?.clone();
    let withheld = if public { Some(frame.column(LOSS_WITHHELD)?.bool()?.clone()) } else { None };
    let rate = if request.rate.is_some() {
        Some(frame.column("rate_per_100k")?.f64()?.clone())
    } else {
        None
    };
    for (row, base) in cube.offsets().into_iter().enumerate() {
        values[base] = json!(count.get(row));
        if provisional.get(row).unwrap_or(false) {
            status.insert(base.to_string(), json!("p"));
        }
        let loss_cell = base + 1;
        match loss.get(row) {
            Some(l) => {
                values[loss_cell] = json!(l);
                status.remove(&loss_cell.to_string());
            }
            None => {
                values[loss_cell] = Value::Null;
                if withheld.as_ref().is_some_and(|w| w.get(row).unwrap_or(false)) {
                    status.insert(loss_cell.to_string(), json!("w"));
                }
            }
        }
        if let Some(rate) = &rate {
            values[base + 2] = rate.get(row).map_or(Value::Null, |r| json!(r));
        }
    }
    // Every category is labelled: by its reference-data name, or by its code.
    let (id, size, dimension) = cube.structure(|d, c| Some(label(d, c)));
    let mut role = Map::new();
    let time: Vec<&String> =
        ids.iter().filter(|i| matches!(i.as_str(), "year" | "month")).collect();
    let geo: Vec<&String> =
        ids.iter().filter(|i| matches!(i.as_str(), "departement" | "region")).collect();
    if !time.is_empty() {
        role.insert("time".into(), json!(time));
    }
    if !geo.is_empty() {
        role.insert("geo".into(), json!(geo));
    }
    role.insert("metric".into(), json!(["measure"]));
    let mut extension = json!({"as_of": as_of, "disclosure": disclosure});
    if request.rate.is_some() {
        extension["rate"] = json!({"per": 100_000, "definition": RATE_DEFINITION});
    }
    let mut note = vec![json!(
        "A combination of categories without a row in the answer is a zero count. Status p: provisional (a source \
         has not closed a month the cell covers); w: withheld."
    )];
    if public {
        note.push(json!(
            "Public tier: counts perturbed by the cell-key method, so totals are not the sums of their parts; losses \
             withheld below the policy's threshold and rounded."
        ));
    }
    let mut dataset = json!({
        "version": "2.0",
        "class": "dataset",
        "label": "Recorded cyber incidents",
        "source": "observatory",
        "id": id,
        "size": size,
        "role": role,
        "dimension": dimension,
        "value": values,
        "note": note,
        "extension": extension,
    });
    if let Some(updated) = as_of.committed_at {
        dataset["updated"] = json!(updated.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if !status.is_empty() {
        dataset["status"] = Value::Object(status);
    }
    Ok(dataset)
}
