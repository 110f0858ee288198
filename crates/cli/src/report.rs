//! `observatory report`: builds a monthly or annual report from one release's public answers
//! (asked of the query router in-process, exactly as the public asks over HTTP), typesets it,
//! and publishes its files create-only under `reports/<kind>/<period>/<release>/` in the
//! object store, and to `--out` when given.

use std::path::Path;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use indicatif::{ProgressBar, ProgressStyle};
use observatory_report::{Files, Kind, Period, Source, SourceError};
use observatory_store::{ReportKey, Reports, Store, Written, release_number};
use serde_json::Value;
use tower::ServiceExt;

use crate::config::{QuerySettings, ReportArgs};

/// The query API as a report source: each request goes through the router in this process,
/// without a token (the public tier).
pub struct InProcess(pub Router);

impl Source for InProcess {
    async fn get(&self, path: &str) -> Result<Value, SourceError> {
        let fail = |status: u16, message: String| SourceError {
            request: path.to_owned(),
            status,
            message,
        };
        let request =
            Request::get(path).body(Body::empty()).map_err(|e| fail(400, e.to_string()))?;
        let response =
            self.0.clone().oneshot(request).await.map_err(|e| fail(500, e.to_string()))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| fail(status.as_u16(), e.to_string()))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(status.as_u16(), format!("not JSON: {e}")))?;
        if !status.is_success() {
            let message =
                value.get("error").and_then(Value::as_str).unwrap_or("no message").to_owned();
            return Err(fail(status.as_u16(), message));
        }
        Ok(value)
    }
}

/// What one run published.
pub struct Published {
    pub key: ReportKey,
    pub written: Written,
    pub files: Files,
}

/// Builds and publishes the report of `kind` for `period` from `release` (a new release when
/// none is given). `progress` shows the steps on a terminal.
pub async fn publish(
    settings: &QuerySettings,
    kind: Kind,
    period: Period,
    release: Option<String>,
    progress: &ProgressBar,
) -> Result<Published> {
    let store = Store::open(&settings.store)?;
    let release = match release {
        Some(id) => {
            let known = observatory_store::Releases::new(store.clone()).get(&id).await?;
            if known.is_none() {
                bail!(
                    "no release '{id}' in {}; list them with `observatory release list`, or leave --release out to create one",
                    settings.store
                );
            }
            id
        }
        None => {
            // A release of nothing would be published for ever: refuse before making one.
            let incidents = observatory_store::Projection::new(
                store.clone(),
                observatory_store::ProjectionId::Incidents,
            );
            if incidents.serving_manifest().await?.is_none() {
                bail!(
                    "nothing is projected in {} yet, so there is nothing to release or report: start `observatory up` \
                     (or `observatory project`) and let the agencies' feeds arrive, then run the report again",
                    settings.store
                );
            }
            progress.set_message("creating a release");
            let release = observatory_query::create_release(
                &store,
                &settings.disclosure.policy,
                Some(format!("{kind} report {period}")),
                None,
            )
            .await?;
            release.id
        }
    };
    let reports = Reports::new(store.clone());
    // The previous report of this kind: the one from the newest release before this one.
    let previous = reports
        .list()
        .await?
        .into_iter()
        .filter(|k| k.kind == kind.name() && release_number(&k.release) < release_number(&release))
        .max_by_key(|k| release_number(&k.release))
        .map(|k| k.release);
    progress.set_message(format!("reading release {release}"));
    let (router, _) = crate::serve::query_router(settings, false)?;
    let request = observatory_report::Request {
        period,
        release: release.clone(),
        previous: previous.clone(),
    };
    let document = observatory_report::build(&InProcess(router), &request).await?;
    progress.set_message("typesetting the PDF");
    let doc = document.clone();
    let pdf = tokio::task::spawn_blocking(move || observatory_report_pdf::render(&doc)).await??;
    progress.set_message("writing the files");
    let generator = format!("observatory {}", env!("CARGO_PKG_VERSION"));
    let files = Files::assemble(&document, pdf, previous, &generator)?;
    let key = ReportKey { kind: kind.name().to_owned(), period: period.code(), release };
    let written = reports.write(&key, files.all()).await?;
    Ok(Published { key, written, files })
}

pub async fn run(args: &ReportArgs) -> Result<()> {
    let kind: Kind = args.kind.parse()?;
    let period = Period::parse(kind, &args.period)?;
    let settings = args.query()?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let published = publish(&settings, kind, period, args.release.clone(), &progress).await;
    progress.finish_and_clear();
    let published = published?;
    if let Some(out) = &args.out {
        write_out(out, &published.files)?;
    }
    let location = format!(
        "{}/reports/{}/{}/{}/",
        settings.store.trim_end_matches('/'),
        published.key.kind,
        published.key.period,
        published.key.release
    );
    eprintln!(
        "report {} {} from release {} {} {location}{}",
        published.key.kind,
        published.key.period,
        published.key.release,
        match published.written {
            Written::Created => "published to",
            Written::AlreadyThere => "was already published, byte for byte, at",
        },
        args.out.as_ref().map(|o| format!(" and written to {}", o.display())).unwrap_or_default()
    );
    println!("{}", serde_json::to_string_pretty(&published.files.manifest)?);
    Ok(())
}

fn write_out(out: &Path, files: &Files) -> Result<()> {
    for (name, bytes) in files.all() {
        let path = out.join(&name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
