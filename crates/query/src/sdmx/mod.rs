//! SDMX REST v2 under `/sdmx/v2/`: the `INCIDENTS` dataflow's structures (dataflow, DSD,
//! codelists, concept scheme) and its data, in SDMX-ML 3.0, SDMX-CSV 2.0 and SDMX-JSON 2.0. Every
//! observation is a cell of `/v1/incidents/counts` computed by the same engine for the same tier
//! and vintage, so it carries the same perturbation. Request parsing ([`query`]), planning
//! ([`plan`]) and each serialiser live in modules of their own; this one holds the handlers.

mod csv;
mod dataflow;
mod error;
mod format;
#[cfg(test)]
mod fuzz;
mod json;
mod message;
mod plan;
mod query;
mod xml;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};

pub use dataflow::DEFAULT_AGENCY;
use dataflow::{DATAFLOW, Dataflow, VERSION};
use error::SdmxError;
use format::{Format, Kind};
use message::{Action, DataMessage, DataSet, Header};
use plan::Observation;
use query::DataQuery;

use crate::api::QueryState;
use crate::serving::AsOf;
use crate::vintage::Vintage;

/// Structure paths, data paths and the schema path of the SDMX REST v2 API (each also answers
/// with a trailing slash); the OpenAPI document is checked against them.
pub const STRUCTURE_PATHS: [&str; 4] = [
    "/sdmx/v2/structure/{kind}",
    "/sdmx/v2/structure/{kind}/{agency}",
    "/sdmx/v2/structure/{kind}/{agency}/{id}",
    "/sdmx/v2/structure/{kind}/{agency}/{id}/{version}",
];
pub const DATA_PATHS: [&str; 2] = [
    "/sdmx/v2/data/{context}/{agency}/{id}/{version}",
    "/sdmx/v2/data/{context}/{agency}/{id}/{version}/{key}",
];
pub const SCHEMA_PATH: &str = "/sdmx/v2/schema/{context}/{agency}/{id}/{version}";

pub fn router(state: Arc<QueryState>) -> Router {
    let mut router = Router::new();
    // pysdmx ends its URLs with a slash: both spellings are one resource.
    for path in STRUCTURE_PATHS {
        router = router.route(path, get(structure)).route(&format!("{path}/"), get(structure));
    }
    for path in DATA_PATHS {
        router = router.route(path, get(data)).route(&format!("{path}/"), get(data));
    }
    // pysdmx's registry client reads a dataflow's schema (its DSD and codelists) here.
    router = router.route(SCHEMA_PATH, get(schema)).route(&format!("{SCHEMA_PATH}/"), get(schema));
    router.layer(middleware::map_response(cors)).with_state(state)
}

/// REST v2 asks services to say that answers vary with `Accept` and to allow browsers from any
/// origin, errors included.
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "observatory-as-of-sequence, observatory-release, observatory-disclosure",
        ),
    );
    response
}

