//! Size sweeps: the same scenario at several mesh sizes under Bote's and
//! qdrouterd's timer profiles side by side, written as CSV/JSON and drawn as
//! SVG plots (convergence and control traffic against mesh size).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::run_scenario;
use crate::plot::{self, Series};
use crate::report::{self, RunReport};
use crate::scenario::{Profile, Scenario, TopologyKind};

/// One row of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Mesh size.
    pub routers: usize,
    /// Links.
    pub links: usize,
    /// Profile.
    pub profile: String,
    /// Boot convergence (simulated s).
    pub boot_convergence_s: Option<f64>,
    /// Mean convergence after the scripted events (simulated s).
    pub mean_event_convergence_s: Option<f64>,
    /// Worst convergence after an event.
    pub max_event_convergence_s: Option<f64>,
    /// Every window converged.
    pub all_converged: bool,
    /// Final address-table divergence.
    pub final_divergence: u64,
    /// Mean control messages sent per router.
    pub messages_per_router: f64,
    /// Mean control bytes sent per router.
    pub bytes_per_router: f64,
    /// Mean host CPU ms in the control plane per router.
    pub cpu_ms_per_router: f64,
    /// Mean host ms in route computations per router.
    pub route_cpu_ms_per_router: f64,
    /// Wall seconds for the run.
    pub wall_s: f64,
}

impl SweepRow {
    fn of(r: &RunReport) -> SweepRow {
        SweepRow {
            routers: r.routers,
            links: r.links,
            profile: r.profile.clone(),
            boot_convergence_s: r.boot_convergence_s,
            mean_event_convergence_s: r.mean_event_convergence_s,
            max_event_convergence_s: r.max_event_convergence_s,
            all_converged: r.all_converged,
            final_divergence: r.final_divergence,
            messages_per_router: r.control.messages_per_router.mean,
            bytes_per_router: r.control.bytes_per_router.mean,
            cpu_ms_per_router: r.host.control_cpu_ms_per_router.mean,
            route_cpu_ms_per_router: r.host.route_cpu_ms_per_router.mean,
            wall_s: r.host.wall_s,
        }
    }
}

/// The built-in sweep scenario: boot with consumers on 3 random routers, then
/// a random link cut, a crash, the restart, and new consumers, 10 simulated
/// seconds apart (long enough for qdrouterd's 1 s tick and 3 s hello timeout).
/// The events sit 0.37 s past whole seconds so they do not coincide with the
/// qdrouterd-like profile's tick (which would flatter it).
pub fn builtin_scenario(kind: TopologyKind, size: usize) -> String {
    let kind = match kind {
        TopologyKind::Line => "line",
        TopologyKind::Ring => "ring",
        TopologyKind::Grid => "grid",
        TopologyKind::Random => "random",
        TopologyKind::ScaleFree => "scale_free",
        TopologyKind::File => "random",
    };
    let victim = size / 3;
    let sample = if size > 2000 { "\"1s\"" } else { "\"250ms\"" };
    format!(
        r#"name = "sweep-{kind}-{size}"
duration = "50s"
profiles = ["bote", "qdrouterd_like"]

[topology]
kind = "{kind}"
size = {size}

[link]
latency = "1ms"
bandwidth_mbps = 1000

[measure]
sample_every = {sample}

[[event]]
kind = "attach_random"
at = "0s"
address = "svc"
count = 3

[[event]]
kind = "cut_random"
at = "10.37s"
count = 1

[[event]]
kind = "crash"
at = "20.37s"
router = {victim}

[[event]]
kind = "restart"
at = "30.37s"
router = {victim}

[[event]]
kind = "attach_random"
at = "40.37s"
address = "svc2"
count = 2
"#
    )
}

