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

use crate::config::AgencyArgs;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Base URL of a running observatory (`observatory up`).
    #[arg(long, env = "OBSERVATORY_DEMO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Incidents to generate (records sent are ~10% more: amendments, resubmissions…).
    #[arg(long, env = "OBSERVATORY_DEMO_INCIDENTS", default_value_t = 20_000)]
    pub incidents: usize,
    /// Seed of the generator: the same seed sends the same feed.
    #[arg(long, env = "OBSERVATORY_DEMO_SEED", default_value_t = 2014)]
    pub seed: u64,
    /// The demo registers its agencies in the service's agencies file and keeps their tokens in
    /// <data-dir>/demo-tokens.json.
    #[command(flatten)]
    pub files: AgencyArgs,
    /// The demo reads exact numbers as a researcher it registers in the readers file (its
    /// token kept in demo-tokens.json too).
    #[command(flatten)]
    pub readers: crate::flags::ReaderFile,
}

/// The demo's reader, and its entry in demo-tokens.json.
const DEMO_READER: &str = "demo-researcher";

struct DemoAgency {
    id: &'static str,
    name: &'static str,
    format: &'static str,
    share: f64,
    /// The crosswalk of the agency's own codes (`iccs`: it sends ICCS codes).
    crosswalk: &'static str,
    /// Codes this source reports (its own codes, or ICCS), with weights.
    codes: &'static [(&'static str, f64)],
}

impl DemoAgency {
    fn sends_iccs(&self) -> bool {
        self.crosswalk == observatory_reference::IDENTITY
    }
}

const AGENCIES: &[DemoAgency] = &[
    DemoAgency {
        id: "pn",
        name: "Police nationale (NATINF-coded)",
        format: "application/x-ndjson",
        share: 0.35,
        crosswalk: "natinf",
        codes: &[
            ("313-1", 0.45),
            ("323-1", 0.10),
            ("323-2", 0.04),
            ("323-3", 0.03),
            ("222-33-2-2", 0.12),
            ("226-4-1", 0.08),
            ("227-23", 0.05),
            ("312-10", 0.05),
            ("L163-3", 0.08),
        ],
    },
    DemoAgency {
        id: "gn",
        name: "Gendarmerie nationale",
        format: "text/csv",
        share: 0.25,
        crosswalk: "iccs",
        codes: &[("0701", 0.60), ("09031", 0.10), ("09032", 0.05), ("0208", 0.15), ("0302", 0.10)],
    },
    DemoAgency {
        id: "pharos",
        name: "Online content-reporting platform (reports)",
        format: "application/x-ndjson",
        share: 0.20,
        crosswalk: "platform",
        codes: &[
            ("phishing", 0.2),
            ("online_fraud", 0.2),
            ("hate_speech", 0.15),
            ("harassment", 0.15),
            ("csam", 0.1),
            ("sextortion", 0.1),
            ("account_takeover", 0.1),
        ],
    },
    DemoAgency {
        id: "cybermalveillance",
        name: "Victim-assistance platform",
        format: "application/json",
        share: 0.12,
        crosswalk: "iccs",
        codes: &[("09031", 0.35), ("09032", 0.25), ("0701", 0.40)],
    },
    DemoAgency {
        id: "banks",
        name: "Banking federation card-fraud feed",
        format: "application/x-ndjson",
        share: 0.08,
        crosswalk: "iccs",
        codes: &[("0701", 1.0)],
    },
];

/// Relative monthly volume: a summer dip, an end-of-year peak (online shopping fraud).
const SEASON: [f64; 12] = [0.9, 0.85, 0.95, 0.95, 1.0, 0.95, 0.8, 0.75, 1.0, 1.1, 1.25, 1.4];
const YEARS: [i32; 2] = [2024, 2025];
const VICTIMS: &[(&str, f64)] =
    &[("individual", 0.78), ("business", 0.14), ("public_body", 0.03), ("unknown", 0.05)];
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
    const BIG: &[&str] = &[
        "75", "13", "59", "69", "92", "93", "33", "94", "31", "44", "78", "91", "77", "62", "06",
        "95",
    ];
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

