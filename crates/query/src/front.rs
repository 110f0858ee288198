//! The front page, `GET /`: one HTML document with no script, no build step and no CDN. It
//! shows the newest releases, the newest report of each kind with its charts (the SVG the
//! report itself carries, inline) and links to its files, and where the API and the SDMX
//! endpoint are.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::reports::ReportsState;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:Georgia,'Libertinus Serif',serif;margin:0;color:#1f2933;background:#fafbfc}\
header{background:#08519c;color:#fff;padding:1.2rem 2rem}header h1{margin:0;font-size:1.6rem}\
header p{margin:.3rem 0 0;opacity:.9}main{max-width:1100px;margin:0 auto;padding:1rem 2rem 3rem}\
h2{color:#08519c;border-bottom:1px solid #d9dee3;padding-bottom:.3rem}\
table{border-collapse:collapse;width:100%;font-size:.95rem}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e4e7eb}\
.report{background:#fff;border:1px solid #d9dee3;border-radius:6px;padding:1rem 1.4rem;margin:1rem 0}\
.figures{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.figures figure{margin:0;flex:1 1 420px}\
.figures svg{width:100%;height:auto}figcaption{font-size:.85rem;color:#52606d}\
.files a{margin-right:1rem}code{background:#eef2f6;padding:.1rem .3rem;border-radius:3px}\
.empty{color:#52606d;font-style:italic}";

pub async fn page(State(state): State<ReportsState>) -> Result<Response, ApiError> {
    let internal = |e: observatory_store::StoreError| {
        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    };
    let releases = state.releases.list().await.map_err(internal)?;
    let reports = state.list().await?;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>National cybercrime observatory</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head><body>\
         <header><h1>National cybercrime observatory</h1><p>Recorded cybercrime from every agency's feeds, harmonised in ICCS, \
         beside the victimisation survey. Public figures are perturbed for disclosure control.</p></header><main>"
    );

    html.push_str("<h2>Reports</h2>");
    let mut shown = 0;
    for kind in crate::reports::KINDS {
        let Some(report) = reports.iter().find(|r| r["kind"] == kind) else { continue };
        shown += 1;
        let text = |k: &str| report[k].as_str().unwrap_or_default().to_owned();
        let _ = write!(
            html,
            "<section class=\"report\"><h3>{}</h3><p>{} report, period {}, from release <code>{}</code> (committed {}).</p>",
            escape(&text("title")),
            escape(kind),
            escape(&text("period")),
            escape(&text("release")),
            escape(&text("created"))
        );
        let document = match report["files"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "report.json"))
        {
            Some(_) => {
                let key = observatory_store::ReportKey {
                    kind: kind.to_owned(),
                    period: text("period"),
                    release: text("release"),
                };
                state
                    .file(&key, "report.json")
                    .await?
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            }
            None => None,
        };
        if let Some(document) = document {
            html.push_str("<div class=\"figures\">");
            for block in document["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "figure")
            {
                let id = block["id"].as_str().unwrap_or_default();
                let svg = document["figures"]
                    .as_array()
                    .and_then(|f| f.iter().find(|f| f["id"] == id))
                    .and_then(|f| f["svg"].as_str());
                if let Some(svg) = svg {
                    // The SVG is the report's own, written by our code from numbers: safe inline.
                    let _ = write!(
                        html,
                        "<figure>{svg}<figcaption>{}</figcaption></figure>",
                        escape(block["caption"].as_str().unwrap_or_default())
                    );
                }
            }
            html.push_str("</div>");
        }
        html.push_str("<p class=\"files\">");
        for file in report["files"].as_array().into_iter().flatten() {
            let name = file["name"].as_str().unwrap_or_default();
            if name.starts_with("tables/") || name == "report.json" {
                continue;
            }
            let _ = write!(
                html,
                "<a href=\"{}\">{}</a>",
                escape(file["href"].as_str().unwrap_or_default()),
                escape(name)
            );
        }
        let _ = write!(
            html,
            "<a href=\"{}\">manifest.json</a></p></section>",
            escape(report["manifest"].as_str().unwrap_or_default())
        );
    }
    if shown == 0 {
        html.push_str("<p class=\"empty\">No report is published yet: <code>observatory report --kind monthly --period YYYY-MM</code> makes one, and the schedules in <code>reports.toml</code> make them on time.</p>");
    }
    let _ = write!(
        html,
        "<p><a href=\"/v1/reports\">Every report</a> ({} published)</p>",
        reports.len()
    );

    html.push_str("<h2>Releases</h2>");
    if releases.is_empty() {
        html.push_str("<p class=\"empty\">No release yet.</p>");
    } else {
        html.push_str("<table><thead><tr><th>release</th><th>name</th><th>committed</th><th>incident events</th></tr></thead><tbody>");
        for release in releases.iter().take(10) {
            let sequence = release.projections.get("incidents").map_or(0, |m| m.last_sequence);
            let _ = write!(
                html,
                "<tr><td><a href=\"/v1/releases/{0}\"><code>{0}</code></a></td><td>{1}</td><td>{2}</td><td>{3}</td></tr>",
                escape(&release.id),
                escape(&release.name),
                release.created_at.to_rfc3339(),
                sequence
            );
        }
        html.push_str("</tbody></table>");
    }

    html.push_str(
        "<h2>Data</h2><table><tbody>\
         <tr><td>Counts API</td><td><a href=\"/v1/incidents/counts?by=month&amp;unit=offence\"><code>GET /v1/incidents/counts</code></a> (JSON, CSV, JSON-stat 2.0, Arrow, Parquet)</td></tr>\
         <tr><td>SDMX REST v2</td><td><a href=\"/sdmx/v2/structure/dataflow\"><code>/sdmx/v2/</code></a> (SDMX-ML 3.0, SDMX-CSV 2.0, SDMX-JSON 2.0)</td></tr>\
         <tr><td>Survey estimates</td><td><a href=\"/v1/surveys\"><code>GET /v1/surveys</code></a></td></tr>\
         <tr><td>Releases</td><td><a href=\"/v1/releases\"><code>GET /v1/releases</code></a></td></tr>\
         <tr><td>OpenAPI 3.1</td><td><a href=\"/openapi.json\"><code>/openapi.json</code></a></td></tr>\
         </tbody></table></main></body></html>",
    );
    let mut response = html.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    Ok(response)
}
