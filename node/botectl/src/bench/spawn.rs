//! The routers a bench run measures: spawning `boted` on an ephemeral
//! 127.0.0.1 port with a temporary config, and reading a router process's
//! CPU time and memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use super::BenchError;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes
/// at 100 per second for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// A `boted` child process, killed on drop.
#[derive(Debug)]
pub struct SpawnedRouter {
    child: Child,
    pub addr: String,
    config_dir: PathBuf,
    /// The inter-router listener's address, when it has one.
    inter_router: Arc<Mutex<Option<String>>>,
    /// Routers reachable in its latest route table (from its log).
    reachable: Arc<AtomicUsize>,
}

impl SpawnedRouter {
    /// Starts `boted --config <temp>` listening on 127.0.0.1:0 and waits
    /// (at most `wait`) for its "listening on HOST:PORT" log line.
    pub fn start(boted: &Path, wait: Duration) -> Result<SpawnedRouter, BenchError> {
        Self::start_with(boted, wait, "bench", "")
    }

    /// Starts a chain of `n` routers (`bench.0` -> ... -> `bench.{n-1}`),
    /// each connected to the previous one, and waits until every router
    /// reaches all the others.
    pub fn start_chain(
        boted: &Path,
        n: usize,
        wait: Duration,
    ) -> Result<Vec<SpawnedRouter>, BenchError> {
        let deadline = Instant::now() + wait;
        let mut routers: Vec<SpawnedRouter> = Vec::with_capacity(n);
        for i in 0..n {
            let mut extra = String::new();
            if i + 1 < n {
                extra.push_str(
                    "[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"inter-router\"\n",
                );
            }
            if let Some(prev) = routers.last() {
                let peer = prev.wait_inter_router(deadline)?;
                let (host, port) = peer
                    .rsplit_once(':')
                    .ok_or_else(|| BenchError::Spawn(format!("bad inter-router address {peer}")))?;
                extra.push_str(&format!(
                    "[[connector]]\nname = \"prev\"\nhost = \"{host}\"\nport = {port}\nrole = \"inter-router\"\n"
                ));
            }
            routers.push(Self::start_with(
                boted,
                wait,
                &format!("bench.{i}"),
                &extra,
            )?);
        }
        while routers
            .iter()
            .any(|r| r.reachable.load(Ordering::Relaxed) < n - 1)
        {
            if Instant::now() > deadline {
                return Err(BenchError::Spawn(format!(
                    "the chain of {n} routers did not converge within {} s",
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(routers)
    }

    fn wait_inter_router(&self, deadline: Instant) -> Result<String, BenchError> {
        loop {
            if let Some(a) = self.inter_router.lock().ok().and_then(|a| a.clone()) {
                return Ok(a);
            }
            if Instant::now() > deadline {
                return Err(BenchError::Spawn("no inter-router listener logged".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn start_with(
        boted: &Path,
        wait: Duration,
        id: &str,
        extra: &str,
    ) -> Result<SpawnedRouter, BenchError> {
        let dir = std::env::temp_dir().join(format!(
            "bote-bench-{}-{}",
            std::process::id(),
            super::base_nanos()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::Spawn(format!("{}: {e}", dir.display())))?;
        let config = dir.join("bote.toml");
        std::fs::write(
            &config,
            format!(
                "[router]\nid = \"{id}\"\nlog-level = \"info\"\n\n\
                 [[listener]]\nhost = \"127.0.0.1\"\nport = 0\n{extra}"
            ),
        )
        .map_err(|e| BenchError::Spawn(format!("{}: {e}", config.display())))?;
        let mut child = Command::new(boted)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Spawn(format!("{}: {e}", boted.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::Spawn("boted stderr".into()))?;
        let (tx, rx) = mpsc::channel();
        let inter_router = Arc::new(Mutex::new(None));
        let reachable = Arc::new(AtomicUsize::new(0));
        let (ir, reach) = (inter_router.clone(), reachable.clone());
        // Keeps draining the log so that boted never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut found = false;
            let mut log = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("inter-router listening on ") {
                    if let (Ok(mut slot), Some(addr)) = (ir.lock(), listening_addr(&line)) {
                        *slot = Some(addr);
                    }
                    continue;
                }
                if let Some(n) = reachable_count(&line) {
                    reach.store(n, Ordering::Relaxed);
                }
                if !found {
                    if let Some(addr) = listening_addr(&line) {
                        found = true;
                        let _ = tx.send(Ok(addr));
                    } else if log.len() < 8192 {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            }
            if !found {
                let _ = tx.send(Err(log));
            }
        });
        let mut router = SpawnedRouter {
            child,
            addr: String::new(),
            config_dir: dir,
            inter_router,
            reachable,
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(addr)) => {
                router.addr = addr;
                Ok(router)
            }
            Ok(Err(log)) => Err(BenchError::Spawn(format!(
                "{} exited before listening:\n{log}",
                boted.display()
            ))),
            Err(_) => Err(BenchError::Spawn(format!(
                "{} did not log \"listening on\" within {} s",
                boted.display(),
                wait.as_secs()
            ))),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}

/// "listening on 127.0.0.1:40123 (amqp, ...)" -> "127.0.0.1:40123".
fn listening_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse::<u16>().ok()?;
    Some(addr.to_owned())
}

/// "routes: 2 routers reachable, next hops: ..." -> 2.
fn reachable_count(line: &str) -> Option<usize> {
    let rest = &line[line.find("routes: ")? + "routes: ".len()..];
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("routers reachable")
        .then(|| n.parse().ok())
        .flatten()
}

/// A process's CPU time and memory at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/stat` (utime + stime) and `/proc/<pid>/status`
    /// (VmRSS, VmHWM).
    pub fn read(pid: u32) -> Result<ProcSample, BenchError> {
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(|e| BenchError::Proc(format!("{stat_path}: {e}")))?;
        // The command name (field 2) may hold spaces; fields after its ')'
        // start at field 3, so utime (14) and stime (15) are at 11 and 12.
        let after = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .ok_or_else(|| BenchError::Proc(format!("{stat_path}: no ')'")))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| -> Result<f64, BenchError> {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .map(|t| t as f64 / TICKS_PER_SECOND)
                .ok_or_else(|| BenchError::Proc(format!("{stat_path}: field {}", i + 3)))
        };
        let cpu_seconds = tick(11)? + tick(12)?;
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(|e| BenchError::Proc(format!("{status_path}: {e}")))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcSample {
            cpu_seconds,
            rss_kb: kb("VmRSS:"),
            hwm_kb: kb("VmHWM:"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_the_address() {
        let line = "2026-11-26T04:00:00Z  INFO router=bench listening on 127.0.0.1:40123 (amqp, 2 workers)";
        assert_eq!(listening_addr(line).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(listening_addr("boted starting"), None);
    }

    #[test]
    fn route_summary_line_gives_the_reachable_count() {
        let line = "2026-11-26T05:00:00Z  INFO routes: 2 routers reachable, next hops: bench.1 (2)";
        assert_eq!(reachable_count(line), Some(2));
        assert_eq!(reachable_count("mesh: routes {}"), None);
    }

    #[test]
    fn own_process_sample_reads_cpu_and_memory() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.hwm_kb >= s.rss_kb);
        assert!(s.cpu_seconds >= 0.0);
    }
}
