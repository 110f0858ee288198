//! Survey statistics over the committed `surveys` projection (invariant 5): design-based
//! estimates of a wave, the reporting rate of a victimisation item ("taux de plainte") and the
//! dark-figure view beside the incidents agencies recorded.
//!
//! Estimates call `observatory_stats::estimate` with the request the CLI builds from its flags
//! (`observatory estimate`), the design coming from the wave's declaration, on a table read
//! from the wave's microdata with the same Arrow conversion as `--input file.parquet`: the
//! endpoint answers the CLI's numbers on the same data, plus `as_of`.

mod request;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use observatory_model::survey::{
    FINAL_WEIGHT_COLUMN, Population, SurveyWaveDeclared, VictimisationItem, is_valid_survey_id,
};
use observatory_stats::{
    CiMethod, Estimate, EstimateRequest, LonelyPsu, StatisticSpec, StatsError, Table, estimate,
};
use observatory_store::{Manifest, Projection, StoreError, TableId, read_parquet};
use serde::Serialize;
use serde_json::{Value, json};

pub use request::{EstimatesQuery, ItemQuery, Stat};

use crate::api::{QueryConfig, frame_rows};
use crate::counts::{CountsEngine, QueryError};
use crate::request::CountsRequest;

const WAVES_TABLE: &str = "waves";
/// Derived columns never clash with declared variables, whose names start with a letter.
const VICTIM: &str = "__victim";
const REPORTED: &str = "__reported";
const VICTIMS: &str = "__victims";
const REPORTED_VICTIMS: &str = "__reported_victims";

#[derive(Debug, thiserror::Error)]
pub enum SurveyQueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {path}: {message}")]
    Read { path: String, message: String },
    #[error(
        "the survey projection has reached sequence {reached}, not the requested {wanted}, after waiting {waited:?}; \
         the projector may be behind or stopped: retry later"
    )]
    NotYet { reached: u64, wanted: u64, waited: Duration },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("wave '{wave}' of survey '{survey}' has no respondents yet")]
    NoRespondents { survey: String, wave: String },
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error(transparent)]
    Incidents(#[from] QueryError),
    #[error("estimation task failed: {0}")]
    Task(String),
}

