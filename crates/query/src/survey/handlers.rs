//! The survey endpoints: `/v1/surveys`, a survey's waves, design-based estimates, the reporting
//! rate of a victimisation item and the dark-figure view beside the recorded incidents.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use observatory_model::survey::{Population, VictimisationItem, is_valid_survey_id};
use observatory_stats::{Estimate, EstimateRequest, StatisticSpec, Table, estimate};
use serde_json::{Value, json};

use super::engine::{SurveyEngine, WaveInfo};
use super::error::SurveyQueryError;
use super::items::{
    REPORTED, REPORTED_VICTIMS, VICTIM, VICTIMS, estimate_request, victims_domain,
    with_item_columns,
};
use super::request::{EstimatesQuery, ItemQuery, Stat};
use crate::api::{QueryConfig, frame_rows};
use crate::counts::CountsEngine;
use crate::disclosure::{Disclosure, Tier};
use crate::error::ApiError;
use crate::request::{CountsRequest, OutputFormat, query_pairs};
use crate::serving::AsOf;
use crate::tabular;
use crate::vintage::{Vintage, Vintages};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use observatory_disclosure::Policy;
use observatory_store::{Manifest, ProjectionId};

pub struct SurveyQueryState {
    pub engine: SurveyEngine,
    /// The incident counts, for the dark-figure view (read through their public API).
    pub counts: Arc<CountsEngine>,
    pub config: QueryConfig,
    pub disclosure: Disclosure,
    pub vintages: Vintages,
}

/// The surveys manifest of a vintage, and what an answer from it reflects.
async fn resolve(
    state: &SurveyQueryState,
    vintage: &Vintage,
    min_sequence: Option<u64>,
) -> Result<(Option<Manifest>, AsOf), SurveyQueryError> {
    let resolved = state
        .vintages
        .resolve(state.engine.serving(), vintage, min_sequence, state.config.max_wait)
        .await?;
    Ok((resolved.manifest.clone(), AsOf::resolved(ProjectionId::Surveys, &resolved)))
}

/// `min_sequence` and a vintage: all the listing endpoints take.
pub(super) fn listing_query(raw: Option<&str>) -> Result<(Option<u64>, Vintage), ApiError> {
    let (mut min_sequence, mut vintage) = (None, Vintage::Current);
    let mut seen = std::collections::HashSet::new();
    for (key, value) in query_pairs(raw) {
        if !seen.insert(key.clone()) {
            return Err(ApiError::bad_request(format!("parameter '{key}' is given twice")));
        }
        if vintage.take(&key, &value)? {
            continue;
        }
        match key.as_str() {
            "min_sequence" => {
                min_sequence = Some(value.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "min_sequence='{value}' is not a stream sequence"
                    ))
                })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{other}'; use min_sequence, release, as_of or as_of_time"
                )));
            }
        }
    }
    vintage.check_min_sequence(min_sequence)?;
    Ok((min_sequence, vintage))
}

/// Public estimates of domains with fewer respondents than the policy's minimum are withheld:
/// every figure but `n` becomes null, with the flag `withheld_small_domain`.
fn withhold(estimates: &mut [Estimate], policy: Option<&Policy>) {
    let Some(policy) = policy else { return };
    for e in estimates.iter_mut().filter(|e| !policy.survey_domain_published(e.n)) {
        e.estimate = f64::NAN;
        e.se = f64::NAN;
        e.var = f64::NAN;
        e.cv = None;
        e.deff = None;
        e.deff_replace = None;
        e.ci_lower = None;
        e.ci_upper = None;
        e.flags.push(WITHHELD.to_owned());
    }
}

/// The flag of a withheld survey estimate.
pub const WITHHELD: &str = "withheld_small_domain";

pub fn survey_router(state: Arc<SurveyQueryState>) -> Router {
    Router::new()
        .route("/v1/surveys", get(get_surveys))
        .route("/v1/surveys/{survey}/waves", get(get_waves))
        .route("/v1/surveys/{survey}/estimates", get(get_estimates))
        .route("/v1/surveys/{survey}/reporting-rate", get(get_reporting_rate))
        .route("/v1/surveys/{survey}/dark-figure", get(get_dark_figure))
        .with_state(state)
}

/// The `{survey}` of the path, checked, and recorded on the request's span.
fn survey_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let survey = match path {
        Ok(Path(survey)) if is_valid_survey_id(&survey) => survey,
        Ok(Path(survey)) => {
            return Err(ApiError::bad_request(format!("'{survey}' is not a survey id")));
        }
        Err(rejection) => return Err(ApiError::bad_request(rejection.body_text())),
    };
    tracing::Span::current().record("survey", survey.as_str());
    Ok(survey)
}

/// Runs the estimation off the async workers (it is CPU work).
async fn run_estimate(
    table: Table,
    request: EstimateRequest,
) -> Result<Vec<Estimate>, SurveyQueryError> {
    let report = tokio::task::spawn_blocking(move || estimate(&table, &request))
        .await
        .map_err(SurveyQueryError::Task)??;
    Ok(report.estimates)
}

