//! `boted`: the Bote router process. With no arguments it runs a standalone
//! router on 0.0.0.0:5672 with the embedded default configuration, as
//! `qdrouterd` does; `--config FILE` runs from a TOML file, and
//! `--check-config FILE` validates one without starting. `--state-file
//! PATH` keeps the router's state (id, bound listeners, routes and remote
//! consumers) in a JSON file for tests and tools (see `bote_node::state`).
//!
//! Signals: `SIGTERM`/`SIGINT` stop the router gracefully. `SIGHUP` re-reads
//! the `--config` file: a file that does not parse or validate is reported
//! (`file:line:column: ...`) and changes nothing; otherwise what can change
//! at run time (inter-router connector costs) is applied at once and every
//! other difference is logged as needing a restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bote_node::config::Config;
use bote_node::router::Router;
use bote_node::state::StateFile;
use bote_node::telemetry;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "boted", version, about = "Bote AMQP 1.0 router")]
struct Args {
    /// The TOML configuration file (default: the embedded default config).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE and exit: 0 when valid, 1 with the error otherwise.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Override the router id of the configuration.
    #[arg(long)]
    id: Option<String>,
    /// Keep the router's state in this JSON file: router id, bound listeners
    /// (role, host, port), routes (next hop, cost) and the remote routers
    /// with consumers per address. It appears once every listener is bound,
    /// is replaced atomically (write and rename) on every change, and is
    /// removed when the router stops.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match Config::from_file(path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("boted: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boted: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default().context("embedded default config")?,
    };
    if let Some(id) = &args.id {
        config.router.id = id.clone();
    }
    let state_file = match &args.state_file {
        Some(path) => Some(StateFile::new(path).context("--state-file")?),
        None => None,
    };
    let system = actix_rt::System::new();
    system.block_on(async move {
        // Inside the runtime: the OTLP exporter spawns its connection there.
        let telemetry = telemetry::init(
            &config.router.log_level,
            config.router.log_format,
            &config.telemetry,
            &config.router.id,
        )?;
        tracing::info!(
            router = %config.router.id,
            version = env!("CARGO_PKG_VERSION"),
            config = %args.config.as_ref().map_or("<embedded default>".into(), |p| p.display().to_string()),
            otlp = config.telemetry.otlp_endpoint.as_deref().unwrap_or("off"),
            "boted starting"
        );
        let (open_files, raised) = raise_open_file_limit();
        tracing::info!(
            "open files: up to {open_files}{}",
            if raised {
                " (raised to the hard limit)"
            } else {
                ""
            }
        );
        // Before anything binds: a SIGTERM that comes while the router
        // starts (a supervisor's stop right after the launch) is served as
        // a graceful stop once the router is up, never the default action
        // that ends the process at once.
        let signals = Signals::install()?;
        let result = async {
            let http = config.router.http_address();
            let metrics_max_series = config.router.metrics_max_series;
            let mut router = Router::start_with(config, bote_node::mqtt::protocols()).await?;
            if let Some(address) = http {
                match bote_node::http::start(&router, address, metrics_max_series).await {
                    Ok(bound) => tracing::info!("http api on http://{bound}"),
                    Err(e) => tracing::warn!("http api not started: cannot bind {address}: {e}"),
                }
            }
            if let Some(file) = state_file {
                router.write_state_to(file);
            }
            signals
                .serve(&mut router, args.config.as_deref(), args.id.as_deref())
                .await;
            let mqtt_store = bote_node::mqtt::store_writer(&router.shared);
            router.shutdown().await;
            // The MQTT store's last changes are committed before the end.
            if let Some(store) = mqtt_store {
                store.sync().await;
            }
            anyhow::Ok(())
        }
        .await;
        // Spans still buffered go out before the process ends; off this
        // thread, which keeps driving the exporter's connection meanwhile.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        result
    })?;
    tracing::info!("boted stopped");
    Ok(())
}

/// Raises the soft limit of open files to the hard limit: each connection
/// is a file, and the usual soft limit of 1,024 would refuse the 1,025th
/// client. Returns the limit in force and whether it was raised.
fn raise_open_file_limit() -> (u64, bool) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, false);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return (raised.rlim_cur, true);
            }
        }
    }
    (limit.rlim_cur, false)
}

/// The signals `boted` serves: SIGTERM and SIGINT stop it gracefully,
/// SIGHUP reloads the configuration.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; from here on these signals are queued for
    /// [`Signals::serve`] instead of taking their default action.
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Runs until SIGTERM or SIGINT (one received since [`Signals::install`]
    /// counts), reloading the configuration on each SIGHUP.
    async fn serve(
        mut self,
        router: &mut Router,
        config: Option<&Path>,
        id_override: Option<&str>,
    ) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    return;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT: shutting down");
                    return;
                }
                _ = self.hup.recv() => reload(router, config, id_override).await,
            }
        }
    }
}

/// SIGHUP: re-reads `path` and applies what can change at run time.
async fn reload(router: &mut Router, path: Option<&Path>, id_override: Option<&str>) {
    let Some(path) = path else {
        tracing::warn!(
            "SIGHUP: running on the embedded default configuration (no --config): nothing to reload"
        );
        return;
    };
    tracing::info!("SIGHUP: reloading {}", path.display());
    let mut config = match Config::from_file(path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("SIGHUP: {e}; the configuration in force is unchanged");
            return;
        }
    };
    if let Some(id) = id_override {
        config.router.id = id.to_owned();
    }
    router.reload(&config).await;
}
