//! `botectl bench --mode connections` and `--mode addresses`: how a router
//! scales in connections and addresses, not in messages per second.
//!
//! - **connections**: `--connections N` clients each open a connection
//!   with one receiver on an address of its own (`ADDRESS.<i>`, credit 1),
//!   at most `--parallel` opening at a time; a connection counts as open
//!   when its receiver's attach reply arrives. Then they stay idle for a
//!   second and the router's resident memory is read: RSS per idle
//!   connection = (RSS with all of them open − RSS before) / N.
//! - **addresses**: `--addresses N` receivers, each on an address of its
//!   own, attached over `--connections C` connections to the last router of
//!   a chain (`--spawn --chain 3`, or `--routers A,B,C`), `--parallel`
//!   attaches in flight per connection (every connection is open before
//!   the first attach, so the rates are of attaches alone). Then a message
//!   is sent from the first router (anonymous sender, unsettled) to each of
//!   the 1,000 addresses attached last, and sent again while it comes back
//!   released, until every one is accepted: how long after the last attach
//!   the far router routes to them. With a spawned chain, the first
//!   router's state file is then read until it lists every address.
//!
//! Both report the open (attach) rate over the first 1,000 and the last
//! 1,000 completions. `--compare` runs the same clients first against a
//! trivial acceptor in this process (the Bote engine answering open, begin
//! and attach; no routing), the baseline.
//!
//! All connections run as tasks of one current-thread runtime with small
//! buffers (a thread per connection, as the throughput clients have, does
//! not scale to 10,000), and each answers the router's heartbeats.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use bote_amqp::{
    Connection, DeliveryState, Event, LinkConfig, LinkId, MessageBuilder, Role as LinkRole,
    SendDelivery, Side, Source,
};

use super::proc::{ProcSample, threads_cpu_ns};
use super::{BenchError, BenchOptions, Mode};
use crate::spawn::SpawnedRouter;

/// Read buffer per connection: an idle receiver reads little.
const READ_CHUNK: usize = 4 * 1024;

/// How many completions the first and last rates are taken over.
const RATE_WINDOW: usize = 1_000;

/// Addresses probed with a message from the first router.
const PROBES: usize = 1_000;

/// One run of a scale mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRun {
    /// "direct" or the routers' label.
    pub path: String,
    /// "connections" or "addresses".
    pub mode: &'static str,
    /// Connections opened.
    pub connections: usize,
    /// Receivers attached (one address each).
    pub receivers: usize,
    /// From the first connect to the last attach reply.
    pub elapsed: Duration,
    /// Receivers attached per second over the whole run.
    pub per_sec: f64,
    /// Attach rate over the first and the last [`RATE_WINDOW`] completions.
    pub first_per_sec: f64,
    pub last_per_sec: f64,
    /// The measured process's CPU per attach (µs) over about the first
    /// and the last [`RATE_WINDOW`] completions ([`cpu_per_attach`]):
    /// what the work per attach is, whatever else the machine does.
    pub first_cpu_us: Option<f64>,
    pub last_cpu_us: Option<f64>,
    /// The same over the first and the last tenth of the attaches: windows
    /// long enough (~0.3 s at 100,000) that batching and scheduling
    /// average out.
    pub first_tenth_cpu_us: Option<f64>,
    pub last_tenth_cpu_us: Option<f64>,
    /// The router (first of a chain for connections, last for addresses)
    /// before the run and with everything open and idle (kB).
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// CPU seconds the measured router spent during the opens.
    pub cpu_seconds: Option<f64>,
    /// From the last attach reply until a message from the first router
    /// was accepted on each of the [`PROBES`] addresses attached last
    /// (addresses mode through routers).
    pub reachable_after: Option<Duration>,
    /// From the last attach reply to the first snapshot of the first
    /// router's state file that lists every address (spawned chain; the
    /// file is written at most every few hundred ms at this size).
    pub listed_after: Option<Duration>,
    /// Probes accepted / probes (each sent again while it comes back
    /// released).
    pub probes: Option<(u64, u64)>,
    pub problems: Vec<String>,
}

impl ScaleRun {
    /// RSS per receiver's connection (connections mode) in KiB.
    pub fn rss_per_connection_kib(&self) -> Option<f64> {
        match (self.rss_before_kb, self.rss_after_kb) {
            (Some(b), Some(a)) if self.connections > 0 => {
                Some(a.saturating_sub(b) as f64 / self.connections as f64)
            }
            _ => None,
        }
    }

