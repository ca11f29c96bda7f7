//! `boted` processes on this machine, started the one way everything here
//! starts them (`botectl bench --spawn`, and bote-node's integration tests
//! through their support module): a configuration written to a fresh
//! temporary directory ([`RouterSpec`]), `boted --config <it> --state-file
//! <dir>/state.json`, and what the router reports read from that state file
//! ([`RouterState`]), never from its log. The log is kept whole for the
//! reader of a failure ([`SpawnedRouter::log`]).
//!
//! Every wait is bounded by the caller's timeout; dropping a
//! [`SpawnedRouter`] kills the process and removes its directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A router could not be started or did not get where it was awaited.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Writing its configuration or starting the process failed.
    #[error("router {id}: {what}: {source}")]
    Io {
        id: String,
        what: String,
        source: std::io::Error,
    },
    /// The process exited before it reported its state.
    #[error("router {id} ({boted}) exited before it was up:\n{log}")]
    Exited {
        id: String,
        boted: String,
        log: String,
    },
    /// A wait ran out.
    #[error("router {id}: {what} not within {} ms:\n{log}", .wait.as_millis())]
    Timeout {
        id: String,
        what: String,
        wait: Duration,
        log: String,
    },
    /// The state file did not parse.
    #[error("router {id}: state file {path}: {message}")]
    State {
        id: String,
        path: String,
        message: String,
    },
}

/// An inter-router connector of a [`RouterSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: String,
    /// The inter-router listener it dials on 127.0.0.1.
    pub port: u16,
    pub cost: u32,
}

/// What a spawned router is configured with: one AMQP listener on an
/// ephemeral 127.0.0.1 port, optionally an inter-router listener and
/// connectors to other routers on 127.0.0.1, and any further configuration
/// text (an address table, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    pub id: String,
    /// `[router] workers` (default: the configuration's).
    pub workers: Option<usize>,
    /// `hello-interval-ms` and `hello-timeout-ms` (default: the
    /// configuration's).
    pub hello: Option<(u64, u64)>,
    /// Lines added to `[router]` (`users-file = "..."`).
    pub router_options: Vec<String>,
    /// Lines added to the AMQP listener (`strip-annotations = "no"`).
    pub listener_options: Vec<String>,
    /// An inter-router listener on this 127.0.0.1 port (0: ephemeral).
    pub inter_router: Option<u16>,
    pub connectors: Vec<Connector>,
    /// Appended to the configuration as it is.
    pub extra: String,
}

impl RouterSpec {
    /// Router `id` with one AMQP listener, logging at info.
    pub fn new(id: &str) -> RouterSpec {
        RouterSpec {
            id: id.to_owned(),
            workers: None,
            hello: None,
            router_options: Vec::new(),
            listener_options: Vec::new(),
            inter_router: None,
            connectors: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn workers(mut self, workers: usize) -> RouterSpec {
        self.workers = Some(workers);
        self
    }

    pub fn hello(mut self, interval_ms: u64, timeout_ms: u64) -> RouterSpec {
        self.hello = Some((interval_ms, timeout_ms));
        self
    }

    pub fn listener_option(mut self, line: &str) -> RouterSpec {
        self.listener_options.push(line.to_owned());
        self
    }

    pub fn router_option(mut self, line: &str) -> RouterSpec {
        self.router_options.push(line.to_owned());
        self
    }

    pub fn inter_router(mut self, port: u16) -> RouterSpec {
        self.inter_router = Some(port);
        self
    }

    /// A connector named `name` dialling the inter-router listener on `port`.
    pub fn connect(mut self, name: &str, port: u16, cost: u32) -> RouterSpec {
        self.connectors.push(Connector {
            name: name.to_owned(),
            port,
            cost,
        });
        self
    }

    pub fn extra(mut self, text: &str) -> RouterSpec {
        self.extra.push_str(text);
        self
    }

    /// The configuration file's text.
    pub fn config(&self) -> String {
        let mut config = format!("[router]\nid = \"{}\"\n", self.id);
        if let Some(workers) = self.workers {
            config.push_str(&format!("workers = {workers}\n"));
        }
        config.push_str("log-level = \"info\"\n");
        // Each router's HTTP API on a port of its own.
        config.push_str("http = \"127.0.0.1:0\"\n");
        if let Some((interval, timeout)) = self.hello {
            config.push_str(&format!(
                "hello-interval-ms = {interval}\nhello-timeout-ms = {timeout}\n"
            ));
        }
        for line in &self.router_options {
            config.push_str(&format!("{line}\n"));
        }
        config.push_str("\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n");
        for line in &self.listener_options {
            config.push_str(&format!("{line}\n"));
        }
        if let Some(port) = self.inter_router {
            config.push_str(&format!(
                "\n[[listener]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"inter-router\"\n"
            ));
        }
        for c in &self.connectors {
            config.push_str(&format!(
                "\n[[connector]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 role = \"inter-router\"\ncost = {}\n",
                c.name, c.port, c.cost
            ));
        }
        config.push_str(&self.extra);
        config
    }

    /// Starts the router and waits (at most `wait`) until its state file
    /// appears, i.e. until every listener is bound.
    pub fn start(&self, boted: &Path, wait: Duration) -> Result<SpawnedRouter, SpawnError> {
        SpawnedRouter::start(boted, self, wait)
    }
}

/// A bound listener as the state file reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListenerState {
    /// `normal` or `inter-router`.
    pub role: String,
    pub host: String,
    pub port: u16,
}

/// The HTTP API's address as the state file reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HttpState {
    pub host: String,
    pub port: u16,
}

