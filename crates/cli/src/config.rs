use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Flags shared by every command; each also reads an `OBSERVATORY_*` variable.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Where local state lives: agencies file, object store, nats-server store.
    #[arg(long, global = true, env = "OBSERVATORY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HTTP listen address.
    #[arg(long, global = true, env = "OBSERVATORY_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// NATS server URL. Without it, `up` starts a nats-server; other commands use the one
    /// `up` started (recorded in <data-dir>/nats.url), else nats://127.0.0.1:4222.
    #[arg(long, global = true, env = "OBSERVATORY_NATS_URL")]
    pub nats_url: Option<String>,
    /// Object store: a directory, file:///path or s3://bucket/prefix. Default <data-dir>/store.
    #[arg(long, global = true, env = "OBSERVATORY_STORE")]
    pub store: Option<String>,
    /// Agencies file. Default <data-dir>/agencies.toml.
    #[arg(long, global = true, env = "OBSERVATORY_AGENCIES")]
    pub agencies: Option<PathBuf>,
    /// JetStream stream name.
    #[arg(long, global = true, env = "OBSERVATORY_STREAM", default_value = observatory_bus::DEFAULT_STREAM)]
    pub stream: String,
    /// Stream replicas (1 for a single server; 3 in a cluster).
    #[arg(long, global = true, env = "OBSERVATORY_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// JetStream duplicate window in seconds (fast-retry dedupe; longer-lived idempotency
    /// does not depend on it).
    #[arg(long, global = true, env = "OBSERVATORY_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// Stream retention in days; 0 keeps everything (a rebuild needs all history).
    #[arg(long, global = true, env = "OBSERVATORY_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, global = true, env = "OBSERVATORY_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Projector flush interval in milliseconds.
    #[arg(long, global = true, env = "OBSERVATORY_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// How long a query with min_sequence waits for the projection, in milliseconds.
    #[arg(long, global = true, env = "OBSERVATORY_QUERY_WAIT_MS", default_value_t = 10_000)]
    pub query_wait_ms: u64,
    /// Crosswalk versions in force, e.g. `natinf=1,platform=1`; unlisted crosswalks use their
    /// latest version. The ingest codes with them; a new projection version (rebuild) pins them.
    #[arg(long, global = true, env = "OBSERVATORY_CROSSWALK_VERSIONS", value_parser = parse_versions, default_value = "")]
    pub crosswalk_versions: std::collections::BTreeMap<String, u32>,
}

fn parse_versions(text: &str) -> Result<std::collections::BTreeMap<String, u32>, String> {
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

impl Global {
    pub fn agencies_path(&self) -> PathBuf {
        self.agencies.clone().unwrap_or_else(|| self.data_dir.join("agencies.toml"))
    }

    pub fn store_location(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store").to_string_lossy().into_owned())
    }

    /// Where `up` records the URL of the nats-server it started.
    pub fn nats_url_file(&self) -> PathBuf {
        self.data_dir.join("nats.url")
    }

    pub fn bus_config(&self, url: String) -> observatory_bus::BusConfig {
        let mut config = observatory_bus::BusConfig::new(url);
        config.stream = self.stream.clone();
        config.replicas = self.replicas;
        config.duplicate_window = Duration::from_secs(self.duplicate_window_secs);
        config.max_age = Duration::from_secs(self.retention_days * 86_400);
        config
    }

    /// The explicit URL, else the one `up` recorded, else the NATS default.
    pub fn resolved_nats_url(&self) -> String {
        if let Some(url) = &self.nats_url {
            return url.clone();
        }
        std::fs::read_to_string(self.nats_url_file())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSERVATORY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
