//! Wiring of the services: which parts run in this process, on which address.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use indicatif::{ProgressBar, ProgressStyle};
use observatory_bus::{Bus, LocalNatsServer};
use observatory_ingest::{AgencyRegistry, IngestState};
use observatory_projector::IncidentSink;
use observatory_query::{CountsEngine, QueryState, Vintages};
use observatory_store::ProjectionId;
use observatory_store::Releases;
use observatory_store::{Projection, Store};
use serde_json::json;
use tokio::sync::watch;
use tracing::info;

use crate::allocator;
use crate::config::{
    IngestArgs, IngestSettings, NatsSettings, ProjectArgs, ProjectServeArgs, ProjectorSettings,
    QueryArgs, QuerySettings, SchedulerArgs, UpArgs,
};
use crate::ops;

/// The nats-server `up` started, if any; stopped (and its URL file removed) on drop.
struct OwnedNats {
    _server: LocalNatsServer,
    url_file: std::path::PathBuf,
}

impl Drop for OwnedNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.url_file);
    }
}

async fn connect(nats: &NatsSettings, url: String) -> Result<Bus> {
    Bus::connect(nats.bus_config(url)?).await.context("connecting to NATS JetStream")
}

fn projection(store: &str) -> Result<Projection> {
    let store = Store::open(store)?;
    Ok(Projection::new(store, ProjectionId::Incidents))
}

/// What the start-up line of a process serving the query API suggests to try.
const COUNTS: &str = "/v1/incidents/counts?by=year";

/// Resolves on Ctrl-C or SIGTERM.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The ingest's endpoints, and its parts for `/health/ready` (ready once their loading is done).
fn ingest_part(settings: &IngestSettings, bus: &Bus) -> Result<(Router, ops::Parts)> {
    let (agencies, config) = (&settings.agencies, &settings.config);
    let registry = AgencyRegistry::open(agencies)?;
    let state = Arc::new(IngestState::new(registry, bus.clone(), config));
    let (survey_router, surveys) = crate::surveys::ingest(agencies, bus, config)?;
    let router = observatory_ingest::router(state.clone(), config).merge(survey_router);
    let parts = ops::Parts {
        nats: Some(bus.clone()),
        ingest: Some((state.clone(), surveys.clone())),
        projections: Vec::new(),
        counts: None,
    };
    let loader = state.clone();
    let bus = bus.clone();
    tokio::spawn(async move {
        // Surveys and the NATS feeds first: /health turns 200 with the incident ingest, by
        // then all three are ready.
        crate::surveys::load(&surveys).await;
        if let Err(error) = observatory_ingest::relay::start(loader.clone(), &bus).await {
            tracing::error!(%error, "cannot relay the agencies' NATS feeds; ingest stays unavailable");
            return;
        }
        match loader.load().await {
            Ok((events, revisions)) => {
                info!(events, revisions, "legacy incident subjects read; ingest ready")
            }
            Err(error) => {
                tracing::error!(%error, "cannot read the legacy incident subjects; ingest stays unavailable")
            }
        }
    });
    Ok((router, parts))
}

/// The query API: counts, coverage, releases, SDMX, surveys, reports and the front page, and
/// the counts engine behind it. A service nets each new manifest in the background
/// ([`CountsEngine::keep_netted`], started here); a one-off reader (a report) does not.
pub fn query_router(
    settings: &QuerySettings,
    serving: bool,
) -> Result<(Router, Arc<CountsEngine>)> {
    let incidents = projection(&settings.store)?;
    let store = incidents.store().clone();
    let reports = observatory_query::ReportsState::new(store.clone());
    let engine = Arc::new(CountsEngine::new(incidents));
    if serving {
        if settings.netting_nice > 0 {
            match observatory_query::lower_polars_pool(settings.netting_nice) {
                Ok(threads) => {
                    info!(
                        threads,
                        by = settings.netting_nice,
                        "polars' pool runs below the request handlers"
                    )
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot lower polars' pool; a netting may slow the requests beside it")
                }
            }
        }
        let engine = engine.clone();
        tokio::spawn(async move { engine.keep_netted().await });
    }
    let state = Arc::new(QueryState {
        engine: engine.clone(),
        config: settings.config.clone(),
        disclosure: settings.disclosure.clone(),
        vintages: Vintages::new(Releases::new(store)),
    });
    let router = observatory_query::router(state)
        .merge(crate::surveys::query(settings, engine.clone())?)
        .merge(observatory_query::reports_router(reports));
    Ok((router, engine))
}

/// The projections a query or a projector reads or writes, for `/health/ready`.
fn projections(store: &str) -> Result<Vec<Projection>> {
    Ok(vec![projection(store)?, crate::surveys::projection(store)?])
}