impl SurveyQueryError {
    fn status(&self) -> StatusCode {
        match self {
            SurveyQueryError::NotYet { .. }
            | SurveyQueryError::Incidents(QueryError::NotYet { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SurveyQueryError::NotFound(_) => StatusCode::NOT_FOUND,
            SurveyQueryError::Incidents(e) if e.is_bad_request() => StatusCode::BAD_REQUEST,
            SurveyQueryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SurveyQueryError::NoRespondents { .. } => StatusCode::CONFLICT,
            SurveyQueryError::Stats(
                StatsError::UnknownColumn { .. } | StatsError::InvalidRequest(_),
            ) => StatusCode::BAD_REQUEST,
            // The data cannot give this estimate (a lonely PSU, a zero denominator…).
            SurveyQueryError::Stats(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What a survey answer reflects.
#[derive(Debug, Clone, Serialize)]
pub struct SurveyAsOf {
    /// Stream sequence of the survey manifest: every survey event up to it is reflected.
    pub sequence: u64,
    pub version: u32,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn as_of(manifest: &Option<Manifest>) -> SurveyAsOf {
    SurveyAsOf {
        sequence: manifest.as_ref().map_or(0, |m| m.last_sequence),
        version: manifest.as_ref().map_or(0, |m| m.version),
        committed_at: manifest.as_ref().map(|m| m.committed_at),
    }
}

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
            Some(FINAL_WEIGHT_COLUMN.to_owned())
        } else {
            self.declaration.design.weights.clone()
        }
    }

    fn variable_exists(&self, name: &str) -> bool {
        name == self.declaration.respondent_id
            || self.declaration.variable(name).is_some()
            || (self.final_weights && name == FINAL_WEIGHT_COLUMN)
    }

    fn check_variables<'a>(
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

    fn item(&self, name: Option<&str>) -> Result<VictimisationItem, SurveyQueryError> {
        let items = &self.declaration.victimisation_items;
        let names = || items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
        match name {
            Some(name) => self.declaration.item(name).cloned().ok_or_else(|| {
                SurveyQueryError::BadRequest(format!(
                    "item='{name}' is not a victimisation item of this wave; declared: {}",
                    names()
                ))
            }),
            None if items.len() == 1 => Ok(items[0].clone()),
            None if items.is_empty() => Err(SurveyQueryError::BadRequest(format!(
                "wave '{}' of '{}' declares no victimisation item",
                self.wave, self.survey
            ))),
            None => Err(SurveyQueryError::BadRequest(format!(
                "item= is required; the wave declares: {}",
                names()
            ))),
        }
    }
}

/// The request `observatory estimate` builds from its flags, with the design flags taken from
/// the wave's declaration (and the closure's final weights).
pub fn estimate_request(
    wave: &WaveInfo,
    statistics: Vec<StatisticSpec>,
    by: Vec<String>,
    ci: CiMethod,
    level: f64,
) -> EstimateRequest {
    let design = &wave.declaration.design;
    EstimateRequest {
        weights: wave.weights(),
        strata: design.strata.clone(),
        clusters: design.clusters.clone(),
        fpc: design.fpc.clone(),
        lonely_psu: design
            .lonely_psu
            .and_then(|rule| rule.as_str().parse::<LonelyPsu>().ok())
            .unwrap_or(LonelyPsu::Fail),
        statistics,
        by,
        ci,
        level,
        // Intervals reaching outside what the declaration allows are flagged.
        ranges: wave
            .declaration
            .variables
            .iter()
            .filter(|v| v.min.is_some() || v.max.is_some())
            .map(|v| (v.name.clone(), (v.min, v.max)))
            .collect(),
        ..Default::default()
    }
}

/// Per row: `Some(true)` when `column` holds `value`, `Some(false)` for another value, `None`
/// when missing. Numeric columns (integer variables) compare by number.
pub fn indicator(
    table: &Table,
    column: &str,
    value: &str,
) -> Result<Vec<Option<bool>>, StatsError> {
    let column = table.require(column, "victimisation item")?;
    let wanted = value.parse::<f64>().ok();
    Ok((0..table.n_rows())
        .map(|row| match column.numeric() {
            Some(values) if values[row].is_nan() => None,
            Some(values) => Some(wanted == Some(values[row])),
            None => column.text(row).map(|t| t == value),
        })
        .collect())
}

fn as_number(flag: Option<bool>) -> f64 {
    match flag {
        Some(true) => 1.0,
        Some(false) => 0.0,
        None => f64::NAN,
    }
}

/// Adds the columns the item statistics need: `__victim` (yes/no, a domain), `__reported`
/// (1/0 for victims answering the follow-up, 0 for non-victims), `__victims` (1/0) and `__reported_victims` (1 for
/// a victim who reported, 0 for a non-victim or a victim who did not, missing when unknown).
pub fn with_item_columns(table: &Table, item: &VictimisationItem) -> Result<Table, StatsError> {
    let victim = indicator(table, &item.victim, &item.victim_value)?;
    let reported = match &item.reported {
        Some(column) => indicator(table, column, &item.reported_value)?,
        None => vec![None; table.n_rows()],
    };
    // Non-victims answer 0 rather than missing: the victims' domain estimate is the same,
    // and the other domain stays estimable.
    let reported: Vec<Option<bool>> = victim
        .iter()
        .zip(reported)
        .map(|(v, r)| if *v == Some(false) { Some(false) } else { r })
        .collect();
    let mut out = table.clone();
    let labels: Vec<Option<&str>> =
        victim.iter().map(|v| v.map(|v| if v { "yes" } else { "no" })).collect();
    out.add_text(VICTIM, &labels)?;
    out.add_numeric(REPORTED, reported.iter().map(|r| as_number(*r)).collect())?;
    out.add_numeric(VICTIMS, victim.iter().map(|v| as_number(*v)).collect())?;
    let reported_victims = victim
        .iter()
        .zip(&reported)
        .map(|(v, r)| match (v, r) {
            (Some(false), _) => 0.0,
            (Some(true), r) => as_number(*r),
            (None, _) => f64::NAN,
        })
        .collect();
    out.add_numeric(REPORTED_VICTIMS, reported_victims)?;
    Ok(out)
}

/// Reads committed survey manifests, the waves table and wave microdata, caching decoded
/// tables (a file name is never reused for other content).
pub struct SurveyEngine {
    projection: Projection,
    tables: Mutex<HashMap<String, Arc<Table>>>,
    poll_interval: Duration,
}

impl SurveyEngine {
    pub fn new(projection: Projection) -> SurveyEngine {
        SurveyEngine {
            projection,
            tables: Mutex::new(HashMap::new()),
            poll_interval: Duration::from_millis(20),
        }
    }

    /// The serving manifest, waiting up to `wait` for it to reach `min_sequence`.
    pub async fn manifest(
        &self,
        min_sequence: Option<u64>,
        wait: Duration,
    ) -> Result<Option<Manifest>, SurveyQueryError> {
        let started = Instant::now();
        loop {
            let manifest = self.projection.serving_manifest().await?;
            let reached = manifest.as_ref().map_or(0, |m| m.last_sequence);
            match min_sequence {
                Some(wanted) if reached < wanted => {
                    if started.elapsed() >= wait {
                        return Err(SurveyQueryError::NotYet {
                            reached,
                            wanted,
                            waited: started.elapsed(),
                        });
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
                _ => return Ok(manifest),
            }
        }
    }

    async fn batches(
        &self,
        manifest: &Manifest,
        relative: &str,
    ) -> Result<Vec<RecordBatch>, SurveyQueryError> {
        Ok(read_parquet(
            self.projection.store(),
            &self.projection.object_path(manifest.version, relative),
        )
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
            let path = self.projection.object_path(manifest.version, &file.path).to_string();
            for batch in self.batches(manifest, &file.path).await? {
                waves.extend(
                    wave_infos(&batch).map_err(|message| SurveyQueryError::Read {
                        path: path.clone(),
                        message,
                    })?,
                );
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
                as_of(manifest).sequence
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
        let key = files
            .iter()
            .map(|f| self.projection.object_path(manifest.version, &f.path).to_string())
            .collect::<Vec<_>>()
            .join("|");
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
                .map_err(|e| SurveyQueryError::Task(e.to_string()))??,
        );
        let mut cache = self.tables.lock().expect("not poisoned");
        // Waves are few; keep only the tables of the manifest being served.
        let prefix = format!("projections/{}/v{}/", self.projection.name(), manifest.version);
        cache.retain(|k, _| k.starts_with(&prefix));
        cache.insert(key, table.clone());
        Ok(table)
    }
}

fn wave_infos(batch: &RecordBatch) -> Result<Vec<WaveInfo>, String> {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or(format!("column {name} missing"))
    };
    let unsigned = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt64Type>())
            .ok_or(format!("column {name} missing"))
    };
    let (survey, wave, source, declaration) =
        (text("survey")?, text("wave")?, text("source")?, text("declaration")?);
    let (declared, closed, respondents) =
        (unsigned("declared_sequence")?, unsigned("closed_sequence")?, unsigned("respondents")?);
    let final_weights = batch
        .column_by_name("final_weights")
        .and_then(|c| c.as_boolean_opt())
        .ok_or("column final_weights missing")?;
    (0..batch.num_rows())
        .map(|i| {
            use arrow::array::Array;
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
                    .map_err(|e| format!("declaration of row {i}: {e}"))?,
            })
        })
        .collect()
}

pub struct SurveyQueryState {
    pub engine: SurveyEngine,
    /// The incident counts, for the dark-figure view (read through their public API).
    pub counts: CountsEngine,
    pub config: QueryConfig,
}

pub fn survey_router(state: Arc<SurveyQueryState>) -> Router {
    Router::new()
        .route("/v1/surveys", get(get_surveys))
        .route("/v1/surveys/{survey}/waves", get(get_waves))
        .route("/v1/surveys/{survey}/estimates", get(get_estimates))
        .route("/v1/surveys/{survey}/reporting-rate", get(get_reporting_rate))
        .route("/v1/surveys/{survey}/dark-figure", get(get_dark_figure))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into(), "status": status.as_u16()}))).into_response()
}

