//! `botectl`: the Bote command line: `stat`, `manage` and `topology`
//! (management of any router of a mesh) and `bench` (throughput and
//! latency, directly or through routers); `send` and `recv` join as
//! subcommands of [`Command`] later.

use std::process::ExitCode;

use botectl::bench::{self, BenchOptions};
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
