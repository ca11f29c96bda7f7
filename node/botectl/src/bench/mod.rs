//! `botectl bench`: throughput and latency of message transfer, directly
//! between clients (`--direct`, the baseline) or through one or more routers.
//!
//! [`run`] takes [`BenchOptions`] and returns a [`BenchReport`]. Each client
//! (sender, receiver, requester, responder) runs on its own thread with a
//! current-thread tokio runtime, driving the sans-I/O engine
//! ([`bote_amqp::Connection`]) over a `TcpStream`
//! ([`client`]). With `--spawn` the bench starts `boted` itself
//! ([`crate::spawn`]) and reads its CPU time and peak RSS from `/proc`
//! ([`proc`]). `--tls` runs every client connection over TLS ([`BenchTls`]).

pub mod client;
pub mod proc;
pub mod report;
pub mod scale;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio::net::{TcpListener, TcpStream};

use bote_amqp::Side;

use crate::spawn::{RouterSpec, SpawnError, SpawnedRouter};
use client::{BenchStream, Receiver, Requester, Responder, Role, Sender, Shared, Template};
use proc::ProcSample;
pub use report::{BenchReport, Latency, RouterUsage, RunReport};

/// Nanoseconds since a process-wide base instant (the clock of the send
/// timestamps carried in message bodies).
pub fn base_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Senders send as fast as credit allows.
    Throughput,
    /// Sequential request/reply round trips (latency).
    Rr,
    /// Many connections, each with one receiver on an address of its own:
    /// open rate and router memory per idle connection ([`scale`]).
    Connections,
    /// Many addresses with one consumer each on the last router of a
    /// chain: attach rate and reachability from the first ([`scale`]).
    Addresses,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Rr => "rr",
            Mode::Connections => "connections",
            Mode::Addresses => "addresses",
        }
    }

    /// The scale modes, run by [`run_scale`].
    pub fn is_scale(self) -> bool {
        matches!(self, Mode::Connections | Mode::Addresses)
    }
}

/// The options of `botectl bench`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct BenchOptions {
    /// A router both senders and receivers connect to.
    #[arg(long, value_name = "HOST:PORT")]
    pub router: Option<String>,
    /// Routers of a chain: senders connect to the first, receivers to the last.
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        conflicts_with = "router"
    )]
    pub routers: Vec<String>,
    /// No router: the receivers' side accepts on an ephemeral 127.0.0.1 port
    /// and the senders connect straight to it (the baseline).
    #[arg(long)]
    pub direct: bool,
    /// Start `boted` on an ephemeral 127.0.0.1 port for the run.
    #[arg(long)]
    pub spawn: bool,
    /// The `boted` executable for `--spawn` (default: next to botectl).
    #[arg(long, value_name = "PATH")]
    pub boted: Option<PathBuf>,
    /// With `--spawn`: a chain of this many routers.
    #[arg(long, value_name = "N")]
    pub chain: Option<usize>,
    /// Run direct, then through the router(s), and print the ratio.
    #[arg(long)]
    pub compare: bool,
    /// With `--spawn`: besides the untraced routed run, one run per
    /// sampling ratio given (e.g. `0,0.01,1`) on freshly spawned routers
    /// with message tracing on (`[telemetry]`), exporting to
    /// `--otlp-endpoint`. With `--runs N` the untraced and traced runs are
    /// interleaved N times (each round in the opposite order to the one
    /// before: untraced, 0, 0.01, then 0.01, 0, untraced, ...), and each
    /// traced run is compared with the untraced run of its own round.
    /// Traced routers are stopped cleanly after their run (SIGTERM), so
    /// they flush the spans still queued: the receiver's count is what
    /// they made.
    #[arg(
        long,
        value_name = "RATIO,..",
        value_delimiter = ',',
        requires = "spawn"
    )]
    pub tracing: Vec<f64>,
    /// Rounds to run: each round is the direct run (with `--compare`), the
    /// routed run and the traced runs (`--tracing`), on freshly spawned
    /// routers; the report gives each round's ratios and their medians.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub runs: usize,
    /// The OTLP/gRPC receiver the traced runs export to.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4317")]
    pub otlp_endpoint: String,
    /// The router's process id (for CPU and memory) when not spawned.
    #[arg(long, value_name = "PID")]
    pub router_pid: Option<u32>,
    /// Messages to send (requests in rr mode).
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Body size in bytes (100 makes a 113-byte message).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    #[arg(long, default_value_t = 1)]
    pub receivers: usize,
    /// Send presettled (at-most-once).
    #[arg(long)]
    pub presettled: bool,
    /// Receiver credit window.
    #[arg(long, default_value_t = 250)]
    pub credit: u32,
    #[arg(long, default_value = "bench")]
    pub address: String,
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    pub mode: Mode,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Connections to open (`--mode connections`, default 10,000; `--mode
    /// addresses`: connections the receivers share, default 100).
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Addresses, one receiver each (`--mode addresses`).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub addresses: usize,
    /// Connections opening at once (`--mode connections`, default 100), or
    /// attaches in flight per connection (`--mode addresses`, default 10).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// TLS on both client sides (throughput and rr modes): a throw-away CA
    /// and certificates are made for the run ([`crate::certs`]); with
    /// `--spawn` the router's listener is amqps, and the `--direct`
    /// baseline's acceptor speaks TLS too, so `--compare` sets TLS through
    /// the router beside TLS client to client.
    #[arg(long)]
    pub tls: bool,
    /// With `--spawn`: a line added to each spawned router's AMQP
    /// listener, in the config file's form (e.g. `amqp-on-mesh-thread =
    /// true`); repeat it for several. Applies to the routed runs, traced
    /// or not.
    #[arg(long, value_name = "KEY = VALUE", requires = "spawn")]
    pub listener_option: Vec<String>,
}