/// `/openapi.json`, `/health` (200 once the ingest, if any, has loaded; kept for the probes
/// written before `/health/ready`), and `/metrics`, `/health/live`, `/health/ready` of `parts`.
fn health(parts: ops::Parts) -> Router {
    let ingest = parts.ingest.as_ref().map(|(incidents, _)| incidents.clone());
    crate::openapi::router().merge(ops::router(parts)).route(
        "/health",
        get(move || {
            let ingest = ingest.clone();
            async move {
                match ingest {
                    Some(state) if !state.is_ready() => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(
                            json!({"status": "starting", "ingest": "loading idempotency index"}),
                        ),
                    )
                        .into_response(),
                    _ => axum::Json(json!({"status": "ok"})).into_response(),
                }
            }
        }),
    )
}

/// Serves `app` on `http` until `stop`; the start-up line suggests `try_path`.
async fn serve_http(
    http: &str,
    try_path: &str,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Every answer is JSON, a wrong path or method too.
    let app = app
        .fallback(|uri: axum::http::Uri| async move {
            let message = format!(
                "no endpoint at {}; the API is under /v1 and /sdmx/v2 (e.g. GET /v1/incidents/counts, POST /v1/incidents); GET /openapi.json lists every endpoint",
                uri.path()
            );
            (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({"error": message, "status": 404})))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            let message = format!("{method} is not allowed on {}", uri.path());
            (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({"error": message, "status": 405})))
        })
        .layer(axum::middleware::from_fn(ops::timed))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let address = listener.local_addr()?;
    info!(%address, "listening");
    // A JSON log is one object per line: the log line above says it there.
    if !crate::logging::json() {
        eprintln!(
            "observatory listening on http://{address}  (try: curl 'http://{address}{try_path}')"
        );
    }
    axum::serve(listener, app).with_graceful_shutdown(stop).await?;
    Ok(())
}

pub async fn up(args: &UpArgs) -> Result<()> {
    let data_dir = &args.data.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let nats = args.nats();
    let (url, _owned) = match &nats.explicit_url {
        Some(url) => (url.clone(), None),
        None => {
            let server = LocalNatsServer::start(&data_dir.join("nats"), 0)?;
            let url = server.url();
            std::fs::write(&nats.url_file, &url)?;
            info!(%url, pid = server.pid(), "started nats-server");
            (url, Some(OwnedNats { _server: server, url_file: nats.url_file.clone() }))
        }
    };
    let bus = connect(&nats, url).await?;
    let settings = args.projector()?;
    let projection = projection(&settings.store)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut projector = {
        let (bus, projection, config) = (bus.clone(), projection.clone(), settings.config.clone());
        let surveys =
            crate::surveys::projector(&settings.store, &bus, config.clone(), stop_rx.clone())?;
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let incidents = async {
                observatory_projector::serve::<IncidentSink>(
                    &bus,
                    &projection,
                    &config,
                    async move {
                        let _ = stop_rx.wait_for(|stop| *stop).await;
                    },
                )
                .await
                .context("incident projector stopped")
            };
            tokio::try_join!(incidents, surveys).map(|_| ())
        })
    };
    let (ingest_router, mut parts) = ingest_part(&args.ingest(), &bus)?;
    parts.projections = projections(&settings.store)?;
    let (query, counts) = query_router(&args.query()?, true)?;
    parts.counts = Some(counts);
    let app = Router::new().merge(ingest_router).merge(query).merge(health(parts));
    let schedules = crate::scheduler::load(&args.reports_config(), false)?;
    let scheduler = tokio::spawn(crate::scheduler::run(args.query()?, schedules, stop_rx.clone()));

    let mut http_stop = stop_rx.clone();
    let http = {
        let address = args.http.http.clone();
        tokio::spawn(async move {
            serve_http(&address, COUNTS, app, async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            })
            .await
        })
    };
    let projector_result = tokio::select! {
        _ = termination() => None,
        result = &mut projector => Some(result),
    };
    let _ = stop_tx.send(true);
    http.await??;
    scheduler.await??;
    let result = match projector_result {
        Some(result) => result,
        None => projector.await,
    };
    result?.context("projector stopped")?;
    info!("stopped");
    Ok(())
}

pub async fn ingest_only(args: &IngestArgs) -> Result<()> {
    let nats = args.nats();
    let bus = connect(&nats, nats.resolved_url()).await?;
    let (router, parts) = ingest_part(&args.ingest(), &bus)?;
    serve_http(&args.http.http, "/health/ready", router.merge(health(parts)), termination()).await
}

pub async fn query_only(args: &QueryArgs) -> Result<()> {
    let settings = args.query()?;
    // Before the first netting, so that its memory serves the next.
    allocator::set_freed_memory(args.memory.freed_memory);
    // Read back from mimalloc, so the log says what the allocator holds.
    info!(freed_memory = ?allocator::freed_memory(), "what becomes of memory the service frees");
    let (query, counts) = query_router(&settings, true)?;
    let parts = ops::Parts {
        projections: projections(&settings.store)?,
        counts: Some(counts),
        ..Default::default()
    };
    let app = query.merge(health(parts));
    serve_http(&args.http.http, COUNTS, app, termination()).await
}

