//! `observatory demo`: creates demo agencies, pushes a realistic synthetic two-year feed
//! through the HTTP API (seasonality, every département, amendments, withdrawals,
//! resubmissions, out-of-order revisions, invalid records), waits for the projection and
//! prints its own ground truth next to what the query answers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use observatory_model::DEPARTEMENTS;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::Global;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Base URL of a running observatory (`observatory up`).
    #[arg(long, env = "OBSERVATORY_DEMO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Incidents to generate (records sent are ~10% more: amendments, resubmissions…).
    #[arg(long, default_value_t = 20_000)]
    pub incidents: usize,
    /// Seed of the generator: the same seed sends the same feed.
    #[arg(long, default_value_t = 2014)]
    pub seed: u64,
}

struct DemoAgency {
    id: &'static str,
    name: &'static str,
    format: &'static str,
    share: f64,
    /// ICCS codes this source reports, with weights.
    iccs: &'static [(&'static str, f64)],
}

const AGENCIES: &[DemoAgency] = &[
    DemoAgency {
        id: "pn",
        name: "Police nationale",
        format: "application/x-ndjson",
        share: 0.35,
        iccs: &[("0701", 0.55), ("09031", 0.12), ("09032", 0.05), ("0208", 0.18), ("0302", 0.10)],
    },
    DemoAgency {
        id: "gn",
        name: "Gendarmerie nationale",
        format: "text/csv",
        share: 0.25,
        iccs: &[("0701", 0.60), ("09031", 0.10), ("09032", 0.05), ("0208", 0.15), ("0302", 0.10)],
    },
    DemoAgency {
        id: "pharos",
        name: "Online content-reporting platform",
        format: "application/x-ndjson",
        share: 0.20,
        iccs: &[("0208", 0.45), ("0302", 0.35), ("0701", 0.20)],
    },
    DemoAgency {
        id: "cybermalveillance",
        name: "Victim-assistance platform",
        format: "application/json",
        share: 0.12,
        iccs: &[("09031", 0.35), ("09032", 0.25), ("0701", 0.40)],
    },
    DemoAgency {
        id: "banks",
        name: "Banking federation card-fraud feed",
        format: "application/x-ndjson",
        share: 0.08,
        iccs: &[("0701", 1.0)],
    },
];

/// Relative monthly volume: a summer dip, an end-of-year peak (online shopping fraud).
const SEASON: [f64; 12] = [0.9, 0.85, 0.95, 0.95, 1.0, 0.95, 0.8, 0.75, 1.0, 1.1, 1.25, 1.4];
const YEARS: [i32; 2] = [2024, 2025];
const VICTIMS: &[(&str, f64)] = &[("individual", 0.78), ("business", 0.14), ("public_body", 0.03), ("unknown", 0.05)];
const CHANNELS: &[(&str, f64)] = &[
    ("email", 0.18),
    ("sms", 0.14),
    ("phone", 0.12),
    ("social_network", 0.16),
    ("messaging", 0.08),
    ("website", 0.12),
    ("marketplace", 0.08),
    ("online_banking", 0.07),
    ("other", 0.03),
    ("unknown", 0.02),
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.r#gen::<f64>() * total;
    for (item, weight) in items {
        if x < *weight {
            return item;
        }
        x -= weight;
    }
    &items[items.len() - 1].0
}

/// Populous départements weigh more, so the map looks like France, but every one appears.
fn departement_weights() -> Vec<(&'static str, f64)> {
    const BIG: &[&str] = &["75", "13", "59", "69", "92", "93", "33", "94", "31", "44", "78", "91", "77", "62", "06", "95"];
    DEPARTEMENTS.iter().map(|&d| (d, if BIG.contains(&d) { 5.0 } else { 1.0 })).collect()
}

#[derive(Clone)]
struct Incident {
    agency: usize,
    id: String,
    fields: Value,
}

/// One record as sent, and whether it is meant to be valid.
struct Send {
    agency: usize,
    record: Value,
    valid: bool,
}

struct Feed {
    sends: Vec<Send>,
    /// (agency, id) → final record (None when withdrawn), by highest revision.
    truth: HashMap<(usize, String), (u32, Option<Value>)>,
}