#[tracing::instrument(name = "surveys", skip_all)]
async fn get_surveys(
    State(state): State<Arc<SurveyQueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.disclosure.tier(&headers)?;
    let (min_sequence, vintage) = listing_query(raw.as_deref())?;
    Ok(Json(surveys(&state, min_sequence, &vintage).await?))
}

async fn surveys(
    state: &SurveyQueryState,
    min_sequence: Option<u64>,
    vintage: &Vintage,
) -> Result<Value, SurveyQueryError> {
    let (manifest, as_of) = resolve(state, vintage, min_sequence).await?;
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
    let surveys: Vec<Value> = surveys
        .into_iter()
        .map(|(survey, waves)| json!({"survey": survey, "waves": waves}))
        .collect();
    Ok(json!({"as_of": as_of, "surveys": surveys}))
}

#[tracing::instrument(name = "survey_waves", skip_all, fields(survey))]
async fn get_waves(
    State(state): State<Arc<SurveyQueryState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    state.disclosure.tier(&headers)?;
    let survey = survey_id(path)?;
    let (min_sequence, vintage) = listing_query(raw.as_deref())?;
    Ok(Json(waves(&state, &survey, min_sequence, &vintage).await?))
}

async fn waves(
    state: &SurveyQueryState,
    survey: &str,
    min_sequence: Option<u64>,
    vintage: &Vintage,
) -> Result<Value, SurveyQueryError> {
    let (manifest, as_of) = resolve(state, vintage, min_sequence).await?;
    let waves: Vec<WaveInfo> =
        state.engine.waves(&manifest).await?.into_iter().filter(|w| w.survey == survey).collect();
    if waves.is_empty() {
        return Err(SurveyQueryError::NotFound(format!("no survey '{survey}' is declared")));
    }
    Ok(json!({"as_of": as_of, "survey": survey, "waves": waves}))
}

/// `GET /v1/surveys/{survey}/estimates`: the CLI's JSON (`estimates`) plus `as_of`, the wave
/// and the design used.
#[tracing::instrument(name = "survey_estimates", skip_all, fields(survey, query = raw.as_deref().unwrap_or("")))]
async fn get_estimates(
    State(state): State<Arc<SurveyQueryState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let tier = state.disclosure.tier(&headers)?;
    let survey = survey_id(path)?;
    let query = EstimatesQuery::parse(&query_pairs(raw.as_deref()))?;
    let answer = estimates(&state, &survey, &query, tier).await?;
    let sequence = answer["as_of"]["sequence"].as_u64().unwrap_or(0);
    let release = answer["as_of"]["release"]["id"].as_str().map(str::to_owned);
    let mut response = match query.format {
        OutputFormat::JsonStat => {
            Json(super::formats::jsonstat(&answer, &query.by)).into_response()
        }
        OutputFormat::Arrow => {
            let batch = super::formats::batch(&answer, &query.by)?;
            ([(header::CONTENT_TYPE, tabular::ARROW_STREAM)], tabular::ipc_stream(&batch)?)
                .into_response()
        }
        OutputFormat::Parquet => {
            let batch = super::formats::batch(&answer, &query.by)?;
            ([(header::CONTENT_TYPE, tabular::PARQUET)], tabular::parquet(&batch)?).into_response()
        }
        _ => Json(answer).into_response(),
    };
    crate::api::stamp(&mut response, sequence, release.as_deref(), None);
    Ok(response)
}

async fn estimates(
    state: &SurveyQueryState,
    survey: &str,
    query: &EstimatesQuery,
    tier: Tier,
) -> Result<Value, SurveyQueryError> {
    let (manifest, as_of) = resolve(state, &query.vintage, query.min_sequence).await?;
    let wave = state.engine.wave(&manifest, survey, &query.wave).await?;
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
    let mut estimates = run_estimate((*table).clone(), request).await?;
    withhold(&mut estimates, state.disclosure.policy_for(tier).map(Arc::as_ref));
    Ok(json!({
        "as_of": as_of,
        "disclosure": state.disclosure.describe(tier),
        "survey": survey,
        "wave": wave.wave,
        "status": wave.status,
        "respondents": table.n_rows(),
        "design": design,
        "estimates": estimates,
    }))
}

fn item_json(wave: &WaveInfo, item: &VictimisationItem) -> Value {
    json!({
        "name": item.name, "label": item.label, "victim": item.victim, "victim_value": item.victim_value,
        "reported": item.reported, "reported_value": item.reported_value, "iccs": item.iccs, "cyber": item.cyber,
        "population": wave.declaration.population, "reference_period": wave.declaration.reference_period,
    })
}