/// `observatory scheduler`: the report schedules alone, until SIGTERM.
pub async fn scheduler_only(args: &SchedulerArgs) -> Result<()> {
    let schedules = crate::scheduler::load(&args.reports_config(), true)?;
    info!(schedules = schedules.len(), "report scheduler started");
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        let _ = stop_tx.send(true);
    });
    crate::scheduler::run(args.query()?, schedules, stop_rx).await
}

/// `observatory project`: the projectors, and with `--metrics-http` their metrics and health.
pub async fn project_only(serve: &ProjectServeArgs) -> Result<()> {
    let args = &serve.projector;
    let nats = args.nats();
    let bus = connect(&nats, nats.resolved_url()).await?;
    let projector = args.projector()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination().await;
        let _ = stop_tx.send(true);
    });
    let metrics_http = match &serve.metrics.metrics_http {
        Some(address) => {
            let parts = ops::Parts {
                nats: Some(bus.clone()),
                ingest: None,
                projections: projections(&projector.store)?,
                counts: None,
            };
            let (address, mut stop) = (address.clone(), stop_rx.clone());
            Some(tokio::spawn(async move {
                serve_http(&address, "/metrics", health(parts), async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
            }))
        }
        None => None,
    };
    let surveys = crate::surveys::projector(
        &projector.store,
        &bus,
        projector.config.clone(),
        stop_rx.clone(),
    )?;
    let mut stop_rx = stop_rx;
    let incidents = async {
        observatory_projector::serve::<IncidentSink>(
            &bus,
            &projection(&projector.store)?,
            &projector.config,
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            },
        )
        .await
        .context("incident projector stopped")
    };
    tokio::try_join!(incidents, surveys)?;
    if let Some(listener) = metrics_http {
        listener.await??;
    }
    Ok(())
}

pub async fn rebuild(args: &ProjectArgs) -> Result<()> {
    let (bus, projector, config) = replay_setup(args).await?;
    let projection = projection(&projector.store)?;
    let (version, sequence) = replay_reporting::<IncidentSink>(&bus, &projection, &config).await?;
    let manifest = projection.newest_manifest(version).await?;
    let counted =
        manifest.as_ref().and_then(|m| m.stats.get("incidents_counted").copied()).unwrap_or(0);
    println!(
        "rebuilt incidents v{version} up to sequence {sequence}: {counted} incidents counted; CURRENT now v{version}"
    );
    crate::surveys::rebuild(&projector.store, &bus, &config).await?;
    Ok(())
}

/// `observatory bench`'s projection floor (hidden): the rebuild's reading, decoding and state
/// rows to Parquet without the fold, in a process shaped like `rebuild`'s.
pub async fn projection_floor(args: &ProjectArgs) -> Result<()> {
    let (bus, projector, config) = replay_setup(args).await?;
    let projection = projection(&projector.store)?;
    let (version, sequence) =
        replay_reporting::<observatory_bench::ProjectionFloor>(&bus, &projection, &config).await?;
    println!("projection floor v{version} up to sequence {sequence}: state rows, no fold");
    Ok(())
}

async fn replay_setup(
    args: &ProjectArgs,
) -> Result<(Bus, ProjectorSettings, observatory_projector::ProjectorConfig)> {
    let nats = args.nats();
    let bus = connect(&nats, nats.resolved_url()).await?;
    let projector = args.projector()?;
    // A replay commits once a state file would be sealed anyway (`max_state_file_rows`): its
    // files are born final and are never merged again, and each flush costs the same.
    let mut config = projector.config.clone();
    config.max_pending =
        usize::try_from(config.compaction.max_state_file_rows).unwrap_or(usize::MAX);
    Ok((bus, projector, config))
}

/// Replays the stream into a new version of `projection` with a progress bar, then prints how
/// long it waited for nats-server (`observatory bench` reads that line back).
async fn replay_reporting<S: observatory_projector::Folding>(
    bus: &Bus,
    projection: &Projection,
    config: &observatory_projector::ProjectorConfig,
) -> Result<(u32, u64)> {
    let total = bus.last_sequence().await?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rebuild [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let mut last = None;
    let (version, sequence) =
        observatory_projector::replay::<S>(bus, projection, config, |progress| {
            bar.set_position(progress.applied_sequence);
            last = Some(progress);
        })
        .await?;
    bar.finish_and_clear();
    if let Some(progress) = last {
        // Time the replay spent waiting for nats-server rather than folding: what separates
        // two runs of one rebuild that differ in wall time but not in CPU.
        println!(
            "waited for the stream {:.2} s, {} stalls over {} ms, the longest {:.2} s; \
             consumer recreated {} times",
            progress.waited_for_stream.as_secs_f64(),
            progress.stream_stalls,
            observatory_projector::STALL.as_millis(),
            progress.longest_wait.as_secs_f64(),
            progress.consumer_resumes
        );
    }
    Ok((version, sequence))
}