fn failure(e: SurveyQueryError) -> Response {
    let status = e.status();
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, "survey query failed");
    }
    error(status, message(&e))
}

/// What the client reads: the error's own words, but a remedy it can apply over HTTP.
fn message(e: &SurveyQueryError) -> String {
    match e {
        // The statistics crate words its remedy for the CLI; over HTTP the design comes from
        // the wave's declaration, which cannot change.
        SurveyQueryError::Stats(StatsError::LonelyPsu { stratum, stage, context }) => format!(
            "stratum '{stratum}' has only one PSU at stage {stage}{context}, and the wave's design declares no \
             lonely-PSU rule (\"lonely_psu\": \"fail\", the default): a declared wave cannot change, so declare \
             the wave again under a new id with \"design\": {{\"lonely_psu\": \"adjust\"}} (or average, remove, \
             certainty) in POST /v1/surveys/{{survey}}/waves, or merge the stratum with a neighbour in the data"
        ),
        _ => e.to_string(),
    }
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn survey_id(path: Result<Path<String>, PathRejection>) -> Result<String, Response> {
    match path {
        Ok(Path(survey)) if is_valid_survey_id(&survey) => Ok(survey),
        Ok(Path(survey)) => {
            Err(error(StatusCode::BAD_REQUEST, format!("'{survey}' is not a survey id")))
        }
        Err(rejection) => Err(error(StatusCode::BAD_REQUEST, rejection.body_text())),
    }
}

/// Runs the estimation off the async workers (it is CPU work).
async fn run_estimate(
    table: Table,
    request: EstimateRequest,
) -> Result<Vec<Estimate>, SurveyQueryError> {
    let report = tokio::task::spawn_blocking(move || estimate(&table, &request))
        .await
        .map_err(|e| SurveyQueryError::Task(e.to_string()))??;
    Ok(report.estimates)
}

#[tracing::instrument(name = "surveys", skip_all)]
async fn get_surveys(
    State(state): State<Arc<SurveyQueryState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let min_sequence = match query_pairs(raw.as_deref()).as_slice() {
        [] => None,
        [(k, v)] if k == "min_sequence" => match v.parse() {
            Ok(s) => Some(s),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("min_sequence='{v}' is not a stream sequence"),
                );
            }
        },
        _ => {
            return error(StatusCode::BAD_REQUEST, "the only parameter is min_sequence");
        }
    };
    let result = async {
        let manifest = state.engine.manifest(min_sequence, state.config.max_wait).await?;
        let waves = state.engine.waves(&manifest).await?;
        let mut surveys: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for w in waves {
            surveys.entry(w.survey.clone()).or_default().push(json!({
                "wave": w.wave, "title": w.declaration.title, "source": w.source, "status": w.status,
                "population": w.declaration.population, "reference_period": w.declaration.reference_period,
                "respondents": w.respondents, "final_weights": w.final_weights,
                "items": w.declaration.victimisation_items.iter().map(|i| &i.name).collect::<Vec<_>>(),
            }));
        }
        let surveys: Vec<Value> = surveys.into_iter().map(|(survey, waves)| json!({"survey": survey, "waves": waves})).collect();
        Ok::<_, SurveyQueryError>(json!({"as_of": as_of(&manifest), "surveys": surveys}))
    }
    .await;
    result.map(|body| Json(body).into_response()).unwrap_or_else(failure)
}

