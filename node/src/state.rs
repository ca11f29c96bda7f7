//! The router's state as tests and tools read it, instead of log lines
//! (which stay for humans): a snapshot ([`RouterState`]) of the router id,
//! the bound listeners and the mesh as this router sees it (routes: next hop
//! and cost per destination; remote routers with consumers per address).
//!
//! `boted --state-file PATH` keeps a [`StateFile`] at PATH: the snapshot as
//! one JSON object, written to a temporary file beside it and renamed over
//! it after the snapshot changes (by a thread of the router's that takes
//! one snapshot for all the changes since its last write), so a reader
//! never sees half a file.
//! The file appears once every listener is bound (a reader waits for it to
//! know the router is up), is removed when the router starts and when it
//! stops gracefully, and looks like this:
//!
//! ```json
//! {"router": "Router.A", "sequence": 3, "written_at": 1733329200.125,
//!  "listeners": [{"role": "normal", "host": "127.0.0.1", "port": 40123},
//!                {"role": "inter-router", "host": "127.0.0.1", "port": 40125}],
//!  "routes": {"Router.B": {"next_hop": "Router.B", "cost": 1}},
//!  "addresses": {"queue.x": ["Router.B"]},
//!  "route_containers": {"broker": "broker-1"}}
//! ```
//!
//! `sequence` counts the writes of this run (from 1) and `written_at` is
//! when the snapshot was taken, in seconds since the Unix epoch. The
//! snapshot is made by one function (`router::Shared::state`), which a read
//! API can serve as it is.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::config::Role;

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerState {
    /// `normal` (clients) or `inter-router` (peer routers).
    pub role: Role,
    /// The address it is bound to (the port the OS chose for port 0).
    pub bound: SocketAddr,
    /// The protocol its clients speak (written to the file only for MQTT).
    pub protocol: crate::config::Protocol,
}

/// This router's route to another router of the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteState {
    /// The neighbour deliveries to that router go through.
    pub next_hop: String,
    /// The path's cost.
    pub cost: u32,
}

/// What the router reports of itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterState {
    /// The router's id.
    pub router: String,
    /// Bound listeners, in configuration order: the AMQP listeners, then the
    /// inter-router ones.
    pub listeners: Vec<ListenerState>,
    /// Destination router -> route.
    pub routes: BTreeMap<String, RouteState>,
    /// Address -> the other routers with consumers for it.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Where the HTTP API listens, once it does.
    pub http: Option<SocketAddr>,
    /// Open route-container connections (link routing): connector name ->
    /// the broker's container-id.
    pub route_containers: BTreeMap<String, String>,
}

impl RouterState {
    /// The JSON object of the state file (without `sequence`/`written_at`).
    pub fn to_json(&self) -> Value {
        json!({
            "router": self.router,
            "listeners": self.listeners.iter().map(|l| {
                let mut j = json!({
                    "role": match l.role {
                        Role::Normal => "normal",
                        Role::InterRouter => "inter-router",
                        Role::RouteContainer => "route-container",
                        Role::Edge => "edge",
                    },
                    "host": l.bound.ip().to_string(),
                    "port": l.bound.port(),
                });
                if l.protocol != crate::config::Protocol::Amqp {
                    j["protocol"] = json!(l.protocol.as_str());
                }
                j
            }).collect::<Vec<_>>(),
            "routes": self.routes.iter().map(|(dest, r)| {
                (dest.clone(), json!({"next_hop": r.next_hop, "cost": r.cost}))
            }).collect::<serde_json::Map<_, _>>(),
            "addresses": self.addresses.iter().map(|(a, routers)| {
                (a.clone(), json!(routers))
            }).collect::<serde_json::Map<_, _>>(),
            "http": self.http.map(|h| json!({"host": h.ip().to_string(), "port": h.port()})),
            "route_containers": self.route_containers,
        })
    }
}

/// The state file of `boted --state-file`: replaced whole on each write.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The lock keeps two writers (the start and a mesh change) from
    /// interleaving, and a write from bringing back a removed file.
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Writes of this run, so far.
    written: u64,
    /// Removed: the router stopped, nothing more is written.
    removed: bool,
}

impl StateFile {
    /// The state file at `path`; removes what a previous run left there, so
    /// that a reader waiting for the file sees this run's.
    pub fn new(path: impl Into<PathBuf>) -> io::Result<StateFile> {
        let path = path.into();
        remove_if_present(&path)?;
        Ok(StateFile {
            path,
            progress: Mutex::default(),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the snapshot `state()` takes (under the lock, so the last
    /// write holds the latest state): to `PATH.tmp`, then renamed to PATH.
    /// Once the file is removed, writes nothing.
    pub fn write(&self, state: impl FnOnce() -> RouterState) -> io::Result<()> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if progress.removed {
            return Ok(());
        }
        let mut json = state().to_json();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        json["sequence"] = json!(progress.written + 1);
        json["written_at"] = json!(now);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{json}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        progress.written += 1;
        Ok(())
    }

    /// Removes the file for good (the router is stopping).
    pub fn remove(&self) -> io::Result<()> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.removed = true;
        remove_if_present(&self.path)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("state file {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_replaced_whole_and_counts_its_writes() {
        let dir = std::env::temp_dir().join(format!("bote-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        std::fs::write(&path, "left by an earlier run").unwrap();
        let file = StateFile::new(&path).unwrap();
        assert!(!path.exists(), "an earlier run's file is removed at once");
        let mut state = RouterState {
            router: "Router.A".into(),
            listeners: vec![ListenerState {
                role: Role::Normal,
                bound: "127.0.0.1:40123".parse().unwrap(),
                protocol: crate::config::Protocol::Amqp,
            }],
            ..RouterState::default()
        };
        file.write(|| state.clone()).unwrap();
        state.routes.insert(
            "Router.B".into(),
            RouteState {
                next_hop: "Router.B".into(),
                cost: 1,
            },
        );
        state
            .addresses
            .insert("queue.x".into(), vec!["Router.B".into()]);
        file.write(|| state.clone()).unwrap();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["router"], "Router.A");
        assert_eq!(json["sequence"], 2);
        assert!(json["written_at"].as_f64().unwrap() > 1.6e9);
        assert_eq!(
            json["listeners"],
            json!([{"role": "normal", "host": "127.0.0.1", "port": 40123}])
        );
        assert_eq!(
            json["routes"],
            json!({"Router.B": {"next_hop": "Router.B", "cost": 1}})
        );
        assert_eq!(json["addresses"], json!({"queue.x": ["Router.B"]}));
        assert!(!dir.join("state.json.tmp").exists());
        file.remove().unwrap();
        assert!(!path.exists());
        file.write(|| state.clone()).unwrap();
        assert!(!path.exists(), "nothing is written once removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