    /// RSS per address (addresses mode) in bytes.
    pub fn rss_per_address_bytes(&self) -> Option<f64> {
        match (self.rss_before_kb, self.rss_after_kb) {
            (Some(b), Some(a)) if self.receivers > 0 => {
                Some(a.saturating_sub(b) as f64 * 1024.0 / self.receivers as f64)
            }
            _ => None,
        }
    }

    /// CPU per attach over the last [`RATE_WINDOW`] / over the first.
    pub fn cpu_per_attach_growth(&self) -> Option<f64> {
        match (self.first_cpu_us, self.last_cpu_us) {
            (Some(f), Some(l)) if f > 0.0 => Some(l / f),
            _ => None,
        }
    }

    fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        let optu = |v: Option<u64>| v.map_or("null".to_owned(), |v| v.to_string());
        format!(
            "{{\"path\":{},\"mode\":\"{}\",\"connections\":{},\"receivers\":{},\
             \"elapsed_s\":{:.3},\"per_sec\":{:.1},\"first_per_sec\":{:.1},\
             \"last_per_sec\":{:.1},\"rss_before_kb\":{},\"rss_after_kb\":{},\
             \"rss_per_connection_kib\":{},\"cpu_seconds\":{},\"reachable_after_s\":{},\
             \"listed_after_s\":{},\"probes_accepted\":{},\"probes_sent\":{},\
             \"first_cpu_per_attach_us\":{},\"last_cpu_per_attach_us\":{},\
             \"first_tenth_cpu_per_attach_us\":{},\"last_tenth_cpu_per_attach_us\":{},\"problems\":{}}}",
            serde_json::Value::from(self.path.clone()),
            self.mode,
            self.connections,
            self.receivers,
            self.elapsed.as_secs_f64(),
            self.per_sec,
            self.first_per_sec,
            self.last_per_sec,
            optu(self.rss_before_kb),
            optu(self.rss_after_kb),
            opt(self.rss_per_connection_kib()),
            opt(self.cpu_seconds),
            opt(self.reachable_after.map(|d| d.as_secs_f64())),
            opt(self.listed_after.map(|d| d.as_secs_f64())),
            optu(self.probes.map(|p| p.0)),
            optu(self.probes.map(|p| p.1)),
            opt(self.first_cpu_us),
            opt(self.last_cpu_us),
            opt(self.first_tenth_cpu_us),
            opt(self.last_tenth_cpu_us),
            serde_json::Value::from(self.problems.clone()),
        )
    }
}

/// What a scale bench measured: a direct baseline (with `--compare`) and/or
/// a routed run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleReport {
    pub runs: Vec<ScaleRun>,
}

impl ScaleReport {
    /// True when no run saw a problem.
    pub fn is_complete(&self) -> bool {
        self.runs.iter().all(|r| r.problems.is_empty())
    }

