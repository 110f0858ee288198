//! The dissemination formats timed beside the JSON answer that carries the same cells: for each
//! pair, `/v1/incidents/counts` in JSON, then the same cells as SDMX-ML 3.0, SDMX-CSV 2.0 and
//! SDMX-JSON 2.0 (`/sdmx/v2/data/...`) and as JSON-stat, requested in turn as the public so
//! that every format sees the same machine state. The target: each format at most 1.2× the
//! JSON time.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::measure::Latency;

const WARMUP: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct FormatTiming {
    pub format: String,
    pub request: String,
    pub latency: Latency,
    /// This format's p50 over the JSON p50 of the same cells.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FormatResult {
    pub name: String,
    pub label: String,
    pub json_request: String,
    pub json: Latency,
    pub formats: Vec<FormatTiming>,
}

async fn timed(client: &reqwest::Client, url: &str) -> Result<f64> {
    let started = std::time::Instant::now();
    let response = client.get(url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The pairs: a counts request and the SDMX key of the same cells.
fn pairs(unit: &str) -> Vec<(&'static str, &'static str, String, String)> {
    let sections: Vec<&str> = observatory_reference::Iccs::v1_0()
        .iter()
        .filter(|e| e.code.len() == 2)
        .map(|e| e.code.as_str())
        .collect();
    vec![
        (
            "by_month",
            "national, by month",
            format!("by=month&unit={unit}"),
            format!("M.FR._T._T._T._T._T.{unit}"),
        ),
        (
            "by_year_iccs_section",
            "by year and ICCS section",
            format!("by=year,iccs_section&unit={unit}"),
            format!("A.FR.{}._T._T._T._T.{unit}", sections.join("+")),
        ),
    ]
}

pub async fn run(client: &reqwest::Client, base: &str, runs: usize) -> Result<Vec<FormatResult>> {
    let units: Value = serde_json::from_slice(
        &client.get(format!("{base}/v1/incidents/counts?by=unit")).send().await?.bytes().await?,
    )?;
    let unit = units["rows"][0]["unit"]
        .as_str()
        .context(
            "the public counts by unit list no unit: in so small a stream every cell can be published \
             as zero, which leaves no cells to time the formats on; run the query stage with more --events",
        )?
        .to_owned();
    let mut results = Vec::new();
    for (name, label, counts, key) in pairs(&unit) {
        let json_url = format!("{base}/v1/incidents/counts?{counts}");
        let sdmx = format!("{base}/sdmx/v2/data/dataflow/OBSERVATORY/INCIDENTS/1.0/{key}");
        let variants = [
            ("SDMX-ML 3.0", format!("{sdmx}?format=xml")),
            ("SDMX-CSV 2.0", format!("{sdmx}?format=csv")),
            ("SDMX-JSON 2.0", format!("{sdmx}?format=json")),
            ("JSON-stat 2.0", format!("{json_url}&format=jsonstat")),
        ];
        let mut json_samples = Vec::with_capacity(runs);
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); variants.len()];
        for i in 0..WARMUP + runs {
            let ms = timed(client, &json_url).await?;
            if i >= WARMUP {
                json_samples.push(ms);
            }
            for (v, (_, url)) in variants.iter().enumerate() {
                let ms = timed(client, url).await?;
                if i >= WARMUP {
                    samples[v].push(ms);
                }
            }
        }
        let json = Latency::of(&json_samples).context("no samples")?;
        let formats = variants
            .iter()
            .zip(samples)
            .map(|((format, url), samples)| {
                let latency = Latency::of(&samples).context("no samples")?;
                Ok(FormatTiming {
                    format: (*format).to_owned(),
                    request: url.trim_start_matches(base).to_owned(),
                    p50_ratio: latency.p50_ms / json.p50_ms,
                    p99_ratio: latency.p99_ms / json.p99_ms,
                    latency,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        results.push(FormatResult {
            name: name.to_owned(),
            label: label.to_owned(),
            json_request: json_url.trim_start_matches(base).to_owned(),
            json,
            formats,
        });
    }
    Ok(results)
}
