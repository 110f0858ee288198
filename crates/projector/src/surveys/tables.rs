//! Arrow schemas of the survey projection. Microdata columns follow the wave's declaration:
//! the respondent id column first (text), then every variable in declaration order — numeric
//! as Float64, integer as Int64, categorical and text as Utf8 — and, in a wave closed with
//! final weights, `final_weight`. `observatory estimate --input <file>` reads such a file
//! directly.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt64Type};
use observatory_model::survey::{
    Cell, SurveyLedger, SurveyRow, SurveyWaveDeclared, VariableType, WaveClosure,
};
use observatory_store::layout::{microdata, waves};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("column {0} is missing or has an unexpected type")]
    Column(String),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("declaration of {survey}/{wave} does not decode: {message}")]
    Declaration { survey: String, wave: String, message: String },
    #[error("final weights do not cover respondent '{0}'")]
    MissingWeight(String),
}

fn arrow_type(kind: VariableType) -> DataType {
    match kind {
        VariableType::Numeric => DataType::Float64,
        VariableType::Integer => DataType::Int64,
        VariableType::Categorical | VariableType::Text => DataType::Utf8,
    }
}

pub fn microdata_schema(declaration: &SurveyWaveDeclared, final_weight: bool) -> SchemaRef {
    let mut fields = vec![Field::new(&declaration.respondent_id, DataType::Utf8, false)];
    fields.extend(
        declaration.variables.iter().map(|v| Field::new(&v.name, arrow_type(v.kind), true)),
    );
    if final_weight {
        fields.push(Field::new(microdata::FINAL_WEIGHT, DataType::Float64, false));
    }
    Arc::new(Schema::new(fields))
}

/// Rows of one wave, in the given order.
pub fn microdata_batch(declaration: &SurveyWaveDeclared, rows: &[SurveyRow]) -> RecordBatch {
    let n = rows.len();
    let mut ids = StringBuilder::with_capacity(n, n * 12);
    for row in rows {
        ids.append_value(&row.respondent_id);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids.finish())];
    for variable in &declaration.variables {
        let cells = rows.iter().map(|r| r.values.get(&variable.name));
        // Rows are normalised to the declared types (`check_row`), so other cells cannot occur.
        let column: ArrayRef = match variable.kind {
            VariableType::Numeric => {
                let mut b = Float64Builder::with_capacity(n);
                cells.for_each(|c| {
                    b.append_option(match c {
                        Some(Cell::Number(x)) => Some(*x),
                        _ => None,
                    })
                });
                Arc::new(b.finish())
            }
            VariableType::Integer => {
                let mut b = Int64Builder::with_capacity(n);
                cells.for_each(|c| {
                    b.append_option(match c {
                        Some(Cell::Integer(i)) => Some(*i),
                        _ => None,
                    })
                });
                Arc::new(b.finish())
            }
            VariableType::Categorical | VariableType::Text => {
                let mut b = StringBuilder::with_capacity(n, n * 4);
                cells.for_each(|c| {
                    b.append_option(match c {
                        Some(Cell::Text(t)) => Some(t.as_str()),
                        _ => None,
                    })
                });
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(microdata_schema(declaration, false), columns)
        .expect("columns match the schema")
}

pub fn respondent_ids(
    declaration: &SurveyWaveDeclared,
    batch: &RecordBatch,
) -> Result<Vec<String>, TableError> {
    let column = batch
        .column_by_name(&declaration.respondent_id)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| TableError::Column(declaration.respondent_id.clone()))?;
    Ok(column.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
}

/// `batch` with the `final_weight` column appended, looked up by respondent id.
pub fn with_final_weights(
    declaration: &SurveyWaveDeclared,
    batch: &RecordBatch,
    weights: &BTreeMap<String, f64>,
) -> Result<RecordBatch, TableError> {
    let ids = respondent_ids(declaration, batch)?;
    let mut b = Float64Builder::with_capacity(ids.len());
    for id in &ids {
        b.append_value(*weights.get(id).ok_or_else(|| TableError::MissingWeight(id.clone()))?);
    }
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(b.finish()));
    Ok(RecordBatch::try_new(microdata_schema(declaration, true), columns)?)
}

/// One row of the waves snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveRow {
    pub source: String,
    pub declaration: SurveyWaveDeclared,
    pub declared_sequence: u64,
    pub closure: Option<WaveClosure>,
    pub respondents: u64,
}

