//! Parquet in and out of the store: zstd-compressed files encoded in memory (their writer puts
//! each with one put, whole or not at all) and read back as Arrow record batches.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};

use crate::{Store, StoreError};

/// A Parquet file encoded in memory batch by batch (zstd, row groups of up to 2^20 rows):
/// a writer whose rows come over time holds the encoded file, a tenth of the rows' size,
/// rather than the rows themselves.
pub struct ParquetEncoder {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
    label: String,
}

impl ParquetEncoder {
    /// An empty file of `schema`; `label` names it in errors.
    pub fn new(schema: SchemaRef, label: &str) -> Result<ParquetEncoder, StoreError> {
        ParquetEncoder::with(schema, label, properties())
    }

    /// An empty file only ever read whole (a fold's state): without statistics, which no
    /// reader of such a file prunes by, and without a dictionary for the `unique` columns,
    /// whose values do not repeat. Computing both was 2 % of a rebuild's CPU.
    pub fn read_whole(
        schema: SchemaRef,
        label: &str,
        unique: &[&str],
    ) -> Result<ParquetEncoder, StoreError> {
        let properties = unique
            .iter()
            .fold(properties(), |p, column| {
                p.set_column_dictionary_enabled((*column).into(), false)
            })
            .set_statistics_enabled(EnabledStatistics::None);
        ParquetEncoder::with(schema, label, properties)
    }

    fn with(
        schema: SchemaRef,
        label: &str,
        properties: WriterPropertiesBuilder,
    ) -> Result<ParquetEncoder, StoreError> {
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties.build()))
            .map_err(|e| parquet_error(label, e))?;
        Ok(ParquetEncoder { writer, rows: 0, label: label.to_owned() })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        self.writer.write(batch).map_err(|e| parquet_error(&self.label, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The whole file.
    pub fn finish(self) -> Result<Bytes, StoreError> {
        let label = self.label;
        let buffer = self.writer.into_inner().map_err(|e| parquet_error(&label, e))?;
        Ok(Bytes::from(buffer))
    }
}

fn properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
        .set_max_row_group_row_count(Some(1 << 20))
}

fn parquet_error(label: &str, e: parquet::errors::ParquetError) -> StoreError {
    StoreError::Parquet { path: label.to_owned(), message: e.to_string() }
}

/// Reads a whole Parquet object into record batches.
pub async fn read_parquet(store: &Store, path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    let bytes = store.get(path).await?.ok_or_else(|| StoreError::Invalid {
        path: path.to_string(),
        message: "listed in a manifest but missing".into(),
    })?;
    let label = path.to_string();
    // Decoding blocks for as long as the file is large: off the async workers, so the requests
    // and messages queued on them are not held back.
    tokio::task::spawn_blocking(move || {
        let failed = |message: String| StoreError::Parquet { path: label.clone(), message };
        ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| failed(e.to_string()))?
            .with_batch_size(65_536)
            .build()
            .map_err(|e| failed(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::Parquet {
        path: path.to_string(),
        message: format!("the decoding task failed: {e}"),
    })?
}

/// The record batches of a Parquet file already fetched (`bytes`), decoded one at a time and
/// only for the named `columns`: for a reader that folds a file too large to hold decoded
/// whole (a state file of a million incidents). `path` names the file in errors.
pub fn parquet_batches(
    bytes: Bytes,
    path: &str,
    columns: &[&str],
    batch_size: usize,
) -> Result<impl Iterator<Item = Result<RecordBatch, StoreError>> + Send + use<>, StoreError> {
    let parquet_err = |message: String| StoreError::Parquet { path: path.to_owned(), message };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| parquet_err(e.to_string()))?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| parquet_err(e.to_string()))?;
    let path = path.to_owned();
    Ok(reader.map(move |batch| {
        batch.map_err(|e| StoreError::Parquet { path: path.clone(), message: e.to_string() })
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    #[test]
    fn a_file_read_whole_has_no_statistics_and_no_dictionary_for_its_unique_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("sequence", DataType::UInt64, false),
        ]));
        let ids: Vec<String> = (0..1000).map(|i| format!("I{i}")).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(&ids)),
            Arc::new(StringArray::from_iter_values((0..1000).map(|i| ["a", "b"][i % 2]))),
            Arc::new(UInt64Array::from_iter_values(0..1000)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let encode = |mut encoder: ParquetEncoder| {
            encoder.write(&batch).unwrap();
            SerializedFileReader::new(encoder.finish().unwrap()).unwrap()
        };
        let whole = encode(ParquetEncoder::read_whole(schema.clone(), "t", &["id"]).unwrap());
        let default = encode(ParquetEncoder::new(schema.clone(), "t").unwrap());

        let dictionary = |reader: &SerializedFileReader<Bytes>, column: usize| {
            let chunk = reader.metadata().row_group(0).column(column).clone();
            chunk.encodings().any(|e| e == Encoding::RLE_DICTIONARY)
        };
        let statistics = |reader: &SerializedFileReader<Bytes>, column: usize| {
            reader.metadata().row_group(0).column(column).statistics().is_some()
        };
        assert!(!dictionary(&whole, 0), "no dictionary for the unique column");
        assert!(dictionary(&whole, 1), "the others keep theirs");
        assert!((0..3).all(|c| !statistics(&whole, c)), "no statistics");
        assert!(dictionary(&default, 0) && (0..3).all(|c| statistics(&default, c)));

        // The same rows either way.
        let rows = |reader: SerializedFileReader<Bytes>| {
            reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(rows(whole), rows(default));
    }
}
