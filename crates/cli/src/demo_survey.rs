//! The survey part of `observatory demo`: a synthetic household victimisation survey wave
//! ("cadre de vie et sécurité" style) with a stratified two-stage design — strata are the
//! régions, primary units are clusters of households within a région, households are drawn
//! within each sampled cluster — pushed through the HTTP API (declare, respondents in NDJSON
//! batches, close with nonresponse-adjusted final weights), then read back: reporting rates and
//! the dark figure next to the demo feed's recorded incidents.
//!
//! The synthetic population is sized from what the agencies recorded, so the two sources
//! agree: households victimised × share who reported ≈ incidents recorded by the police and the
//! gendarmerie for the same year, offence category and victim type.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use observatory_reference::Geography;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::AgencyArgs;
use crate::demo::DemoArgs;

const SURVEY: &str = "cvs";
const WAVE: &str = "2024";
const PRODUCER: (&str, &str) =
    ("ssmsi", "Service statistique ministériel de la sécurité intérieure");
/// Agencies a victim "reports to the police or the gendarmerie" to.
const POLICE: &str = "pn,gn";
/// Primary units in the synthetic population and in the sample, and households per sampled unit.
const POPULATION_PSUS: f64 = 1_500.0;
const SAMPLE_PSUS: f64 = 130.0;
const HOUSEHOLDS_PER_PSU: usize = 12;
/// Share of sampled households that answer.
const RESPONSE_RATE: f64 = 0.85;

/// A victimisation item of the questionnaire and the model that generates its answers.
struct Item {
    name: &'static str,
    label: &'static str,
    iccs: &'static str,
    /// Share of households victimised in the year (national average of the model).
    victimisation: f64,
    /// Share of victims who report; `None`: derived from the recorded incidents.
    reporting: Option<f64>,
}

const ITEMS: [Item; 2] = [
    Item {
        name: "fraud",
        label: "Bank-card or online-purchase fraud",
        iccs: "0701",
        victimisation: 0.06,
        reporting: Some(0.25),
    },
    Item {
        name: "hacking",
        label: "Hacking of an account or a device",
        iccs: "0903",
        victimisation: 0.03,
        reporting: None,
    },
];

/// Incidents recorded by the police and the gendarmerie in 2024 against individuals, for an
/// ICCS category (all counting units together: the demo's pn and gn feeds count offences).
async fn recorded(client: &reqwest::Client, base: &str, iccs: &str) -> Result<i64> {
    let url = format!(
        "{base}/v1/incidents/counts?by=unit&iccs={iccs}&from=2024-01&to=2024-12&victim_type=individual&source={POLICE}"
    );
    let response = client.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok(body["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["count"].as_i64()).sum())
        .unwrap_or(0))
}

fn token(files: &AgencyArgs) -> Result<String> {
    let path = files.data.data_dir.join("demo-tokens.json");
    let mut tokens: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        }
        Err(_) => BTreeMap::new(),
    };
    let registry = observatory_ingest::AgencyRegistry::open(&files.path())?;
    let known = registry.agencies().iter().any(|a| a.id == PRODUCER.0);
    match tokens.get(PRODUCER.0) {
        Some(token) if known => return Ok(token.clone()),
        _ if known => bail!(
            "agency '{}' exists in {} but its demo token is not in {}; run the demo on a fresh --data-dir",
            PRODUCER.0,
            files.path().display(),
            path.display()
        ),
        _ => {}
    }
    let token =
        observatory_ingest::add_agency(&files.path(), PRODUCER.0, Some(PRODUCER.1), None, false)?
            .token;
    tokens.insert(PRODUCER.0.to_owned(), token.clone());
    write_private(&path, &serde_json::to_vec_pretty(&tokens)?)?;
    Ok(token)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn declaration(regions: &[String]) -> Value {
    let mut variables = vec![
        json!({"name": "region", "type": "categorical", "values": regions, "label": "INSEE région (stratum)"}),
        json!({"name": "psu", "type": "integer", "label": "primary unit (cluster of households)"}),
        json!({"name": "psus_in_region", "type": "integer", "min": 1, "label": "primary units in the stratum (fpc, stage 1)"}),
        json!({"name": "households_in_psu", "type": "integer", "min": 1, "label": "households in the primary unit (fpc, stage 2)"}),
        json!({"name": "weight", "type": "numeric", "min": 0, "label": "design weight"}),
        json!({"name": "size", "type": "integer", "min": 1, "max": 12, "label": "persons in the household"}),
    ];
    for item in &ITEMS {
        variables.push(json!({"name": format!("victim_{}", item.name), "type": "categorical", "values": ["yes", "no"], "required": true, "label": item.label}));
        variables.push(json!({"name": format!("reported_{}", item.name), "type": "categorical", "values": ["yes", "no"], "label": "reported to the police or the gendarmerie"}));
    }
    let items: Vec<Value> = ITEMS
        .iter()
        .map(|item| {
            json!({"name": item.name, "label": item.label, "victim": format!("victim_{}", item.name),
                   "reported": format!("reported_{}", item.name), "iccs": item.iccs})
        })
        .collect();
    json!({
        "wave": WAVE,
        "title": "Synthetic household victimisation survey 2024 (demo)",
        "population": "households",
        "reference_period": {"from": "2024-01-01", "to": "2024-12-31"},
        "respondent_id": "household",
        "design": {
            "weights": "weight",
            "strata": "region",
            "clusters": ["psu", "household"],
            "fpc": ["psus_in_region", "households_in_psu"],
            // A région whose sampled units all fail to answer but one must not stop estimation.
            "lonely_psu": "adjust",
        },
        "variables": variables,
        "victimisation_items": items,
    })
}

