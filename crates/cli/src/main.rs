//! `observatory`: the one binary. `up` runs ingest, projector and query in one process;
//! `ingest`, `project` and `query` run each alone for a deployment.

use anyhow::Result;
use clap::Parser;
use observatory_cli::cli::{self, Cli, Command};
use observatory_cli::logging;

// The projector and the query engine allocate and free many short-lived buffers on several
// threads; glibc's allocator spent a fifth of a rebuild in malloc/free and page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = Cli::parse();
    logging::init_tracing(args.command.log_format());
    runtime(&args.command)?.block_on(cli::run(args))
}

/// The runtime a command runs on: one worker per core (or `TOKIO_WORKER_THREADS`), but one
/// worker for a rebuild. A rebuild is two pipelined stages: the fold on the thread that
/// blocks on this runtime, and the decoder with the NATS connection on a worker. A second
/// worker only searches for work, steals and parks beside nats-server on the same cores: one
/// worker rebuilt a kept 3M-event stream in a median 17.1 s of wall time against 18.0 s with
/// two, and never took the 21–22 s that a third of the runs with two did (BENCHMARKS.md,
/// eleventh steps). The bench's projection floor is shaped like a rebuild.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(command, Command::Rebuild(_) | Command::BenchProjectionFloor(_))
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        builder.worker_threads(1);
    }
    builder.build()
}
