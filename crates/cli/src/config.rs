//! The services' configuration, built in one place from the flag blocks of each command: which
//! blocks a command takes decides which flags its `--help` shows.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use observatory_bus::BusConfig;
use observatory_ingest::IngestConfig;
use observatory_projector::ProjectorConfig;
use observatory_query::QueryConfig;

use crate::flags::{
    AgencyFile, BodyLimit, CrosswalkVersions, DataDir, DisclosureSecret, HttpListener, Logging,
    MetricsHttp, Nats, ObjectStore, ProjectorTuning, QueryFlags, QueryMemory, ReaderFile,
    ReportsConfig,
};

/// Flags of `up`: every service in one process.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
    #[command(flatten)]
    pub agencies: AgencyFile,
    #[command(flatten)]
    pub nats: Nats,
    #[command(flatten)]
    pub http: HttpListener,
    #[command(flatten)]
    pub body: BodyLimit,
    #[command(flatten)]
    pub projector: ProjectorTuning,
    #[command(flatten)]
    pub query: QueryFlags,
    #[command(flatten)]
    pub crosswalks: CrosswalkVersions,
    #[command(flatten)]
    pub disclosure: DisclosureSecret,
    #[command(flatten)]
    pub readers: ReaderFile,
    #[command(flatten)]
    pub reports: ReportsConfig,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `report`: one report from one release.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// monthly or annual.
    #[arg(long, env = "OBSERVATORY_REPORT_KIND")]
    pub kind: String,
    /// The period: YYYY-MM for a monthly report, YYYY for an annual one.
    #[arg(long, env = "OBSERVATORY_REPORT_PERIOD")]
    pub period: String,
    /// The release to report from (default: create one now).
    #[arg(long, env = "OBSERVATORY_REPORT_RELEASE")]
    pub release: Option<String>,
    /// Also write the files into this directory.
    #[arg(long, env = "OBSERVATORY_REPORT_OUT")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
    #[command(flatten)]
    pub disclosure: DisclosureSecret,
    #[command(flatten)]
    pub readers: ReaderFile,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `scheduler`: the report schedules alone.
#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
    #[command(flatten)]
    pub disclosure: DisclosureSecret,
    #[command(flatten)]
    pub readers: ReaderFile,
    #[command(flatten)]
    pub reports: ReportsConfig,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `ingest`: the feed endpoints alone.
#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub agencies: AgencyFile,
    #[command(flatten)]
    pub nats: Nats,
    #[command(flatten)]
    pub http: HttpListener,
    #[command(flatten)]
    pub body: BodyLimit,
    #[command(flatten)]
    pub crosswalks: CrosswalkVersions,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `project`: the projector alone, and where it serves its metrics and health.
#[derive(Args, Debug, Clone)]
pub struct ProjectServeArgs {
    #[command(flatten)]
    pub projector: ProjectArgs,
    #[command(flatten)]
    pub metrics: MetricsHttp,
}

/// Flags of `project` and `rebuild`: the projector alone.
#[derive(Args, Debug, Clone)]
pub struct ProjectArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
    #[command(flatten)]
    pub nats: Nats,
    #[command(flatten)]
    pub projector: ProjectorTuning,
    #[command(flatten)]
    pub crosswalks: CrosswalkVersions,
    #[command(flatten)]
    pub disclosure: DisclosureSecret,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `query`: the statistical API alone.
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
    #[command(flatten)]
    pub http: HttpListener,
    #[command(flatten)]
    pub query: QueryFlags,
    #[command(flatten)]
    pub memory: QueryMemory,
    #[command(flatten)]
    pub disclosure: DisclosureSecret,
    #[command(flatten)]
    pub readers: ReaderFile,
    #[command(flatten)]
    pub logging: Logging,
}

/// Flags of `release create|list`: where the store is, and the policy in force.
#[derive(Args, Debug, Clone)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub store: ObjectStore,
}

impl ReleaseArgs {
    pub fn store(&self) -> String {
        self.store.location(&self.data)
    }
}

/// Flags of `reader add|list`: where the readers file is.
#[derive(Args, Debug, Clone)]
pub struct ReaderArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub readers: ReaderFile,
}

impl ReaderArgs {
    pub fn path(&self) -> PathBuf {
        self.readers.path(&self.data)
    }
}

/// Flags of `agency add|list` and of the demo: where the agencies file is.
#[derive(Args, Debug, Clone)]
pub struct AgencyArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub agencies: AgencyFile,
}

impl AgencyArgs {
    pub fn path(&self) -> PathBuf {
        self.agencies.path(&self.data)
    }
}

/// How to reach NATS: an explicit URL, else the one `up` recorded, else the NATS default.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub explicit_url: Option<String>,
    /// Where `up` records the URL of the nats-server it starts.
    pub url_file: PathBuf,
    /// The stream settings, with the URL still to be filled in.
    bus: BusConfig,
    nkey_file: Option<PathBuf>,
}

impl NatsSettings {
    /// The explicit URL, else the one `up` recorded, else the NATS default.
    pub fn resolved_url(&self) -> String {
        if let Some(url) = &self.explicit_url {
            return url.clone();
        }
        std::fs::read_to_string(&self.url_file)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
    }

    pub fn bus_config(&self, url: String) -> anyhow::Result<BusConfig> {
        let nkey_seed = match &self.nkey_file {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the NATS NKey seed {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
        };
        Ok(BusConfig { url, nkey_seed, ..self.bus.clone() })
    }
}

/// The ingest's agencies file and configuration.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub agencies: PathBuf,
    pub config: IngestConfig,
}

