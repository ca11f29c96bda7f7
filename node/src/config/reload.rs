//! What a configuration reload can change in a running router: the
//! difference between the configuration in force and a newly read one,
//! split into what applies at run time (today: the cost of inter-router
//! connectors) and what only a restart applies (everything else: listeners,
//! the router id, timers, addresses, the other connector settings).
//!
//! `boted` computes it on `SIGHUP` ([`diff`]) and hands the run-time part to
//! the router; a management agent can use the same entry points later.
//! Connectors are matched by name, then by `host:port` (a renamed
//! connector); listeners by name, then by `host:port`.

use super::{Config, ConnectorConfig, ListenerConfig, Role};

/// A connector whose cost differs in the new configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostChange {
    /// The name of the connector in the configuration in force (the one the
    /// running router knows it by).
    pub connector: String,
    /// Where it connects (`host:port`), for logs.
    pub target: String,
    /// The cost in force.
    pub old: u32,
    /// The cost in the new configuration.
    pub new: u32,
}

/// The difference between the configuration in force and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Inter-router connector costs to apply at run time.
    pub costs: Vec<CostChange>,
    /// Changes a running router cannot apply, one description each (e.g.
    /// `[router] id "Router.A" -> "Router.X"`, `[[listener]] "amqp" changed`).
    pub needs_restart: Vec<String>,
}

impl ConfigDiff {
    /// True when the new configuration equals the one in force.
    pub fn is_empty(&self) -> bool {
        self.costs.is_empty() && self.needs_restart.is_empty()
    }
}

/// The difference between `running` (in force) and `new`.
pub fn diff(running: &Config, new: &Config) -> ConfigDiff {
    let mut out = ConfigDiff::default();
    router_changes(running, new, &mut out.needs_restart);
    listener_changes(&running.listeners, &new.listeners, &mut out.needs_restart);
    connector_changes(&running.connectors, &new.connectors, &mut out);
    if running.addresses.entries() != new.addresses.entries() {
        out.needs_restart
            .push("[[address]] entries changed".to_owned());
    }
    if running.vhosts != new.vhosts {
        out.needs_restart
            .push("[[vhost]] policy changed".to_owned());
    }
    out
}

fn router_changes(running: &Config, new: &Config, out: &mut Vec<String>) {
    let (a, b) = (&running.router, &new.router);
    let mut field = |key: &str, old: String, new: String| {
        if old != new {
            out.push(format!("[router] {key} {old} -> {new}"));
        }
    };
    field("id", format!("{:?}", a.id), format!("{:?}", b.id));
    field("workers", a.workers.to_string(), b.workers.to_string());
    field(
        "log-level",
        format!("{:?}", a.log_level),
        format!("{:?}", b.log_level),
    );
    field(
        "hello-interval-ms",
        a.hello_interval_ms.to_string(),
        b.hello_interval_ms.to_string(),
    );
    field(
        "hello-timeout-ms",
        a.hello_timeout_ms.to_string(),
        b.hello_timeout_ms.to_string(),
    );
    field(
        "default-distribution",
        a.default_distribution.to_string(),
        b.default_distribution.to_string(),
    );
    field("http", format!("{:?}", a.http), format!("{:?}", b.http));
    field(
        "metrics-max-series",
        a.metrics_max_series.to_string(),
        b.metrics_max_series.to_string(),
    );
    field(
        "log-format",
        format!("{:?}", a.log_format),
        format!("{:?}", b.log_format),
    );
    field(
        "data-dir",
        format!("{:?}", a.data_dir),
        format!("{:?}", b.data_dir),
    );
    if running.telemetry != new.telemetry {
        out.push(format!(
            "[telemetry] {:?} -> {:?}",
            running.telemetry, new.telemetry
        ));
    }
}

fn listener_label(l: &ListenerConfig) -> String {
    match &l.name {
        Some(name) => format!("[[listener]] {name:?} ({})", l.socket_address()),
        None => format!("[[listener]] {}", l.socket_address()),
    }
}

fn listener_changes(running: &[ListenerConfig], new: &[ListenerConfig], out: &mut Vec<String>) {
    let mut matched = vec![false; running.len()];
    for l in new {
        let found = running.iter().enumerate().position(|(i, r)| {
            !matched[i]
                && match (&l.name, &r.name) {
                    (Some(a), Some(b)) => a == b,
                    (None, None) => r.host == l.host && r.port == l.port,
                    _ => false,
                }
        });
        match found {
            Some(i) => {
                matched[i] = true;
                if running[i] != *l {
                    out.push(format!("{} changed", listener_label(l)));
                }
            }
            None => out.push(format!("{} added", listener_label(l))),
        }
    }
    for (r, _) in running.iter().zip(&matched).filter(|(_, m)| !**m) {
        out.push(format!("{} removed", listener_label(r)));
    }
}

fn connector_changes(running: &[ConnectorConfig], new: &[ConnectorConfig], out: &mut ConfigDiff) {
    let mut matched = vec![false; running.len()];
    for c in new {
        let found = running
            .iter()
            .enumerate()
            .position(|(i, r)| !matched[i] && r.name == c.name)
            .or_else(|| {
                running.iter().enumerate().position(|(i, r)| {
                    !matched[i]
                        && r.host == c.host
                        && r.port == c.port
                        && !new.iter().any(|n| n.name == r.name)
                })
            });
        let Some(i) = found else {
            out.needs_restart.push(format!(
                "[[connector]] {:?} ({}) added",
                c.name,
                c.socket_address()
            ));
            continue;
        };
        matched[i] = true;
        let r = &running[i];
        // Everything but the cost (and a new name for the same target)
        // needs the connector to be restarted.
        let same_otherwise = ConnectorConfig {
            name: r.name.clone(),
            cost: r.cost,
            ..c.clone()
        } == *r;
        if !same_otherwise {
            out.needs_restart.push(format!(
                "[[connector]] {:?} ({}) changed{}",
                r.name,
                r.socket_address(),
                if r.cost != c.cost {
                    " (its cost alone would apply at run time)"
                } else {
                    ""
                }
            ));
            continue;
        }
        if r.name != c.name {
            out.needs_restart.push(format!(
                "[[connector]] {:?} ({}) renamed {:?}",
                r.name,
                r.socket_address(),
                c.name
            ));
        }
        if r.cost != c.cost && r.role == Role::InterRouter {
            out.costs.push(CostChange {
                connector: r.name.clone(),
                target: r.socket_address(),
                old: r.cost,
                new: c.cost,
            });
        }
    }
    for (r, _) in running.iter().zip(&matched).filter(|(_, m)| !**m) {
        out.needs_restart.push(format!(
            "[[connector]] {:?} ({}) removed",
            r.name,
            r.socket_address()
        ));
    }
}
