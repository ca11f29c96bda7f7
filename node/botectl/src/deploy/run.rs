//! `botectl up`, `status` and `down`: a mesh of `boted` processes on this
//! machine from a [`Topology`], kept in a run directory (`mesh.json` with
//! each router's pid and ports, and per router `<id>/boted.toml`,
//! `<id>/boted.log`, `<id>/state.json`). `up` waits until every router's
//! read API (`/api/v1/topology`) lists every router; on any error or
//! Ctrl-C it stops every process it started.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::file::{PortDef, Topology, TopologyError};

/// What `up`, `status` or `down` could not do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    #[error("interrupted (Ctrl-C): stopped the routers it had started")]
    Interrupted,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// One router of a running mesh, as `mesh.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRouter {
    pub id: String,
    pub pid: u32,
    pub port: u16,
    pub inter_router_port: u16,
    pub http_port: u16,
}

/// `mesh.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunFile {
    pub topology: String,
    pub routers: Vec<RunRouter>,
}

impl RunFile {
    fn path(dir: &Path) -> PathBuf {
        dir.join("mesh.json")
    }

    pub fn read(dir: &Path) -> Result<RunFile, RunError> {
        let path = RunFile::path(dir);
        let text = std::fs::read_to_string(&path).map_err(io(format!(
            "no mesh in {} (reading {})",
            dir.display(),
            path.display()
        )))?;
        serde_json::from_str(&text).map_err(|e| RunError::Other(format!("{}: {e}", path.display())))
    }

    fn write(&self, dir: &Path) -> Result<(), RunError> {
        let path = RunFile::path(dir);
        let tmp = dir.join("mesh.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a run file serialises");
        std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))
    }
}

/// Whether `pid` is a live `boted` (not a reused pid of something else).
pub fn is_boted(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let argv0 = c.split(|&b| b == 0).next().unwrap_or_default();
            argv0.ends_with(b"boted")
        })
        .unwrap_or(false)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we started (checked to be a boted).
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// One HTTP/1.1 GET on 127.0.0.1: the status code and the body.
pub fn http_get(port: u16, path: &str, wait: Duration) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// How many routers `port`'s read API lists in the mesh (`None`: no answer).
pub fn routers_seen(http_port: u16) -> Option<usize> {
    let (status, body) = http_get(http_port, "/api/v1/topology", Duration::from_millis(500))?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(json.get("routers")?.as_array()?.len())
}

/// The options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub boted: PathBuf,
    pub run_dir: PathBuf,
    pub timeout: Duration,
    pub progress: bool,
}

/// Started routers not yet handed over: dropped (error, Ctrl-C), they stop.
/// Held as [`Child`]ren, not pids: an unreaped child's pid cannot be reused,
/// and one not yet past `exec` is stopped too.
struct Started {
    children: Vec<Child>,
    armed: bool,
}