pub fn waves_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(waves::SURVEY, DataType::Utf8, false),
        Field::new(waves::WAVE, DataType::Utf8, false),
        Field::new(waves::SOURCE, DataType::Utf8, false),
        Field::new(waves::POPULATION, DataType::Utf8, false),
        Field::new(waves::REFERENCE_FROM, DataType::Utf8, false),
        Field::new(waves::REFERENCE_TO, DataType::Utf8, false),
        Field::new(waves::DECLARED_SEQUENCE, DataType::UInt64, false),
        Field::new(waves::CLOSED_SEQUENCE, DataType::UInt64, true),
        Field::new(waves::FINAL_WEIGHTS, DataType::Boolean, true),
        Field::new(waves::CLOSURE_DIGEST, DataType::Utf8, true),
        Field::new(waves::RESPONDENTS, DataType::UInt64, false),
        // The declaration as JSON (numbers written shortest-exact, read back exactly).
        Field::new(waves::DECLARATION, DataType::Utf8, false),
    ]))
}

pub fn waves_batch(ledger: &SurveyLedger) -> RecordBatch {
    let mut survey = StringBuilder::new();
    let mut wave = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut population = StringBuilder::new();
    let mut from = StringBuilder::new();
    let mut to = StringBuilder::new();
    let mut declared = UInt64Builder::new();
    let mut closed = UInt64Builder::new();
    let mut final_weights = BooleanBuilder::new();
    let mut digest = StringBuilder::new();
    let mut respondents = UInt64Builder::new();
    let mut declaration = StringBuilder::new();
    for state in ledger.waves() {
        let d = &state.declaration;
        survey.append_value(&d.survey);
        wave.append_value(&d.wave);
        source.append_value(&state.source);
        population.append_value(d.population.as_str());
        from.append_value(d.reference_period.from.to_string());
        to.append_value(d.reference_period.to.to_string());
        declared.append_value(state.declared_sequence);
        closed.append_option(state.closed.map(|c| c.sequence));
        final_weights.append_option(state.closed.map(|c| c.final_weights));
        digest.append_option(state.closed.map(|c| format!("{:032x}", c.digest)));
        respondents
            .append_value(state.closed.map_or(state.respondents() as u64, |c| c.respondents));
        declaration.append_value(serde_json::to_string(d).expect("declarations serialise"));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(survey.finish()),
        Arc::new(wave.finish()),
        Arc::new(source.finish()),
        Arc::new(population.finish()),
        Arc::new(from.finish()),
        Arc::new(to.finish()),
        Arc::new(declared.finish()),
        Arc::new(closed.finish()),
        Arc::new(final_weights.finish()),
        Arc::new(digest.finish()),
        Arc::new(respondents.finish()),
        Arc::new(declaration.finish()),
    ];
    RecordBatch::try_new(waves_schema(), columns).expect("columns match the schema")
}

fn text<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::StringArray, TableError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| TableError::Column(name.into()))
}

fn unsigned<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow::array::UInt64Array, TableError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| TableError::Column(name.into()))
}

pub fn wave_rows(batch: &RecordBatch) -> Result<Vec<WaveRow>, TableError> {
    let source = text(batch, waves::SOURCE)?;
    let declared = unsigned(batch, waves::DECLARED_SEQUENCE)?;
    let closed = unsigned(batch, waves::CLOSED_SEQUENCE)?;
    let final_weights = batch
        .column_by_name(waves::FINAL_WEIGHTS)
        .and_then(|c| c.as_boolean_opt())
        .ok_or_else(|| TableError::Column(waves::FINAL_WEIGHTS.into()))?;
    let digest = text(batch, waves::CLOSURE_DIGEST)?;
    let respondents = unsigned(batch, waves::RESPONDENTS)?;
    let declaration = text(batch, waves::DECLARATION)?;
    (0..batch.num_rows())
        .map(|i| {
            let parsed: SurveyWaveDeclared =
                serde_json::from_str(declaration.value(i)).map_err(|e| {
                    TableError::Declaration {
                        survey: text(batch, waves::SURVEY)
                            .map(|s| s.value(i).to_owned())
                            .unwrap_or_default(),
                        wave: text(batch, waves::WAVE)
                            .map(|s| s.value(i).to_owned())
                            .unwrap_or_default(),
                        message: e.to_string(),
                    }
                })?;
            let closure = (!closed.is_null(i)).then(|| WaveClosure {
                sequence: closed.value(i),
                respondents: respondents.value(i),
                final_weights: final_weights.value(i),
                digest: u128::from_str_radix(digest.value(i), 16).unwrap_or_default(),
            });
            Ok(WaveRow {
                source: source.value(i).to_owned(),
                declaration: parsed,
                declared_sequence: declared.value(i),
                closure,
                respondents: respondents.value(i),
            })
        })
        .collect()
}