impl BenchOptions {
    /// `--connections`, or its default for the mode.
    pub fn connections(&self) -> usize {
        self.connections.unwrap_or(match self.mode {
            Mode::Addresses => 100,
            _ => 10_000,
        })
    }

    /// `--parallel`, or its default for the mode.
    pub fn parallel(&self) -> usize {
        self.parallel
            .unwrap_or(match self.mode {
                Mode::Addresses => 10,
                _ => 100,
            })
            .max(1)
    }
}

impl Default for BenchOptions {
    /// The command-line defaults.
    fn default() -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: BenchOptions,
        }
        Wrapper::parse_from(["bench"]).options
    }
}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench options: {0}")]
    Options(String),
    #[error("spawning boted: {0}")]
    Spawn(String),
    #[error("spawning boted: {0}")]
    Router(#[from] SpawnError),
    #[error("reading router usage from {0}")]
    Proc(String),
    #[error("{what} {addr}: {source}")]
    Io {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("bench thread panicked: {0}")]
    Panic(String),
}

/// Where a run sends its messages.
#[derive(Debug, Clone)]
enum Path {
    Direct,
    Routed {
        senders: String,
        receivers: String,
        label: String,
        /// The router whose CPU and memory are reported (the first).
        pid: Option<u32>,
        /// Every router of the path whose CPU is summed.
        pids: Vec<u32>,
    },
}