    pub fn to_json(&self) -> String {
        let runs: Vec<String> = self.runs.iter().map(ScaleRun::to_json).collect();
        let ratio = match self.runs.as_slice() {
            [direct, routed] if direct.per_sec > 0.0 => {
                format!("{:.3}", routed.per_sec / direct.per_sec)
            }
            _ => "null".into(),
        };
        format!("{{\"runs\":[{}],\"ratio\":{ratio}}}", runs.join(","))
    }
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.runs {
            writeln!(f, "{} ({})", r.path, r.mode)?;
            writeln!(
                f,
                "  {} receivers on {} connections attached in {:.3} s: {:.0}/s \
                 (first {}: {:.0}/s, last {}: {:.0}/s, last/first {:.2})",
                r.receivers,
                r.connections,
                r.elapsed.as_secs_f64(),
                r.per_sec,
                RATE_WINDOW,
                r.first_per_sec,
                RATE_WINDOW,
                r.last_per_sec,
                if r.first_per_sec > 0.0 {
                    r.last_per_sec / r.first_per_sec
                } else {
                    0.0
                }
            )?;
            if let (Some(first), Some(last)) = (r.first_cpu_us, r.last_cpu_us) {
                writeln!(
                    f,
                    "  {} CPU per attach: first {RATE_WINDOW} {first:.1} µs, last {RATE_WINDOW} \
                     {last:.1} µs, last/first {:.2}",
                    if r.path == "direct" {
                        "acceptor"
                    } else {
                        "router"
                    },
                    r.cpu_per_attach_growth().unwrap_or(0.0)
                )?;
            }
            if let (Some(first), Some(last)) = (r.first_tenth_cpu_us, r.last_tenth_cpu_us) {
                writeln!(
                    f,
                    "  {} CPU per attach: first tenth {first:.1} µs, last tenth {last:.1} µs, \
                     last/first {:.2}",
                    if r.path == "direct" {
                        "acceptor"
                    } else {
                        "router"
                    },
                    if first > 0.0 { last / first } else { 0.0 }
                )?;
            }
            if let (Some(b), Some(a)) = (r.rss_before_kb, r.rss_after_kb) {
                let who = if r.path == "direct" {
                    "acceptor"
                } else {
                    "router"
                };
                write!(f, "  {who} RSS {b} kB -> {a} kB")?;
                if r.mode == "connections" {
                    write!(
                        f,
                        ", {:.2} KiB per idle connection",
                        r.rss_per_connection_kib().unwrap_or(0.0)
                    )?;
                } else {
                    write!(
                        f,
                        ", {:.0} B per address",
                        r.rss_per_address_bytes().unwrap_or(0.0)
                    )?;
                }
                if let Some(cpu) = r.cpu_seconds {
                    write!(f, ", {cpu:.2} s CPU during the opens")?;
                }
                writeln!(f)?;
            }
            if let (Some(d), Some((accepted, sent))) = (r.reachable_after, r.probes) {
                writeln!(
                    f,
                    "  the {sent} addresses attached last reachable from the first router \
                     {:.3} s after the last attach ({accepted} of {sent} probes accepted)",
                    d.as_secs_f64()
                )?;
            }
            if let Some(d) = r.listed_after {
                writeln!(
                    f,
                    "  all {} addresses in the first router's state file {:.3} s after the last attach",
                    r.receivers,
                    d.as_secs_f64()
                )?;
            }
            for p in &r.problems {
                writeln!(f, "  PROBLEM: {p}")?;
            }
        }
        if let [direct, routed] = self.runs.as_slice()
            && direct.per_sec > 0.0
        {
            writeln!(
                f,
                "routed / direct attach rate: {:.3}",
                routed.per_sec / direct.per_sec
            )?;
        }
        Ok(())
    }
}

/// Raises this process's soft limit of open files to its hard limit (10,000
/// connections need more than the usual 1,024); returns the limit in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        // Root may raise the hard limit too (up to fs.nr_open).
        let wanted = limit.rlim_max.max(1 << 18);
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return wanted;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// Where the scale clients go.
pub(super) enum Target<'a> {
    Direct,
    Routed {
        /// Where receivers attach (the only router, or the last of a chain).
        receivers: String,
        /// The first router (probes, reachability), when it is not the same.
        first: Option<String>,
        label: String,
        /// The process whose RSS and CPU is measured.
        pid: Option<u32>,
        /// The first router, spawned: its state file shows reachability.
        spawned_first: Option<&'a SpawnedRouter>,
    },
}