/// `GET /v1/surveys/{survey}/reporting-rate`: the estimated share of the item's victims who
/// reported to the police or the gendarmerie, with its CI (logit by default, as `svyciprop`).
#[tracing::instrument(name = "survey_reporting_rate", skip_all, fields(survey, query = raw.as_deref().unwrap_or("")))]
async fn get_reporting_rate(
    State(state): State<Arc<SurveyQueryState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let tier = state.disclosure.tier(&headers)?;
    let survey = survey_id(path)?;
    let query = ItemQuery::parse(&query_pairs(raw.as_deref()), false)?;
    Ok(Json(reporting_rate(&state, &survey, &query, tier).await?))
}

async fn reporting_rate(
    state: &SurveyQueryState,
    survey: &str,
    query: &ItemQuery,
    tier: Tier,
) -> Result<Value, SurveyQueryError> {
    let (manifest, as_of) = resolve(state, &query.vintage, query.min_sequence).await?;
    let wave = state.engine.wave(&manifest, survey, &query.wave).await?;
    let item = wave.item(query.item.as_deref())?;
    if item.reported.is_none() {
        return Err(SurveyQueryError::BadRequest(format!(
            "item '{}' has no follow-up 'reported' question",
            item.name
        )));
    }
    wave.check_variables(query.by.iter().map(String::as_str), "by")?;
    let table = with_item_columns(&*state.engine.table(&manifest, &wave).await?, &item)?;
    let mut estimates = reporting_rates(&wave, &item, table, &query.by, query).await?;
    withhold(&mut estimates, state.disclosure.policy_for(tier).map(Arc::as_ref));
    Ok(json!({
        "as_of": as_of,
        "disclosure": state.disclosure.describe(tier),
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

/// The reporting rate of the item's victims ("taux de plainte"): the mean of the reported
/// indicator within the victim domain, by `by` beyond it. Both the reporting-rate and the
/// dark-figure answers use it, so they state the same rate.
async fn reporting_rates(
    wave: &WaveInfo,
    item: &VictimisationItem,
    table: Table,
    by: &[String],
    query: &ItemQuery,
) -> Result<Vec<Estimate>, SurveyQueryError> {
    let mut domains = vec![VICTIM.to_owned()];
    domains.extend(by.iter().cloned());
    let statistics = vec![StatisticSpec::Mean(REPORTED.into())];
    let request = estimate_request(wave, statistics, domains, query.ci, query.level);
    Ok(victims_domain(run_estimate(table, request).await?, "reporting_rate", &item.name))
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
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let tier = state.disclosure.tier(&headers)?;
    let survey = survey_id(path)?;
    let query = ItemQuery::parse(&query_pairs(raw.as_deref()), true)?;
    Ok(Json(dark_figure(&state, &survey, &query, tier).await?))
}

async fn dark_figure(
    state: &SurveyQueryState,
    survey: &str,
    query: &ItemQuery,
    tier: Tier,
) -> Result<Value, SurveyQueryError> {
    let (manifest, as_of) = resolve(state, &query.vintage, query.min_sequence).await?;
    let wave = state.engine.wave(&manifest, survey, &query.wave).await?;
    let item = wave.item(query.item.as_deref())?;
    let table = with_item_columns(&*state.engine.table(&manifest, &wave).await?, &item)?;
    let mut statistics =
        vec![StatisticSpec::Total(VICTIMS.into()), StatisticSpec::Mean(VICTIMS.into())];
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
    let policy = state.disclosure.policy_for(tier).map(Arc::as_ref);
    let mut survey_figures = vec![
        named("victims").expect("one estimate per statistic"),
        named("prevalence").expect("one estimate per statistic"),
    ];
    survey_figures.extend(named("victims_who_reported"));
    if item.reported.is_some() {
        survey_figures.extend(reporting_rates(&wave, &item, table, &[], query).await?);
    }
    withhold(&mut survey_figures, policy);
    let mut figures = survey_figures.into_iter();
    let victims = figures.next().expect("victims");
    let prevalence = figures.next().expect("prevalence");
    let reported_victims = if item.reported.is_some() { figures.next() } else { None };
    let reporting_rate = figures.next();

    // Incidents through the counts API, by month of occurrence over the reference period.
    let period = wave.declaration.reference_period;
    let (from, to) =
        (period.from.format("%Y-%m").to_string(), period.to.format("%Y-%m").to_string());
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
    // The incidents of the same vintage: the same release, or the newest.
    let counts_request = CountsRequest {
        vintage: query.vintage.clone(),
        min_sequence: query.incidents_min_sequence,
        ..CountsRequest::parse(&filters)?
    };
    let counts = state
        .counts
        .published(&state.vintages, &state.disclosure, tier, &counts_request, state.config.max_wait)
        .await
        .map_err(SurveyQueryError::Refused)?;
    // Offences, victims and platform reports are never added: one figure per unit, and a
    // single `count` only when one unit is left (choose it with unit=).
    let by_unit = frame_rows(&counts.frame);
    let per_victim = |count: i64| {
        (victims.estimate.is_finite() && victims.estimate > 0.0)
            .then(|| count as f64 / victims.estimate)
    };
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
        "as_of": as_of,
        "disclosure": state.disclosure.describe(tier),
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