/// The TLS of a `--tls` run: a throw-away CA with a server certificate for
/// `localhost` (the router's amqps listener, or the direct acceptor), and
/// the client configuration that trusts it.
pub struct BenchTls {
    dir: PathBuf,
    pki: crate::certs::TestPki,
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl BenchTls {
    /// Makes the certificates (in a fresh temporary directory, removed on
    /// drop) and the rustls configurations (ring).
    pub fn new() -> Result<BenchTls, BenchError> {
        let tls_err = |e: String| BenchError::Options(format!("--tls: {e}"));
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "botectl-bench-tls-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let pki = crate::certs::write(&dir, &[], "bench").map_err(|e| tls_err(e.to_string()))?;
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))
        };
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = |path: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, BenchError> {
            CertificateDer::pem_slice_iter(&read(path)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(format!("{}: {e}", path.display())))
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&pki.ca)? {
            roots.add(ca).map_err(|e| tls_err(e.to_string()))?;
        }
        #[allow(deprecated)] // ring has no post-quantum groups; aws-lc is kept out
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let key = PrivateKeyDer::from_pem_slice(&read(&pki.server_key)?)
            .map_err(|e| tls_err(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs(&pki.server_cert)?, key)
            .map_err(|e| tls_err(e.to_string()))?;
        Ok(BenchTls {
            dir,
            pki,
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// The lines that make a spawned router's AMQP listener amqps.
    fn listener_options(&self) -> Vec<String> {
        vec![
            format!("tls-cert-file = {:?}", self.pki.server_cert),
            format!("tls-key-file = {:?}", self.pki.server_key),
        ]
    }
}

impl Drop for BenchTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the bench the options describe.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    validate(options)?;
    if options.mode.is_scale() {
        return Err(BenchError::Options(format!(
            "--mode {} is run by bench::run_scale",
            options.mode.name()
        )));
    }
    let routed = options.spawn || options.router.is_some() || !options.routers.is_empty();
    if options.compare && !routed {
        return Err(BenchError::Options(
            "--compare needs --spawn, --router or --routers for the routed run".into(),
        ));
    }
    if !options.direct && !routed {
        return Err(BenchError::Options(
            "say where to send: --direct, --spawn, --router HOST:PORT or --routers A,B".into(),
        ));
    }
    let tls = if options.tls {
        if !options.spawn && routed {
            return Err(BenchError::Options(
                "--tls needs --spawn (or --direct): the bench makes the certificates the router uses"
                    .into(),
            ));
        }
        Some(Arc::new(BenchTls::new()?))
    } else {
        None
    };
    let tls = tls.as_deref();
    let mut runs = Vec::new();
    // The runs of one round: `None` the untraced routed run, `Some(r)` a
    // traced one at sampling ratio `r`. Odd rounds run them in reverse, so
    // that a drift of the machine over the invocation does not favour one.
    let mut kinds: Vec<Option<f64>> = Vec::new();
    if routed {
        kinds.push(None);
    }
    kinds.extend(options.tracing.iter().copied().map(Some));
    let mut direct_ratios = Vec::new();
    for round in 0..options.runs.max(1) {
        let mut direct_rate = None;
        if options.direct || options.compare {
            let mut run = run_path(options, &Path::Direct, tls)?;
            run.round = round;
            direct_rate = Some(run.msgs_per_sec);
            runs.push(run);
        }
        let order: Vec<Option<f64>> = if round % 2 == 1 {
            kinds.iter().rev().copied().collect()
        } else {
            kinds.clone()
        };
        for kind in order {
            let mut run = match kind {
                None => routed_run(options, tls)?,
                Some(ratio) => {
                    let telemetry = format!(
                        "\n[telemetry]\notlp-endpoint = \"{}\"\nsampling-ratio = {ratio:?}\n",
                        options.otlp_endpoint
                    );
                    let (path, mut routers) = spawned_path(
                        options,
                        &telemetry,
                        &format!(", tracing at sampling-ratio {ratio}"),
                        tls,
                    )?;
                    let run = run_path(options, &path, tls)?;
                    // Measured: now stop them cleanly, so that they flush
                    // the spans still queued (a SIGKILL would lose them and
                    // the receiver's count would not say what was made).
                    for router in &mut routers {
                        router.stop(Duration::from_secs(10))?;
                    }
                    run
                }
            };
            run.round = round;
            run.tracing = kind;
            if kind.is_none()
                && let Some(direct) = direct_rate.filter(|d| *d > 0.0)
                && options.compare
            {
                direct_ratios.push(run.msgs_per_sec / direct);
            }
            runs.push(run);
        }
    }
    let ratio = report::median(&mut direct_ratios);
    Ok(BenchReport { runs, ratio })
}

/// The untraced routed run: on freshly spawned router(s) with `--spawn`,
/// else on the running one(s) named.
fn routed_run(options: &BenchOptions, tls: Option<&BenchTls>) -> Result<RunReport, BenchError> {
    if options.spawn {
        let (path, _routers) = spawned_path(options, "", "", tls)?;
        return run_path(options, &path, tls);
    }
    let path = if let Some(r) = &options.router {
        Path::Routed {
            senders: r.clone(),
            receivers: r.clone(),
            label: format!("router {r}"),
            pid: options.router_pid,
            pids: options.router_pid.into_iter().collect(),
        }
    } else {
        let first = options.routers[0].clone();
        let last = options.routers[options.routers.len() - 1].clone();
        Path::Routed {
            senders: first,
            receivers: last,
            label: format!("routers {}", options.routers.join(" -> ")),
            pid: options.router_pid,
            pids: options.router_pid.into_iter().collect(),
        }
    };
    run_path(options, &path, tls)
}

/// Runs a scale mode (`--mode connections` or `addresses`): the direct
/// baseline with `--direct` or `--compare`, then through the router(s).
pub fn run_scale(options: &BenchOptions) -> Result<scale::ScaleReport, BenchError> {
    validate(options)?;
    if !options.mode.is_scale() {
        return Err(BenchError::Options(format!(
            "--mode {} is not a scale mode",
            options.mode.name()
        )));
    }
    if options.connections() == 0 || options.addresses == 0 {
        return Err(BenchError::Options(
            "--connections and --addresses must be at least 1".into(),
        ));
    }
    let routed = options.spawn || options.router.is_some() || !options.routers.is_empty();
    if !options.direct && !routed {
        return Err(BenchError::Options(
            "say where to connect: --direct, --spawn, --router HOST:PORT or --routers A,B".into(),
        ));
    }
    let mut runs = Vec::new();
    if options.direct || options.compare {
        runs.push(scale::run_scale(options, &scale::Target::Direct)?);
    }
    if !routed {
        return Ok(scale::ScaleReport { runs });
    }
    if options.spawn {
        let boted = match &options.boted {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| BenchError::Spawn(format!("locating botectl: {e}")))?
                .with_file_name("boted"),
        };
        let n = options.chain.unwrap_or(if options.mode == Mode::Addresses {
            3
        } else {
            1
        });
        let routers = spawn_routers(&boted, n, Duration::from_secs(30), "")?;
        let (first, last) = (&routers[0], &routers[routers.len() - 1]);
        // Connections: everything on one router, measured. Addresses: the
        // receivers on the last router (measured), probes from the first.
        let label = if routers.len() > 1 {
            format!(
                "spawned chain of {} boted, receivers on the last {}, probes from the first {}",
                routers.len(),
                last.addr(),
                first.addr()
            )
        } else {
            format!("spawned boted {}", first.addr())
        };
        let target = scale::Target::Routed {
            receivers: last.addr(),
            first: (routers.len() > 1).then(|| first.addr()),
            label,
            pid: last.pid(),
            spawned_first: (routers.len() > 1).then_some(first),
        };
        runs.push(scale::run_scale(options, &target)?);
    } else {
        let list: Vec<String> = match &options.router {
            Some(r) => vec![r.clone()],
            None => options.routers.clone(),
        };
        let (first, last) = (list[0].clone(), list[list.len() - 1].clone());
        let target = scale::Target::Routed {
            receivers: last.clone(),
            first: (list.len() > 1).then_some(first),
            label: format!("routers {}", list.join(" -> ")),
            pid: options.router_pid,
            spawned_first: None,
        };
        runs.push(scale::run_scale(options, &target)?);
    }
    Ok(scale::ScaleReport { runs })
}