/// Runs one scale pass (the options' mode) against `target`.
pub(super) fn run_scale(o: &BenchOptions, target: &Target<'_>) -> Result<ScaleRun, BenchError> {
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Options(format!("tokio runtime: {e}")))?;
    let (connections, per_connection) = match o.mode {
        Mode::Connections => (o.connections(), 1),
        _ => {
            let c = o.connections().min(o.addresses).max(1);
            (c, o.addresses.div_ceil(c))
        }
    };
    let receivers = match o.mode {
        Mode::Connections => o.connections(),
        _ => o.addresses,
    };
    // The direct baseline's acceptor runs on a thread of its own, as a
    // router would in a process of its own.
    let (addr, acceptor) = match target {
        Target::Direct => {
            let (addr, handle) = spawn_acceptor()?;
            (addr, Some(handle))
        }
        Target::Routed { receivers, .. } => (receivers.clone(), None),
    };
    let pid = match target {
        Target::Routed { pid, .. } => *pid,
        Target::Direct => acceptor.as_ref().map(|a| a.child.id()),
    };
    let before = pid.map(ProcSample::read).transpose()?;
    let deadline = Instant::now() + Duration::from_secs(o.timeout);
    let tag = std::process::id();
    let (stop_tx, stop_rx) = watch::channel(false);
    let times: Arc<Mutex<Vec<(u64, usize)>>> = Arc::new(Mutex::new(Vec::with_capacity(receivers)));
    let mut problems = Vec::new();
    let mut reachable_after = None;
    let mut listed_after = None;
    let mut probes = None;
    let mut after = None;
    let start: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (go_tx, go_rx) = watch::channel(false);
    // (attaches done, the measured process's CPU ns), every 2 ms.
    let mut cpu_samples: Vec<(usize, u64)> = Vec::new();
    let barrier = o.mode == Mode::Addresses;
    if !barrier {
        let _ = start.set(Instant::now());
    }
    rt.block_on(async {
        let opens = Arc::new(Semaphore::new(o.parallel()));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let first = c * per_connection;
            let last = (first + per_connection).min(receivers);
            if first >= last {
                break;
            }
            let client = Client {
                addr: addr.clone(),
                container: format!("bench-scale-{tag}-{c}"),
                addresses: (first..last)
                    .map(|i| format!("{}.{i}", o.address))
                    .collect(),
                window: if o.mode == Mode::Connections {
                    1
                } else {
                    o.parallel()
                },
                start: start.clone(),
                ready: barrier.then(|| (ready.clone(), go_rx.clone())),
                times: times.clone(),
                first_index: first,
                stop: stop_rx.clone(),
            };
            let opens = (o.mode == Mode::Connections).then(|| opens.clone());
            tasks.spawn(client.run(opens));
        }
        let opened = tasks.len();
        // Wait for every attach (or a failure, or the deadline); in addresses
        // mode, first for every connection to be open.
        let all_attached = async {
            if barrier {
                while ready.load(std::sync::atomic::Ordering::Acquire) < opened {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let _ = start.set(Instant::now());
                let _ = go_tx.send(true);
            }
            loop {
                let count = times.lock().unwrap_or_else(|e| e.into_inner()).len();
                if let Some(pid) = pid
                    && let Ok(ns) = threads_cpu_ns(pid, CPU_EXCLUDED)
                {
                    cpu_samples.push((count, ns));
                }
                if count >= receivers {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let failures = async {
            // A client task that ends before the stop failed.
            match tasks.join_next().await {
                Some(Ok(Err(e))) => e,
                Some(Ok(Ok(()))) => "a client ended before the run did".to_owned(),
                Some(Err(e)) => format!("a client task failed: {e}"),
                None => "no client ran".to_owned(),
            }
        };
        tokio::select! {
            _ = all_attached => {}
            e = failures => problems.push(e),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                problems.push(format!("timed out (--timeout {} s)", o.timeout));
            }
        }
        let last_attach = Instant::now();
        let last_attach_wall = SystemTime::now();
        if problems.is_empty() {
            if let Target::Routed {
                first: Some(first), ..
            } = target
                && o.mode == Mode::Addresses
            {
                // The addresses attached last are the last to reach the far
                // router: probe them until each is accepted.
                let mut order = times.lock().unwrap_or_else(|e| e.into_inner()).clone();
                order.sort_unstable();
                let latest: Vec<String> = order
                    .iter()
                    .rev()
                    .take(PROBES)
                    .map(|(_, i)| format!("{}.{i}", o.address))
                    .collect();
                match probe(first, latest, deadline).await {
                    Ok(p) => {
                        reachable_after = Some(last_attach.elapsed());
                        probes = Some(p);
                    }
                    Err(e) => problems.push(format!("probes: {e}")),
                }
            }
            if let Target::Routed {
                spawned_first: Some(first),
                ..
            } = target
                && o.mode == Mode::Addresses
            {
                match wait_listed(first, &o.address, receivers, last_attach_wall, deadline).await {
                    Ok(d) => listed_after = Some(d),
                    Err(e) => problems.push(e),
                }
            }
            // Idle for a second, then read the router's memory.
            tokio::time::sleep(Duration::from_secs(1)).await;
            after = pid.map(ProcSample::read);
        }
        let _ = stop_tx.send(true);
        let closing = async {
            while let Some(r) = tasks.join_next().await {
                if let Ok(Err(e)) = r
                    && problems.len() < 5
                {
                    problems.push(e);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    });
    drop(acceptor);
    let after = after.transpose()?;
    let mut times: Vec<u64> = std::mem::take(&mut *times.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .map(|(ns, _)| ns)
        .collect();
    times.sort_unstable();
    let done = times.len();
    if done < receivers && problems.is_empty() {
        problems.push(format!("{done} of {receivers} receivers attached"));
    }
    let elapsed = Duration::from_nanos(times.last().copied().unwrap_or(0));
    let rate = |n: usize, ns: u64| {
        if ns > 0 {
            n as f64 / (ns as f64 / 1e9)
        } else {
            0.0
        }
    };
    let window = RATE_WINDOW.min(done);
    let first_per_sec = if window > 0 {
        rate(window, times[window - 1])
    } else {
        0.0
    };
    let last_per_sec = if done > window && window > 0 {
        rate(window, times[done - 1] - times[done - 1 - window])
    } else {
        first_per_sec
    };
    let (first_cpu_us, last_cpu_us) = cpu_per_attach(&cpu_samples, RATE_WINDOW);
    let (first_tenth_cpu_us, last_tenth_cpu_us) = cpu_per_attach(&cpu_samples, receivers / 10);
    Ok(ScaleRun {
        first_cpu_us,
        last_cpu_us,
        first_tenth_cpu_us,
        last_tenth_cpu_us,
        path: match target {
            Target::Direct => "direct".into(),
            Target::Routed { label, .. } => label.clone(),
        },
        mode: if o.mode == Mode::Connections {
            "connections"
        } else {
            "addresses"
        },
        connections,
        receivers,
        elapsed,
        per_sec: rate(done, elapsed.as_nanos() as u64),
        first_per_sec,
        last_per_sec,
        rss_before_kb: before.map(|s| s.rss_kb),
        rss_after_kb: after.map(|s| s.rss_kb),
        cpu_seconds: match (before, after) {
            (Some(b), Some(a)) => Some(a.cpu_seconds - b.cpu_seconds),
            _ => None,
        },
        reachable_after,
        listed_after,
        probes,
        problems,
    })
}

/// Threads left out of the CPU per attach: the state file's writer (it
/// snapshots every address at most a quarter of the time, for the bench's
/// reachability check and `botectl`; not work an attach does).
const CPU_EXCLUDED: &[&str] = &["state-file"];

/// CPU per attach (µs) over the samples spanning about the first `window`
/// attaches and about the last `window`: from the last sample before the
/// window to the first sample past it, divided by the attaches between
/// them. Samples are (attaches done, CPU ns), in order.
pub fn cpu_per_attach(samples: &[(usize, u64)], window: usize) -> (Option<f64>, Option<f64>) {
    let per = |a: (usize, u64), b: (usize, u64)| {
        (b.0 > a.0).then(|| b.1.saturating_sub(a.1) as f64 / 1e3 / (b.0 - a.0) as f64)
    };
    let (Some(&start), Some(&end)) = (samples.first(), samples.last()) else {
        return (None, None);
    };
    if end.0 < 2 * window {
        return (None, None);
    }
    let first_end = samples.iter().find(|s| s.0 >= start.0 + window).copied();
    let last_start = samples
        .iter()
        .rev()
        .find(|s| s.0 <= end.0 - window)
        .copied();
    (
        first_end.and_then(|e| per(start, e)),
        last_start.and_then(|s| per(s, end)),
    )
}

/// Reads the first router's state file until it lists every address
/// (`prefix.<i>`) with a consumer elsewhere; returns how long after
/// `last_attach` the snapshot that first did was taken.
async fn wait_listed(
    first: &SpawnedRouter,
    prefix: &str,
    count: usize,
    last_attach: SystemTime,
    deadline: Instant,
) -> Result<Duration, String> {
    let prefix = format!("{prefix}.");
    loop {
        if let Some(state) = first.state().map_err(|e| e.to_string())? {
            let listed = state
                .addresses
                .iter()
                .filter(|(a, routers)| a.starts_with(&prefix) && !routers.is_empty())
                .count();
            if listed >= count {
                let at = UNIX_EPOCH + Duration::from_secs_f64(state.written_at);
                return Ok(at.duration_since(last_attach).unwrap_or(Duration::ZERO));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the first router's state never listed all {count} addresses"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one unsettled message from `router` (an anonymous sender) to each
/// of `targets`, again after a few milliseconds for each that comes back
/// released (no path yet), until every one is accepted; returns (accepted,
/// targets). Any other outcome fails.
async fn probe(
    router: &str,
    targets: Vec<String>,
    deadline: Instant,
) -> Result<(u64, u64), String> {
    let mut lean =
        Lean::connect(router, format!("bench-scale-probe-{}", std::process::id())).await?;
    lean.conn.open();
    let session = lean.conn.begin().map_err(|e| format!("begin: {e}"))?;
    let link = lean
        .conn
        .attach(session, LinkConfig::sender("probe", None))
        .map_err(|e| format!("attach: {e}"))?;
    let total = targets.len() as u64;
    // Indexes of targets to send (again).
    let mut pending: std::collections::VecDeque<usize> = (0..targets.len()).collect();
    let mut retry: Vec<usize> = Vec::new();
    let mut retry_at = tokio::time::Instant::now();
    let mut accepted = 0u64;
    let mut tag = 0u64;
    let (_stop_tx, mut stop) = watch::channel(false);
    while accepted < total {
        if !retry.is_empty() && tokio::time::Instant::now() >= retry_at {
            pending.extend(retry.drain(..));
        }
        let mut credit = lean.conn.link(link).map_or(0, |l| l.credit());
        while credit > 0
            && let Some(i) = pending.pop_front()
        {
            let payload = MessageBuilder::new().to(&targets[i]).data(b"probe").build();
            lean.conn
                .send(
                    link,
                    SendDelivery {
                        tag: bote_amqp::DeliveryTag::from_slice(&tag.to_be_bytes()),
                        payload,
                        settled: false,
                        message_format: 0,
                        context: i as u64,
                        complete: true,
                    },
                )
                .map_err(|e| format!("send: {e}"))?;
            tag += 1;
            credit -= 1;
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out with {accepted} of {total} accepted"));
        }
        let turn = tokio::time::timeout(Duration::from_millis(5), lean.turn(&mut stop)).await;
        if let Ok(turn) = turn
            && let Turn::Eof = turn?
        {
            return Err("the router closed the connection".into());
        }
        while let Some(event) = lean.conn.poll_event() {
            match event {
                Event::Disposition {
                    state,
                    settled: true,
                    context,
                    ..
                } => match state {
                    Some(DeliveryState::Accepted) => accepted += 1,
                    Some(DeliveryState::Released) | None => {
                        if retry.is_empty() {
                            retry_at = tokio::time::Instant::now() + Duration::from_millis(5);
                        }
                        retry.push(context as usize);
                    }
                    other => {
                        return Err(format!("{}: {other:?}", targets[context as usize]));
                    }
                },
                Event::Closed { error } => {
                    return Err(format!("connection closed: {error:?}"));
                }
                Event::LinkDetached(d) => return Err(format!("link detached: {:?}", d.error)),
                _ => {}
            }
        }
    }
    lean.conn.close(None);
    let _ = lean.flush().await;
    Ok((accepted, total))
}

/// One client connection of a scale run: attaches a receiver on each of its
/// addresses, at most `window` attaches in flight, records when each
/// completes, then stays connected (accepting whatever arrives) until told
/// to stop.
struct Client {
    addr: String,
    container: String,
    addresses: Vec<String>,
    window: usize,
    /// When attaching began (set before `go` fires).
    start: Arc<std::sync::OnceLock<Instant>>,
    /// Addresses mode: connections opened so far; attaching waits for
    /// `go`, so that the attach rate does not include opening connections.
    ready: Option<(Arc<std::sync::atomic::AtomicUsize>, watch::Receiver<bool>)>,
    /// (nanoseconds since `start`, address index) of each attach reply.
    times: Arc<Mutex<Vec<(u64, usize)>>>,
    /// Index of this client's first address.
    first_index: usize,
    stop: watch::Receiver<bool>,
}

impl Client {
    async fn run(mut self, opens: Option<Arc<Semaphore>>) -> Result<(), String> {
        let mut permit = match &opens {
            Some(s) => Some(s.acquire().await.map_err(|e| e.to_string())?),
            None => None,
        };
        let mut lean = Lean::connect(&self.addr, self.container.clone()).await?;
        lean.conn.open();
        let session = lean.conn.begin().map_err(|e| format!("begin: {e}"))?;
        if let Some((ready, mut go)) = self.ready.take() {
            // Open and begin, then wait for every connection.
            let mut begun = false;
            while !begun {
                match lean.turn(&mut self.stop).await? {
                    Turn::More => {}
                    _ => return Err(format!("{}: connection ended before attaching", self.addr)),
                }
                while let Some(event) = lean.conn.poll_event() {
                    match event {
                        Event::SessionBegun { .. } => begun = true,
                        Event::Closed { error } => {
                            return Err(format!("{}: connection closed: {error:?}", self.addr));
                        }
                        _ => {}
                    }
                }
            }
            ready.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            while !*go.borrow() {
                go.changed().await.map_err(|e| e.to_string())?;
            }
        }
        let start = *self.start.get_or_init(Instant::now);
        let mut next = 0;
        let mut in_flight: Vec<(LinkId, usize)> = Vec::new();
        let mut done = 0;
        let mut stopped = false;
        loop {
            while in_flight.len() < self.window && next < self.addresses.len() {
                let address = &self.addresses[next];
                let link = lean
                    .conn
                    .attach(
                        session,
                        LinkConfig::receiver(address.clone(), Some(address)),
                    )
                    .map_err(|e| format!("attach {address}: {e}"))?;
                in_flight.push((link, self.first_index + next));
                next += 1;
            }
            let turn = lean.turn(&mut self.stop).await?;
            while let Some(event) = lean.conn.poll_event() {
                match event {
                    Event::LinkAttached { link, attach } => {
                        if attach.source.is_none() {
                            return Err(format!("{}: attach refused", attach.name));
                        }
                        let index = in_flight
                            .iter()
                            .find(|(l, _)| *l == link)
                            .map_or(0, |(_, i)| *i);
                        in_flight.retain(|(l, _)| *l != link);
                        lean.conn
                            .flow(link, 1, false)
                            .map_err(|e| format!("flow: {e}"))?;
                        let ns = start.elapsed().as_nanos() as u64;
                        self.times
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((ns, index));
                        done += 1;
                    }
                    Event::Transfer(t) => {
                        if !t.settled && !t.more {
                            let _ = lean.conn.disposition(
                                t.link,
                                t.delivery_id,
                                Some(DeliveryState::Accepted),
                                true,
                            );
                        }
                        let _ = lean.conn.flow(t.link, 1, false);
                    }
                    Event::Closed { error } => {
                        return Err(format!(
                            "{}: router closed the connection: {error:?}",
                            self.addr
                        ));
                    }
                    Event::LinkDetached(d) => {
                        return Err(format!(
                            "{}: link {} detached: {:?}",
                            self.addr, d.name, d.error
                        ));
                    }
                    Event::ProtocolError { error, .. } => {
                        return Err(format!("{}: protocol error: {error:?}", self.addr));
                    }
                    _ => {}
                }
            }
            if done == self.addresses.len() {
                drop(permit.take());
            }
            match turn {
                Turn::Eof => {
                    return Err(format!("{}: the router dropped the connection", self.addr));
                }
                Turn::Stop => {
                    stopped = true;
                }
                Turn::More => {}
            }
            if stopped {
                break;
            }
        }
        lean.conn.close(None);
        let _ = lean.flush().await;
        Ok(())
    }
}

/// What one [`Lean::turn`] saw.
enum Turn {
    More,
    Eof,
    Stop,
}

/// A connection with small buffers, driven by hand: write what the engine
/// has, then wait for input, the engine's timer (heartbeats) or `stop`.
struct Lean {
    stream: TcpStream,
    conn: Connection,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Lean {
    async fn connect(addr: &str, container_id: String) -> Result<Lean, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        Ok(Lean::new(stream, container_id, Side::Client))
    }

    fn new(stream: TcpStream, container_id: String, side: Side) -> Lean {
        let _ = stream.set_nodelay(true);
        Lean {
            stream,
            conn: Connection::new(
                super::client::connection_config(container_id),
                side,
                Instant::now(),
            ),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        while self.conn.poll_transmit(&mut self.wbuf) > 0 {}
        if !self.wbuf.is_empty() {
            self.stream
                .write_all(&self.wbuf)
                .await
                .map_err(|e| format!("write: {e}"))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    async fn turn(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Turn, String> {
        self.flush().await?;
        if *stop.borrow() {
            return Ok(Turn::Stop);
        }
        if self.rbuf.capacity() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let timer = self
            .conn
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = self.stream.read_buf(&mut self.rbuf) => {
                match r.map_err(|e| format!("read: {e}"))? {
                    0 => return Ok(Turn::Eof),
                    _ => self.conn.handle_input_buf(self.rbuf.split(), Instant::now()),
                }
            }
            _ = tokio::time::sleep_until(timer) => self.conn.handle_timeout(Instant::now()),
            _ = stop.changed() => return Ok(Turn::Stop),
        }
        Ok(Turn::More)
    }
}

/// The baseline's acceptor, `botectl scale-acceptor` (hidden): answers
/// open, begin and every attach (as the other end of the client's
/// receiver) on an ephemeral 127.0.0.1 port, which it prints as `port N`,
/// until its standard input closes. It runs as a process of its own, as a
/// router does, so that it has its own open-file limit and its memory can
/// be read apart from the clients'.
pub fn serve_acceptor() -> Result<(), String> {
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        println!("port {port}");
        let (stop_tx, stop_rx) = watch::channel(false);
        // Standard input closing (the bench ended or died) stops it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = stop_tx.send(true);
        });
        let mut stop = stop_rx.clone();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((stream, _)) = r else { continue };
                    tokio::task::spawn_local(serve(stream, stop_rx.clone()));
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    })
}

/// Starts `botectl scale-acceptor` and reads its port.
fn spawn_acceptor() -> Result<(String, AcceptorHandle), BenchError> {
    use std::io::BufRead;
    let exe =
        std::env::current_exe().map_err(|e| BenchError::Spawn(format!("locating botectl: {e}")))?;
    let mut child = std::process::Command::new(&exe)
        .arg("scale-acceptor")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Spawn(format!("{} scale-acceptor: {e}", exe.display())))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| BenchError::Spawn(format!("scale-acceptor printed {line:?}")))?;
    Ok((format!("127.0.0.1:{port}"), AcceptorHandle { child }))
}

/// The acceptor process; stopped (standard input closed, then waited for)
/// when dropped.
struct AcceptorHandle {
    child: std::process::Child,
}

impl Drop for AcceptorHandle {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// One connection of the baseline's acceptor.
async fn serve(stream: TcpStream, mut stop: watch::Receiver<bool>) {
    let mut lean = Lean::new(stream, "bench-scale-acceptor".into(), Side::Server);
    lean.conn.open();
    loop {
        match lean.turn(&mut stop).await {
            Ok(Turn::More) => {}
            _ => return,
        }
        while let Some(event) = lean.conn.poll_event() {
            match event {
                Event::AttachRequested { link, attach } => {
                    let config = match attach.role {
                        LinkRole::Receiver => {
                            let source = attach.source.as_ref().and_then(|s| s.address.clone());
                            LinkConfig {
                                source: Some(Source {
                                    address: source,
                                    ..Source::default()
                                }),
                                ..LinkConfig::sender(attach.name.clone(), None)
                            }
                        }
                        LinkRole::Sender => LinkConfig::receiver(attach.name.clone(), None),
                    };
                    if lean.conn.accept_attach(link, config).is_err() {
                        return;
                    }
                }
                Event::Closed { .. } => {
                    if !lean.conn.is_closed() {
                        lean.conn.close(None);
                    }
                    let _ = lean.flush().await;
                    return;
                }
                _ => {}
            }
        }
        if lean.conn.is_closed() {
            let _ = lean.flush().await;
            return;
        }
    }
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_per_attach_spans_the_first_and_last_windows() {
        // 10 µs per attach for the first 1,000, 20 µs for the rest.
        let mut samples = Vec::new();
        let mut cpu = 0;
        for done in (0..=5_000).step_by(250) {
            samples.push((done, cpu));
            cpu += if done < 1_000 {
                250 * 10_000
            } else {
                250 * 20_000
            };
        }
        let (first, last) = cpu_per_attach(&samples, 1_000);
        assert_eq!(first, Some(10.0));
        assert_eq!(last, Some(20.0));
        assert_eq!(cpu_per_attach(&samples[..5], 1_000), (None, None));
        assert_eq!(cpu_per_attach(&[], 1_000), (None, None));
    }
}