/// A route as the state file reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouteState {
    pub next_hop: String,
    pub cost: u32,
}

/// A router's state file (`boted --state-file`): what it reports of itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RouterState {
    pub router: String,
    pub listeners: Vec<ListenerState>,
    /// Destination router -> route.
    pub routes: BTreeMap<String, RouteState>,
    /// Address -> the other routers with consumers for it.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Where the HTTP API listens (absent when it is off).
    #[serde(default)]
    pub http: Option<HttpState>,
    /// Writes of this run, from 1.
    pub sequence: u64,
    /// When the snapshot was taken, in seconds since the Unix epoch.
    pub written_at: f64,
}

impl RouterState {
    /// Parses a state file's text.
    pub fn parse(text: &str) -> Result<RouterState, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The port of the first listener with `role`.
    pub fn port(&self, role: &str) -> Option<u16> {
        self.listeners
            .iter()
            .find(|l| l.role == role)
            .map(|l| l.port)
    }

    /// The other routers with consumers for `address`.
    pub fn consumers_of(&self, address: &str) -> &[String] {
        self.addresses.get(address).map_or(&[], Vec::as_slice)
    }
}

/// A running `boted` started from a [`RouterSpec`].
#[derive(Debug)]
pub struct SpawnedRouter {
    pub id: String,
    boted: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    /// The AMQP listener's port.
    pub port: u16,
    /// The inter-router listener's port (0 without one).
    pub inter_router_port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl SpawnedRouter {
    /// See [`RouterSpec::start`].
    pub fn start(
        boted: &Path,
        spec: &RouterSpec,
        wait: Duration,
    ) -> Result<SpawnedRouter, SpawnError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let io = |what: String| {
            let id = spec.id.clone();
            move |source| SpawnError::Io { id, what, source }
        };
        let dir = std::env::temp_dir().join(format!(
            "boted-{}-{}-{}",
            spec.id,
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let config = dir.join("bote.toml");
        std::fs::write(&config, spec.config())
            .map_err(io(format!("writing {}", config.display())))?;
        let mut child = Command::new(boted)
            .arg("--config")
            .arg(&config)
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("running {}", boted.display())))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            // Keeps draining the log so that boted never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    log.push(strip_ansi(&line));
                }
            });
        }
        let mut router = SpawnedRouter {
            id: spec.id.clone(),
            boted: boted.to_owned(),
            child: Some(child),
            dir,
            port: 0,
            inter_router_port: 0,
            log,
        };
        let state = router.wait_state("its state file", wait, |_| true)?;
        router.port = state.port("normal").unwrap_or(0);
        router.inter_router_port = state.port("inter-router").unwrap_or(0);
        Ok(router)
    }

    /// The AMQP listener, `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id (None once killed or stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The state file's path.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The configuration file's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("bote.toml")
    }

    /// The state the router last wrote; None while there is no state file
    /// (not up yet, or stopped).
    pub fn state(&self) -> Result<Option<RouterState>, SpawnError> {
        let path = self.state_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SpawnError::Io {
                    id: self.id.clone(),
                    what: format!("reading {}", path.display()),
                    source: e,
                });
            }
        };
        RouterState::parse(&text)
            .map(Some)
            .map_err(|message| SpawnError::State {
                id: self.id.clone(),
                path: path.display().to_string(),
                message,
            })
    }

    /// Waits (at most `wait`) for a state `ready` accepts; `what` names it
    /// in the error. Fails at once if the process exits.
    pub fn wait_state(
        &mut self,
        what: &str,
        wait: Duration,
        mut ready: impl FnMut(&RouterState) -> bool,
    ) -> Result<RouterState, SpawnError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(state) = self.state()?
                && ready(&state)
            {
                return Ok(state);
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                // Let the log reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Err(SpawnError::Exited {
                    id: self.id.clone(),
                    boted: self.boted.display().to_string(),
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(SpawnError::Timeout {
                    id: self.id.clone(),
                    what: what.to_owned(),
                    wait,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) with `kill`.
    pub fn signal(&self, signal: &str) -> Result<(), SpawnError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let failed = |source| SpawnError::Io {
            id: self.id.clone(),
            what: format!("kill -{signal} {pid}"),
            source,
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(failed)?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(std::io::Error::other(format!("exited {status}"))))
        }
    }

    /// SIGKILL, and waits for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (at most `wait`) for the process to exit; its
    /// exit code. Past `wait` it is killed and that is an error.
    pub fn stop(&mut self, wait: Duration) -> Result<Option<i32>, SpawnError> {
        if self.child.is_none() {
            return Ok(None);
        }
        self.signal("TERM")?;
        let deadline = Instant::now() + wait;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(SpawnError::Timeout {
                    id: self.id.clone(),
                    what: "exit on SIGTERM".into(),
                    wait,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SpawnedRouter {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_gives_listeners_routes_and_consumers() {
        let text = r#"{"router":"R.A","sequence":3,"written_at":1733329200.125,
            "listeners":[{"role":"normal","host":"127.0.0.1","port":40123},
                         {"role":"inter-router","host":"127.0.0.1","port":40125}],
            "routes":{"R.B":{"next_hop":"R.B","cost":1}},
            "addresses":{"queue.x":["R.B"]}}"#;
        let state = RouterState::parse(text).unwrap();
        assert_eq!(state.router, "R.A");
        assert_eq!(state.port("normal"), Some(40123));
        assert_eq!(state.port("inter-router"), Some(40125));
        assert_eq!(state.routes["R.B"].next_hop, "R.B");
        assert_eq!(state.consumers_of("queue.x"), ["R.B".to_owned()]);
        assert!(state.consumers_of("queue.y").is_empty());
        assert_eq!(state.sequence, 3);
        assert!(RouterState::parse("{\"router\": 1}").is_err());
    }

    #[test]
    fn the_spec_writes_one_amqp_listener_and_what_is_asked_for() {
        let text = RouterSpec::new("R.B")
            .workers(2)
            .hello(100, 400)
            .listener_option("strip-annotations = \"no\"")
            .inter_router(0)
            .connect("to-A", 40125, 3)
            .extra("[[address]]\nprefix = \"q\"\n")
            .config();
        assert_eq!(
            text,
            "[router]\nid = \"R.B\"\nworkers = 2\nlog-level = \"info\"\n\
             http = \"127.0.0.1:0\"\n\
             hello-interval-ms = 100\nhello-timeout-ms = 400\n\
             \n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n\
             strip-annotations = \"no\"\n\
             \n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"inter-router\"\n\
             \n[[connector]]\nname = \"to-A\"\nhost = \"127.0.0.1\"\nport = 40125\n\
             role = \"inter-router\"\ncost = 3\n\
             [[address]]\nprefix = \"q\"\n"
        );
    }
}