/// Spawns the router(s) `options` ask for, with `extra` appended to each
/// configuration and `note` to the run's label.
fn spawned_path(
    options: &BenchOptions,
    extra: &str,
    note: &str,
    tls: Option<&BenchTls>,
) -> Result<(Path, Vec<SpawnedRouter>), BenchError> {
    let boted = match &options.boted {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| BenchError::Spawn(format!("locating botectl: {e}")))?
            .with_file_name("boted"),
    };
    let n = options.chain.unwrap_or(1);
    let mut listener = tls.map(|t| t.listener_options()).unwrap_or_default();
    listener.extend(options.listener_option.iter().cloned());
    let routers = spawn_routers_with(&boted, n, Duration::from_secs(30), extra, &listener)?;
    let note = if tls.is_some() {
        format!(", amqps{note}")
    } else {
        note.to_owned()
    };
    let (first, last) = (&routers[0], &routers[routers.len() - 1]);
    let path = Path::Routed {
        senders: first.addr(),
        receivers: last.addr(),
        label: if routers.len() > 1 {
            format!(
                "spawned chain of {} boted {} -> {} (CPU and RSS of the first){note}",
                routers.len(),
                first.addr(),
                last.addr()
            )
        } else {
            format!("spawned boted {}{note}", first.addr())
        },
        pid: first.pid(),
        pids: routers.iter().filter_map(SpawnedRouter::pid).collect(),
    };
    Ok((path, routers))
}