struct Sample {
    rows: Vec<Value>,
    final_weights: BTreeMap<String, f64>,
    psus: usize,
    /// Model expectation of victims (and of victims who report) in the population, per item.
    expected: Vec<(f64, f64)>,
    households: f64,
}

/// Draws the sample: per région, `m` of its `M` primary units, then 12 households in each;
/// 15 % do not answer and the answering households of a unit carry its weight.
fn draw(seed: u64, households: f64, reporting: &[f64]) -> Sample {
    let geography = Geography::france();
    let shares: Vec<(String, f64)> = geography
        .regions()
        .iter()
        .filter_map(|r| {
            geography.region_population(&r.code, 2024).map(|(p, _)| (r.code.clone(), p as f64))
        })
        .collect();
    let national: f64 = shares.iter().map(|(_, p)| p).sum();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut rows, mut final_weights, mut psus) = (Vec::new(), BTreeMap::new(), 0usize);
    let mut expected = vec![(0.0, 0.0); ITEMS.len()];
    let mut population = 0.0;
    let mut psu_id = 0i64;
    for (region, people) in &shares {
        let share = people / national;
        // Victimisation is higher in the Paris région, lower overseas (a regional gradient).
        let gradient = match region.as_str() {
            "11" => 1.3,
            r if r.len() == 2 && r.starts_with('0') => 0.8,
            _ => 1.0,
        };
        let units = (POPULATION_PSUS * share).round().max(4.0) as i64;
        let sampled = (SAMPLE_PSUS * share).round().clamp(2.0, units as f64 - 1.0) as i64;
        let mean_size = (households * share / units as f64).max(HOUSEHOLDS_PER_PSU as f64 * 2.0);
        population += mean_size * units as f64;
        for (i, (victimisation, reported)) in expected.iter_mut().enumerate() {
            *victimisation += mean_size * units as f64 * ITEMS[i].victimisation * gradient;
            *reported +=
                mean_size * units as f64 * ITEMS[i].victimisation * gradient * reporting[i];
        }
        for _ in 0..sampled {
            psu_id += 1;
            psus += 1;
            let size = (mean_size * rng.gen_range(0.7..1.3)).round() as i64;
            // Neighbours share risks: a unit-level factor makes answers cluster.
            let local = rng.gen_range(0.5..1.5);
            let mut answering = Vec::new();
            for h in 0..HOUSEHOLDS_PER_PSU {
                if !rng.gen_bool(RESPONSE_RATE) {
                    continue;
                }
                let id = format!("{region}-{psu_id:04}-{h:02}");
                let weight =
                    (units as f64 / sampled as f64) * (size as f64 / HOUSEHOLDS_PER_PSU as f64);
                let mut row = json!({
                    "household": id, "region": region, "psu": psu_id, "psus_in_region": units,
                    "households_in_psu": size, "weight": weight, "size": rng.gen_range(1..=6),
                });
                for (i, item) in ITEMS.iter().enumerate() {
                    let victim = rng.gen_bool((item.victimisation * gradient * local).min(1.0));
                    row[format!("victim_{}", item.name)] = json!(if victim { "yes" } else { "no" });
                    if victim {
                        // A few victims leave the follow-up unanswered.
                        if rng.gen_bool(0.97) {
                            let reported = rng.gen_bool(reporting[i]);
                            row[format!("reported_{}", item.name)] =
                                json!(if reported { "yes" } else { "no" });
                        }
                    }
                }
                answering.push((id, weight));
                rows.push(row);
            }
            // Nonresponse adjustment within the unit (its answering households represent it).
            let adjust = HOUSEHOLDS_PER_PSU as f64 / answering.len().max(1) as f64;
            for (id, weight) in answering {
                final_weights.insert(id, weight * adjust);
            }
        }
    }
    Sample { rows, final_weights, psus, expected, households: population }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    content_type: &str,
    body: String,
) -> Result<Value> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body: Value =
        response.json().await.with_context(|| format!("reading the answer of POST {url}"))?;
    if !status.is_success() {
        bail!("POST {url} answered {status}: {body}");
    }
    Ok(body)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Value> {
    let response = client.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok(body)
}

