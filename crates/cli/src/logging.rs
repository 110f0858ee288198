//! The binary's log output: `OBSERVATORY_LOG` filters it, stderr carries it, with colours only
//! on a terminal so a log redirected to a file (as `scripts/demo.sh` does) stays plain text.

use std::io::IsTerminal;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OBSERVATORY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