/// One router (`bench`), or a chain of `n` (`bench.0` -> ... ->
/// `bench.{n-1}`, each dialling the one before), once every router of the
/// chain routes to all the others.
fn spawn_routers(
    boted: &std::path::Path,
    n: usize,
    wait: Duration,
    extra: &str,
) -> Result<Vec<SpawnedRouter>, SpawnError> {
    spawn_routers_with(boted, n, wait, extra, &[])
}

/// [`spawn_routers`] with `listener` lines added to each router's AMQP
/// listener (its TLS keys, for `--tls`).
fn spawn_routers_with(
    boted: &std::path::Path,
    n: usize,
    wait: Duration,
    extra: &str,
    listener: &[String],
) -> Result<Vec<SpawnedRouter>, SpawnError> {
    let with_listener = |spec: RouterSpec| {
        listener
            .iter()
            .fold(spec, |spec, line| spec.listener_option(line))
    };
    if n <= 1 {
        return Ok(vec![
            with_listener(RouterSpec::new("bench").extra(extra)).start(boted, wait)?,
        ]);
    }
    let mut routers: Vec<SpawnedRouter> = Vec::with_capacity(n);
    for i in 0..n {
        let mut spec = with_listener(RouterSpec::new(&format!("bench.{i}")).extra(extra));
        if i + 1 < n {
            spec = spec.inter_router(0);
        }
        if let Some(prev) = routers.last() {
            spec = spec.connect("prev", prev.inter_router_port, 1);
        }
        routers.push(spec.start(boted, wait)?);
    }
    let others = format!("routes to the {} other routers of the chain", n - 1);
    for r in &mut routers {
        r.wait_state(&others, wait, |s| s.routes.len() >= n - 1)?;
    }
    Ok(routers)
}

fn validate(o: &BenchOptions) -> Result<(), BenchError> {
    let bad = |m: &str| Err(BenchError::Options(m.to_owned()));
    if o.chain.is_some_and(|n| n > 1) && !o.spawn {
        return bad("--chain needs --spawn (or give --routers A,B for running routers)");
    }
    if o.messages == 0 {
        return bad("--messages must be at least 1");
    }
    if o.senders == 0 || o.receivers == 0 {
        return bad("--senders and --receivers must be at least 1");
    }
    if o.credit == 0 {
        return bad("--credit must be at least 1");
    }
    if o.runs == 0 {
        return bad("--runs must be at least 1");
    }
    if o.timeout == 0 {
        return bad("--timeout must be at least 1 second");
    }
    if o.spawn && (o.router.is_some() || !o.routers.is_empty()) {
        return bad("--spawn starts its own router: drop --router/--routers");
    }
    if o.direct && o.compare {
        return bad("--compare already runs --direct first");
    }
    if o.direct && (o.spawn || o.router.is_some() || !o.routers.is_empty()) {
        return bad("--direct uses no router (use --compare to run both)");
    }
    if o.messages < o.senders as u64 && !o.mode.is_scale() {
        return bad("--messages must be at least --senders");
    }
    Ok(())
}