/// "estimate [lower, upper]", as percentages when `percent`.
fn interval(estimate: &Value, percent: bool) -> String {
    let number = |key: &str| match estimate[key].as_f64() {
        None => "-".to_owned(),
        Some(x) if percent => format!("{:.1}%", 100.0 * x),
        Some(x) => format!("{x:.0}"),
    };
    format!("{} [{}, {}]", number("estimate"), number("ci_lower"), number("ci_upper"))
}

/// Runs after the incident demo: the recorded incidents it projected size the survey.
pub async fn run(args: &DemoArgs, client: &reqwest::Client, base: &str) -> Result<()> {
    let token = token(&args.files)?;
    let mut counts = Vec::new();
    for item in &ITEMS {
        counts.push(recorded(client, base, item.iccs).await?.max(20));
    }
    // Households such that victims × reporting rate of the first item = its recorded incidents.
    let first = &ITEMS[0];
    let households = counts[0] as f64
        / (first.victimisation * first.reporting.expect("the first item fixes the scale"));
    let reporting: Vec<f64> = ITEMS
        .iter()
        .zip(&counts)
        .map(|(item, count)| {
            item.reporting
                .unwrap_or((*count as f64 / (households * item.victimisation)).clamp(0.05, 0.9))
        })
        .collect();
    let sample = draw(args.seed.wrapping_add(1), households, &reporting);
    let geography = Geography::france();
    let regions: Vec<String> = geography.regions().iter().map(|r| r.code.clone()).collect();

    let waves = format!("{base}/v1/surveys/{SURVEY}/waves");
    let declared =
        post(client, &waves, &token, "application/json", declaration(&regions).to_string()).await?;
    let mut sequence = declared["last_sequence"].as_u64().unwrap_or(0);
    let (mut accepted, mut duplicates) = (0, 0);
    for batch in sample.rows.chunks(500) {
        let body: String = batch.iter().map(|row| format!("{row}\n")).collect();
        let answer = post(
            client,
            &format!("{waves}/{WAVE}/responses"),
            &token,
            "application/x-ndjson",
            body,
        )
        .await?;
        if let Some(rejected) = answer["rejected"].as_array().filter(|r| !r.is_empty()) {
            bail!("the survey ingest rejected demo rows: {}", Value::Array(rejected.clone()));
        }
        accepted += answer["accepted"].as_u64().unwrap_or(0);
        duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        sequence = sequence.max(answer["last_sequence"].as_u64().unwrap_or(0));
    }
    let closed = post(
        client,
        &format!("{waves}/{WAVE}/close"),
        &token,
        "application/json",
        json!({"final_weights": sample.final_weights}).to_string(),
    )
    .await?;
    sequence = sequence.max(closed["last_sequence"].as_u64().unwrap_or(0));
    println!(
        "\nsurvey {SURVEY} wave {WAVE}: {accepted} households answered ({duplicates} duplicates) in {} primary units, \
         {} régions as strata; closed with nonresponse-adjusted final weights",
        sample.psus,
        regions.len()
    );
    println!(
        "synthetic population: {:.0} households (sized from the incidents pn and gn recorded in 2024)\n",
        sample.households
    );

    println!(
        "{:<10} {:>14} {:>30} {:>14} {:>28} {:>10}",
        "item",
        "model victims",
        "estimated victims [95% CI]",
        "model rate",
        "reporting rate [95% CI]",
        "recorded"
    );
    for (i, item) in ITEMS.iter().enumerate() {
        let url = format!(
            "{base}/v1/surveys/{SURVEY}/dark-figure?wave={WAVE}&item={}&source={POLICE}&min_sequence={sequence}",
            item.name
        );
        let dark = get(client, &url).await?;
        let estimates = &dark["survey_estimates"];
        println!(
            "{:<10} {:>14.0} {:>30} {:>13.1}% {:>28} {:>10}",
            item.name,
            sample.expected[i].0,
            interval(&estimates["victims"], false),
            100.0 * reporting[i],
            interval(&estimates["reporting_rate"], true),
            dark["recorded_incidents"]["count"],
        );
    }
    let example =
        format!("{base}/v1/surveys/{SURVEY}/dark-figure?wave={WAVE}&item=fraud&source={POLICE}");
    let caveat = get(client, &example).await?["caveats"][0].as_str().unwrap_or_default().to_owned();
    println!("\n{caveat}");
    println!("\nTry:");
    println!(
        "  curl '{base}/v1/surveys/{SURVEY}/estimates?wave={WAVE}&stat=prop&var=victim_fraud&by=region&ci=logit'"
    );
    println!("  curl '{base}/v1/surveys/{SURVEY}/reporting-rate?wave={WAVE}&item=hacking'");
    println!("  curl '{example}'");
    Ok(())
}
