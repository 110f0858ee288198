//! Arrow IPC stream (`format=arrow`) and Parquet (`format=parquet`) bodies for the counts and
//! survey estimates answers: typed columns (counts and years as integers, months as `YYYY-MM`
//! text, losses and estimates as doubles with nulls where withheld or undefined, flags as booleans)
//! and the answer's `as_of` and disclosure metadata, as JSON text, in the schema metadata under
//! `observatory:as_of` and `observatory:disclosure` (pyarrow and DuckDB's `parquet_kv_metadata` read
//! them; polars does not show an IPC stream's metadata, so the `observatory-as-of-sequence` header
//! says it too).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use polars::prelude::{DataFrame, DataType as PolarsType};
use serde_json::Value;

use crate::counts::QueryError;

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// The schema metadata of an answer.
pub fn metadata(as_of: &impl serde::Serialize, disclosure: &Value) -> HashMap<String, String> {
    HashMap::from([
        ("observatory:as_of".to_owned(), serde_json::to_string(as_of).expect("serialises")),
        ("observatory:disclosure".to_owned(), disclosure.to_string()),
    ])
}

fn tabular_error(e: impl std::fmt::Display) -> QueryError {
    QueryError::Encode(e.to_string())
}

/// A counts answer's frame as one record batch.
pub fn from_frame(
    frame: &DataFrame,
    metadata: HashMap<String, String>,
) -> Result<RecordBatch, QueryError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for column in frame.columns() {
        let name = column.name().to_string();
        let (field_type, array): (DataType, ArrayRef) = match column.dtype() {
            PolarsType::Int32 => {
                (DataType::Int32, Arc::new(column.i32()?.iter().collect::<Int32Array>()))
            }
            PolarsType::Int64 => {
                (DataType::Int64, Arc::new(column.i64()?.iter().collect::<Int64Array>()))
            }
            PolarsType::UInt32 => {
                (DataType::UInt32, Arc::new(column.u32()?.iter().collect::<UInt32Array>()))
            }
            PolarsType::Float64 => {
                (DataType::Float64, Arc::new(column.f64()?.iter().collect::<Float64Array>()))
            }
            PolarsType::Boolean => {
                (DataType::Boolean, Arc::new(column.bool()?.iter().collect::<BooleanArray>()))
            }
            PolarsType::String => {
                (DataType::Utf8, Arc::new(column.str()?.iter().collect::<StringArray>()))
            }
            // Null-typed columns (a grouping column with no rows): text.
            _ => {
                let text: StringArray = (0..frame.height())
                    .map(|i| column.get(i).ok().map(|v| v.to_string()))
                    .collect();
                (DataType::Utf8, Arc::new(text))
            }
        };
        fields.push(Field::new(name, field_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    RecordBatch::try_new(schema, arrays).map_err(tabular_error)
}

/// Named columns of one type each, for answers that are not frames (survey estimates).
pub enum Column {
    Text(Vec<Option<String>>),
    Number(Vec<Option<f64>>),
    Integer(Vec<Option<i64>>),
}

pub fn from_columns(
    columns: Vec<(String, Column)>,
    metadata: HashMap<String, String>,
) -> Result<RecordBatch, QueryError> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (name, column) in columns {
        let (field_type, array): (DataType, ArrayRef) = match column {
            Column::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v))),
            Column::Number(v) => (DataType::Float64, Arc::new(Float64Array::from(v))),
            Column::Integer(v) => (DataType::Int64, Arc::new(Int64Array::from(v))),
        };
        fields.push(Field::new(name, field_type, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    RecordBatch::try_new(schema, arrays).map_err(tabular_error)
}

/// The batch as an Arrow IPC stream (not the file format: a client reads it as it arrives).
pub fn ipc_stream(batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
        .map_err(tabular_error)?;
    writer.write(batch).map_err(tabular_error)?;
    writer.finish().map_err(tabular_error)?;
    drop(writer);
    Ok(out)
}

/// The batch as one Parquet file (zstd), its metadata in the file's key-value metadata too.
pub fn parquet(batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")));
    let pairs: Vec<parquet::file::metadata::KeyValue> = batch
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !pairs.is_empty() {
        builder = builder.set_key_value_metadata(Some(pairs));
    }
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(builder.build()))
        .map_err(tabular_error)?;
    writer.write(batch).map_err(tabular_error)?;
    writer.close().map_err(tabular_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use polars::prelude::Column as PolarsColumn;

    use super::*;

    #[test]
    fn frames_keep_their_types_and_metadata() {
        let frame = DataFrame::new_infer_height(vec![
            PolarsColumn::new("year".into(), vec![2024i32, 2025]),
            PolarsColumn::new("departement".into(), vec![Some("75"), None]),
            PolarsColumn::new("count".into(), vec![3i64, 12]),
            PolarsColumn::new("loss_eur".into(), vec![None, Some(12.5f64)]),
            PolarsColumn::new("provisional".into(), vec![true, false]),
        ])
        .unwrap();
        let batch = from_frame(
            &frame,
            metadata(&serde_json::json!({"sequence": 4}), &serde_json::json!({"tier": "public"})),
        )
        .unwrap();
        let types: Vec<&DataType> =
            batch.schema_ref().fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Int32,
                &DataType::Utf8,
                &DataType::Int64,
                &DataType::Float64,
                &DataType::Boolean
            ]
        );
        let stream = ipc_stream(&batch).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None).unwrap();
        assert_eq!(reader.schema().metadata()["observatory:as_of"], r#"{"sequence":4}"#);
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(batches[0], batch);
        let file = parquet(&batch).unwrap();
        assert_eq!(&file[..4], b"PAR1");
    }
}
