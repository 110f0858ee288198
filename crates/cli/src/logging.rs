//! The binary's log output: `OBSERVATORY_LOG` filters it, stderr carries it. As text (the
//! default), with colours only on a terminal so a log redirected to a file (as
//! `scripts/demo.sh` does) stays plain; as JSON (`--log-format json`), one object per line with
//! the timestamp, level, message, target and the event's fields, the current span's fields
//! under `span` and every open span's under `spans` (the ingest's `source`, a flush's sequences).

use std::io::IsTerminal;
use std::sync::OnceLock;

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl LogFormat {
    /// `OBSERVATORY_LOG_FORMAT`, for the commands without a `--log-format` flag (text when
    /// unset or not a format).
    pub fn from_env() -> LogFormat {
        std::env::var("OBSERVATORY_LOG_FORMAT")
            .ok()
            .and_then(|value| clap::ValueEnum::from_str(&value, true).ok())
            .unwrap_or_default()
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Whether logs are JSON: then nothing else may write lines of its own to stderr.
pub fn json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

pub fn init_tracing(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSERVATORY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(true).init()
        }
    }
}