/// `format=` and `labels=` read before the rest of the query, so that even a refusal of the
/// query is written in the format asked for.
fn negotiated(
    kind: Kind,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Format, SdmxError> {
    let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let labels = param("labels").and_then(format::Labels::parse);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    format::negotiate(kind, accept, param("format"), labels)
}

fn refuse(error: SdmxError, format: Option<Format>) -> Response {
    let (content_type, body) = match format {
        Some(Format::Xml) => ("application/vnd.sdmx.error+xml;version=3.0.0", xml::error(&error)),
        Some(Format::Csv(_)) => {
            ("text/plain; charset=utf-8", format!("{} {}\n", error.code(), error.message()))
        }
        _ => ("application/vnd.sdmx.error+json;version=2.0.0", json::error(&error)),
    };
    if error.status().is_server_error() && error.status() != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(status = error.status().as_u16(), error = %error.message(), "sdmx query failed");
    }
    (error.status(), [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Whether a path segment names our artefact: the value itself, `*`, or (for versions) `+`
/// and `~` (the latest stable, the latest of all).
fn matches(segment: Option<&String>, ours: &str, version: bool) -> bool {
    match segment.map(String::as_str) {
        None | Some("*") => true,
        Some("+" | "~" | "1.0.0") if version => true,
        Some(given) => given.split(',').any(|g| g == ours),
    }
}

/// The header of an answer from `as_of`: id and preparation time from the state, so a release
/// answers the same bytes at any later time.
fn header_of(as_of: &AsOf, tier: crate::disclosure::Tier) -> Header {
    let release = as_of.release_id().map(str::to_owned);
    Header {
        id: match &release {
            Some(release) => format!("{DATAFLOW}-{release}"),
            None => format!("{DATAFLOW}-{}", as_of.sequence),
        },
        prepared: as_of
            .committed_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned()),
        sequence: as_of.sequence,
        release,
        tier: tier.name(),
    }
}

fn state_headers(response: &mut Response, as_of: &AsOf, disclosure: &str) {
    crate::api::stamp(response, as_of.sequence, as_of.release_id(), Some(disclosure));
}

#[tracing::instrument(name = "sdmx_data", skip_all, fields(query = raw.as_deref().unwrap_or("")))]
async fn data(
    State(state): State<Arc<QueryState>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = query::raw_pairs(raw.as_deref());
    respond(Kind::Data, &headers, &pairs, |format| answer(&state, &path, &headers, &pairs, format))
        .await
}

/// Negotiates the format (refusing it in SDMX-JSON), then answers, or refuses in the format
/// negotiated.
async fn respond<F, Fut>(
    kind: Kind,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    answer: F,
) -> Response
where
    F: FnOnce(Format) -> Fut,
    Fut: std::future::Future<Output = Result<Response, SdmxError>>,
{
    let format = match negotiated(kind, headers, pairs) {
        Ok(format) => format,
        Err(error) => return refuse(error, None),
    };
    match answer(format).await {
        Ok(response) => response,
        Err(error) => refuse(error, Some(format)),
    }
}

async fn answer(
    state: &QueryState,
    path: &HashMap<String, String>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    format: Format,
) -> Result<Response, SdmxError> {
    let tier = state.disclosure.tier(headers)?;
    let agency = &state.config.sdmx_agency;
    let context = path.get("context").map(String::as_str);
    if !matches!(context, Some("dataflow" | "*"))
        || !matches(path.get("agency"), agency, false)
        || !matches(path.get("id"), DATAFLOW, false)
        || !matches(path.get("version"), VERSION, true)
    {
        return Err(SdmxError::not_found(format!(
            "no {} {}:{}({}) here; the one dataflow is dataflow/{agency}/{DATAFLOW}/{VERSION}",
            context.unwrap_or("*"),
            path.get("agency").map_or("*", String::as_str),
            path.get("id").map_or("*", String::as_str),
            path.get("version").map_or("*", String::as_str),
        )));
    }
    let query = DataQuery::parse(path.get("key").map_or("*", String::as_str), pairs)?;
    let engine = &state.engine;
    let wait = state.config.max_wait;
    let resolved = engine
        .resolve_for(&state.vintages, &state.disclosure, tier, &query.vintage, None, wait)
        .await?;
    let sources = engine.sources_on(&resolved).await?;
    let flow = Dataflow::new(agency, &sources);
    let as_of = AsOf::resolved(engine.serving().projection().id(), &resolved);
    let datasets = if query.include_history {
        history(state, &query, tier, &resolved).await?
    } else {
        let current = observed(state, &query, tier, &resolved, &flow).await?;
        match query.updated_after {
            Some(after) => changes(state, &query, tier, after, current).await?,
            None => vec![DataSet {
                action: Action::Information,
                valid_from: None,
                valid_to: None,
                observations: current,
            }],
        }
    };
    let disclosure = state.disclosure.header(tier);
    if datasets.iter().all(|d| d.observations.is_empty()) {
        // REST v2: an empty result is a 204, not a 404.
        let mut response = StatusCode::NO_CONTENT.into_response();
        state_headers(&mut response, &as_of, &disclosure);
        return Ok(response);
    }
    let labels = match format {
        Format::Csv(labels) => labels,
        _ => format::Labels::Id,
    };
    let message = DataMessage {
        flow: &flow,
        header: header_of(&as_of, tier),
        datasets,
        attributes: query.attributes.clone(),
        measures: query.measures,
        at_observation: query.at_observation,
        labels,
    };
    let body = match format {
        Format::Xml => xml::data(&message),
        Format::Csv(_) => csv::data(&message),
        Format::Json => json::data(&message),
    };
    let mut response =
        ([(header::CONTENT_TYPE, format.content_type(Kind::Data))], body).into_response();
    state_headers(&mut response, &as_of, &disclosure);
    Ok(response)
}

/// The observations a query selects in one resolved state, each the cell the counts API
/// publishes to `tier` there; `flow` is that state's dataflow (its `SOURCE` codelist).
async fn observed(
    state: &QueryState,
    query: &DataQuery,
    tier: crate::disclosure::Tier,
    resolved: &crate::vintage::Resolved,
    flow: &Dataflow,
) -> Result<Vec<Observation>, SdmxError> {
    let engine = &state.engine;
    let parts = plan::plan(query, flow)?;
    let requests = parts.iter().map(|p| p.request.clone()).collect();
    let policy = state.disclosure.policy_for(tier);
    let (_, frames) = engine.counts_many(resolved, requests, policy).await?;
    let observations = parts
        .iter()
        .zip(&frames)
        .flat_map(|(part, frame)| plan::observations(part, frame, tier.exact()))
        .collect();
    Ok(plan::select(query, observations))
}

/// The same query in an earlier state: empty where that state cannot mean it (a source that had
/// not sent anything yet).
async fn observed_before(
    state: &QueryState,
    query: &DataQuery,
    tier: crate::disclosure::Tier,
    resolved: &crate::vintage::Resolved,
) -> Result<Vec<Observation>, SdmxError> {
    let sources = state.engine.sources_on(resolved).await?;
    let flow = Dataflow::new(&state.config.sdmx_agency, &sources);
    match observed(state, query, tier, resolved, &flow).await {
        Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => Ok(Vec::new()),
        other => other,
    }
}

/// `updatedAfter`: what changed since the newest release made at or before `after` (everything,
/// when none was): new and revised observations to replace, vanished ones to delete.
async fn changes(
    state: &QueryState,
    query: &DataQuery,
    tier: crate::disclosure::Tier,
    after: chrono::DateTime<chrono::Utc>,
    current: Vec<Observation>,
) -> Result<Vec<DataSet>, SdmxError> {
    let baseline = match state
        .engine
        .resolve_for(
            &state.vintages,
            &state.disclosure,
            tier,
            &Vintage::Time(after),
            None,
            state.config.max_wait,
        )
        .await
    {
        Ok(resolved) => observed_before(state, query, tier, &resolved).await?,
        Err(e) if e.status() == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let key = |o: &Observation| (o.key.clone(), o.period.clone());
    let before: HashMap<(Vec<String>, String), &Observation> =
        baseline.iter().map(|o| (key(o), o)).collect();
    let now: std::collections::HashSet<(Vec<String>, String)> = current.iter().map(key).collect();
    let deleted: Vec<Observation> =
        baseline.iter().filter(|o| !now.contains(&key(o))).cloned().collect();
    let replaced: Vec<Observation> = current
        .into_iter()
        .filter(|o| before.get(&key(o)).is_none_or(|b| b.value != o.value || b.status != o.status))
        .collect();
    let mut datasets = Vec::new();
    if !replaced.is_empty() {
        datasets.push(DataSet {
            action: Action::Replace,
            valid_from: None,
            valid_to: None,
            observations: replaced,
        });
    }
    if !deleted.is_empty() {
        datasets.push(DataSet {
            action: Action::Delete,
            valid_from: None,
            valid_to: None,
            observations: deleted,
        });
    }
    Ok(datasets)
}

/// `includeHistory`: one dataset per release (up to the state asked for), oldest first, each with
/// the interval it stood (`validFromDate` its creation, `validToDate` the next release's); with
/// `updatedAfter`, only the releases still standing after that instant.
async fn history(
    state: &QueryState,
    query: &DataQuery,
    tier: crate::disclosure::Tier,
    target: &crate::vintage::Resolved,
) -> Result<Vec<DataSet>, SdmxError> {
    let mut releases = state.vintages.releases().list().await.map_err(|e| {
        SdmxError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the releases: {e}"))
    })?;
    releases.reverse();
    if let Some(last) = &target.release {
        releases.retain(|r| r.created_at <= last.created_at);
    }
    let stamp =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut datasets = Vec::new();
    for (i, release) in releases.iter().enumerate() {
        let until = releases.get(i + 1).map(|next| next.created_at);
        if let (Some(after), Some(until)) = (query.updated_after, until)
            && until <= after
        {
            continue;
        }
        let resolved = state
            .engine
            .resolve_for(
                &state.vintages,
                &state.disclosure,
                tier,
                &Vintage::Release(release.id.clone()),
                None,
                state.config.max_wait,
            )
            .await?;
        datasets.push(DataSet {
            action: Action::Replace,
            valid_from: Some(stamp(&release.created_at)),
            valid_to: until.as_ref().map(stamp),
            observations: observed_before(state, query, tier, &resolved).await?,
        });
    }
    Ok(datasets)
}

/// The artefact types served, and what `references=` adds to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artefact {
    Dataflow,
    DataStructure,
    Codelist,
    ConceptScheme,
}

/// The artefacts one structure message holds.
pub struct Structures<'a> {
    pub flow: &'a Dataflow,
    pub header: Header,
    pub dataflow: bool,
    pub datastructure: bool,
    /// Codelist ids to include.
    pub codelists: Vec<String>,
    pub conceptscheme: bool,
}

/// `GET /schema/dataflow/...`: the dataflow with everything it refers to.
#[tracing::instrument(name = "sdmx_schema", skip_all)]
async fn schema(
    State(state): State<Arc<QueryState>>,
    Path(mut path): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let pairs = vec![("references".to_owned(), "all".to_owned())];
    let kind = match path.remove("context").as_deref() {
        Some("dataflow") => Ok("dataflow"),
        Some("datastructure") => Ok("datastructure"),
        other => Err(SdmxError::not_found(format!(
            "no schema of a {} here; ask schema/dataflow/{}/{DATAFLOW}/{VERSION}",
            other.unwrap_or(""),
            state.config.sdmx_agency
        ))),
    };
    let path = kind.map(|kind| {
        path.insert("kind".into(), kind.into());
        path
    });
    let (state, headers, pairs) = (&state, &headers, &pairs);
    respond(Kind::Structure, headers, &[], |format| async move {
        structures(state, &path?, headers, pairs, format).await
    })
    .await
}

#[tracing::instrument(name = "sdmx_structure", skip_all)]
async fn structure(
    State(state): State<Arc<QueryState>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = query::raw_pairs(raw.as_deref());
    respond(Kind::Structure, &headers, &pairs, |format| {
        structures(&state, &path, &headers, &pairs, format)
    })
    .await
}

async fn structures(
    state: &QueryState,
    path: &HashMap<String, String>,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    format: Format,
) -> Result<Response, SdmxError> {
    let tier = state.disclosure.tier(headers)?;
    let mut references = "none";
    for (name, value) in pairs {
        match name.as_str() {
            "references" => references = value.as_str(),
            // Every artefact is served whole; stubs and partial codelists are not.
            "detail" | "format" | "asOf" => {}
            other => {
                return Err(SdmxError::syntax(format!(
                    "unknown parameter '{other}'; use references (none, parents, parentsandsiblings, children, \
                     descendants, all or an artefact type) or detail"
                )));
            }
        }
    }
    let kind = match path.get("kind").map(String::as_str) {
        Some("dataflow") => Artefact::Dataflow,
        Some("datastructure") => Artefact::DataStructure,
        Some("codelist") => Artefact::Codelist,
        Some("conceptscheme") => Artefact::ConceptScheme,
        other => {
            return Err(SdmxError::not_found(format!(
                "no {} artefacts here; served: dataflow, datastructure, codelist, conceptscheme",
                other.unwrap_or("")
            )));
        }
    };
    let agency = &state.config.sdmx_agency;
    // Structures publish codes, not numbers: no record-key check.
    let resolved = state
        .vintages
        .resolve(state.engine.serving(), &Vintage::Current, None, state.config.max_wait)
        .await
        .map_err(crate::counts::QueryError::from)?;
    let sources = state.engine.sources_on(&resolved).await?;
    let flow = Dataflow::new(agency, &sources);
    let as_of = AsOf::resolved(state.engine.serving().projection().id(), &resolved);
    let wanted_id = path.get("id");
    let all_codelists: Vec<String> =
        flow.dimensions.iter().chain(&flow.attributes).map(|c| c.id.clone()).collect();
    let mut message = Structures {
        flow: &flow,
        header: header_of(&as_of, tier),
        dataflow: false,
        datastructure: false,
        codelists: Vec::new(),
        conceptscheme: false,
    };
    if !matches(path.get("agency"), agency, false) || !matches(path.get("version"), VERSION, true) {
        return Err(not_found(path));
    }
    let children = matches!(references, "children" | "descendants" | "all");
    match references {
        "none" | "parents" | "parentsandsiblings" | "children" | "descendants" | "all"
        | "dataflow" | "datastructure" | "codelist" | "conceptscheme" => {}
        other => {
            return Err(SdmxError::syntax(format!(
                "references='{other}' is not a reference type; use none, parents, parentsandsiblings, children, \
                 descendants, all, dataflow, datastructure, codelist or conceptscheme"
            )));
        }
    }
    match kind {
        Artefact::Dataflow => {
            if !matches(wanted_id, DATAFLOW, false) {
                return Err(not_found(path));
            }
            message.dataflow = true;
            message.datastructure = children || references == "datastructure";
            if matches!(references, "descendants" | "all" | "codelist") {
                message.codelists = all_codelists;
            }
            message.conceptscheme = matches!(references, "descendants" | "all" | "conceptscheme");
        }
        Artefact::DataStructure => {
            if !matches(wanted_id, dataflow::DSD, false) {
                return Err(not_found(path));
            }
            message.datastructure = true;
            message.dataflow =
                matches!(references, "parents" | "parentsandsiblings" | "all" | "dataflow");
            if children || references == "codelist" {
                message.codelists = all_codelists;
            }
            message.conceptscheme = children || references == "conceptscheme";
        }
        Artefact::Codelist => {
            message.codelists =
                all_codelists.into_iter().filter(|id| matches(wanted_id, id, false)).collect();
            if message.codelists.is_empty() {
                return Err(not_found(path));
            }
            message.datastructure = matches!(references, "parents" | "parentsandsiblings" | "all");
        }
        Artefact::ConceptScheme => {
            if !matches(wanted_id, dataflow::CONCEPT_SCHEME, false) {
                return Err(not_found(path));
            }
            message.conceptscheme = true;
            message.datastructure = matches!(references, "parents" | "parentsandsiblings" | "all");
        }
    }
    let body = match format {
        Format::Xml => xml::structure(&message),
        _ => json::structure(&message),
    };
    let mut response =
        ([(header::CONTENT_TYPE, format.content_type(Kind::Structure))], body).into_response();
    crate::api::stamp(&mut response, as_of.sequence, as_of.release_id(), None);
    Ok(response)
}

fn not_found(path: &HashMap<String, String>) -> SdmxError {
    let segment = |name: &str| path.get(name).map_or("*", String::as_str).to_owned();
    SdmxError::not_found(format!(
        "no {} {}:{}({}) here; GET /sdmx/v2/structure/dataflow/*/*/*?references=all lists every artefact",
        segment("kind"),
        segment("agency"),
        segment("id"),
        segment("version")
    ))
}
