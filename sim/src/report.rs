//! What a run measured, as serialisable structs, and the JSON/CSV writers.
//!
//! Wall-clock figures (`wall_s`, CPU time in the control plane) are kept apart
//! in [`HostTiming`] so that the rest of the report is a pure function of the
//! scenario and the seed: two runs with one seed produce identical
//! [`RunReport::deterministic_json`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Summary statistics of a per-router quantity.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Stats {
    /// Statistics of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Stats {
        if values.is_empty() {
            return Stats::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: pick(0.5),
            p99: pick(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// One event window: from a group of simultaneous events to the next group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowReport {
    /// When the events fired (simulated seconds).
    pub at_s: f64,
    /// End of the window.
    pub until_s: f64,
    /// The events, described.
    pub events: Vec<String>,
    /// Routes and address tables matched the oracle at the end of the window.
    pub converged: bool,
    /// Simulated seconds from the events to the last route or address-table
    /// change in the window (when converged).
    pub convergence_s: Option<f64>,
    /// (router, destination) route entries checked.
    pub routes_checked: u64,
    /// Entries wrong at the end of the window.
    pub route_errors: u64,
    /// (router, address) entries wrong at the end of the window.
    pub address_errors: u64,
    /// Control messages sent during the window.
    pub control_messages: u64,
    /// Control bytes sent during the window.
    pub control_bytes: u64,
}

/// Control-plane traffic over the run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ControlSummary {
    /// Messages sent by all routers.
    pub messages: u64,
    /// Bytes sent (`wire_size()`).
    pub bytes: u64,
    /// Messages lost on links (loss model).
    pub lost: u64,
    /// Messages dropped because their link went down or the receiver crashed.
    pub dropped: u64,
    /// Messages per router.
    pub messages_per_router: Stats,
    /// Bytes per router.
    pub bytes_per_router: Stats,
    /// Messages by kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// One traffic flow's outcome.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FlowReport {
    /// Address.
    pub address: String,
    /// Distribution.
    pub distribution: String,
    /// Ingress router.
    pub from: String,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries to consumers (multicast: one per consumer router).
    pub delivered: u64,
    /// Deliveries expected (anycast: sent while a consumer was reachable;
    /// multicast: reachable consumer routers at send time, summed).
    pub expected: u64,
    /// `delivered / expected` (1 when nothing was expected).
    pub delivery_ratio: f64,
    /// Copies dropped: no route, no consumer, link down, router crashed,
    /// or loop guard.
    pub dropped: u64,
    /// Copies dropped because the next hop was already in the trace.
    pub loop_drops: u64,
    /// Copies a consumer router received a second time (must be 0 for multicast).
    pub duplicates: u64,
    /// Mean of travelled cost / oracle cost to the receiving router.
    pub mean_stretch: f64,
    /// Largest stretch seen.
    pub max_stretch: f64,
    /// Deliveries per receiving router.
    pub per_receiver: BTreeMap<String, u64>,
    /// Jain's fairness index over `per_receiver` (balanced flows).
    pub jain_index: Option<f64>,
}

/// Per-router counters (CSV rows).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RouterReport {
    /// Router name.
    pub router: String,
    /// Control messages sent.
    pub messages_sent: u64,
    /// Control bytes sent.
    pub bytes_sent: u64,
    /// Control messages received.
    pub messages_received: u64,
    /// Control bytes received.
    pub bytes_received: u64,
    /// Route-table changes reported by the control plane.
    pub route_changes: u64,
    /// Route computations run (calls that cleared a pending recompute).
    pub recomputes: u64,
    /// Times the router restarted.
    pub restarts: u64,
}

/// Host timings: real, so not reproducible; kept out of determinism checks.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostTiming {
    /// Wall time of the whole run.
    pub wall_s: f64,
    /// Simulator events processed per wall second.
    pub events_per_s: f64,
    /// Host CPU time spent inside the real control-plane calls (message
    /// handling, timers and the route computations they trigger), per router.
    pub control_cpu_ms_per_router: Stats,
    /// Total of the above.
    pub control_cpu_ms_total: f64,
    /// Host time of the calls that ran a route computation (SPF over the
    /// database), per router.
    pub route_cpu_ms_per_router: Stats,
    /// Per-router route-computation milliseconds.
    #[serde(skip)]
    pub per_router_route_cpu_ms: Vec<f64>,
    /// Wall seconds spent simulating each window (same order as `windows`).
    pub window_wall_s: Vec<f64>,
    /// Per-router control CPU milliseconds (same order as `routers`).
    #[serde(skip)]
    pub per_router_cpu_ms: Vec<f64>,
}

