//! `observatory`: the one binary. `up` runs ingest, projector and query in one process;
//! `ingest`, `project` and `query` run each alone for a deployment.

use anyhow::Result;
use clap::Parser;
use observatory_cli::cli::{self, Cli};
use observatory_cli::logging;

// The projector and the query engine allocate and free many short-lived buffers on several
// threads; glibc's allocator spent a fifth of a rebuild in malloc/free and page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Cli::parse();
    logging::init_tracing(args.command.log_format());
    cli::run(args).await
}