#[tracing::instrument(name = "survey_waves", skip_all, fields(survey))]
async fn get_waves(
    State(state): State<Arc<SurveyQueryState>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let survey = match survey_id(path) {
        Ok(s) => s,
        Err(response) => return response,
    };
    tracing::Span::current().record("survey", survey.as_str());
    let min_sequence = query_pairs(raw.as_deref())
        .into_iter()
        .find(|(k, _)| k == "min_sequence")
        .and_then(|(_, v)| v.parse().ok());
    let result = async {
        let manifest = state.engine.manifest(min_sequence, state.config.max_wait).await?;
        let waves: Vec<WaveInfo> = state
            .engine
            .waves(&manifest)
            .await?
            .into_iter()
            .filter(|w| w.survey == survey)
            .collect();
        if waves.is_empty() {
            return Err(SurveyQueryError::NotFound(format!("no survey '{survey}' is declared")));
        }
        Ok(json!({"as_of": as_of(&manifest), "survey": survey, "waves": waves}))
    }
    .await;
    result.map(|body| Json(body).into_response()).unwrap_or_else(failure)
}

/// `GET /v1/surveys/{survey}/estimates`: the CLI's JSON (`estimates`) plus `as_of`, the wave
/// and the design used.
#[tracing::instrument(name = "survey_estimates", skip_all, fields(survey, query = raw.as_deref().unwrap_or("")))]
async fn get_estimates(
    State(state): State<Arc<SurveyQueryState>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let survey = match survey_id(path) {
        Ok(s) => s,
        Err(response) => return response,
    };
    tracing::Span::current().record("survey", survey.as_str());
    let query = match EstimatesQuery::parse(&query_pairs(raw.as_deref())) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let result = async {
        let manifest = state.engine.manifest(query.min_sequence, state.config.max_wait).await?;
        let wave = state.engine.wave(&manifest, &survey, &query.wave).await?;
        let names = query.vars.iter().flat_map(|v| v.split('/'));
        wave.check_variables(names, "var")?;
        wave.check_variables(query.by.iter().map(String::as_str), "by")?;
        let table = state.engine.table(&manifest, &wave).await?;
        let mut statistics = Vec::new();
        for var in &query.vars {
            statistics.push(match query.stat {
                Stat::Mean => StatisticSpec::Mean(var.clone()),
                Stat::Total => StatisticSpec::Total(var.clone()),
                Stat::Prop => StatisticSpec::Prop(var.clone()),
                Stat::Ratio => StatisticSpec::parse_ratio(var, &table)?,
            });
        }
        let request = estimate_request(&wave, statistics, query.by.clone(), query.ci, query.level);
        let design = json!({
            "weights": request.weights, "strata": request.strata, "clusters": request.clusters, "fpc": request.fpc,
            "lonely_psu": request.lonely_psu,
        });
        let estimates = run_estimate((*table).clone(), request).await?;
        Ok::<_, SurveyQueryError>(json!({
            "as_of": as_of(&manifest),
            "survey": survey,
            "wave": wave.wave,
            "status": wave.status,
            "respondents": table.n_rows(),
            "design": design,
            "estimates": estimates,
        }))
    }
    .await;
    result.map(|body| Json(body).into_response()).unwrap_or_else(failure)
}

