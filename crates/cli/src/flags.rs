//! The command line's flag blocks: each groups the flags of one concern under its own help
//! heading and is flattened into exactly the commands that need it (as InfluxDB 3's clap
//! blocks). Every flag also reads an `OBSERVATORY_*` variable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

/// Where local state lives.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Local state")]
pub struct DataDir {
    /// Where local state lives: agencies file, object store, nats-server store, logs.
    #[arg(long, env = "OBSERVATORY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

impl DataDir {
    /// Where `up` records the URL of the nats-server it started.
    pub fn nats_url_file(&self) -> PathBuf {
        self.data_dir.join("nats.url")
    }
}

/// The object store holding the projections.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Object store")]
pub struct ObjectStore {
    /// Object store: a directory, file:///path or s3://bucket/prefix (with the usual AWS_*
    /// variables). Default <data-dir>/store.
    #[arg(long, env = "OBSERVATORY_STORE")]
    pub store: Option<String>,
}

impl ObjectStore {
    pub fn location(&self, data: &DataDir) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| data.data_dir.join("store").to_string_lossy().into_owned())
    }
}

/// The registry of agencies allowed to push feeds.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Agencies")]
pub struct AgencyFile {
    /// Agencies file (ids, names, crosswalks, token hashes). Default <data-dir>/agencies.toml.
    #[arg(long, env = "OBSERVATORY_AGENCIES")]
    pub agencies: Option<PathBuf>,
}

impl AgencyFile {
    pub fn path(&self, data: &DataDir) -> PathBuf {
        self.agencies.clone().unwrap_or_else(|| data.data_dir.join("agencies.toml"))
    }
}

/// Disclosure control: the deployment secret that keys records.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Disclosure control")]
pub struct DisclosureSecret {
    /// The deployment's disclosure secret (64 hex digits), shared by every projector and query
    /// process: it keys each incident's record key, so the public noise cannot be stripped.
    /// Created at first start when missing. Default <data-dir>/disclosure.secret.
    #[arg(long, env = "OBSERVATORY_DISCLOSURE_SECRET_FILE")]
    pub disclosure_secret_file: Option<PathBuf>,
}

/// Where the report schedules are.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reports")]
pub struct ReportsConfig {
    /// The report schedules: `[[report]]` tables with kind, cron and timezone (see
    /// deploy/reports.toml.example). Default <data-dir>/reports.toml; none when missing.
    #[arg(long, env = "OBSERVATORY_REPORTS_CONFIG")]
    pub reports_config: Option<PathBuf>,
}

impl ReportsConfig {
    pub fn path(&self, data: &DataDir) -> PathBuf {
        self.reports_config.clone().unwrap_or_else(|| data.data_dir.join("reports.toml"))
    }
}

/// Who reads more than the public numbers.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Disclosure control")]
pub struct ReaderFile {
    /// Readers file (names, roles, token hashes), from `observatory reader add`. Default
    /// <data-dir>/readers.toml.
    #[arg(long, env = "OBSERVATORY_READERS")]
    pub readers: Option<PathBuf>,
}

impl ReaderFile {
    pub fn path(&self, data: &DataDir) -> PathBuf {
        self.readers.clone().unwrap_or_else(|| data.data_dir.join("readers.toml"))
    }
}

impl DisclosureSecret {
    pub fn secret_path(&self, data: &DataDir) -> PathBuf {
        self.disclosure_secret_file
            .clone()
            .unwrap_or_else(|| data.data_dir.join("disclosure.secret"))
    }

    /// The record keys of the deployment, creating the secret (32 random bytes, owner-only)
    /// when the file does not exist yet. Created with create-new, so two processes starting
    /// together on one data dir agree on one secret.
    pub fn record_keys(
        &self,
        data: &DataDir,
    ) -> anyhow::Result<observatory_disclosure::RecordKeys> {
        use anyhow::Context;
        use std::io::Write;
        let path = self.secret_path(data);
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    let secret = format!("{}\n", observatory_access::random_hex(32));
                    file.write_all(secret.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    tracing::warn!(
                        path = %path.display(),
                        "created a new disclosure secret: every projector and query of this deployment must use this file"
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the disclosure secret {}", path.display()))?;
        observatory_disclosure::RecordKeys::from_hex(&text)
            .with_context(|| format!("the disclosure secret {}", path.display()))
    }
}

/// The NATS connection and the JetStream stream's settings.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "NATS JetStream")]
pub struct Nats {
    /// NATS server URL, or several comma-separated (the nodes of a cluster, e.g.
    /// nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222): the client connects to any
    /// of them and fails over to another. Without it, `up` starts a nats-server; other
    /// commands use the one `up` started (recorded in <data-dir>/nats.url), else
    /// nats://127.0.0.1:4222.
    #[arg(long, env = "OBSERVATORY_NATS_URL")]
    pub nats_url: Option<String>,
    /// File holding the services' NKey seed, for a nats-server that requires authentication
    /// (the accounts `observatory nats-config` writes; it also writes this file).
    #[arg(long, env = "OBSERVATORY_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// JetStream stream name.
    #[arg(long, env = "OBSERVATORY_STREAM", default_value = observatory_bus::DEFAULT_STREAM)]
    pub stream: String,
    /// Stream replicas: 1 for a single server; 3 in a 3-node cluster (a write is acknowledged
    /// once 2 of the 3 nodes hold it, and the stream survives the loss of one node).
    #[arg(long, env = "OBSERVATORY_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// JetStream duplicate window in seconds (fast-retry dedupe; longer-lived idempotency
    /// does not depend on it).
    #[arg(long, env = "OBSERVATORY_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// Stream retention in days; 0 keeps everything (a rebuild needs all history).
    #[arg(long, env = "OBSERVATORY_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u64,
}

/// The HTTP listener of a service.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "HTTP")]
pub struct HttpListener {
    /// HTTP listen address.
    #[arg(long, env = "OBSERVATORY_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
}

/// Limits and memory of the feed endpoints.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Ingest")]
pub struct BodyLimit {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "OBSERVATORY_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most incident records, or survey rows, one request may carry (413 above): what a request
    /// costs in memory follows its records more than its bytes.
    #[arg(
        long,
        env = "OBSERVATORY_MAX_RECORDS_PER_REQUEST",
        default_value_t = observatory_ingest::DEFAULT_MAX_RECORDS
    )]
    pub max_records_per_request: usize,
    /// Incidents whose last stored event the ingest remembers, per generation (up to twice as
    /// many in all, ~100 bytes each): an amendment of one is published without reading its
    /// subject back first. 0 reads every time.
    #[arg(
        long,
        env = "OBSERVATORY_REMEMBERED_INCIDENTS",
        default_value_t = observatory_ingest::DEFAULT_REMEMBERED_INCIDENTS
    )]
    pub remembered_incidents: usize,
}

