//! `history=releases`: how each published number was revised. For every row the counts answer
//! has in any release, the distinct values it was published with, each with the release that
//! first published it and the interval of release times during which it stood (`valid_from`,
//! `valid_to`; `null` while it still stands), as ALFRED gives real-time periods.

use serde_json::{Map, Value, json};

use crate::api::{QueryState, frame_rows};
use crate::counts::QueryError;
use crate::disclosure::Tier;
use crate::error::ApiError;
use crate::request::CountsRequest;
use crate::vintage::Resolved;

/// A row's fields, by name.
type Fields = Map<String, Value>;

/// One row across releases: its key, its naming fields, its value in each release (`None`
/// where the release does not list it).
type Revisions = (String, Fields, Vec<Option<Fields>>);

/// The fields of a row that are its value; the rest name the row.
const VALUE_FIELDS: [&str; 4] = ["count", "loss_eur", "provisional", "loss_withheld"];

pub async fn counts_history(
    state: &QueryState,
    request: &CountsRequest,
    tier: Tier,
) -> Result<Value, ApiError> {
    let mut releases =
        state.vintages.releases().list().await.map_err(|e| ApiError::from(QueryError::Store(e)))?;
    releases.reverse();
    let policy = state.disclosure.policy_for(tier);
    // Row key (its naming fields, as JSON text) → the row's value in each release.
    let mut rows: Vec<Revisions> = Vec::new();
    for (at, release) in releases.iter().enumerate() {
        let resolved = Resolved::release(release, state.engine.serving().projection().id());
        state.disclosure.check_keys(tier, resolved.manifest.as_ref())?;
        let answer = state.engine.counts_on(&resolved, request, policy).await?;
        for row in frame_rows(&answer.frame) {
            let (mut name, mut value) = (Map::new(), Map::new());
            for (field, cell) in row {
                if VALUE_FIELDS.contains(&field.as_str()) {
                    value.insert(field, cell);
                } else {
                    name.insert(field, cell);
                }
            }
            let key = Value::Object(name.clone()).to_string();
            let index = match rows.iter().position(|(k, _, _)| *k == key) {
                Some(index) => index,
                None => {
                    rows.push((key, name, vec![None; releases.len()]));
                    rows.len() - 1
                }
            };
            rows[index].2[at] = Some(value);
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let published = |value: &Option<Map<String, Value>>| {
        // A row a release does not list was published as nothing, that is zero.
        value.as_ref().map_or((json!(0), Value::Null), |v| {
            (
                v.get("count").cloned().unwrap_or(Value::Null),
                v.get("loss_eur").cloned().unwrap_or(Value::Null),
            )
        })
    };
    let answer_rows: Vec<Value> = rows
        .into_iter()
        .map(|(_, name, values)| {
            let mut vintages: Vec<Value> = Vec::new();
            let mut last: Option<(Value, Value)> = None;
            for (release, value) in releases.iter().zip(&values) {
                if last.is_none() && value.is_none() {
                    continue;
                }
                let now = published(value);
                if last.as_ref() == Some(&now) {
                    continue;
                }
                if let Some(previous) = vintages.last_mut() {
                    previous["valid_to"] = json!(release.created_at);
                }
                let mut entry = json!({
                    "release": release.id, "valid_from": release.created_at, "valid_to": null,
                    "count": now.0, "loss_eur": now.1,
                });
                if let Some(value) = value {
                    for field in ["provisional", "loss_withheld"] {
                        if let Some(flag) = value.get(field) {
                            entry[field] = flag.clone();
                        }
                    }
                }
                vintages.push(entry);
                last = Some(now);
            }
            let mut row = name;
            row.insert("vintages".into(), Value::Array(vintages));
            Value::Object(row)
        })
        .collect();
    Ok(json!({
        "history": "releases",
        "by": request.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "releases": releases.iter().map(|r| json!({"id": r.id, "name": r.name, "created_at": r.created_at})).collect::<Vec<_>>(),
        "rows": answer_rows,
        "disclosure": state.disclosure.describe(tier),
    }))
}