fn item_json(wave: &WaveInfo, item: &VictimisationItem) -> Value {
    json!({
        "name": item.name, "label": item.label, "victim": item.victim, "victim_value": item.victim_value,
        "reported": item.reported, "reported_value": item.reported_value, "iccs": item.iccs, "cyber": item.cyber,
        "population": wave.declaration.population, "reference_period": wave.declaration.reference_period,
    })
}

/// Keeps the estimates of the victims' domain and drops the helper column from their domain.
fn victims_domain(estimates: Vec<Estimate>, statistic: &str, variable: &str) -> Vec<Estimate> {
    estimates
        .into_iter()
        .filter(|e| e.domain.as_ref().and_then(|d| d.get(VICTIM)) == Some("yes"))
        .map(|mut e| {
            if let Some(domain) = e.domain.as_mut() {
                domain.0.retain(|(column, _)| column != VICTIM);
            }
            if e.domain.as_ref().is_some_and(|d| d.0.is_empty()) {
                e.domain = None;
            }
            e.statistic = statistic.to_owned();
            e.variable = variable.to_owned();
            e
        })
        .collect()
}

/// `GET /v1/surveys/{survey}/reporting-rate`: the estimated share of the item's victims who
/// reported to the police or the gendarmerie, with its CI (logit by default, as `svyciprop`).
#[tracing::instrument(name = "survey_reporting_rate", skip_all, fields(survey, query = raw.as_deref().unwrap_or("")))]
async fn get_reporting_rate(
    State(state): State<Arc<SurveyQueryState>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let survey = match survey_id(path) {
        Ok(s) => s,
        Err(response) => return response,
    };
    tracing::Span::current().record("survey", survey.as_str());
    let query = match ItemQuery::parse(&query_pairs(raw.as_deref()), false) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let result = async {
        let manifest = state.engine.manifest(query.min_sequence, state.config.max_wait).await?;
        let wave = state.engine.wave(&manifest, &survey, &query.wave).await?;
        let item = wave.item(query.item.as_deref())?;
        if item.reported.is_none() {
            return Err(SurveyQueryError::BadRequest(format!("item '{}' has no follow-up 'reported' question", item.name)));
        }
        wave.check_variables(query.by.iter().map(String::as_str), "by")?;
        let table = with_item_columns(&*state.engine.table(&manifest, &wave).await?, &item)?;
        let mut by = vec![VICTIM.to_owned()];
        by.extend(query.by.iter().cloned());
        let request = estimate_request(&wave, vec![StatisticSpec::Mean(REPORTED.into())], by, query.ci, query.level);
        let estimates = victims_domain(run_estimate(table, request).await?, "reporting_rate", &item.name);
        Ok(json!({
            "as_of": as_of(&manifest),
            "survey": survey,
            "wave": wave.wave,
            "status": wave.status,
            "item": item_json(&wave, &item),
            "definition": format!(
                "share of the {} victims of '{}' between {} and {} who reported it to the police or the gendarmerie \
                 ('{}' = '{}' among '{}' = '{}'; victims who did not answer the follow-up are left out)",
                wave.declaration.population, item.label.as_deref().unwrap_or(&item.name),
                wave.declaration.reference_period.from, wave.declaration.reference_period.to,
                item.reported.as_deref().unwrap_or_default(), item.reported_value, item.victim, item.victim_value
            ),
            "estimates": estimates,
        }))
    }
    .await;
    result.map(|body| Json(body).into_response()).unwrap_or_else(failure)
}