/// The projector's object store and configuration.
#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    pub store: String,
    pub config: ProjectorConfig,
}

/// The query's object store and configuration.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    pub store: String,
    pub config: QueryConfig,
    pub disclosure: observatory_query::Disclosure,
    /// How far below the request handlers polars' pool runs, in nice steps.
    pub netting_nice: u8,
}

fn nats(data: &DataDir, nats: &Nats) -> NatsSettings {
    let mut bus = BusConfig::new(String::new());
    bus.stream = nats.stream.clone();
    bus.replicas = nats.replicas;
    bus.duplicate_window = Duration::from_secs(nats.duplicate_window_secs);
    bus.max_age = Duration::from_secs(nats.retention_days * 86_400);
    NatsSettings {
        explicit_url: nats.nats_url.clone(),
        url_file: data.nats_url_file(),
        bus,
        nkey_file: nats.nats_nkey_file.clone(),
    }
}

fn ingest(
    data: &DataDir,
    agencies: &AgencyFile,
    body: &BodyLimit,
    crosswalks: &CrosswalkVersions,
) -> IngestSettings {
    IngestSettings {
        agencies: agencies.path(data),
        config: IngestConfig {
            max_body_bytes: body.max_body_bytes,
            max_records_per_request: body.max_records_per_request,
            remembered_incidents: body.remembered_incidents,
            crosswalk_versions: crosswalks.crosswalk_versions.clone(),
        },
    }
}

fn projector(
    data: &DataDir,
    store: &ObjectStore,
    tuning: &ProjectorTuning,
    crosswalks: &CrosswalkVersions,
    disclosure: &DisclosureSecret,
) -> anyhow::Result<ProjectorSettings> {
    Ok(ProjectorSettings {
        store: store.location(data),
        config: ProjectorConfig {
            flush_interval: Duration::from_millis(tuning.flush_interval_ms.max(10)),
            crosswalk_versions: crosswalks.crosswalk_versions.clone(),
            record_keys: Some(disclosure.record_keys(data)?),
            image_min_events: tuning.image_min_events.max(1),
            ..Default::default()
        },
    })
}

fn query(
    data: &DataDir,
    store: &ObjectStore,
    wait: &QueryFlags,
    disclosure: &DisclosureSecret,
    readers: &ReaderFile,
) -> anyhow::Result<QuerySettings> {
    let readers = observatory_access::ReaderRegistry::open(&readers.path(data))?;
    Ok(QuerySettings {
        store: store.location(data),
        config: QueryConfig {
            max_wait: Duration::from_millis(wait.query_wait_ms),
            sdmx_agency: wait.sdmx_agency.clone(),
        },
        disclosure: observatory_query::Disclosure {
            policy: std::sync::Arc::new(observatory_disclosure::Policy::standard()),
            readers: Some(readers),
            record_keys: Some(disclosure.record_keys(data)?.fingerprint().to_owned()),
        },
        netting_nice: wait.netting_nice,
    })
}

impl UpArgs {
    pub fn nats(&self) -> NatsSettings {
        nats(&self.data, &self.nats)
    }

    pub fn ingest(&self) -> IngestSettings {
        ingest(&self.data, &self.agencies, &self.body, &self.crosswalks)
    }

    pub fn projector(&self) -> anyhow::Result<ProjectorSettings> {
        projector(&self.data, &self.store, &self.projector, &self.crosswalks, &self.disclosure)
    }

    pub fn query(&self) -> anyhow::Result<QuerySettings> {
        query(&self.data, &self.store, &self.query, &self.disclosure, &self.readers)
    }

    pub fn reports_config(&self) -> PathBuf {
        self.reports.path(&self.data)
    }
}

impl IngestArgs {
    pub fn nats(&self) -> NatsSettings {
        nats(&self.data, &self.nats)
    }

    pub fn ingest(&self) -> IngestSettings {
        ingest(&self.data, &self.agencies, &self.body, &self.crosswalks)
    }
}

impl ProjectArgs {
    pub fn nats(&self) -> NatsSettings {
        nats(&self.data, &self.nats)
    }

    pub fn projector(&self) -> anyhow::Result<ProjectorSettings> {
        projector(&self.data, &self.store, &self.projector, &self.crosswalks, &self.disclosure)
    }
}

/// The query settings of a command that reads the API in-process (reports): no HTTP, no wait.
fn reader(
    data: &DataDir,
    store: &ObjectStore,
    disclosure: &DisclosureSecret,
    readers: &ReaderFile,
) -> anyhow::Result<QuerySettings> {
    let defaults = QueryFlags {
        query_wait_ms: 10_000,
        sdmx_agency: observatory_query::sdmx::DEFAULT_AGENCY.to_owned(),
        // A reader nets nothing in the background, so its pool keeps its priority.
        netting_nice: 0,
    };
    query(data, store, &defaults, disclosure, readers)
}

impl ReportArgs {
    pub fn query(&self) -> anyhow::Result<QuerySettings> {
        reader(&self.data, &self.store, &self.disclosure, &self.readers)
    }
}

impl SchedulerArgs {
    pub fn query(&self) -> anyhow::Result<QuerySettings> {
        reader(&self.data, &self.store, &self.disclosure, &self.readers)
    }

    pub fn reports_config(&self) -> PathBuf {
        self.reports.path(&self.data)
    }
}

impl QueryArgs {
    pub fn query(&self) -> anyhow::Result<QuerySettings> {
        query(&self.data, &self.store, &self.query, &self.disclosure, &self.readers)
    }
}
