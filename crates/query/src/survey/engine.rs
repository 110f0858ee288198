//! The survey engine: the serving `surveys` manifest, the waves table it names, and each wave's
//! microdata decoded once into an estimation table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use observatory_model::survey::SurveyWaveDeclared;
use observatory_stats::Table;
use observatory_store::layout::{microdata, waves as columns};
use observatory_store::{Manifest, Projection, TableId, read_parquet};
use serde::Serialize;

use super::error::SurveyQueryError;
use crate::serving::ServingManifest;

/// One wave as the committed waves table describes it.
#[derive(Debug, Clone, Serialize)]
pub struct WaveInfo {
    pub survey: String,
    pub wave: String,
    pub source: String,
    pub status: &'static str,
    pub respondents: u64,
    pub declared_sequence: u64,
    pub closed_sequence: Option<u64>,
    /// The closure replaced the design weights by final weights (column `final_weight`).
    pub final_weights: bool,
    pub declaration: SurveyWaveDeclared,
}

impl WaveInfo {
    /// The weights estimates use: the final weights when the closure carried them.
    pub fn weights(&self) -> Option<String> {
        if self.final_weights {
            Some(microdata::FINAL_WEIGHT.to_owned())
        } else {
            self.declaration.design.weights.clone()
        }
    }

    fn variable_exists(&self, name: &str) -> bool {
        name == self.declaration.respondent_id
            || self.declaration.variable(name).is_some()
            || (self.final_weights && name == microdata::FINAL_WEIGHT)
    }

    /// Refuses a variable the wave does not declare, listing (some of) those it does.
    pub(super) fn check_variables<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        role: &str,
    ) -> Result<(), SurveyQueryError> {
        for name in names {
            if !self.variable_exists(name) {
                let declared: Vec<&str> =
                    self.declaration.variables.iter().take(30).map(|v| v.name.as_str()).collect();
                return Err(SurveyQueryError::BadRequest(format!(
                    "{role}='{name}' is not a variable of wave '{}' of '{}'; declared: {}{}",
                    self.wave,
                    self.survey,
                    declared.join(", "),
                    if self.declaration.variables.len() > 30 { ", …" } else { "" }
                )));
            }
        }
        Ok(())
    }
}

