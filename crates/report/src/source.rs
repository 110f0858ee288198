//! Where a report's numbers come from: the observatory's own public API, asked for one
//! release. The report reads nothing else, so every number it prints is one the API serves
//! to the public for that release, and the request that gave it is written beside it.

use std::future::Future;

use serde_json::{Map, Value};

use crate::ReportError;

/// An answer the API refused: its status and its error message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{request} answered {status}: {message}")]
pub struct SourceError {
    pub request: String,
    pub status: u16,
    pub message: String,
}

/// The public API, asked without a token (the public tier: perturbed counts, withheld small
/// domains). `path` is a path and query, e.g. `/v1/incidents/counts?by=month&release=r3`.
pub trait Source: Sync {
    fn get(&self, path: &str) -> impl Future<Output = Result<Value, SourceError>> + Send;
}

/// A counts answer's rows, by the `by=` columns.
#[derive(Debug, Clone)]
pub struct Rows {
    pub request: String,
    pub rows: Vec<Map<String, Value>>,
    pub disclosure: Option<Value>,
}

impl Rows {
    /// The published count of the row whose `column` is `value`.
    pub fn count_where(&self, column: &str, value: &str) -> Option<i64> {
        self.find(column, value).and_then(|r| r.get("count")).and_then(Value::as_i64)
    }

    pub fn find(&self, column: &str, value: &str) -> Option<&Map<String, Value>> {
        self.rows.iter().find(|r| r.get(column).and_then(Value::as_str) == Some(value))
    }
}

/// `/v1/incidents/counts` with `params` (release added), as rows.
pub async fn counts(
    source: &impl Source,
    release: &str,
    params: &str,
) -> Result<Rows, ReportError> {
    let request = format!("/v1/incidents/counts?{params}&release={release}");
    let answer = source.get(&request).await?;
    let rows = answer
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| ReportError::Answer(format!("{request}: the answer has no rows")))?
        .iter()
        .filter_map(|r| r.as_object().cloned())
        .collect();
    Ok(Rows { request, rows, disclosure: answer.get("disclosure").cloned() })
}

pub fn str_of<'a>(row: &'a Map<String, Value>, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub fn int_of(row: &Map<String, Value>, key: &str) -> Option<i64> {
    row.get(key).and_then(Value::as_i64)
}

pub fn num_of(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}