fn report(
    rng: &mut StdRng,
    agency: &DemoAgency,
    departements: &[(&'static str, f64)],
    today: NaiveDate,
) -> Value {
    let year = YEARS[rng.gen_range(0..YEARS.len())];
    let months: Vec<(u32, f64)> =
        SEASON.iter().enumerate().map(|(i, w)| (i as u32 + 1, *w)).collect();
    let month = *pick(rng, &months);
    let occurred = NaiveDate::from_ymd_opt(year, month, rng.gen_range(1..=28)).expect("valid date");
    let reported = (occurred + Days::new(rng.gen_range(0..45))).min(today);
    let code = *pick(rng, agency.codes);
    let departement = if rng.gen_bool(0.03) { Value::Null } else { json!(pick(rng, departements)) };
    let iccs = coded(agency, code).0;
    let mut record = json!({
        "occurred_on": occurred.to_string(),
        "reported_on": reported.to_string(),
        "departement": departement,
        "victim_type": pick(rng, VICTIMS),
        "channel": pick(rng, CHANNELS),
    });
    if agency.sends_iccs() {
        record["iccs"] = json!(code);
    } else {
        record["offence_code"] = json!(code);
    }
    // The platform leaves `cyber` to its crosswalk's default; the others say it.
    if agency.crosswalk != "platform" {
        record["cyber"] = json!(iccs.starts_with("0903") || rng.gen_bool(0.9));
    }
    if iccs.starts_with("0701") && rng.gen_bool(0.8) {
        // Heavy-tailed losses, in cents.
        let cents = (rng.r#gen::<f64>().powi(3) * 500_000.0 + 500.0).round();
        record["loss_eur"] = json!(cents / 100.0);
    }
    record
}

/// ICCS code and unit of an agency's code, with the crosswalk version in force.
fn coded(agency: &DemoAgency, code: &str) -> (String, observatory_model::Unit) {
    if agency.sends_iccs() {
        return (code.to_owned(), observatory_model::Unit::Offence);
    }
    let crosswalk = observatory_reference::Crosswalks::builtin()
        .latest(agency.crosswalk)
        .expect("demo crosswalk exists");
    let mapping = crosswalk.map(code).expect("demo codes are in their crosswalk");
    (mapping.iccs.clone(), mapping.unit)
}

fn generate(count: usize, seed: u64, today: NaiveDate) -> Feed {
    let mut rng = StdRng::seed_from_u64(seed);
    let departements = departement_weights();
    let shares: Vec<(usize, f64)> =
        AGENCIES.iter().enumerate().map(|(i, a)| (i, a.share)).collect();
    let mut incidents = Vec::with_capacity(count);
    for n in 0..count {
        let agency = *pick(&mut rng, &shares);
        let fields = report(&mut rng, &AGENCIES[agency], &departements, today);
        let year = &fields["occurred_on"].as_str().expect("date")[..4];
        incidents.push(Incident {
            agency,
            id: format!("{}-{year}-{n:07}", AGENCIES[agency].id.to_uppercase()),
            fields,
        });
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
                _ => {
                    for field in ["iccs", "offence_code", "cyber", "loss_eur"] {
                        amended.as_object_mut().expect("object").remove(field);
                        if let Some(value) = moved.get(field) {
                            amended[field] = value.clone();
                        }
                    }
                }
            }
            later.push(Send {
                agency: incident.agency,
                record: with_id(incident, 2, &amended),
                valid: true,
            });
        } else if roll < 0.08 {
            // Withdrawn; a quarter are re-reported by a later revision.
            first.push(Send { agency: incident.agency, record: initial, valid: true });
            later.push(Send {
                agency: incident.agency,
                record: json!({"agency_incident_id": incident.id, "revision": 2, "withdrawn": true, "reason": "recorded twice"}),
                valid: true,
            });
            if rng.gen_bool(0.25) {
                later.push(Send {
                    agency: incident.agency,
                    record: with_id(incident, 3, &incident.fields),
                    valid: true,
                });
            }
        } else if roll < 0.11 {
            // Resubmitted unchanged later: a duplicate.
            first.push(Send { agency: incident.agency, record: initial.clone(), valid: true });
            later.push(Send { agency: incident.agency, record: initial, valid: true });
        } else if roll < 0.115 {
            // Out of order: revision 2 first, the stale revision 1 afterwards.
            let mut newer = incident.fields.clone();
            newer["channel"] = json!("website");
            first.push(Send {
                agency: incident.agency,
                record: with_id(incident, 2, &newer),
                valid: true,
            });
            later.push(Send { agency: incident.agency, record: initial, valid: true });
        } else if roll < 0.125 {
            // Invalid: the agency gets a precise error for it.
            let mut broken = initial;
            let agency = &AGENCIES[incident.agency];
            match rng.gen_range(0..5) {
                0 => broken["departement"] = json!("20"),
                1 if agency.sends_iccs() => {
                    broken.as_object_mut().expect("object").remove("cyber");
                }
                1 => broken["offence_code"] = json!("999-9"),
                2 => broken["reported_on"] = json!("2023-01-01"),
                3 if agency.sends_iccs() => broken["iccs"] = json!("0999"),
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
        let state =
            if send.record.get("withdrawn").is_some() { None } else { Some(send.record.clone()) };
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
    "offence_code",
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
fn demo_tokens(
    files: &AgencyArgs,
    readers: &crate::flags::ReaderFile,
) -> Result<BTreeMap<String, String>> {
    let path = files.data.data_dir.join("demo-tokens.json");
    let mut tokens: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        }
        Err(_) => BTreeMap::new(),
    };
    let registry = observatory_ingest::AgencyRegistry::open(&files.path())?;
    let known: Vec<String> = registry.agencies().into_iter().map(|a| a.id).collect();
    for agency in AGENCIES {
        if tokens.contains_key(agency.id) && known.iter().any(|k| k == agency.id) {
            continue;
        }
        if known.iter().any(|k| k == agency.id) {
            bail!(
                "agency '{}' exists in {} but its demo token is not in {}; run the demo on a fresh --data-dir",
                agency.id,
                files.path().display(),
                path.display()
            );
        }
        let crosswalk = Some(agency.crosswalk);
        let token = observatory_ingest::add_agency(
            &files.path(),
            agency.id,
            Some(agency.name),
            crosswalk,
            false,
        )?
        .token;
        tokens.insert(agency.id.to_owned(), token);
    }
    let readers_path = readers.path(&files.data);
    let readers = observatory_access::ReaderRegistry::open(&readers_path)?;
    let reader_known = readers.entries().iter().any(|r| r.name == DEMO_READER);
    if !(reader_known && tokens.contains_key(DEMO_READER)) {
        if reader_known {
            bail!(
                "reader '{DEMO_READER}' exists in {} but its token is not in {}; run the demo on a fresh --data-dir",
                readers_path.display(),
                path.display()
            );
        }
        let token = observatory_access::add_reader(
            &readers_path,
            DEMO_READER,
            observatory_access::Role::Researcher,
        )?;
        tokens.insert(DEMO_READER.to_owned(), token);
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

pub async fn run(args: &DemoArgs) -> Result<()> {
    let base = args.url.trim_end_matches('/');
    let client = reqwest::Client::new();
    wait_healthy(&client, base).await?;
    let tokens = demo_tokens(&args.files, &args.readers)?;
    let today = chrono::Utc::now().date_naive();
    let feed = generate(args.incidents, args.seed, today);
    eprintln!(
        "demo: {} incidents, {} records to send from {} agencies",
        args.incidents,
        feed.sends.len(),
        AGENCIES.len()
    );

    let bar = ProgressBar::new(feed.sends.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} sending [{bar:40}] {pos}/{len} records ({per_sec})",
        )
        .expect("template"),
    );
    let (mut accepted, mut duplicates, mut rejected_records) = (0u64, 0u64, 0u64);
    let mut last_sequence = 0u64;
    let mut examples = Vec::new();
    // Batches per agency, in send order, so later revisions follow earlier ones.
    for chunk in feed.sends.chunks(2_000) {
        for (index, agency) in AGENCIES.iter().enumerate() {
            let records: Vec<&Value> =
                chunk.iter().filter(|s| s.agency == index).map(|s| &s.record).collect();
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
                examples
                    .extend(rejected.into_iter().take(1).map(|r| format!("{}: {r}", agency.id)));
            }
            if let Some(sequence) = body["last_sequence"].as_u64() {
                last_sequence = last_sequence.max(sequence);
            }
            bar.inc(records.len() as u64);
        }
    }
    bar.finish_and_clear();
    let invalid = feed.sends.iter().filter(|s| !s.valid).count();
    println!(
        "sent {} records: {accepted} accepted, {duplicates} duplicates, {rejected_records} rejected (generated {invalid} invalid)",
        feed.sends.len()
    );
    for example in &examples {
        println!("  e.g. rejected {example}");
    }

    close_months(&client, base, &tokens).await?;

    // Ground truth of the final state, per year and per ICCS section, in each counting unit.
    let mut truth_year: BTreeMap<String, i64> = BTreeMap::new();
    let mut truth_section: BTreeMap<String, i64> = BTreeMap::new();
    for ((agency, _), (_, state)) in &feed.truth {
        if let Some(record) = state {
            let agency = &AGENCIES[*agency];
            let code = record
                .get("iccs")
                .or_else(|| record.get("offence_code"))
                .and_then(Value::as_str)
                .expect("coded");
            let (iccs, unit) = coded(agency, code);
            let unit = unit.as_str();
            let year = &record["occurred_on"].as_str().expect("date")[..4];
            *truth_year.entry(format!("year {year}, {unit}")).or_default() += 1;
            *truth_section.entry(format!("ICCS {}, {unit}", &iccs[..2])).or_default() += 1;
        }
    }

    let wait =
        if last_sequence > 0 { format!("&min_sequence={last_sequence}") } else { String::new() };
    let reader = Some(tokens[DEMO_READER].as_str());
    let by_year_url = format!("{base}/v1/incidents/counts?by=year,unit{wait}");
    let by_section_url = format!("{base}/v1/incidents/counts?by=iccs_section,unit{wait}");
    let (as_of, by_year) = get_rows(&client, &by_year_url, reader).await?;
    let (_, by_section) = get_rows(&client, &by_section_url, reader).await?;
    // The same tables as the public reads them: perturbed, each within D of the truth.
    let (_, public_year) = get_rows(&client, &by_year_url, None).await?;
    let (_, public_section) = get_rows(&client, &by_section_url, None).await?;
    let label = |row: &Value, key: &str, prefix: &str| {
        let value = match &row[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("{prefix}{value}, {}", row["unit"].as_str().unwrap_or("?"))
    };
    let query_year: BTreeMap<String, i64> = by_year
        .iter()
        .map(|r| (label(r, "year", "year "), r["count"].as_i64().unwrap_or(0)))
        .collect();
    let query_section: BTreeMap<String, i64> = by_section
        .iter()
        .map(|r| (label(r, "iccs_section", "ICCS "), r["count"].as_i64().unwrap_or(0)))
        .collect();
    let public: BTreeMap<String, i64> = public_year
        .iter()
        .map(|r| (label(r, "year", "year "), r["count"].as_i64().unwrap_or(0)))
        .chain(
            public_section
                .iter()
                .map(|r| (label(r, "iccs_section", "ICCS "), r["count"].as_i64().unwrap_or(0))),
        )
        .collect();
    let policy = observatory_disclosure::Policy::standard();
    let (d, js) = (i64::from(policy.ptable.params.d), i64::from(policy.ptable.params.js));

    println!("\nas of stream sequence {as_of}");
    println!("{:<28} {:>12} {:>12} {:>12}", "", "ground truth", "researcher", "public");
    let mut mismatches = 0;
    for (truth, answer) in [(&truth_year, &query_year), (&truth_section, &query_section)] {
        let keys: std::collections::BTreeSet<&String> = truth.keys().chain(answer.keys()).collect();
        for key in keys {
            let (t, a) = (*truth.get(key).unwrap_or(&0), *answer.get(key).unwrap_or(&0));
            let p = *public.get(key).unwrap_or(&0);
            let public_ok = (p - t).abs() <= d && !(1..=js).contains(&p) && (t != 0 || p == 0);
            if t != a || !public_ok {
                mismatches += 1;
            }
            println!(
                "{key:<28} {t:>12} {a:>12} {p:>12}  {}",
                if t == a && public_ok { "ok" } else { "MISMATCH" }
            );
        }
    }
    if mismatches > 0 {
        bail!("{mismatches} figures differ between the ground truth and the query");
    }
    println!(
        "\nground truth equals the researcher's answer, and the public answer is within ±{d} of it \
         (cell-key perturbation, nothing published in 1..{js}); offences and platform reports are counted apart. Try:"
    );
    println!(
        "  curl '{base}/v1/incidents/counts?by=departement&unit=offence&rate=per100k&from=2024&to=2024&departement=75,13,59'"
    );
    println!(
        "  curl '{base}/v1/incidents/counts?by=month,iccs_section&unit=report&from=2025-01&to=2025-12&format=csv'"
    );
    println!("  curl '{base}/v1/coverage?from=2025-10&to=2025-12'");
    crate::demo_survey::run(args, &client, base).await?;
    Ok(())
}

/// Each demo agency declares every month it completed closed: all of 2024 and 2025 up to
/// November; December 2025 stays open, so its counts are provisional.
async fn close_months(
    client: &reqwest::Client,
    base: &str,
    tokens: &BTreeMap<String, String>,
) -> Result<()> {
    for agency in AGENCIES {
        for year in YEARS {
            for month in 1..=12 {
                if year == 2025 && month == 12 {
                    continue;
                }
                let response = client
                    .post(format!("{base}/v1/periods/close"))
                    .bearer_auth(&tokens[agency.id])
                    .json(&json!({"month": format!("{year}-{month:02}")}))
                    .send()
                    .await
                    .context("closing a month")?;
                if !response.status().is_success() {
                    bail!(
                        "closing {year}-{month:02} for {} answered {}",
                        agency.id,
                        response.text().await.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

async fn wait_healthy(client: &reqwest::Client, base: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            _ if std::time::Instant::now() > deadline => {
                bail!("{base}/health did not answer 200 within 60 s; is `observatory up` running?")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

async fn get_rows(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<(u64, Vec<Value>)> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok((
        body["as_of"]["sequence"].as_u64().unwrap_or(0),
        body["rows"].as_array().cloned().unwrap_or_default(),
    ))
}