/// The waves table does not have the shape this build reads.
#[derive(Debug, thiserror::Error)]
pub enum WavesTableError {
    #[error("column {0} missing")]
    MissingColumn(&'static str),
    #[error("declaration of row {row}: {source}")]
    Declaration {
        row: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads committed survey manifests, the waves table and wave microdata, caching decoded
/// tables (a file name is never reused for other content).
pub struct SurveyEngine {
    serving: ServingManifest,
    /// Decoded microdata by (version, the wave's files): a flush that adds respondents
    /// names new files, hence a new key.
    tables: Mutex<HashMap<(u32, String), Arc<Table>>>,
}

impl SurveyEngine {
    pub fn new(projection: Projection) -> SurveyEngine {
        SurveyEngine { serving: ServingManifest::new(projection), tables: Mutex::default() }
    }

    fn projection(&self) -> &Projection {
        self.serving.projection()
    }

    pub fn serving(&self) -> &ServingManifest {
        &self.serving
    }

    async fn batches(
        &self,
        manifest: &Manifest,
        relative: &str,
    ) -> Result<Vec<RecordBatch>, SurveyQueryError> {
        let projection = self.projection();
        Ok(read_parquet(projection.store(), &projection.object_path(manifest.version, relative))
            .await?)
    }

    /// Every wave of the manifest, in (survey, wave) order.
    pub async fn waves(
        &self,
        manifest: &Option<Manifest>,
    ) -> Result<Vec<WaveInfo>, SurveyQueryError> {
        let Some(manifest) = manifest else {
            return Ok(Vec::new());
        };
        let mut waves = Vec::new();
        for file in manifest.files(&TableId::Waves) {
            for batch in self.batches(manifest, &file.path).await? {
                waves.extend(wave_infos(&batch).map_err(|source| SurveyQueryError::Read {
                    path: self.projection().object_path(manifest.version, &file.path).to_string(),
                    source,
                })?);
            }
        }
        Ok(waves)
    }

    pub async fn wave(
        &self,
        manifest: &Option<Manifest>,
        survey: &str,
        wave: &str,
    ) -> Result<WaveInfo, SurveyQueryError> {
        let waves = self.waves(manifest).await?;
        let of_survey: Vec<&WaveInfo> = waves.iter().filter(|w| w.survey == survey).collect();
        if of_survey.is_empty() {
            return Err(SurveyQueryError::NotFound(format!(
                "no survey '{survey}' is declared (as of sequence {})",
                manifest.as_ref().map_or(0, |m| m.last_sequence)
            )));
        }
        of_survey.iter().find(|w| w.wave == wave).map(|w| (*w).clone()).ok_or_else(|| {
            let known: Vec<&str> = of_survey.iter().map(|w| w.wave.as_str()).collect();
            SurveyQueryError::NotFound(format!(
                "survey '{survey}' has no wave '{wave}'; its waves: {}",
                known.join(", ")
            ))
        })
    }

    /// The wave's microdata as an estimation table, rows in stream order.
    pub async fn table(
        &self,
        manifest: &Option<Manifest>,
        wave: &WaveInfo,
    ) -> Result<Arc<Table>, SurveyQueryError> {
        let no_rows = || SurveyQueryError::NoRespondents {
            survey: wave.survey.clone(),
            wave: wave.wave.clone(),
        };
        let Some(manifest) = manifest else {
            return Err(no_rows());
        };
        let mut files = manifest.files(&TableId::microdata(&wave.survey, &wave.wave)).to_vec();
        files.sort_by_key(|f| f.first_sequence);
        let key =
            (manifest.version, files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join("|"));
        if let Some(table) = self.tables.lock().expect("not poisoned").get(&key) {
            return Ok(table.clone());
        }
        let mut batches = Vec::new();
        for file in &files {
            batches.extend(
                self.batches(manifest, &file.path).await?.into_iter().filter(|b| b.num_rows() > 0),
            );
        }
        if batches.is_empty() {
            return Err(no_rows());
        }
        let table = Arc::new(
            tokio::task::spawn_blocking(move || Table::from_record_batches(&batches))
                .await
                .map_err(SurveyQueryError::Task)??,
        );
        let mut cache = self.tables.lock().expect("not poisoned");
        // Waves are few; keep only the tables of the version being served.
        cache.retain(|(version, _), _| *version == manifest.version);
        cache.insert(key, table.clone());
        Ok(table)
    }
}

/// The waves of one batch of the waves table.
fn wave_infos(batch: &RecordBatch) -> Result<Vec<WaveInfo>, WavesTableError> {
    let text = |name: &'static str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or(WavesTableError::MissingColumn(name))
    };
    let unsigned = |name: &'static str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or(WavesTableError::MissingColumn(name))
    };
    let (survey, wave, source, declaration) = (
        text(columns::SURVEY)?,
        text(columns::WAVE)?,
        text(columns::SOURCE)?,
        text(columns::DECLARATION)?,
    );
    let (declared, closed, respondents) = (
        unsigned(columns::DECLARED_SEQUENCE)?,
        unsigned(columns::CLOSED_SEQUENCE)?,
        unsigned(columns::RESPONDENTS)?,
    );
    let final_weights = batch
        .column_by_name(columns::FINAL_WEIGHTS)
        .and_then(|c| c.as_boolean_opt())
        .ok_or(WavesTableError::MissingColumn(columns::FINAL_WEIGHTS))?;
    (0..batch.num_rows())
        .map(|i| {
            let closed_sequence = (!closed.is_null(i)).then(|| closed.value(i));
            Ok(WaveInfo {
                survey: survey.value(i).to_owned(),
                wave: wave.value(i).to_owned(),
                source: source.value(i).to_owned(),
                status: if closed_sequence.is_some() { "closed" } else { "open" },
                respondents: respondents.value(i),
                declared_sequence: declared.value(i),
                closed_sequence,
                final_weights: !final_weights.is_null(i) && final_weights.value(i),
                declaration: serde_json::from_str(declaration.value(i))
                    .map_err(|source| WavesTableError::Declaration { row: i, source })?,
            })
        })
        .collect()
}