impl Started {
    /// Whether child `i` is still running.
    fn running(&mut self, i: usize) -> bool {
        matches!(self.children[i].try_wait(), Ok(None))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                signal(child.id(), libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// SIGTERM each live boted of `pids`, waits up to `wait`, then SIGKILLs the
/// rest. Returns per pid whether it stopped on SIGTERM and how long it took.
fn stop_pids(pids: &[u32], wait: Duration) -> Vec<(u32, Option<Duration>)> {
    let start = Instant::now();
    let live: Vec<u32> = pids.iter().copied().filter(|&p| is_boted(p)).collect();
    for &pid in &live {
        signal(pid, libc::SIGTERM);
    }
    let mut done: Vec<(u32, Option<Duration>)> = pids
        .iter()
        .filter(|p| !live.contains(p))
        .map(|&p| (p, Some(Duration::ZERO)))
        .collect();
    let mut pending = live;
    while !pending.is_empty() && start.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(20));
        pending.retain(|&p| {
            reap(p);
            if is_boted(p) {
                true
            } else {
                done.push((p, Some(start.elapsed())));
                false
            }
        });
    }
    for &pid in &pending {
        signal(pid, libc::SIGKILL);
        reap(pid);
        done.push((pid, None));
    }
    done
}

/// Reaps `pid` if it is our exited child (up's own processes).
fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid on a pid, non-blocking; ECHILD when not our child.
    unsafe {
        libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// A free 127.0.0.1 port for each `None`, given ports checked free; the
/// probe listeners are held until every port is chosen so none repeats.
fn assign_ports(topology: &Topology) -> Result<Vec<[u16; 3]>, RunError> {
    let mut held = Vec::new();
    let mut out = Vec::new();
    let err = |p: &PortDef, id: &str, what: &str, e: std::io::Error| {
        RunError::Topology(TopologyError {
            file: topology.file.clone(),
            line: p.line,
            message: format!(
                "router \"{id}\": {what} port {} is in use on 127.0.0.1 ({e})",
                p.port
            ),
        })
    };
    for r in &topology.routers {
        let mut ports = [0u16; 3];
        for (k, (given, what)) in [
            (r.port, "client"),
            (r.inter_router_port, "inter-router"),
            (r.http_port, "HTTP"),
        ]
        .into_iter()
        .enumerate()
        {
            ports[k] = match given {
                Some(p) => {
                    let l = TcpListener::bind(("127.0.0.1", p.port))
                        .map_err(|e| err(&p, &r.id, what, e))?;
                    drop(l);
                    p.port
                }
                None => {
                    let l =
                        TcpListener::bind(("127.0.0.1", 0)).map_err(io("binding a probe port"))?;
                    let port = l.local_addr().map_err(io("probe port"))?.port();
                    held.push(l);
                    port
                }
            };
        }
        out.push(ports);
    }
    Ok(out)
}

fn config_text(topology: &Topology, i: usize, ports: &[[u16; 3]]) -> String {
    let r = &topology.routers[i];
    let [port, inter, http] = ports[i];
    let mut c = format!(
        "# Generated by botectl up from {}\n[router]\nid = \"{}\"\nlog-level = \"info\"\nhttp = \"127.0.0.1:{http}\"\n\n\
         [[listener]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"normal\"\n\n\
         [[listener]]\nhost = \"127.0.0.1\"\nport = {inter}\nrole = \"inter-router\"\n",
        topology.file, r.id
    );
    for l in topology.links.iter().filter(|l| l.b == r.id) {
        let a = topology
            .routers
            .iter()
            .position(|x| x.id == l.a)
            .expect("links are checked");
        let _ = write!(
            c,
            "\n[[connector]]\nname = \"to-{}\"\nhost = \"127.0.0.1\"\nport = {}\nrole = \"inter-router\"\ncost = {}\n",
            l.a, ports[a][1], l.cost
        );
    }
    c.push_str(super::generate::DEFAULT_ADDRESSES);
    if !r.extra.is_empty() {
        c.push('\n');
        c.push_str(&r.extra);
        c.push('\n');
    }
    c
}

/// Starts the mesh of `topology` and waits until it has converged. Returns
/// the table of routers.
pub fn up(topology: &Topology, options: &UpOptions) -> Result<String, RunError> {
    let dir = &options.run_dir;
    if let Ok(existing) = RunFile::read(dir)
        && existing.routers.iter().any(|r| is_boted(r.pid))
    {
        return Err(RunError::Other(format!(
            "a mesh is already running in {0} (botectl down {0})",
            dir.display()
        )));
    }
    if !options.boted.exists() {
        return Err(RunError::Other(format!(
            "boted not found at {} (build it, or pass --boted or set BOTED)",
            options.boted.display()
        )));
    }
    let ports = assign_ports(topology)?;
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let mut started = Started {
        children: Vec::new(),
        armed: true,
    };
    let mut run = RunFile {
        topology: topology.file.clone(),
        routers: Vec::new(),
    };
    let began = Instant::now();
    for (i, r) in topology.routers.iter().enumerate() {
        let rdir = dir.join(&r.id);
        std::fs::create_dir_all(&rdir).map_err(io(format!("creating {}", rdir.display())))?;
        let config = rdir.join("boted.toml");
        std::fs::write(&config, config_text(topology, i, &ports))
            .map_err(io(format!("writing {}", config.display())))?;
        let log = std::fs::File::create(rdir.join("boted.log")).map_err(io("creating the log"))?;
        let log2 = log.try_clone().map_err(io("creating the log"))?;
        let mut command = Command::new(&options.boted);
        command
            .arg("--config")
            .arg(&config)
            .arg("--state-file")
            .arg(rdir.join("state.json"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Its own process group: a Ctrl-C at the terminal reaches botectl,
        // which stops the routers in order, and not a later shell's job.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(io(format!(
            "starting {} for router {}",
            options.boted.display(),
            r.id
        )))?;
        let pid = child.id();
        started.children.push(child);
        run.routers.push(RunRouter {
            id: r.id.clone(),
            pid,
            port: ports[i][0],
            inter_router_port: ports[i][1],
            http_port: ports[i][2],
        });
        run.write(dir)?;
    }
    let n = topology.routers.len();
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} routers see the whole mesh {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut ready = vec![false; n];
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bar.abandon_with_message("interrupted");
            return Err(RunError::Interrupted);
        }
        for (i, r) in run.routers.iter().enumerate() {
            if !started.running(i) {
                bar.abandon();
                let log =
                    std::fs::read_to_string(dir.join(&r.id).join("boted.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(RunError::Other(format!(
                    "router {} (pid {}) exited before the mesh was ready; stopped the others. Its log ({}):\n{}",
                    r.id,
                    r.pid,
                    dir.join(&r.id).join("boted.log").display(),
                    tail.join("\n")
                )));
            }
            if !ready[i] {
                ready[i] = routers_seen(r.http_port) == Some(n);
            }
        }
        let count = ready.iter().filter(|&&r| r).count();
        bar.set_position(count as u64);
        if count == n {
            break;
        }
        if began.elapsed() > options.timeout {
            bar.abandon();
            let waiting: Vec<&str> = run
                .routers
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(r, _)| r.id.as_str())
                .collect();
            return Err(RunError::Other(format!(
                "the mesh did not converge within {} s (still waiting for {}); stopped every router; logs in {}",
                options.timeout.as_secs(),
                waiting.join(", "),
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bar.finish_and_clear();
    started.armed = false;
    // SAFETY: back to the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let mut out = format!(
        "mesh of {n} routers ready in {:.2} s (run directory {})\n\n",
        began.elapsed().as_secs_f64(),
        dir.display()
    );
    out.push_str(&table(&run, dir, &vec![Some(n); n]));
    let _ = writeln!(out, "\nstop it with: botectl down {}", dir.display());
    Ok(out)
}

fn table(run: &RunFile, dir: &Path, seen: &[Option<usize>]) -> String {
    let rows: Vec<[String; 6]> = run
        .routers
        .iter()
        .zip(seen)
        .map(|(r, seen)| {
            let alive = is_boted(r.pid);
            [
                r.id.clone(),
                if alive {
                    r.pid.to_string()
                } else {
                    format!("{} (stopped)", r.pid)
                },
                format!("amqp://127.0.0.1:{}", r.port),
                format!("http://127.0.0.1:{}/api/v1/topology", r.http_port),
                match seen {
                    Some(k) => format!("{k}/{}", run.routers.len()),
                    None => "-".into(),
                },
                dir.join(&r.id).join("boted.log").display().to_string(),
            ]
        })
        .collect();
    let header = ["router", "pid", "client", "http (read API)", "mesh", "log"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>| {
        let mut l = String::from("  ");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        l.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    out.push_str(&format!(
        "  {}\n",
        "=".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    ));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `botectl status`: each router of the mesh in `dir`, alive or not, and
/// how many routers its read API sees.
pub fn status(dir: &Path) -> Result<String, RunError> {
    let run = RunFile::read(dir)?;
    let seen: Vec<Option<usize>> = run
        .routers
        .iter()
        .map(|r| {
            if is_boted(r.pid) {
                routers_seen(r.http_port)
            } else {
                None
            }
        })
        .collect();
    let alive = run.routers.iter().filter(|r| is_boted(r.pid)).count();
    let mut out = format!(
        "mesh of {} routers from {} in {}: {alive} running\n\n",
        run.routers.len(),
        run.topology,
        dir.display()
    );
    out.push_str(&table(&run, dir, &seen));
    Ok(out)
}

/// `botectl down`: SIGTERM to each router of the mesh in `dir`, waits up to
/// `wait`, SIGKILL for any left; reports each.
pub fn down(dir: &Path, wait: Duration) -> Result<String, RunError> {
    let run = RunFile::read(dir)?;
    let pids: Vec<u32> = run.routers.iter().map(|r| r.pid).collect();
    let was: Vec<bool> = pids.iter().map(|&p| is_boted(p)).collect();
    let result = stop_pids(&pids, wait);
    let mut out = String::new();
    for (r, was) in run.routers.iter().zip(was) {
        let how = result.iter().find(|(p, _)| *p == r.pid).map(|(_, d)| *d);
        let _ = match (was, how) {
            (false, _) => writeln!(out, "{} (pid {}): was not running", r.id, r.pid),
            (true, Some(Some(d))) => writeln!(
                out,
                "{} (pid {}): stopped on SIGTERM in {:.2} s",
                r.id,
                r.pid,
                d.as_secs_f64()
            ),
            _ => writeln!(
                out,
                "{} (pid {}): did not stop within {} s, killed (SIGKILL)",
                r.id,
                r.pid,
                wait.as_secs()
            ),
        };
    }
    Ok(out)
}
