//! Stage 4: latency of five typical count requests to the real `observatory query` process
//! (and to the engine in-process) on the N-event projection, next to DuckDB over the same
//! Parquet files, with the answers checked equal.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observatory_query::{CountsEngine, CountsRequest};
use observatory_store::{Manifest, Projection, Store, TableId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::measure::{CountRow, Latency, compare_rows, ratio};
use crate::process::Service;
use crate::progress_bar;

/// The DuckDB side, kept next to the crate so it can be read and run by hand.
const DUCKDB_SCRIPT: &str = include_str!("../duckdb_queries.py");
const WARMUP: usize = 3;

/// A count request, with the simpler request to fall back to when this build's API does not
/// take it yet (and why).
struct QuerySpec {
    name: &'static str,
    label: &'static str,
    params: Vec<(&'static str, &'static str)>,
    fallback: Option<(Vec<(&'static str, &'static str)>, &'static str)>,
}

fn specs() -> Vec<QuerySpec> {
    vec![
        QuerySpec {
            name: "by_month",
            label: "by month",
            params: vec![("by", "month")],
            fallback: None,
        },
        QuerySpec {
            name: "by_departement_rates",
            label: "by département with rates, 2024",
            params: vec![
                ("by", "departement"),
                ("from", "2024-01"),
                ("to", "2024-12"),
                ("rate", "per100k"),
            ],
            fallback: Some((
                vec![("by", "departement"), ("from", "2024-01"), ("to", "2024-12")],
                "rate=per100k is not accepted by this build: measured by=departement without rates",
            )),
        },
        QuerySpec {
            name: "by_iccs_section_2024",
            label: "by ICCS section, 2024",
            params: vec![("by", "iccs_section"), ("from", "2024-01"), ("to", "2024-12")],
            fallback: Some((
                vec![("by", "iccs"), ("from", "2024-01"), ("to", "2024-12")],
                "by=iccs_section is not accepted by this build: measured by=iccs",
            )),
        },
        QuerySpec {
            name: "cross_tab_filtered",
            label: "month × channel, cyber fraud on individuals in 75/92/93/94, 2024",
            params: vec![
                ("by", "month,channel"),
                ("from", "2024-01"),
                ("to", "2024-12"),
                ("cyber", "true"),
                ("victim_type", "individual"),
                ("departement", "75,92,93,94"),
                ("iccs", "07"),
            ],
            fallback: None,
        },
        QuerySpec {
            name: "national_total",
            label: "national total",
            params: vec![],
            fallback: None,
        },
    ]
}

fn query_string(params: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// What DuckDB must compute for a request: grouping, month range and filters. Output
/// options (`rate`, `format`) change the presentation, not the counts.
fn duckdb_query(name: &str, params: &[(&str, &str)]) -> Value {
    let mut by = Vec::new();
    let (mut from, mut to) = (Value::Null, Value::Null);
    let mut filters = BTreeMap::new();
    for (key, value) in params {
        match *key {
            "by" => by = value.split(',').map(str::to_owned).collect(),
            "from" => from = Value::from(*value),
            "to" => to = Value::from(*value),
            "rate" | "format" | "min_sequence" => {}
            dim => {
                filters.insert(
                    dim.to_owned(),
                    value.split(',').map(str::to_owned).collect::<Vec<_>>(),
                );
            }
        }
    }
    json!({"name": name, "by": by, "from": from, "to": to, "filters": filters})
}

/// Rows of our JSON answer reduced to grouping values, count and loss in cents.
fn answer_rows(answer: &Value, by: &[String]) -> Result<Vec<CountRow>> {
    let rows = answer["rows"].as_array().context("the answer has no rows")?;
    rows.iter()
        .map(|row| {
            let keys = by
                .iter()
                .map(|dim| match &row[dim.as_str()] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            let count = row["count"].as_i64().context("count")?;
            let loss = row["loss_eur"].as_f64().unwrap_or(0.0);
            Ok((keys, count, (loss * 100.0).round() as i64))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub name: String,
    pub label: String,
    pub request: String,
    pub note: Option<String>,
    pub rows: usize,
    /// First request after the query service started (files not yet cached).
    pub cold_ms: f64,
    /// `GET /v1/incidents/counts` to the query process, full round trip, as a researcher
    /// (exact numbers: what DuckDB is compared with).
    pub http: Latency,
    /// The same request without a token: the public tier, perturbed by the cell-key method.
    pub public: Latency,
    /// Public p50 over exact p50, minus one (the cost of perturbation; target ≤ 10 %).
    pub perturbation_cost: f64,
    /// The engine in this process (no HTTP, no JSON).
    pub engine: Latency,
    pub duckdb_parquet: Option<Latency>,
    pub duckdb_memory: Option<Latency>,
    /// Our HTTP p99 over DuckDB's p99 over the Parquet files (target ≤ 1).
    pub p99_ratio_vs_duckdb: Option<f64>,
    pub equal: Option<bool>,
    pub difference: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DuckdbInfo {
    /// "ran" or why it was skipped.
    pub status: String,
    pub version: Option<String>,
    pub python: Option<String>,
    pub threads: Option<Value>,
    pub load_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryReport {
    pub runs: usize,
    pub counts_files: usize,
    pub counts_rows: u64,
    pub duckdb: DuckdbInfo,
    pub queries: Vec<QueryResult>,
    /// Largest p99 ratio over the five queries.
    pub worst_p99_ratio: Option<f64>,
    /// SDMX and JSON-stat beside the JSON answer of the same cells (public tier).
    pub formats: Vec<crate::formats::FormatResult>,
    /// A rebuild's switch under the running service: what the next request pays.
    pub after_switch: AfterSwitch,
    /// The query service's memory once the switches are done, before it stops: what it holds
    /// after six nettings of the whole table (the first and one per switch) and every request.
    pub service_rss_mib: Option<f64>,
    /// Its peak over the whole stage.
    pub service_peak_rss_mib: Option<f64>,
    /// How much of `service_rss_mib` it has offered back to the kernel, which takes it only
    /// when short (`observatory query --freed-memory lazy`).
    pub service_lazy_free_mib: Option<f64>,
}

/// The first count requests after `CURRENT` moved to a new version holding the same cells in
/// new files (what `observatory rebuild` does; a compaction replaces files the same way): the
/// worst case for the counts netting, which must start over. Several switches in a row, because
/// one request is one sample of a latency that shares two cores with the netting it follows.
#[derive(Debug, Clone, Serialize)]
pub struct AfterSwitch {
    /// The slowest of the switches' first requests: what the target is checked against.
    pub first_request_ms: f64,
    /// The median of the switches' first requests.
    pub first_request_median_ms: f64,
    /// Each switch, in order.
    pub switches: Vec<Switch>,
}

/// One switch and the request sent right after it.
#[derive(Debug, Clone, Serialize)]
pub struct Switch {
    /// The first request right after the switch.
    pub first_request_ms: f64,
    /// The version that request was answered from (the previous one while the new netting is
    /// made in the background).
    pub first_request_version: u64,
    /// From the switch to the first answer from the new version.
    pub new_version_served_after_s: f64,
    /// Every request answered from the previous version, the first included, one every 20 ms
    /// while the new version was netted (none when the first request already found it).
    pub during_netting: Option<Latency>,
    /// When the slowest of [`during_netting`](Self::during_netting) was sent, seconds after
    /// the switch: beside `new_version_served_after_s`, which part of the netting it met.
    pub slowest_during_sent_after_s: Option<f64>,
    /// The same request answered from the new version, [`AFTER_NETTING`] times once it is
    /// served: what the request costs with no netting beside it.
    pub after_netting: Latency,
}

/// How many requests [`Switch::after_netting`] times.
const AFTER_NETTING: usize = 10;

/// How many switches [`after_switch`] makes.
pub const SWITCHES: usize = 5;

#[derive(Deserialize)]
struct DuckdbQuery {
    parquet_ms: Vec<f64>,
    memory_ms: Vec<f64>,
    rows: Vec<(Vec<Option<String>>, i64, i64)>,
}

#[derive(Deserialize)]
struct DuckdbOutput {
    skipped: Option<String>,
    duckdb_version: Option<String>,
    python_version: Option<String>,
    threads: Option<Value>,
    load_ms: Option<f64>,
    #[serde(default)]
    queries: BTreeMap<String, DuckdbQuery>,
}

fn python() -> String {
    std::env::var("OBSERVATORY_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs the DuckDB script; `Err` only for a failure of the script itself, a missing Python
/// or duckdb package is reported as skipped.
fn run_duckdb(
    work: &Path,
    files: &[String],
    queries: &[Value],
    runs: usize,
) -> Result<DuckdbOutput> {
    let script = work.join("duckdb_queries.py");
    std::fs::write(&script, DUCKDB_SCRIPT)?;
    let input = work.join("duckdb_input.json");
    std::fs::write(
        &input,
        serde_json::to_vec(
            &json!({"files": files, "queries": queries, "runs": runs, "warmup": WARMUP}),
        )?,
    )?;
    let output = match Command::new(python()).arg(&script).arg(&input).stdin(Stdio::null()).output()
    {
        Ok(output) => output,
        Err(error) => {
            return Ok(DuckdbOutput {
                skipped: Some(format!("cannot run {} ({error}); set OBSERVATORY_PYTHON", python())),
                duckdb_version: None,
                python_version: None,
                threads: None,
                load_ms: None,
                queries: BTreeMap::new(),
            });
        }
    };
    if !output.status.success() {
        bail!("the DuckDB script failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("the DuckDB script's output")
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(f64, reqwest::StatusCode, Vec<u8>)> {
    let started = Instant::now();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?.to_vec();
    Ok((started.elapsed().as_secs_f64() * 1e3, status, body))
}

/// Makes [`SWITCHES`] rebuild switches by hand, one after the other (every file of the current
/// manifest copied under the next version, its manifest committed, `CURRENT` moved), and times
/// the count requests after each: the first at once, then until one is answered from the new
/// version, which the next switch waits for.
async fn after_switch(
    projection: &Projection,
    manifest: &Manifest,
    client: &reqwest::Client,
    base_url: &str,
    token: Option<&str>,
) -> Result<AfterSwitch> {
    let mut current = manifest.clone();
    let mut switches = Vec::with_capacity(SWITCHES);
    for _ in 0..SWITCHES {
        let (switch, next) = switch_once(projection, &current, client, base_url, token).await?;
        switches.push(switch);
        current = next;
    }
    let first: Vec<f64> = switches.iter().map(|s| s.first_request_ms).collect();
    let first = Latency::of(&first).context("no switch was made")?;
    Ok(AfterSwitch {
        first_request_ms: first.max_ms,
        first_request_median_ms: first.p50_ms,
        switches,
    })
}

/// One switch from `manifest` to a copy of it under the next version: the timings and the
/// manifest switched to.
async fn switch_once(
    projection: &Projection,
    manifest: &Manifest,
    client: &reqwest::Client,
    base_url: &str,
    token: Option<&str>,
) -> Result<(Switch, Manifest)> {
    let next = manifest.version + 1;
    let mut switched = manifest.clone();
    switched.version = next;
    switched.committed_at = chrono::Utc::now();
    let store = projection.store();
    for file in manifest.tables.values().flatten() {
        let from = projection.object_path(manifest.version, &file.path);
        let bytes = store.get(&from).await?.with_context(|| format!("{from} is missing"))?;
        store.put(&projection.object_path(next, &file.path), bytes).await?;
    }
    projection.commit(&switched).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = format!("{base_url}/v1/incidents/counts?by=month,departement");
    let version_of = |body: &[u8]| -> Result<u64> {
        let answer: Value = serde_json::from_slice(body).context("count answer")?;
        answer["as_of"]["version"].as_u64().context("an answer without as_of.version")
    };
    projection.set_current(next).await?;
    let switched_at = Instant::now();
    let (first_request_ms, status, body) = get(client, &url, token).await?;
    if !status.is_success() {
        bail!("GET {url} answered {status} after the switch");
    }
    let first_request_version = version_of(&body)?;
    // Each request answered from the previous version: its milliseconds, and when it was
    // sent, seconds after the switch.
    let mut during: Vec<(f64, f64)> = Vec::new();
    if first_request_version != u64::from(next) {
        during.push((first_request_ms, 0.0));
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sent_at = switched_at.elapsed().as_secs_f64();
            let (ms, status, body) = get(client, &url, token).await?;
            if !status.is_success() {
                bail!("GET {url} answered {status} while version {next} was netted");
            }
            if version_of(&body)? == u64::from(next) {
                break;
            }
            during.push((ms, sent_at));
            if switched_at.elapsed() > Duration::from_secs(600) {
                bail!("version {next} was not served within 600 s of the switch");
            }
        }
    }
    let new_version_served_after_s = switched_at.elapsed().as_secs_f64();
    let mut after = Vec::with_capacity(AFTER_NETTING);
    for _ in 0..AFTER_NETTING {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (ms, status, _) = get(client, &url, token).await?;
        if !status.is_success() {
            bail!("GET {url} answered {status} after version {next} was served");
        }
        after.push(ms);
    }
    let slowest_during_sent_after_s =
        during.iter().max_by(|a, b| a.0.total_cmp(&b.0)).map(|&(_, sent)| sent);
    let during: Vec<f64> = during.iter().map(|&(ms, _)| ms).collect();
    let switch = Switch {
        first_request_ms,
        first_request_version,
        new_version_served_after_s,
        during_netting: Latency::of(&during),
        slowest_during_sent_after_s,
        after_netting: Latency::of(&after).context("no request after the netting")?,
    };
    Ok((switch, switched))
}

pub async fn run(
    work: &Path,
    store: &Path,
    service_dir: &Path,
    manifest: &Manifest,
    runs: usize,
    client: &reqwest::Client,
) -> Result<QueryReport> {
    let store_location = store.to_string_lossy().into_owned();
    let args: Vec<String> = vec![
        "query".into(),
        "--store".into(),
        store_location.clone(),
        "--data-dir".into(),
        service_dir.to_string_lossy().into_owned(),
    ];
    // The exact figures compared with DuckDB are a researcher's; the public ones are timed
    // beside them.
    let reader = format!("bench-{}", std::process::id());
    let token = observatory_access::add_reader(
        &service_dir.join("readers.toml"),
        &reader,
        observatory_access::Role::Researcher,
    )?;
    let exact = Some(token.as_str());
    let service = Service::start(&args, work.join("query.log"), client).await?;
    let projection =
        Projection::new(Store::open(&store_location)?, observatory_store::ProjectionId::Incidents);
    let engine = CountsEngine::new(projection.clone());

    let mut measured = Vec::new();
    for spec in specs() {
        let bar = progress_bar((runs + WARMUP + 1) as u64, &format!("query: {}", spec.label));
        let mut params = spec.params.clone();
        let mut note = None;
        let mut url = format!("{}/v1/incidents/counts?{}", service.base_url, query_string(&params));
        let (mut cold_ms, mut status, mut body) = get(client, &url, exact).await?;
        if status == reqwest::StatusCode::BAD_REQUEST
            && let Some((fallback, why)) = &spec.fallback
        {
            params = fallback.clone();
            note = Some(format!("{why} ({})", String::from_utf8_lossy(&body).trim()));
            url = format!("{}/v1/incidents/counts?{}", service.base_url, query_string(&params));
            (cold_ms, status, body) = get(client, &url, exact).await?;
        }
        if !status.is_success() {
            bail!("GET {url} answered {status}: {}", String::from_utf8_lossy(&body));
        }
        bar.inc(1);
        // Exact and public requests alternate, so both see the same machine state.
        let (mut samples, mut public) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for i in 0..WARMUP + runs {
            let (ms, status, answer) = get(client, &url, exact).await?;
            if !status.is_success() {
                bail!("GET {url} answered {status}");
            }
            let (public_ms, public_status, public_body) = get(client, &url, None).await?;
            if !public_status.is_success() {
                bail!(
                    "GET {url} (public) answered {public_status}: {}",
                    String::from_utf8_lossy(&public_body)
                );
            }
            if i >= WARMUP {
                samples.push(ms);
                public.push(public_ms);
            }
            body = answer;
            bar.inc(1);
        }
        let answer: Value = serde_json::from_slice(&body).context("count answer")?;
        let request = CountsRequest::parse(
            &params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut engine_samples = Vec::with_capacity(runs);
        for i in 0..WARMUP + runs {
            let started = Instant::now();
            engine.counts(&request, Duration::ZERO).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            if i >= WARMUP {
                engine_samples.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        bar.finish_and_clear();
        measured.push((spec, params, note, cold_ms, samples, public, engine_samples, answer));
    }
    let bar = progress_bar(0, "query: SDMX and JSON-stat beside JSON");
    let formats = crate::formats::run(client, &service.base_url, runs).await?;
    bar.finish_and_clear();
    let bar = progress_bar(0, "query: the first request after a rebuild's switch");
    let after_switch =
        after_switch(&projection, manifest, client, &service.base_url, exact).await?;
    bar.finish_and_clear();
    let pid = service.pid();
    let (service_rss_mib, service_peak_rss_mib) =
        pid.map_or((None, None), crate::restart::memory_mib);
    let service_lazy_free_mib = pid.and_then(crate::restart::lazy_free_mib);
    service.stop().await?;

    let version = manifest.version;
    let files: Vec<String> = manifest
        .files(&TableId::Counts)
        .iter()
        .map(|f| {
            store
                .join(projection.object_path(version, &f.path).to_string())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let duckdb_queries: Vec<Value> =
        measured.iter().map(|(spec, params, ..)| duckdb_query(spec.name, params)).collect();
    let bar = progress_bar(0, "DuckDB over the same Parquet files");
    let duckdb = run_duckdb(work, &files, &duckdb_queries, runs)?;
    bar.finish_and_clear();

    let mut queries = Vec::new();
    for (spec, params, note, cold_ms, samples, public, engine_samples, answer) in measured {
        let by: Vec<String> = duckdb_query(spec.name, &params)["by"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let ours = answer_rows(&answer, &by)?;
        let theirs = duckdb.queries.get(spec.name);
        let http = Latency::of(&samples).context("no samples")?;
        let public = Latency::of(&public).context("no samples")?;
        let perturbation_cost = public.p50_ms / http.p50_ms - 1.0;
        let duckdb_parquet = theirs.and_then(|t| Latency::of(&t.parquet_ms));
        let comparison = theirs.map(|t| compare_rows(&ours, &t.rows));
        queries.push(QueryResult {
            name: spec.name.to_owned(),
            label: spec.label.to_owned(),
            request: format!("/v1/incidents/counts?{}", query_string(&params)),
            note,
            rows: ours.len(),
            cold_ms,
            p99_ratio_vs_duckdb: ratio(http.p99_ms, duckdb_parquet.as_ref().map(|d| d.p99_ms)),
            http,
            public,
            perturbation_cost,
            engine: Latency::of(&engine_samples).context("no samples")?,
            duckdb_parquet,
            duckdb_memory: theirs.and_then(|t| Latency::of(&t.memory_ms)),
            equal: comparison.as_ref().map(Result::is_ok),
            difference: comparison.and_then(Result::err),
        });
    }
    let worst_p99_ratio = queries.iter().filter_map(|q| q.p99_ratio_vs_duckdb).reduce(f64::max);
    let counts = manifest.files(&TableId::Counts);
    Ok(QueryReport {
        runs,
        counts_files: counts.len(),
        counts_rows: counts.iter().map(|f| f.rows).sum(),
        duckdb: DuckdbInfo {
            status: duckdb
                .skipped
                .map(|why| format!("skipped: {why}"))
                .unwrap_or_else(|| "ran".to_owned()),
            version: duckdb.duckdb_version,
            python: duckdb.python_version,
            threads: duckdb.threads,
            load_ms: duckdb.load_ms,
        },
        queries,
        worst_p99_ratio,
        formats,
        after_switch,
        service_rss_mib,
        service_peak_rss_mib,
        service_lazy_free_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_gets_the_counting_part_of_a_request() {
        let q = duckdb_query(
            "x",
            &[
                ("by", "month,channel"),
                ("from", "2024-01"),
                ("rate", "per100k"),
                ("departement", "75,92"),
            ],
        );
        assert_eq!(q["by"], json!(["month", "channel"]));
        assert_eq!(q["from"], json!("2024-01"));
        assert_eq!(q["to"], Value::Null);
        assert_eq!(q["filters"], json!({"departement": ["75", "92"]}));
    }

    #[test]
    fn answers_reduce_to_comparable_rows() {
        let answer = json!({"rows": [
            {"year": 2024, "departement": null, "cyber": true, "count": 3, "loss_eur": 12.34, "rate": 1.5},
        ]});
        let by = vec!["year".to_owned(), "departement".to_owned(), "cyber".to_owned()];
        let rows = answer_rows(&answer, &by).unwrap();
        assert_eq!(rows, vec![(vec![Some("2024".into()), None, Some("true".into())], 3, 1234)]);
    }
}
