//! `observatory`: the one binary. `up` runs ingest, projector and query in one process;
//! `ingest`, `project` and `query` run each alone for a deployment.

use anyhow::Result;
use clap::{Parser, Subcommand};
use observatory_cli::config::{self, Global};
use observatory_cli::{demo, estimate, serve};

// The projector and the query engine allocate and free many short-lived buffers on several
// threads; glibc's allocator spent a fifth of a rebuild in malloc/free and page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "observatory", version, about = "Backend of the national cybercrime observatory")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest, projector and query in one process on one HTTP address (starts a
    /// nats-server when no --nats-url is given).
    Up,
    /// Only the feed endpoints (POST /v1/incidents).
    Ingest,
    /// Only the projector: stream → Parquet in the object store.
    Project,
    /// Only the statistical API (GET /v1/incidents/counts).
    Query,
    /// Replays the stream from sequence 1 into a new projection version and switches to it.
    Rebuild,
    /// Manage the agencies allowed to push feeds.
    Agency {
        #[command(subcommand)]
        command: AgencyCommand,
    },
    /// Pushes a synthetic two-year feed through the HTTP API and checks the answers.
    Demo(demo::DemoArgs),
    /// Survey estimates (totals, means, proportions, ratios) with SE and CI from microdata,
    /// as R's survey package computes them.
    Estimate(estimate::EstimateArgs),
    /// Measures every stage against the raw limit of the parts underneath (release build).
    Bench(observatory_bench::BenchArgs),
}

#[derive(Subcommand)]
enum AgencyCommand {
    /// Adds an agency; prints its new token as the only line on stdout.
    Add {
        /// Agency id: lowercase letters, digits, '-', '_' (it becomes the event source).
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// How the agency's own codes map to ICCS: natinf, platform, nibrs, or iccs (the
        /// default: the agency sends ICCS codes).
        #[arg(long)]
        crosswalk: Option<String>,
    },
    /// Lists agencies (never tokens).
    List,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    config::init_tracing();
    let global = cli.global;
    match cli.command {
        Command::Up => serve::up(&global).await,
        Command::Ingest => serve::ingest_only(&global).await,
        Command::Project => serve::project_only(&global).await,
        Command::Query => serve::query_only(&global).await,
        Command::Rebuild => serve::rebuild(&global).await,
        Command::Agency { command: AgencyCommand::Add { id, name, crosswalk } } => {
            let token = observatory_ingest::add_agency(
                &global.agencies_path(),
                &id,
                name.as_deref(),
                crosswalk.as_deref(),
            )?;
            println!("{token}");
            eprintln!(
                "agency '{id}' added to {}; keep the token above, it is not stored",
                global.agencies_path().display()
            );
            Ok(())
        }
        Command::Agency { command: AgencyCommand::List } => {
            let registry = observatory_ingest::AgencyRegistry::open(&global.agencies_path())?;
            for agency in registry.agencies() {
                println!(
                    "{}\t{}\t{}\t{}",
                    agency.id, agency.name, agency.crosswalk, agency.added_at
                );
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(&global, &args).await,
        Command::Estimate(args) => estimate::run(&args),
        Command::Bench(args) => observatory_bench::run(&args).await,
    }
}