fn report(rng: &mut StdRng, agency: &DemoAgency, departements: &[(&'static str, f64)], today: NaiveDate) -> Value {
    let year = YEARS[rng.gen_range(0..YEARS.len())];
    let months: Vec<(u32, f64)> = SEASON.iter().enumerate().map(|(i, w)| (i as u32 + 1, *w)).collect();
    let month = *pick(rng, &months);
    let occurred = NaiveDate::from_ymd_opt(year, month, rng.gen_range(1..=28)).expect("valid date");
    let reported = (occurred + Days::new(rng.gen_range(0..45))).min(today);
    let iccs = *pick(rng, agency.iccs);
    let departement = if rng.gen_bool(0.03) { Value::Null } else { json!(pick(rng, departements)) };
    let cyber = iccs.starts_with("0903") || rng.gen_bool(0.9);
    let mut record = json!({
        "occurred_on": occurred.to_string(),
        "reported_on": reported.to_string(),
        "iccs": iccs,
        "cyber": cyber,
        "departement": departement,
        "victim_type": pick(rng, VICTIMS),
        "channel": pick(rng, CHANNELS),
    });
    if iccs == "0701" && rng.gen_bool(0.8) {
        // Heavy-tailed losses, in cents.
        let cents = (rng.r#gen::<f64>().powi(3) * 500_000.0 + 500.0).round();
        record["loss_eur"] = json!(cents / 100.0);
    }
    record
}

fn generate(count: usize, seed: u64, today: NaiveDate) -> Feed {
    let mut rng = StdRng::seed_from_u64(seed);
    let departements = departement_weights();
    let shares: Vec<(usize, f64)> = AGENCIES.iter().enumerate().map(|(i, a)| (i, a.share)).collect();
    let mut incidents = Vec::with_capacity(count);
    for n in 0..count {
        let agency = *pick(&mut rng, &shares);
        let fields = report(&mut rng, &AGENCIES[agency], &departements, today);
        let year = &fields["occurred_on"].as_str().expect("date")[..4];
        incidents.push(Incident { agency, id: format!("{}-{year}-{n:07}", AGENCIES[agency].id.to_uppercase()), fields });
    }

    let mut first = Vec::new();
    let mut later = Vec::new();
    let with_id = |incident: &Incident, revision: u32, fields: &Value| {
        let mut record = fields.clone();
        record["agency_incident_id"] = json!(incident.id);
        record["revision"] = json!(revision);
        record
    };
    for incident in &incidents {
        let roll: f64 = rng.r#gen();
        let initial = with_id(incident, 1, &incident.fields);
        if roll < 0.06 {
            // Amendment: moves month, département or category.
            first.push(Send { agency: incident.agency, record: initial, valid: true });
            let mut amended = incident.fields.clone();
            let moved = report(&mut rng, &AGENCIES[incident.agency], &departements, today);
            match rng.gen_range(0..3) {
                0 => {
                    amended["occurred_on"] = moved["occurred_on"].clone();
                    amended["reported_on"] = moved["reported_on"].clone();
                }
                1 => amended["departement"] = moved["departement"].clone(),
                _ => amended["iccs"] = moved["iccs"].clone(),
            }
            later.push(Send { agency: incident.agency, record: with_id(incident, 2, &amended), valid: true });
        } else if roll < 0.08 {
            // Withdrawn; a quarter are re-reported by a later revision.
            first.push(Send { agency: incident.agency, record: initial, valid: true });
            later.push(Send {
                agency: incident.agency,
                record: json!({"agency_incident_id": incident.id, "revision": 2, "withdrawn": true, "reason": "recorded twice"}),
                valid: true,
            });
            if rng.gen_bool(0.25) {
                later.push(Send { agency: incident.agency, record: with_id(incident, 3, &incident.fields), valid: true });
            }
        } else if roll < 0.11 {
            // Resubmitted unchanged later: a duplicate.
            first.push(Send { agency: incident.agency, record: initial.clone(), valid: true });
            later.push(Send { agency: incident.agency, record: initial, valid: true });
        } else if roll < 0.115 {
            // Out of order: revision 2 first, the stale revision 1 afterwards.
            let mut newer = incident.fields.clone();
            newer["channel"] = json!("website");
            first.push(Send { agency: incident.agency, record: with_id(incident, 2, &newer), valid: true });
            later.push(Send { agency: incident.agency, record: initial, valid: true });
        } else if roll < 0.125 {
            // Invalid: the agency gets a precise error for it.
            let mut broken = initial;
            match rng.gen_range(0..4) {
                0 => broken["departement"] = json!("20"),
                1 => {
                    broken.as_object_mut().expect("object").remove("cyber");
                }
                2 => broken["reported_on"] = json!("2023-01-01"),
                _ => broken["channel"] = json!("carrier_pigeon"),
            }
            first.push(Send { agency: incident.agency, record: broken, valid: false });
        } else {
            first.push(Send { agency: incident.agency, record: initial, valid: true });
        }
    }
    later.shuffle(&mut rng);
    let sends: Vec<Send> = first.into_iter().chain(later).collect();

    let mut truth: HashMap<(usize, String), (u32, Option<Value>)> = HashMap::new();
    for send in sends.iter().filter(|s| s.valid) {
        let id = send.record["agency_incident_id"].as_str().expect("id").to_owned();
        let revision = send.record["revision"].as_u64().expect("revision") as u32;
        let state = if send.record.get("withdrawn").is_some() { None } else { Some(send.record.clone()) };
        let entry = truth.entry((send.agency, id)).or_insert((0, None));
        if revision > entry.0 {
            *entry = (revision, state);
        }
    }
    Feed { sends, truth }
}

const CSV_COLUMNS: &[&str] = &[
    "agency_incident_id",
    "revision",
    "occurred_on",
    "reported_on",
    "iccs",
    "cyber",
    "departement",
    "victim_type",
    "channel",
    "loss_eur",
    "withdrawn",
    "reason",
];

fn encode(format: &str, records: &[&Value]) -> Vec<u8> {
    match format {
        "application/json" => serde_json::to_vec(records).expect("serialises"),
        "text/csv" => {
            let mut writer = String::with_capacity(1 << 16);
            writer.push_str(&CSV_COLUMNS.join(","));
            writer.push('\n');
            for record in records {
                let cells: Vec<String> = CSV_COLUMNS
                    .iter()
                    .map(|c| match record.get(*c) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    })
                    .collect();
                writer.push_str(&cells.join(","));
                writer.push('\n');
            }
            writer.into_bytes()
        }
        _ => {
            let mut body = Vec::new();
            for record in records {
                serde_json::to_writer(&mut body, record).expect("serialises");
                body.push(b'\n');
            }
            body
        }
    }
}

/// Tokens of the demo agencies, kept beside the data (demo only: real tokens are never stored).
fn demo_tokens(global: &Global) -> Result<BTreeMap<String, String>> {
    let path = global.data_dir.join("demo-tokens.json");
    let mut tokens: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        Err(_) => BTreeMap::new(),
    };
    let registry = observatory_ingest::AgencyRegistry::open(&global.agencies_path())?;
    let known: Vec<String> = registry.agencies().into_iter().map(|a| a.id).collect();
    for agency in AGENCIES {
        if tokens.contains_key(agency.id) && known.iter().any(|k| k == agency.id) {
            continue;
        }
        if known.iter().any(|k| k == agency.id) {
            bail!(
                "agency '{}' exists in {} but its demo token is not in {}; run the demo on a fresh --data-dir",
                agency.id,
                global.agencies_path().display(),
                path.display()
            );
        }
        let token = observatory_ingest::add_agency(&global.agencies_path(), agency.id, Some(agency.name))?;
        tokens.insert(agency.id.to_owned(), token);
    }
    write_private(&path, &serde_json::to_vec_pretty(&tokens)?)?;
    Ok(tokens)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub async fn run(global: &Global, args: &DemoArgs) -> Result<()> {
    let base = args.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    wait_healthy(&client, base).await?;
    let tokens = demo_tokens(global)?;
    let today = chrono::Utc::now().date_naive();
    let feed = generate(args.incidents, args.seed, today);
    eprintln!("demo: {} incidents, {} records to send from {} agencies", args.incidents, feed.sends.len(), AGENCIES.len());

    let bar = ProgressBar::new(feed.sends.len() as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} sending [{bar:40}] {pos}/{len} records ({per_sec})").expect("template"));
    let (mut accepted, mut duplicates, mut rejected_records) = (0u64, 0u64, 0u64);
    let mut last_sequence = 0u64;
    let mut examples = Vec::new();
    // Batches per agency, in send order, so later revisions follow earlier ones.
    for chunk in feed.sends.chunks(2_000) {
        for (index, agency) in AGENCIES.iter().enumerate() {
            let records: Vec<&Value> = chunk.iter().filter(|s| s.agency == index).map(|s| &s.record).collect();
            if records.is_empty() {
                continue;
            }
            let response = client
                .post(format!("{base}/v1/incidents"))
                .bearer_auth(&tokens[agency.id])
                .header("content-type", agency.format)
                .body(encode(agency.format, &records))
                .send()
                .await
                .context("posting a batch")?;
            let status = response.status();
            let body: Value = response.json().await.context("reading the ingest answer")?;
            if !status.is_success() {
                bail!("ingest answered {status}: {body}");
            }
            accepted += body["accepted"].as_u64().unwrap_or(0);
            duplicates += body["duplicates"].as_u64().unwrap_or(0);
            let rejected = body["rejected"].as_array().cloned().unwrap_or_default();
            let mut lines: Vec<u64> = rejected.iter().filter_map(|r| r["line"].as_u64()).collect();
            lines.dedup();
            rejected_records += lines.len() as u64;
            if examples.len() < 3 {
                examples.extend(rejected.into_iter().take(1).map(|r| format!("{}: {r}", agency.id)));
            }
            if let Some(sequence) = body["last_sequence"].as_u64() {
                last_sequence = last_sequence.max(sequence);
            }
            bar.inc(records.len() as u64);
        }
    }
    bar.finish_and_clear();
    let invalid = feed.sends.iter().filter(|s| !s.valid).count();
    println!("sent {} records: {accepted} accepted, {duplicates} duplicates, {rejected_records} rejected (generated {invalid} invalid)", feed.sends.len());
    for example in &examples {
        println!("  e.g. rejected {example}");
    }

    // Ground truth of the final state, per year and per ICCS section.
    let mut truth_year: BTreeMap<String, i64> = BTreeMap::new();
    let mut truth_section: BTreeMap<String, i64> = BTreeMap::new();
    for (_, (_, state)) in &feed.truth {
        if let Some(record) = state {
            *truth_year.entry(record["occurred_on"].as_str().expect("date")[..4].to_owned()).or_default() += 1;
            *truth_section.entry(record["iccs"].as_str().expect("iccs")[..2].to_owned()).or_default() += 1;
        }
    }

    let wait = if last_sequence > 0 { format!("&min_sequence={last_sequence}") } else { String::new() };
    let by_year = get_rows(&client, &format!("{base}/v1/incidents/counts?by=year{wait}")).await?;
    let by_iccs = get_rows(&client, &format!("{base}/v1/incidents/counts?by=iccs{wait}")).await?;
    let as_of = by_year.0;
    let mut query_year: BTreeMap<String, i64> = BTreeMap::new();
    for row in &by_year.1 {
        query_year.insert(row["year"].to_string(), row["count"].as_i64().unwrap_or(0));
    }
    let mut query_section: BTreeMap<String, i64> = BTreeMap::new();
    for row in &by_iccs.1 {
        let code = row["iccs"].as_str().unwrap_or("??");
        *query_section.entry(code[..2].to_owned()).or_default() += row["count"].as_i64().unwrap_or(0);
    }

    println!("\nas of stream sequence {as_of}");
    println!("{:<22} {:>12} {:>12}", "", "ground truth", "query");
    let mut mismatches = 0;
    let mut line = |label: String, truth: i64, answer: i64| {
        let mark = if truth == answer { "ok" } else { "MISMATCH" };
        if truth != answer {
            mismatches += 1;
        }
        println!("{label:<22} {truth:>12} {answer:>12}  {mark}");
    };
    let keys: std::collections::BTreeSet<&String> = truth_year.keys().chain(query_year.keys()).collect();
    for year in keys {
        line(format!("year {year}"), *truth_year.get(year).unwrap_or(&0), *query_year.get(year).unwrap_or(&0));
    }
    let keys: std::collections::BTreeSet<&String> = truth_section.keys().chain(query_section.keys()).collect();
    for section in keys {
        line(
            format!("ICCS section {section}"),
            *truth_section.get(section).unwrap_or(&0),
            *query_section.get(section).unwrap_or(&0),
        );
    }
    line("total".into(), truth_year.values().sum(), query_year.values().sum());
    if mismatches > 0 {
        bail!("{mismatches} figures differ between the ground truth and the query");
    }
    println!("\nground truth equals the query's answer. Try:\n  curl '{base}/v1/incidents/counts?by=month,iccs&from=2024-01&to=2024-12&departement=75,92'\n  curl '{base}/v1/incidents/counts?by=departement&format=csv'");
    Ok(())
}

async fn wait_healthy(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            _ if std::time::Instant::now() > deadline => bail!("{base}/health did not answer 200 within 60 s; is `observatory up` running?"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

async fn get_rows(client: &reqwest::Client, url: &str) -> Result<(u64, Vec<Value>)> {
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok((body["as_of"]["sequence"].as_u64().unwrap_or(0), body["rows"].as_array().cloned().unwrap_or_default()))
}