/// Everything one run of one profile measured.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Protocol profile.
    pub profile: String,
    /// Seed.
    pub seed: u64,
    /// Routers.
    pub routers: usize,
    /// Links.
    pub links: usize,
    /// Connected components of the generated mesh.
    pub components: usize,
    /// Links added to connect a random mesh.
    pub bridges_added: usize,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Simulator events processed.
    pub events_processed: u64,
    /// Event windows (the first is the boot of the mesh).
    pub windows: Vec<WindowReport>,
    /// Every window ended converged.
    pub all_converged: bool,
    /// Convergence of the boot window (simulated seconds).
    pub boot_convergence_s: Option<f64>,
    /// Mean convergence over the non-boot windows that converged.
    pub mean_event_convergence_s: Option<f64>,
    /// Largest convergence over the non-boot windows.
    pub max_event_convergence_s: Option<f64>,
    /// Control traffic.
    pub control: ControlSummary,
    /// Traffic flows.
    pub flows: Vec<FlowReport>,
    /// (simulated seconds, wrong (router, address) entries) samples.
    pub divergence: Vec<(f64, u64)>,
    /// Largest divergence sample.
    pub max_divergence: u64,
    /// Divergence at the end of the run.
    pub final_divergence: u64,
    /// Per-router counters.
    #[serde(skip)]
    pub per_router: Vec<RouterReport>,
    /// Host timings (not deterministic).
    pub host: HostTiming,
}

impl RunReport {
    /// The report as JSON without host timings: identical for identical seeds.
    pub fn deterministic_json(&self) -> String {
        let mut copy = self.clone();
        copy.host = HostTiming::default();
        serde_json::to_string_pretty(&copy).unwrap_or_default()
    }
}

/// Output writing failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("output {path}: {source}")]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// The failure.
    pub source: std::io::Error,
}

fn write(path: &Path, text: &str) -> Result<(), WriteError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WriteError {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// Writes `<name>.json` (all profiles) and per-profile CSVs (windows, routers,
/// divergence, flows) into `dir`. Returns the files written.
pub fn write_run(
    dir: &Path,
    name: &str,
    reports: &[RunReport],
) -> Result<Vec<PathBuf>, WriteError> {
    let mut files = Vec::new();
    let json_path = dir.join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(reports).unwrap_or_default();
    write(&json_path, &json)?;
    files.push(json_path);

    let mut windows = String::from(
        "profile,at_s,until_s,events,converged,convergence_s,routes_checked,route_errors,address_errors,control_messages,control_bytes\n",
    );
    let mut routers = String::from(
        "profile,router,messages_sent,bytes_sent,messages_received,bytes_received,route_changes,recomputes,restarts,control_cpu_ms,route_cpu_ms\n",
    );
    let mut divergence = String::from("profile,t_s,divergence\n");
    let mut flows = String::from(
        "profile,address,distribution,from,sent,expected,delivered,delivery_ratio,dropped,loop_drops,duplicates,mean_stretch,max_stretch,jain_index\n",
    );
    for r in reports {
        for w in &r.windows {
            let _ = writeln!(
                windows,
                "{},{:.6},{:.6},\"{}\",{},{},{},{},{},{},{}",
                r.profile,
                w.at_s,
                w.until_s,
                w.events.join("; ").replace('"', "'"),
                w.converged,
                opt(w.convergence_s),
                w.routes_checked,
                w.route_errors,
                w.address_errors,
                w.control_messages,
                w.control_bytes
            );
        }
        for (i, p) in r.per_router.iter().enumerate() {
            let cpu = r.host.per_router_cpu_ms.get(i).copied().unwrap_or(0.0);
            let route_cpu = r
                .host
                .per_router_route_cpu_ms
                .get(i)
                .copied()
                .unwrap_or(0.0);
            let _ = writeln!(
                routers,
                "{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
                r.profile,
                p.router,
                p.messages_sent,
                p.bytes_sent,
                p.messages_received,
                p.bytes_received,
                p.route_changes,
                p.recomputes,
                p.restarts,
                cpu,
                route_cpu
            );
        }
        for (t, d) in &r.divergence {
            let _ = writeln!(divergence, "{},{t:.6},{d}", r.profile);
        }
        for f in &r.flows {
            let _ = writeln!(
                flows,
                "{},{},{},{},{},{},{},{:.6},{},{},{},{:.4},{:.4},{}",
                r.profile,
                f.address,
                f.distribution,
                f.from,
                f.sent,
                f.expected,
                f.delivered,
                f.delivery_ratio,
                f.dropped,
                f.loop_drops,
                f.duplicates,
                f.mean_stretch,
                f.max_stretch,
                opt(f.jain_index)
            );
        }
    }
    for (suffix, text) in [
        ("windows", windows),
        ("routers", routers),
        ("divergence", divergence),
        ("flows", flows),
    ] {
        let p = dir.join(format!("{name}.{suffix}.csv"));
        write(&p, &text)?;
        files.push(p);
    }
    Ok(files)
}

/// Writes arbitrary text output (used by sweeps).
pub fn write_text(path: &Path, text: &str) -> Result<(), WriteError> {
    write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_pick_percentiles_of_sorted_values() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, 100.0]);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 22.0);
    }
}