/// Runs `base` (or the built-in scenario) at each size under both profiles.
/// Writes `sweep.csv`, `sweep.json`, `convergence_vs_size.svg`,
/// `control_traffic_vs_size.svg` and each run's files under `runs/`.
pub fn run_sweep(
    sizes: &[usize],
    kind: TopologyKind,
    base: Option<&Scenario>,
    seed: u64,
    out: &Path,
    progress: bool,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut rows: Vec<SweepRow> = Vec::new();
    let profiles = [Profile::Bote, Profile::QdrouterdLike];
    let mut files = Vec::new();
    for &size in sizes {
        let scenario = match base {
            Some(b) => b.with_size(size),
            None => Scenario::parse(
                Path::new(&format!("<sweep {size}>")),
                builtin_scenario(kind, size),
            )?,
        };
        let reports = run_scenario(&scenario, seed, &profiles, progress)?;
        for r in &reports {
            eprintln!(
                "sweep: {} routers, {}: boot {:?} s, events mean {:?} s, converged {}, divergence {}, {:.1} msgs/router, wall {:.1} s",
                r.routers,
                r.profile,
                r.boot_convergence_s,
                r.mean_event_convergence_s,
                r.all_converged,
                r.final_divergence,
                r.control.messages_per_router.mean,
                r.host.wall_s
            );
            rows.push(SweepRow::of(r));
        }
        files.extend(report::write_run(
            &out.join("runs"),
            &scenario.name,
            &reports,
        )?);
    }
    let mut csv = String::from(
        "routers,links,profile,boot_convergence_s,mean_event_convergence_s,max_event_convergence_s,all_converged,final_divergence,messages_per_router,bytes_per_router,cpu_ms_per_router,route_cpu_ms_per_router,wall_s\n",
    );
    let o = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{:.1},{:.1},{:.3},{:.3},{:.2}",
            r.routers,
            r.links,
            r.profile,
            o(r.boot_convergence_s),
            o(r.mean_event_convergence_s),
            o(r.max_event_convergence_s),
            r.all_converged,
            r.final_divergence,
            r.messages_per_router,
            r.bytes_per_router,
            r.cpu_ms_per_router,
            r.route_cpu_ms_per_router,
            r.wall_s
        );
    }
    let csv_path = out.join("sweep.csv");
    report::write_text(&csv_path, &csv)?;
    let json_path = out.join("sweep.json");
    report::write_text(&json_path, &serde_json::to_string_pretty(&rows)?)?;
    files.push(csv_path);
    files.push(json_path);

    let series = |f: &dyn Fn(&SweepRow) -> Option<f64>, what: &str| -> Vec<Series> {
        profiles
            .iter()
            .map(|p| Series {
                label: format!("{} {what}", p.name()),
                points: rows
                    .iter()
                    .filter(|r| r.profile == p.name())
                    .filter_map(|r| f(r).map(|y| (r.routers as f64, y)))
                    .collect(),
            })
            .collect()
    };
    let mut conv = series(&|r| r.boot_convergence_s, "boot");
    conv.extend(series(
        &|r| r.mean_event_convergence_s,
        "after events (mean)",
    ));
    let conv_path = out.join("convergence_vs_size.svg");
    plot::line_plot(
        &conv_path,
        "Convergence vs mesh size",
        "routers",
        "simulated seconds",
        &conv,
    )?;
    let traffic = series(
        &|r| Some(r.bytes_per_router / 1024.0),
        "KiB sent per router",
    );
    let traffic_path = out.join("control_traffic_vs_size.svg");
    plot::line_plot(
        &traffic_path,
        "Control traffic vs mesh size (50 s run)",
        "routers",
        "KiB per router",
        &traffic,
    )?;
    files.push(conv_path);
    files.push(traffic_path);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sweep_scenario_parses_for_every_generator() {
        for kind in [
            TopologyKind::Line,
            TopologyKind::Ring,
            TopologyKind::Grid,
            TopologyKind::Random,
            TopologyKind::ScaleFree,
        ] {
            let sc = Scenario::parse(Path::new("<sweep>"), builtin_scenario(kind, 30)).unwrap();
            assert_eq!(
                sc.file.profiles,
                vec![Profile::Bote, Profile::QdrouterdLike]
            );
            assert_eq!(sc.file.events.len(), 5);
        }
    }
}
