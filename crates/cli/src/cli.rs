//! The `observatory` command line: its commands, the flag blocks each takes, and the dispatch.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{
    AgencyArgs, IngestArgs, ProjectArgs, ProjectServeArgs, QueryArgs, ReaderArgs, ReleaseArgs,
    ReportArgs, SchedulerArgs, UpArgs,
};
use crate::logging::LogFormat;
use crate::{demo, estimate, serve};

#[derive(Parser, Debug)]
#[command(
    name = "observatory",
    version,
    about = "Backend of the national cybercrime observatory",
    after_help = "Each command lists its own flags: observatory <command> --help. Every flag also \
                  reads an OBSERVATORY_* environment variable."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up and consumed by `run`: the size of the larger variants costs nothing,
// and boxing them would only add noise to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ingest, projector and query in one process on one HTTP address (starts a
    /// nats-server when no --nats-url is given).
    Up(UpArgs),
    /// Only the feed endpoints (POST /v1/incidents).
    Ingest(IngestArgs),
    /// Only the projector: stream → Parquet in the object store.
    Project(ProjectServeArgs),
    /// Only the statistical API (GET /v1/incidents/counts).
    Query(QueryArgs),
    /// Replays the stream from sequence 1 into a new projection version and switches to it.
    Rebuild(ProjectArgs),
    /// `observatory bench`'s projection floor: a rebuild's reading, decoding and state rows to
    /// Parquet without the fold, into a new version of the store it is given (not for
    /// operators: the bench runs it against a store of its own).
    #[command(hide = true)]
    BenchProjectionFloor(ProjectArgs),
    /// Manage the agencies allowed to push feeds.
    Agency {
        #[command(subcommand)]
        command: AgencyCommand,
    },
    /// Manage the readers who see exact numbers (researcher) or also publish releases (publisher).
    Reader {
        #[command(subcommand)]
        command: ReaderCommand,
    },
    /// Create and list releases: frozen, citable states of everything the observatory publishes.
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Publishes a monthly or annual report (PDF, XLSX, CSV, manifest) from one release.
    Report(ReportArgs),
    /// Only the report scheduler: runs the [[report]] schedules of the reports config.
    Scheduler(SchedulerArgs),
    /// Writes nats-server's accounts for the services and for the agencies added with --nats
    /// (only public NKeys), and the services' NKey seed file if it does not exist.
    NatsConfig(NatsConfigArgs),
    /// Pushes a synthetic two-year feed through the HTTP API and checks the answers.
    Demo(demo::DemoArgs),
    /// Survey estimates (totals, means, proportions, ratios) with SE and CI from microdata,
    /// as R's survey package computes them.
    Estimate(estimate::EstimateArgs),
    /// Measures every stage against the raw limit of the parts underneath (release build).
    Bench(observatory_bench::BenchArgs),
}