fn victim_type(population: Population) -> &'static str {
    match population {
        Population::Households | Population::Individuals => "individual",
        Population::Businesses => "business",
    }
}

fn counting_unit(population: Population) -> &'static str {
    match population {
        Population::Households => "household",
        Population::Individuals => "person",
        Population::Businesses => "business",
    }
}

/// `GET /v1/surveys/{survey}/dark-figure`: survey-estimated victims next to the incidents the
/// agencies recorded for the same period and offence category, with the caveats.
#[tracing::instrument(name = "survey_dark_figure", skip_all, fields(survey, query = raw.as_deref().unwrap_or("")))]
async fn get_dark_figure(
    State(state): State<Arc<SurveyQueryState>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    let survey = match survey_id(path) {
        Ok(s) => s,
        Err(response) => return response,
    };
    tracing::Span::current().record("survey", survey.as_str());
    let query = match ItemQuery::parse(&query_pairs(raw.as_deref()), true) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let result = async {
        let manifest = state.engine.manifest(query.min_sequence, state.config.max_wait).await?;
        let wave = state.engine.wave(&manifest, &survey, &query.wave).await?;
        let item = wave.item(query.item.as_deref())?;
        let table = with_item_columns(&*state.engine.table(&manifest, &wave).await?, &item)?;
        let mut statistics = vec![StatisticSpec::Total(VICTIMS.into()), StatisticSpec::Mean(VICTIMS.into())];
        if item.reported.is_some() {
            statistics.push(StatisticSpec::Total(REPORTED_VICTIMS.into()));
        }
        let request = estimate_request(&wave, statistics, Vec::new(), query.ci, query.level);
        let mut estimates = run_estimate(table.clone(), request).await?.into_iter();
        let mut named = |statistic: &str| {
            estimates.next().map(|mut e| {
                e.statistic = statistic.to_owned();
                e.variable = item.name.clone();
                e
            })
        };
        let victims = named("victims").expect("one estimate per statistic");
        let prevalence = named("prevalence").expect("one estimate per statistic");
        let reported_victims = named("victims_who_reported");
        let reporting_rate = if item.reported.is_some() {
            let request =
                estimate_request(&wave, vec![StatisticSpec::Mean(REPORTED.into())], vec![VICTIM.into()], query.ci, query.level);
            victims_domain(run_estimate(table, request).await?, "reporting_rate", &item.name).into_iter().next()
        } else {
            None
        };

        // Incidents through the counts API, by month of occurrence over the reference period.
        let period = wave.declaration.reference_period;
        let (from, to) = (period.from.format("%Y-%m").to_string(), period.to.format("%Y-%m").to_string());
        let mut filters = vec![
            ("by".to_owned(), "unit".to_owned()),
            ("iccs".to_owned(), item.iccs.clone()),
            ("from".to_owned(), from.clone()),
            ("to".to_owned(), to.clone()),
            ("victim_type".to_owned(), victim_type(wave.declaration.population).to_owned()),
        ];
        if let Some(cyber) = item.cyber {
            filters.push(("cyber".into(), cyber.to_string()));
        }
        if !query.sources.is_empty() {
            filters.push(("source".into(), query.sources.join(",")));
        }
        if let Some(unit) = &query.unit {
            filters.push(("unit".into(), unit.clone()));
        }
        if let Some(sequence) = query.incidents_min_sequence {
            filters.push(("min_sequence".into(), sequence.to_string()));
        }
        let counts_request = CountsRequest::parse(&filters).map_err(|e| SurveyQueryError::BadRequest(e.0))?;
        let counts = state.counts.counts(&counts_request, state.config.max_wait).await?;
        // Offences, victims and platform reports are never added: one figure per unit, and a
        // single `count` only when one unit is left (choose it with unit=).
        let by_unit = frame_rows(&counts.frame);
        let per_victim = |count: i64| (victims.estimate > 0.0).then(|| count as f64 / victims.estimate);
        let units: Vec<Value> = by_unit
            .iter()
            .map(|r| {
                let count = r.get("count").and_then(Value::as_i64).unwrap_or(0);
                json!({"unit": r.get("unit"), "count": count, "provisional": r.get("provisional"),
                       "recorded_per_estimated_victim": per_victim(count)})
            })
            .collect();
        let single = match by_unit.as_slice() {
            [one] => one.get("count").and_then(Value::as_i64),
            [] => Some(0),
            _ => None,
        };
        let unit = counting_unit(wave.declaration.population);
        let caveats = vec![
            format!(
                "Different counting units: the survey estimates {}s victimised at least once between {} and {} (a {unit} \
                 counts once however often it was victimised, whether or not it reported); the agencies count recorded \
                 incidents (per offence, per victim or per report depending on the source: see recorded_incidents.by_unit), \
                 so one victim may be recorded several times and one offence by several agencies. The ratio of recorded \
                 incidents to estimated victims is an order of magnitude, not a reporting rate: the reporting rate comes \
                 from the survey's follow-up question.",
                unit, period.from, period.to
            ),
            format!(
                "Recorded incidents are counted by month of occurrence from {from} to {to}, ICCS {} and its subcategories, \
                 victim type '{}'{}{}; the survey's reference period is {} to {}.",
                item.iccs,
                victim_type(wave.declaration.population),
                item.cyber.map(|c| format!(", cyber={c}")).unwrap_or_default(),
                if query.sources.is_empty() { ", all agencies".to_owned() } else { format!(", agencies {}", query.sources.join(", ")) },
                period.from,
                period.to
            ),
            "Survey figures are estimates with sampling error (see ci_lower/ci_upper); agency figures are counts of \
             what was recorded, subject to recording practice and to the coverage of the agencies' feeds."
                .to_owned(),
        ];
        Ok(json!({
            "as_of": as_of(&manifest),
            "survey": survey,
            "wave": wave.wave,
            "status": wave.status,
            "item": item_json(&wave, &item),
            "survey_estimates": {
                "counting_unit": format!("{unit} victimised at least once in the reference period"),
                "victims": victims,
                "prevalence": prevalence,
                "victims_who_reported": reported_victims,
                "reporting_rate": reporting_rate,
            },
            "recorded_incidents": {
                "counting_unit": "incident recorded by an agency, in the unit of its source (by_unit)",
                "count": single,
                "count_note": if single.is_none() {
                    Some("several counting units (see by_unit): they are never added; choose one with unit=offence|victim|report")
                } else {
                    None
                },
                "by_unit": units,
                "filters": filters.iter().filter(|(k, _)| k != "by" && k != "min_sequence").map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "as_of": counts.as_of,
            },
            "recorded_per_estimated_victim": single.and_then(per_victim),
            "caveats": caveats,
        }))
    }
    .await;
    result.map(|body| Json(body).into_response()).unwrap_or_else(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lonely_psu_is_answered_with_the_http_remedy() {
        let e = SurveyQueryError::Stats(StatsError::LonelyPsu {
            stratum: "84".into(),
            stage: 1,
            context: String::new(),
        });
        let text = message(&e);
        assert!(
            text.contains("stratum '84'") && text.contains("\"lonely_psu\": \"adjust\""),
            "{text}"
        );
        assert!(!text.contains("--lonely-psu"), "no CLI flag over HTTP: {text}");
    }

    fn item() -> VictimisationItem {
        serde_json::from_str(r#"{"name":"fraud","victim":"v","reported":"r","iccs":"0701"}"#)
            .unwrap()
    }

    #[test]
    fn item_columns_follow_the_skip_pattern() {
        let mut table = Table::new();
        table.add_text("v", &[Some("yes"), Some("yes"), Some("no"), None, Some("yes")]).unwrap();
        table.add_text("r", &[Some("yes"), Some("no"), None, None, None]).unwrap();
        let out = with_item_columns(&table, &item()).unwrap();
        let col = |name: &str| out.column(name).unwrap().numeric().unwrap().to_vec();
        let same = |a: Vec<f64>, b: [f64; 5]| {
            a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || *x == y)
        };
        assert!(same(col(VICTIMS), [1.0, 1.0, 0.0, f64::NAN, 1.0]));
        assert!(same(col(REPORTED), [1.0, 0.0, 0.0, f64::NAN, f64::NAN]));
        assert!(same(col(REPORTED_VICTIMS), [1.0, 0.0, 0.0, f64::NAN, f64::NAN]));
        let victim = out.column(VICTIM).unwrap();
        assert_eq!(victim.text(2).as_deref(), Some("no"));
        assert!(victim.is_missing(3));
    }

    #[test]
    fn integer_items_compare_by_number() {
        let mut table = Table::new();
        table.add_numeric("v", vec![1.0, 0.0, f64::NAN]).unwrap();
        assert_eq!(indicator(&table, "v", "1").unwrap(), vec![Some(true), Some(false), None]);
    }
}