/// A client thread: a current-thread runtime driving one role.
fn client_thread<R: Role + Send + 'static>(
    addr: String,
    container_id: String,
    mut role: R,
    shared: Arc<Shared>,
    deadline: Instant,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        rt.block_on(async move {
            let deadline = tokio::time::Instant::from_std(deadline);
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&addr))
                .await
                .map_err(|_| format!("connecting to {addr}: timed out"))?
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let stream = match tls {
                None => BenchStream::Plain(stream),
                Some(config) => {
                    let name = rustls::pki_types::ServerName::try_from("localhost")
                        .map_err(|e| format!("TLS server name: {e}"))?;
                    let session = tokio::time::timeout_at(
                        deadline,
                        tokio_rustls::TlsConnector::from(config).connect(name, stream),
                    )
                    .await
                    .map_err(|_| format!("TLS handshake with {addr}: timed out"))?
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                    BenchStream::Tls(Box::new(tokio_rustls::TlsStream::Client(session)))
                }
            };
            client::drive(
                stream,
                Side::Client,
                container_id,
                &mut role,
                &shared,
                deadline,
            )
            .await
        })
    })
}

/// The `--direct` acceptor: takes `expected` connections and serves each on
/// its own thread with the role `make` builds.
fn acceptor_thread<R, F>(
    listener: std::net::TcpListener,
    expected: usize,
    make: F,
    shared: Arc<Shared>,
    deadline: Instant,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::thread::JoinHandle<Result<(), String>>
where
    R: Role + Send + 'static,
    F: Fn(usize) -> R + Send + 'static,
{
    std::thread::spawn(move || {
        let accepted: Result<Vec<std::net::TcpStream>, String> = (|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            rt.block_on(async {
                let listener =
                    TcpListener::from_std(listener).map_err(|e| format!("acceptor: {e}"))?;
                let mut streams = Vec::new();
                for _ in 0..expected {
                    let (s, _) = tokio::time::timeout_at(
                        tokio::time::Instant::from_std(deadline),
                        listener.accept(),
                    )
                    .await
                    .map_err(|_| "acceptor: timed out waiting for senders to connect".to_owned())?
                    .map_err(|e| format!("acceptor: {e}"))?;
                    streams.push(s.into_std().map_err(|e| format!("acceptor: {e}"))?);
                }
                Ok(streams)
            })
        })();
        let mut handles = Vec::new();
        for (i, s) in accepted?.into_iter().enumerate() {
            let mut role = make(i);
            let shared = shared.clone();
            let tls = tls.clone();
            handles.push(std::thread::spawn(move || -> Result<(), String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?;
                rt.block_on(async move {
                    let stream = TcpStream::from_std(s).map_err(|e| format!("acceptor: {e}"))?;
                    let deadline = tokio::time::Instant::from_std(deadline);
                    let stream = match tls {
                        None => BenchStream::Plain(stream),
                        Some(config) => {
                            let session = tokio::time::timeout_at(
                                deadline,
                                tokio_rustls::TlsAcceptor::from(config).accept(stream),
                            )
                            .await
                            .map_err(|_| "acceptor: TLS handshake timed out".to_owned())?
                            .map_err(|e| format!("acceptor: TLS handshake: {e}"))?;
                            BenchStream::Tls(Box::new(tokio_rustls::TlsStream::Server(session)))
                        }
                    };
                    client::drive(
                        stream,
                        Side::Server,
                        format!("bench-acceptor-{i}"),
                        &mut role,
                        &shared,
                        deadline,
                    )
                    .await
                })
            }));
        }
        let mut first_error = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("acceptor connection thread panicked".into()));
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    })
}

/// Splits `total` into `parts` nearly equal shares.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