/// Reads a microdata batch back into rows (for tests and tools; the sink works on batches).
pub fn microdata_rows(
    declaration: &SurveyWaveDeclared,
    batch: &RecordBatch,
) -> Result<Vec<SurveyRow>, TableError> {
    let ids = respondent_ids(declaration, batch)?;
    let mut rows: Vec<SurveyRow> = ids
        .into_iter()
        .map(|respondent_id| SurveyRow { respondent_id, values: BTreeMap::new() })
        .collect();
    for variable in &declaration.variables {
        let column = batch
            .column_by_name(&variable.name)
            .ok_or_else(|| TableError::Column(variable.name.clone()))?;
        for (i, row) in rows.iter_mut().enumerate() {
            if column.is_null(i) {
                continue;
            }
            let cell = match variable.kind {
                VariableType::Numeric => {
                    Cell::Number(column.as_primitive::<Float64Type>().value(i))
                }
                VariableType::Integer => Cell::Integer(column.as_primitive::<Int64Type>().value(i)),
                VariableType::Categorical | VariableType::Text => {
                    Cell::Text(column.as_string::<i32>().value(i).to_owned())
                }
            };
            row.values.insert(variable.name.clone(), cell);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_model::survey::{FINAL_WEIGHT_COLUMN, SurveyEvent, validate_row};

    /// `observatory estimate` (the model's constant) and the projection (the layout's) must
    /// name the final weight column alike, or a closed wave's file loses its final weights.
    #[test]
    fn the_model_and_the_layout_name_the_final_weight_alike() {
        assert_eq!(FINAL_WEIGHT_COLUMN, microdata::FINAL_WEIGHT);
    }

    #[test]
    fn microdata_round_trips_with_declared_types_and_final_weights() {
        let declaration: SurveyWaveDeclared = serde_json::from_str(
            r#"{"survey":"s","wave":"1","population":"households","reference_period":{"from":"2024-01-01","to":"2024-12-31"},
                "respondent_id":"id","design":{"weights":"w"},
                "variables":[{"name":"w","type":"numeric"},{"name":"n","type":"integer"},{"name":"c","type":"categorical","values":["a","b"]}]}"#,
        )
        .unwrap();
        let cells = |id: &str, w: &str, n: Option<&str>| {
            let mut v = vec![
                ("id".to_owned(), Some(Cell::Text(id.into()))),
                ("w".to_owned(), Some(Cell::Text(w.into()))),
            ];
            v.push(("n".to_owned(), n.map(|n| Cell::Text(n.into()))));
            v.push(("c".to_owned(), Some(Cell::Text("b".into()))));
            v
        };
        let rows = vec![
            validate_row(&declaration, cells("x", "33.84699630737305", Some("7"))).unwrap(),
            validate_row(&declaration, cells("y", "0.1", None)).unwrap(),
        ];
        let batch = microdata_batch(&declaration, &rows);
        assert_eq!(microdata_rows(&declaration, &batch).unwrap(), rows);
        let weights: BTreeMap<String, f64> = [("x".to_owned(), 2.0), ("y".to_owned(), 3.5)].into();
        let weighted = with_final_weights(&declaration, &batch, &weights).unwrap();
        assert_eq!(weighted.schema().field(4).name(), microdata::FINAL_WEIGHT);
        assert!(with_final_weights(&declaration, &batch, &[("x".to_owned(), 2.0)].into()).is_err());

        let mut ledger = SurveyLedger::new();
        ledger.apply(3, "ssmsi", &SurveyEvent::WaveDeclared(declaration.clone()));
        let restored = wave_rows(&waves_batch(&ledger)).unwrap();
        assert_eq!(restored.len(), 1);
        assert_eq!(
            (restored[0].declaration.clone(), restored[0].declared_sequence),
            (declaration, 3)
        );
    }
}
