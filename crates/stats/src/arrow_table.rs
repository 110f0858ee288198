//! Arrow record batches (from Parquet) as an estimation table, behind the `arrow` feature:
//! the one conversion `observatory estimate --input x.parquet`, the survey ingest and the
//! survey query all use, so a file reads the same everywhere.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};

use crate::error::StatsError;
use crate::table::Table;

impl Table {
    /// Numeric Arrow columns become numeric columns (nulls missing); strings, booleans and
    /// dictionaries become text (categorical) columns. Batches must share one schema.
    pub fn from_record_batches(batches: &[RecordBatch]) -> Result<Table, StatsError> {
        let mut table = Table::new();
        let Some(first) = batches.first() else {
            return Err(StatsError::invalid("the Parquet data has no row groups (no rows)"));
        };
        let schema = first.schema();
        if let Some(i) = batches.iter().position(|b| b.schema() != schema) {
            return Err(StatsError::invalid(format!(
                "record batch {i} has another schema than the first"
            )));
        }
        for (index, field) in schema.fields().iter().enumerate() {
            let columns: Vec<&dyn Array> =
                batches.iter().map(|b| b.column(index).as_ref()).collect();
            let name = field.name().clone();
            let cast_err = |e: arrow::error::ArrowError| {
                StatsError::invalid(format!(
                    "column '{name}' ({}) cannot be read: {e}",
                    field.data_type()
                ))
            };
            if field.data_type().is_numeric() {
                let mut values = Vec::new();
                for column in columns {
                    let cast =
                        arrow::compute::cast(column, &DataType::Float64).map_err(cast_err)?;
                    values.extend(cast.as_primitive::<Float64Type>().iter());
                }
                table.add_numeric_opt(name, values)?;
            } else {
                let mut values: Vec<Option<String>> = Vec::new();
                for column in columns {
                    let cast = arrow::compute::cast(column, &DataType::Utf8).map_err(cast_err)?;
                    values.extend(cast.as_string::<i32>().iter().map(|v| v.map(str::to_owned)));
                }
                table.add_text(name, &values)?;
            }
        }
        Ok(table)
    }
}