fn run_path(
    o: &BenchOptions,
    path: &Path,
    tls: Option<&BenchTls>,
) -> Result<RunReport, BenchError> {
    let client_tls = tls.map(|t| t.client.clone());
    let server_tls = tls.map(|t| t.server.clone());
    let deadline = Instant::now() + Duration::from_secs(o.timeout);
    let shared = Arc::new(Shared::new(o.messages, o.senders));
    let pid = match path {
        Path::Routed { pid, .. } => *pid,
        Path::Direct => None,
    };
    let all_pids = match path {
        Path::Routed { pids, .. } => pids.clone(),
        Path::Direct => Vec::new(),
    };
    let before = pid.map(ProcSample::read).transpose()?;
    let routers_before = cpu_of(&all_pids)?;
    let clients_before = ProcSample::read(std::process::id())?.cpu_seconds;
    let tag = std::process::id();
    let template = Template::new(o.size, None);
    let message_bytes = match o.mode {
        Mode::Throughput | Mode::Connections | Mode::Addresses => template.len(),
        Mode::Rr => Template::new(o.size, Some(&format!("{}.reply.{tag}.0", o.address))).len(),
    };
    let mut handles = Vec::new();
    // The receiving side first, so that senders find a consumer.
    let sender_addr = match path {
        Path::Direct => {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
                    what: "binding the direct acceptor on",
                    addr: "127.0.0.1:0".into(),
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| BenchError::Io {
                what: "reading the address of the direct acceptor",
                addr: "127.0.0.1:0".into(),
                source,
            })?;
            listener
                .set_nonblocking(true)
                .map_err(|source| BenchError::Io {
                    what: "configuring the direct acceptor",
                    addr: addr.to_string(),
                    source,
                })?;
            let (sh, credit, size, address, presettled) = (
                shared.clone(),
                o.credit,
                o.size,
                o.address.clone(),
                o.presettled,
            );
            handles.push(match o.mode {
                Mode::Throughput | Mode::Connections | Mode::Addresses => acceptor_thread(
                    listener,
                    o.senders,
                    move |i| {
                        Receiver::new(
                            sh.clone(),
                            format!("bench-receiver-{i}"),
                            address.clone(),
                            credit,
                            size,
                            true,
                        )
                    },
                    shared.clone(),
                    deadline,
                    server_tls.clone(),
                ),
                Mode::Rr => acceptor_thread(
                    listener,
                    o.senders,
                    move |i| {
                        Responder::new(
                            sh.clone(),
                            format!("bench-responder-{i}"),
                            address.clone(),
                            presettled,
                            credit,
                            size,
                            true,
                        )
                    },
                    shared.clone(),
                    deadline,
                    server_tls.clone(),
                ),
            });
            addr.to_string()
        }
        Path::Routed {
            senders, receivers, ..
        } => {
            for i in 0..o.receivers {
                let name = format!("bench-{tag}-receiver-{i}");
                let h = match o.mode {
                    Mode::Throughput | Mode::Connections | Mode::Addresses => client_thread(
                        receivers.clone(),
                        name.clone(),
                        Receiver::new(
                            shared.clone(),
                            name,
                            o.address.clone(),
                            o.credit,
                            o.size,
                            false,
                        ),
                        shared.clone(),
                        deadline,
                        client_tls.clone(),
                    ),
                    Mode::Rr => client_thread(
                        receivers.clone(),
                        name.clone(),
                        Responder::new(
                            shared.clone(),
                            name,
                            o.address.clone(),
                            o.presettled,
                            o.credit,
                            o.size,
                            false,
                        ),
                        shared.clone(),
                        deadline,
                        client_tls.clone(),
                    ),
                };
                handles.push(h);
            }
            senders.clone()
        }
    };
    for i in 0..o.senders {
        let count = share(o.messages, o.senders, i);
        let name = format!("bench-{tag}-sender-{i}");
        let h = match o.mode {
            Mode::Throughput | Mode::Connections | Mode::Addresses => client_thread(
                sender_addr.clone(),
                name.clone(),
                Sender::new(
                    shared.clone(),
                    name,
                    o.address.clone(),
                    count,
                    o.presettled,
                    template.clone(),
                ),
                shared.clone(),
                deadline,
                client_tls.clone(),
            ),
            Mode::Rr => client_thread(
                sender_addr.clone(),
                name.clone(),
                Requester::new(
                    shared.clone(),
                    name,
                    o.address.clone(),
                    format!("{}.reply.{tag}.{i}", o.address),
                    count,
                    o.presettled,
                    o.credit,
                    o.size,
                ),
                shared.clone(),
                deadline,
                client_tls.clone(),
            ),
        };
        handles.push(h);
    }
    let mut problems = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(e),
            Err(_) => return Err(BenchError::Panic("a client thread".into())),
        }
    }
    let after = pid.map(ProcSample::read).transpose()?;
    let routers_cpu_seconds = cpu_of(&all_pids)? - routers_before;
    let clients_cpu_seconds = ProcSample::read(std::process::id())?.cpu_seconds - clients_before;

    let sent = shared.sent.load(Ordering::Acquire);
    let received = shared.received.load(Ordering::Acquire);
    let accepted = shared.accepted.load(Ordering::Acquire);
    let released = shared.released.load(Ordering::Acquire);
    let modified = shared.modified.load(Ordering::Acquire);
    let rejected = shared.rejected.load(Ordering::Acquire);
    let first = shared.first_send_ns.load(Ordering::Acquire);
    let last = shared.last_ns.load(Ordering::Acquire);
    let elapsed = Duration::from_nanos(last.saturating_sub(first.min(last)));
    let secs = elapsed.as_secs_f64();
    let rate = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let samples = std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|e| e.into_inner()));
    let dropped = if o.presettled {
        sent.saturating_sub(received)
    } else {
        0
    };
    if received < o.messages {
        problems.push(format!(
            "{} of {} messages missing: received {received}, sent {sent}",
            o.messages - received,
            o.messages
        ));
    }
    if o.presettled && dropped > 0 {
        problems.push(format!(
            "{dropped} presettled messages dropped (sent {sent}, received {received})"
        ));
    }
    if !o.presettled && accepted < o.messages {
        problems.push(format!(
            "senders saw {accepted} of {} accepted (released {released}, modified {modified}, rejected {rejected})",
            o.messages
        ));
    }
    let router = match (before, after) {
        (Some(b), Some(a)) => Some(RouterUsage {
            cpu_seconds: a.cpu_seconds - b.cpu_seconds,
            cpu_us_per_message: if received > 0 {
                (a.cpu_seconds - b.cpu_seconds) * 1e6 / received as f64
            } else {
                0.0
            },
            rss_before_kb: b.rss_kb,
            peak_rss_kb: a.hwm_kb,
            routers: all_pids.len(),
            all_cpu_seconds: routers_cpu_seconds,
        }),
        _ => None,
    };
    Ok(RunReport {
        path: match path {
            Path::Direct => "direct".into(),
            Path::Routed { label, .. } => label.clone(),
        },
        mode: o.mode.name(),
        presettled: o.presettled,
        senders: o.senders,
        receivers: match path {
            Path::Direct => o.senders,
            Path::Routed { .. } => o.receivers,
        },
        messages: o.messages,
        message_bytes,
        sent,
        received,
        accepted,
        released,
        modified,
        rejected,
        dropped,
        elapsed,
        msgs_per_sec: rate(received as f64),
        mb_per_sec: rate(received as f64 * message_bytes as f64) / 1e6,
        latency: Latency::from_nanos(samples),
        router,
        clients_cpu_seconds,
        round: 0,
        tracing: None,
        problems,
    })
}

/// The CPU time the processes `pids` used so far, summed.
fn cpu_of(pids: &[u32]) -> Result<f64, BenchError> {
    let mut total = 0.0;
    for &pid in pids {
        total += ProcSample::read(pid)?.cpu_seconds;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_total_exactly() {
        let total: u64 = (0..3).map(|i| share(10, 3, i)).sum();
        assert_eq!(total, 10);
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }

    #[test]
    fn defaults_match_the_command_line() {
        let o = BenchOptions::default();
        assert_eq!(o.messages, 100_000);
        assert_eq!(o.size, 100);
        assert_eq!(o.credit, 250);
        assert_eq!(o.mode, Mode::Throughput);
        assert_eq!(o.timeout, 120);
    }

    #[test]
    fn a_chain_without_spawn_is_refused() {
        let o = BenchOptions {
            router: Some("127.0.0.1:5672".into()),
            chain: Some(3),
            ..BenchOptions::default()
        };
        let e = run(&o).unwrap_err().to_string();
        assert!(e.contains("--chain needs --spawn"), "{e}");
    }

    #[test]
    fn a_100_byte_body_makes_a_113_byte_message() {
        assert_eq!(Template::new(100, None).len(), 113);
    }
}
