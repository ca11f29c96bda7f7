//! The `bote-sim` command line: `run` one scenario file, or `sweep` mesh sizes
//! under Bote's and qdrouterd's timer profiles side by side.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use bote_sim::scenario::TopologyKind;
use bote_sim::{Scenario, engine, report, sweep};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bote-sim",
    version,
    about = "Deterministic discrete-event simulator of Bote meshes on the real bote-topology code"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Line,
    Ring,
    Grid,
    Random,
    ScaleFree,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario file; writes <name>.json and CSVs into --out.
    Run {
        /// The scenario (TOML).
        file: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the same scenario at several mesh sizes, bote vs qdrouterd_like.
    Sweep {
        /// Mesh sizes, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        sizes: Vec<usize>,
        /// Topology generator of the built-in scenario.
        #[arg(long, value_enum, default_value = "random")]
        topology: Kind,
        /// Use this scenario (its size replaced) instead of the built-in one.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "sim-sweep")]
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = std::io::stderr().is_terminal();
    match run(cli, progress) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bote-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli, progress: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Run { file, out, seed } => {
            let scenario = Scenario::load(&file)?;
            let seed = seed.unwrap_or(scenario.file.seed);
            let reports = engine::run_scenario(&scenario, seed, &scenario.file.profiles, progress)?;
            let files = report::write_run(&out, &scenario.name, &reports)?;
            let mut ok = true;
            for r in &reports {
                println!(
                    "{} [{}] {} routers {} links: boot convergence {}, events mean {} max {}, all converged {}, final divergence {}, control {} msgs / {} bytes ({:.1} msgs per router), wall {:.2} s",
                    r.scenario,
                    r.profile,
                    r.routers,
                    r.links,
                    fmt_s(r.boot_convergence_s),
                    fmt_s(r.mean_event_convergence_s),
                    fmt_s(r.max_event_convergence_s),
                    r.all_converged,
                    r.final_divergence,
                    r.control.messages,
                    r.control.bytes,
                    r.control.messages_per_router.mean,
                    r.host.wall_s
                );
                for f in &r.flows {
                    println!(
                        "  flow {} {} from {}: sent {} delivered {}/{} ({:.4}), dropped {}, duplicates {}, stretch {:.3}, jain {}",
                        f.address,
                        f.distribution,
                        f.from,
                        f.sent,
                        f.delivered,
                        f.expected,
                        f.delivery_ratio,
                        f.dropped,
                        f.duplicates,
                        f.mean_stretch,
                        f.jain_index
                            .map(|j| format!("{j:.3}"))
                            .unwrap_or_else(|| "-".into())
                    );
                }
                if scenario.file.expect.converged && !r.all_converged {
                    eprintln!(
                        "bote-sim: {} [{}]: expected every window to converge",
                        r.scenario, r.profile
                    );
                    ok = false;
                }
                if scenario.file.expect.zero_divergence && r.final_divergence != 0 {
                    eprintln!(
                        "bote-sim: {} [{}]: expected zero final divergence, got {}",
                        r.scenario, r.profile, r.final_divergence
                    );
                    ok = false;
                }
            }
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Sweep {
            sizes,
            topology,
            scenario,
            out,
            seed,
        } => {
            let kind = match topology {
                Kind::Line => TopologyKind::Line,
                Kind::Ring => TopologyKind::Ring,
                Kind::Grid => TopologyKind::Grid,
                Kind::Random => TopologyKind::Random,
                Kind::ScaleFree => TopologyKind::ScaleFree,
            };
            let base = scenario.as_deref().map(Scenario::load).transpose()?;
            let files = sweep::run_sweep(&sizes, kind, base.as_ref(), seed, &out, progress)?;
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn fmt_s(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3} s")).unwrap_or_else(|| "-".into())
}
