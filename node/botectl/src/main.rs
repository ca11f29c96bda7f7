//! `botectl`: the Bote command line: `stat`, `manage` and `topology`
//! (management of any router of a mesh) and `bench` (throughput and
//! latency, directly or through routers), `up`/`status`/`down` (a mesh of
//! `boted` processes on this machine from a topology file) and
//! `config-from-env` (a router's configuration for the container image),
//! `user add` (a users file for SASL PLAIN and SCRAM-SHA-256);
//! `send` and `recv` join as subcommands of [`Command`] later.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use botectl::bench::{self, BenchOptions};
use botectl::deploy;
use botectl::manage::cli::{self, ManageOptions, StatOptions, TopologyOptions};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "botectl", version, about = "The Bote router command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure throughput (msgs/s, MB/s, latency) or request/reply round
    /// trips, directly between clients or through routers.
    Bench(Box<BenchOptions>),
    /// The direct baseline's acceptor of `bench --mode connections` and
    /// `addresses` (started by the bench itself).
    #[command(hide = true)]
    ScaleAcceptor,
    /// Router statistics like qdstat: -g general, -c connections, -l links,
    /// -a addresses, -n routers of the mesh (--json for JSON).
    Stat(StatOptions),
    /// Query, read, create, update or delete entities (qdrouterd's types).
    Manage(ManageOptions),
    /// The mesh: routers, links and costs (table, DOT or JSON), from a
    /// router or from a bote-sim scenario.
    Topology(TopologyOptions),
    /// Start a mesh of boted processes on this machine from a topology file
    /// (or --generate one) and wait until every router sees all others.
    Up(UpArgs),
    /// Show the mesh started by `up` in RUN-DIR.
    Status {
        /// The run directory (default ./bote-run).
        #[arg(default_value = "bote-run")]
        run_dir: PathBuf,
    },
    /// Stop the mesh started by `up` in RUN-DIR (SIGTERM, wait, SIGKILL).
    Down {
        /// The run directory (default ./bote-run).
        #[arg(default_value = "bote-run")]
        run_dir: PathBuf,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Manage a users file (salted SCRAM-SHA-256 keys for SASL PLAIN and
    /// SCRAM-SHA-256): `user add --file FILE NAME`.
    User(botectl::user::UserOptions),
    /// Print a boted configuration built from BOTE_* environment variables
    /// (router id, listeners, connectors or ordinal wiring); see the
    /// container image's README section.
    ConfigFromEnv,
    /// Write a throw-away test CA (ca.pem), a server certificate for
    /// localhost and 127.0.0.1 (server.pem, server-key.pem) and a client
    /// certificate (client.pem, client-key.pem) into DIR. For tests and
    /// examples only: the keys are not encrypted.
    Certs {
        /// The directory to write into (created if missing).
        dir: PathBuf,
        /// More names (DNS or IP) for the server certificate.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// The client certificate's common name.
        #[arg(long, default_value = "client")]
        client: String,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// The topology file (TOML: routers and links).
    #[arg(required_unless_present = "generate", conflicts_with = "generate")]
    file: Option<PathBuf>,
    /// Generate a topology instead: ring, full or random:DEGREE, then N.
    #[arg(long, num_args = 2, value_names = ["SHAPE", "N"])]
    generate: Option<Vec<String>>,
    /// Seed of --generate random:DEGREE.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The run directory: configurations, logs, mesh.json.
    #[arg(long, default_value = "bote-run")]
    run_dir: PathBuf,
    /// The boted binary (default: $BOTED, else next to botectl).
    #[arg(long)]
    boted: Option<PathBuf>,
    /// Seconds to wait for the mesh to converge.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(options) => bench_command(&options),
        Command::ScaleAcceptor => match bench::scale::serve_acceptor() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("botectl scale-acceptor: {e}");
                ExitCode::from(2)
            }
        },
        Command::Stat(options) => print_or_fail("stat", cli::stat(&options)),
        Command::Manage(options) => print_or_fail("manage", cli::manage(&options)),
        Command::Topology(options) => print_or_fail("topology", cli::topology(&options)),
        Command::Up(args) => deploy_or_fail("up", up(&args)),
        Command::Status { run_dir } => deploy_or_fail("status", deploy::run::status(&run_dir)),
        Command::Down { run_dir, wait } => deploy_or_fail(
            "down",
            deploy::run::down(&run_dir, Duration::from_secs(wait)),
        ),
        Command::User(options) => match botectl::user::run(&options) {
            Ok(done) => {
                eprintln!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("botectl user: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Certs { dir, hosts, client } => match botectl::certs::write(&dir, &hosts, &client)
        {
            Ok(pki) => {
                println!(
                    "wrote {}, {}, {}, {}, {}",
                    pki.ca.display(),
                    pki.server_cert.display(),
                    pki.server_key.display(),
                    pki.client_cert.display(),
                    pki.client_key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("botectl certs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::ConfigFromEnv => match deploy::env::config_from(|k| std::env::var(k).ok()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("botectl config-from-env: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn up(args: &UpArgs) -> Result<String, deploy::run::RunError> {
    use deploy::run::RunError;
    let topology = match (&args.file, &args.generate) {
        (Some(file), _) => deploy::file::Topology::from_file(file)?,
        (None, Some(g)) => {
            let shape: deploy::generate::Shape = g[0].parse().map_err(RunError::Other)?;
            let n: usize = g[1].parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                RunError::Other(format!("--generate: \"{}\" is not a router count", g[1]))
            })?;
            let mut t = deploy::generate::topology(shape, n, args.seed);
            std::fs::create_dir_all(&args.run_dir).map_err(|e| {
                RunError::Other(format!("creating {}: {e}", args.run_dir.display()))
            })?;
            let path = args.run_dir.join("topology.toml");
            std::fs::write(&path, t.to_toml())
                .map_err(|e| RunError::Other(format!("writing {}: {e}", path.display())))?;
            t.file = path.display().to_string();
            t
        }
        (None, None) => unreachable!("clap requires FILE or --generate"),
    };
    let boted = args
        .boted
        .clone()
        .or_else(|| std::env::var_os("BOTED").map(PathBuf::from))
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("boted")))
                .unwrap_or_else(|| PathBuf::from("boted"))
        });
    deploy::run::up(
        &topology,
        &deploy::run::UpOptions {
            boted,
            run_dir: args.run_dir.clone(),
            timeout: Duration::from_secs(args.timeout),
            progress: !args.quiet,
        },
    )
}

fn deploy_or_fail(command: &str, result: Result<String, deploy::run::RunError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botectl {command}: {e}");
            if matches!(e, deploy::run::RunError::Interrupted) {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn print_or_fail(command: &str, result: Result<String, botectl::manage::ManageError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botectl {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench_command(options: &BenchOptions) -> ExitCode {
    if options.mode.is_scale() {
        return scale_command(options);
    }
    match bench::run(options) {
        Ok(report) => {
            if options.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                for run in &report.runs {
                    for p in &run.problems {
                        eprintln!("botectl bench: {}: {p}", run.path);
                    }
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("botectl bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn scale_command(options: &BenchOptions) -> ExitCode {
    match bench::run_scale(options) {
        Ok(report) => {
            if options.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                for run in &report.runs {
                    for p in &run.problems {
                        eprintln!("botectl bench: {}: {p}", run.path);
                    }
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("botectl bench: {e}");
            ExitCode::from(2)
        }
    }
}