/// Projector tuning.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Projector")]
pub struct ProjectorTuning {
    /// Projector flush interval in milliseconds (at least 10).
    #[arg(long, env = "OBSERVATORY_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// Events (and at least a quarter of the incidents known) after which the projector writes
    /// a new fold image: the memory a restart loads instead of re-deriving it from the whole
    /// state table. A rebuild writes one at its end.
    #[arg(long, env = "OBSERVATORY_IMAGE_MIN_EVENTS", default_value_t = 1_000_000)]
    pub image_min_events: u64,
}

/// How the query serves: its wait for the projection and the SDMX maintenance agency.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Query")]
pub struct QueryFlags {
    /// How long a query with min_sequence waits for the projection, in milliseconds.
    #[arg(long, env = "OBSERVATORY_QUERY_WAIT_MS", default_value_t = 10_000)]
    pub query_wait_ms: u64,
    /// The agency id that maintains the SDMX dataflow, DSD and codelists under /sdmx/v2.
    #[arg(long, env = "OBSERVATORY_SDMX_AGENCY", default_value = "OBSERVATORY")]
    pub sdmx_agency: String,
    /// How many nice steps below the request handlers polars' threads run (0 to 19; 0 keeps
    /// them level). Each new manifest is netted there in the background, and a request that
    /// meets a netting should not wait behind it. Linux only.
    #[arg(
        long,
        env = "OBSERVATORY_NETTING_NICE",
        default_value_t = 10,
        value_parser = clap::value_parser!(u8).range(0..=19)
    )]
    pub netting_nice: u8,
}

/// What the query service does with memory it has freed (`observatory query` only: `up` shares
/// its process with the projector, whose rebuild's peak should go back).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Query")]
pub struct QueryMemory {
    /// What becomes of memory the service has freed, a second after: `lazy` offers it to the
    /// kernel, which takes it only when short, so that the next netting of a new manifest
    /// reuses it without faulting every page in again beside the requests; `keep` never gives
    /// it back; `return` gives it back at once (the allocator's own default).
    #[arg(
        long,
        env = "OBSERVATORY_QUERY_FREED_MEMORY",
        value_enum,
        default_value_t = crate::allocator::FreedMemory::Lazy
    )]
    pub freed_memory: crate::allocator::FreedMemory,
}

/// Which crosswalk versions are in force.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reference data")]
pub struct CrosswalkVersions {
    /// Crosswalk versions in force, e.g. `natinf=1,platform=1`; unlisted crosswalks use their
    /// latest version. The ingest codes with them; a new projection version (rebuild) pins them.
    #[arg(
        long,
        env = "OBSERVATORY_CROSSWALK_VERSIONS",
        value_parser = parse_versions,
        default_value = ""
    )]
    pub crosswalk_versions: BTreeMap<String, u32>,
}

fn parse_versions(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let crosswalks = observatory_reference::Crosswalks::builtin();
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, version) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not NAME=VERSION (e.g. natinf=1)"))?;
            let version: u32 = version
                .trim_start_matches('v')
                .parse()
                .map_err(|_| format!("'{version}' is not a version number"))?;
            crosswalks.resolve(name, Some(version)).map_err(|e| e.to_string())?;
            Ok((name.to_owned(), version))
        })
        .collect()
}

/// How the command writes its log.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct Logging {
    /// Log format on stderr: text, or json (one object per line: timestamp, level, message,
    /// target, the event's fields and those of its spans, e.g. the ingest's source).
    #[arg(long, env = "OBSERVATORY_LOG_FORMAT", value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

/// The operations listener of a process that serves no API (the projector).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Operations")]
pub struct MetricsHttp {
    /// Also serve GET /metrics, /health/live and /health/ready on this address (e.g.
    /// 0.0.0.0:9090); without it the projector listens on nothing.
    #[arg(long, env = "OBSERVATORY_METRICS_HTTP")]
    pub metrics_http: Option<String>,
}
