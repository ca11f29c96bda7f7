//! bote-sim: a deterministic, seeded, discrete-event simulator of large Bote
//! meshes. Every simulated router runs the real `bote-topology` code (link-state
//! database, route computation, control protocol, forwarding policies); the
//! simulator only supplies links with latency, loss and bandwidth, a clock, the
//! scenario's events and an oracle to check the routers against.
//!
//! Layout: [`scenario`] parses TOML; [`generate`] builds meshes; [`queue`] and
//! [`link`] are the event queue and link model; [`engine`] drives the real
//! control planes and forwards traffic; [`oracle`] holds the true-graph
//! reference; [`report`] writes JSON/CSV; [`plot`] draws SVG; [`sweep`] runs
//! size sweeps.

pub mod engine;
pub mod generate;
pub mod link;
pub mod oracle;
pub mod plot;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sweep;

pub use engine::{Simulation, run_scenario};
pub use report::RunReport;
pub use scenario::{Profile, Scenario, ScenarioError};