impl Command {
    /// The log format the command was given: its `--log-format` (which reads
    /// OBSERVATORY_LOG_FORMAT), or for a command without the flag the variable alone.
    pub fn log_format(&self) -> LogFormat {
        match self {
            Command::Up(args) => args.logging.log_format,
            Command::Ingest(args) => args.logging.log_format,
            Command::Project(args) => args.projector.logging.log_format,
            Command::Query(args) => args.logging.log_format,
            Command::Rebuild(args) | Command::BenchProjectionFloor(args) => args.logging.log_format,
            Command::Report(args) => args.logging.log_format,
            Command::Scheduler(args) => args.logging.log_format,
            _ => LogFormat::from_env(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AgencyCommand {
    /// Adds an agency; prints its new token as the only line on stdout (with --nats, its NKey
    /// seed on a second line).
    Add(AgencyAddArgs),
    /// Lists agencies (never tokens).
    List(AgencyArgs),
}

#[derive(Subcommand, Debug)]
pub enum ReaderCommand {
    /// Adds a reader; prints its new token as the only line on stdout.
    Add(ReaderAddArgs),
    /// Lists readers and their roles (never tokens).
    List(ReaderArgs),
}

#[derive(Args, Debug)]
pub struct ReaderAddArgs {
    /// Reader name (letters, digits, '.', '-', '_', '@'), e.g. an e-mail address.
    pub name: String,
    /// researcher: reads exact numbers; publisher: also creates releases.
    #[arg(long, env = "OBSERVATORY_READER_ROLE", value_parser = ["researcher", "publisher"])]
    pub role: String,
    #[command(flatten)]
    pub file: ReaderArgs,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Freezes the committed state of every projection and the disclosure parameters as a new
    /// release; prints it as JSON.
    Create(ReleaseCreateArgs),
    /// Lists releases, newest first, as JSON.
    List(ReleaseArgs),
}

#[derive(Args, Debug)]
pub struct ReleaseCreateArgs {
    /// Release name (default: its id), e.g. "2025-10 monthly".
    #[arg(long, env = "OBSERVATORY_RELEASE_NAME")]
    pub name: Option<String>,
    /// A note kept with the release (what changed, why it was made).
    #[arg(long, env = "OBSERVATORY_RELEASE_NOTE")]
    pub note: Option<String>,
    #[command(flatten)]
    pub target: ReleaseArgs,
}

#[derive(Args, Debug)]
pub struct AgencyAddArgs {
    /// Agency id: lowercase letters, digits, '-', '_' (it becomes the event source).
    pub id: String,
    /// Display name of the agency (default: its id).
    #[arg(long, env = "OBSERVATORY_AGENCY_NAME")]
    pub name: Option<String>,
    /// How the agency's own codes map to ICCS: natinf, platform, nibrs, or iccs (the
    /// default: the agency sends ICCS codes).
    #[arg(long, env = "OBSERVATORY_AGENCY_CROSSWALK")]
    pub crosswalk: Option<String>,
    /// Also let the agency publish straight to NATS (feeds.<id>.incidents) with an NKey; run
    /// `observatory nats-config` afterwards and reload nats-server.
    #[arg(long, env = "OBSERVATORY_AGENCY_NATS")]
    pub nats: bool,
    #[command(flatten)]
    pub file: AgencyArgs,
}

#[derive(Args, Debug)]
pub struct NatsConfigArgs {
    /// Where to write the accounts (default <data-dir>/observatory-accounts.conf); include it
    /// from nats-server.conf.
    #[arg(long, env = "OBSERVATORY_NATS_ACCOUNTS_FILE")]
    pub out: Option<std::path::PathBuf>,
    /// The services' NKey seed (default <data-dir>/nats-service.nk), created if missing; give
    /// the same file to the services as --nats-nkey-file.
    #[arg(long, env = "OBSERVATORY_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub file: AgencyArgs,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => serve::up(&args).await,
        Command::Ingest(args) => serve::ingest_only(&args).await,
        Command::Project(args) => serve::project_only(&args).await,
        Command::Query(args) => serve::query_only(&args).await,
        Command::Rebuild(args) => serve::rebuild(&args).await,
        Command::BenchProjectionFloor(args) => serve::projection_floor(&args).await,
        Command::Agency { command: AgencyCommand::Add(args) } => {
            let path = args.file.path();
            let added = observatory_ingest::add_agency(
                &path,
                &args.id,
                args.name.as_deref(),
                args.crosswalk.as_deref(),
                args.nats,
            )?;
            println!("{}", added.token);
            if let Some(seed) = &added.nats_seed {
                println!("{seed}");
            }
            eprintln!(
                "agency '{}' added to {}; keep the token above{}, it is not stored",
                args.id,
                path.display(),
                if added.nats_seed.is_some() {
                    " and the NKey seed below it (publish to feeds.<id>.incidents with it; run `observatory nats-config` and reload nats-server)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::NatsConfig(args) => crate::nats_config::write(&args),
        Command::Agency { command: AgencyCommand::List(args) } => {
            let registry = observatory_ingest::AgencyRegistry::open(&args.path())?;
            for agency in registry.agencies() {
                println!(
                    "{}\t{}\t{}\t{}",
                    agency.id, agency.name, agency.crosswalk, agency.added_at
                );
            }
            Ok(())
        }
        Command::Reader { command: ReaderCommand::Add(args) } => {
            let path = args.file.path();
            let role = observatory_access::Role::parse(&args.role).expect("clap checked the role");
            let token = observatory_access::add_reader(&path, &args.name, role)?;
            println!("{token}");
            eprintln!(
                "reader '{}' ({}) added to {}; keep the token above, it is not stored",
                args.name,
                role.as_str(),
                path.display()
            );
            Ok(())
        }
        Command::Reader { command: ReaderCommand::List(args) } => {
            for reader in observatory_access::ReaderRegistry::open(&args.path())?.entries() {
                println!("{}\t{}\t{}", reader.name, reader.role.as_str(), reader.added_at);
            }
            Ok(())
        }
        Command::Release { command: ReleaseCommand::Create(args) } => {
            let store = observatory_store::Store::open(&args.target.store())?;
            let release = observatory_query::create_release(
                &store,
                &observatory_disclosure::Policy::standard(),
                args.name,
                args.note,
            )
            .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&observatory_query::release_summary(&release))?
            );
            Ok(())
        }
        Command::Release { command: ReleaseCommand::List(args) } => {
            let store = observatory_store::Store::open(&args.store())?;
            let releases = observatory_store::Releases::new(store).list().await?;
            let summaries: Vec<_> =
                releases.iter().map(observatory_query::release_summary).collect();
            println!("{}", serde_json::to_string_pretty(&summaries)?);
            Ok(())
        }
        Command::Report(args) => crate::report::run(&args).await,
        Command::Scheduler(args) => serve::scheduler_only(&args).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Estimate(args) => estimate::run(&args),
        Command::Bench(args) => observatory_bench::run(&args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    /// Every command, nested ones included, with its full name.
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            for sub in command.get_subcommands() {
                let name = format!("{prefix} {}", sub.get_name()).trim().to_owned();
                out.push((name.clone(), sub.clone()));
                walk(&name, sub, out);
            }
        }
        let mut root = Cli::command();
        root.build();
        let mut out = vec![("observatory".to_owned(), root.clone())];
        walk("", &root, &mut out);
        out
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_help_and_an_env_var() {
        let mut missing = Vec::new();
        for (name, command) in commands() {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{name}: {id} has no help text"));
                }
                if !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{name}: --{id} has no OBSERVATORY_* variable"));
                }
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    if !env.starts_with("OBSERVATORY_") {
                        missing.push(format!("{name}: --{id} reads {env}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn estimate_help_shows_no_service_flags() {
        let mut root = Cli::command();
        let help = root
            .find_subcommand_mut("estimate")
            .expect("an estimate command")
            .render_long_help()
            .to_string();
        for flag in [
            "--nats-url",
            "--stream",
            "--replicas",
            "--duplicate-window-secs",
            "--retention-days",
            "--flush-interval-ms",
            "--query-wait-ms",
            "--http",
            "--max-body-bytes",
            "--store",
            "--data-dir",
        ] {
            assert!(!help.contains(flag), "estimate --help shows {flag}:\n{help}");
        }
        for flag in ["--weights", "--strata", "--mean", "--total", "--scale", "--mse"] {
            assert!(help.contains(flag), "estimate --help lacks {flag}:\n{help}");
        }
    }

    /// Each service command takes exactly the blocks it uses, under their headings.
    #[test]
    fn commands_take_the_flags_they_use() {
        let flags = |command: &clap::Command| -> Vec<String> {
            command
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned))
                .filter(|long| !matches!(long.as_str(), "help" | "version"))
                .collect()
        };
        let all = commands();
        let find = |name: &str| {
            flags(&all.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1)
        };
        let has = |name: &str, wanted: &[&str], absent: &[&str]| {
            let got = find(name);
            for flag in wanted {
                assert!(got.iter().any(|g| g == flag), "{name} lacks --{flag}: {got:?}");
            }
            for flag in absent {
                assert!(!got.iter().any(|g| g == flag), "{name} has --{flag}: {got:?}");
            }
        };
        has(
            "up",
            &[
                "data-dir",
                "store",
                "agencies",
                "nats-url",
                "stream",
                "replicas",
                "duplicate-window-secs",
                "retention-days",
                "http",
                "max-body-bytes",
                "flush-interval-ms",
                "query-wait-ms",
                "crosswalk-versions",
            ],
            &["freed-memory"],
        );
        has(
            "ingest",
            &["data-dir", "agencies", "nats-url", "http", "max-body-bytes", "crosswalk-versions"],
            &["store", "flush-interval-ms", "query-wait-ms"],
        );
        has(
            "project",
            &["data-dir", "store", "nats-url", "flush-interval-ms", "crosswalk-versions"],
            &["http", "max-body-bytes", "query-wait-ms", "agencies"],
        );
        has(
            "rebuild",
            &["data-dir", "store", "nats-url", "crosswalk-versions"],
            &["http", "max-body-bytes", "query-wait-ms", "agencies"],
        );
        has(
            "query",
            &["data-dir", "store", "http", "query-wait-ms", "netting-nice", "freed-memory"],
            &["nats-url", "stream", "max-body-bytes", "flush-interval-ms", "agencies"],
        );
        has("agency add", &["data-dir", "agencies", "name", "crosswalk"], &["nats-url", "store"]);
        has("agency list", &["data-dir", "agencies"], &["nats-url", "store", "http"]);
        has("demo", &["data-dir", "agencies", "url"], &["nats-url", "store", "http"]);
        has("query", &["disclosure-secret-file", "readers"], &["agencies", "nats-url"]);
        has("project", &["disclosure-secret-file"], &["http"]);
        has("up", &["disclosure-secret-file", "readers"], &[]);
        has("reader add", &["data-dir", "readers", "role"], &["nats-url", "store"]);
        has("release create", &["data-dir", "store", "name", "note"], &["nats-url", "http"]);
        has("release list", &["data-dir", "store"], &["nats-url", "http"]);
        has(
            "report",
            &["data-dir", "store", "kind", "period", "release", "out", "disclosure-secret-file"],
            &["nats-url", "http", "reports-config"],
        );
        has(
            "scheduler",
            &["data-dir", "store", "reports-config", "disclosure-secret-file"],
            &["http"],
        );
        has("up", &["reports-config"], &[]);
        for command in ["up", "ingest", "project", "query", "rebuild", "report", "scheduler"] {
            has(command, &["log-format"], &[]);
        }
        has("project", &["metrics-http"], &[]);
        has("rebuild", &[], &["metrics-http"]);
        has("up", &[], &["metrics-http"]);
        assert!(find("observatory").is_empty(), "the root takes no flags");
    }

    #[test]
    fn the_query_service_is_told_what_to_do_with_freed_memory() {
        use crate::allocator::FreedMemory;
        let freed = |extra: &[&str]| {
            let mut args = vec!["observatory", "query"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Query(args) => args.memory.freed_memory,
                other => panic!("parsed as another command: {other:?}"),
            })
        };
        assert_eq!(freed(&[]).unwrap(), FreedMemory::Lazy);
        assert_eq!(freed(&["--freed-memory", "keep"]).unwrap(), FreedMemory::Keep);
        assert_eq!(freed(&["--freed-memory", "return"]).unwrap(), FreedMemory::Return);
        let error = freed(&["--freed-memory", "never"]).unwrap_err().to_string();
        assert!(error.contains("--freed-memory") && error.contains("lazy"), "{error}");
    }
}
