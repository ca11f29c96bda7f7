//! The routing brain of a Bote router, free of I/O: the link-state database,
//! shortest paths (petgraph), the control protocol as a sans-I/O state
//! machine, and the forwarding policies (closest, balanced, multicast).
//!
//! The router (`boted`) and the simulator (`bote-sim`) drive the same
//! [`ControlPlane`]: feed it neighbour events, peer messages and time; take
//! the messages to send and the route/address changes from `poll_output`.
//! Nothing here reads a clock, spawns a thread or touches a socket.
//!
//! Scale notes (measured on the 2-core build machine, release):
//! - a full route recompute (graph build + SPF) costs ~30 µs at 100 routers,
//!   0.25-0.5 ms at 1,000 and 2-5 ms at 5,000 (`benches/routes.rs`, varies
//!   with machine load); one lazy multicast tree costs one more SPF
//!   (~0.15 ms at 1,000);
//! - records are `Arc`-shared, so N routers holding an N-entry database store
//!   N² pointers (plus map overhead, ~40 bytes per entry), not N² records;
//! - a cold start floods every record to every router over every link:
//!   about N² × average degree record deliveries (~0.5 µs each), plus a few
//!   recomputes per router (`benches/convergence.rs`: 300 routers ~0.5 s). For
//!   very large simulated meshes raise `route_debounce`/`batch_delay` to cut
//!   recomputes and messages.

pub mod ids;
pub mod lsdb;
pub mod policy;
pub mod protocol;
pub mod routes;

pub use ids::{Address, Cost, InstanceId, RouterId, Sequence, Version};
pub use lsdb::{LinkStateDb, LinkStateRecord, Offer};
pub use policy::{
    Choice, Cursor, Distribution, LocalLink, MulticastPlan, Outcome, RemoteRouter,
    UnknownDistribution, aggregate_outcome, balanced, balanced_overflow, closest, multicast,
};
pub use protocol::{
    AddressEntry, AddressRequest, AddressSnapshot, AddressTable, AddressUpdate, ConfigError,
    ControlMessage, ControlPlane, CostAuthority, Digest, DigestEntry, Hello, LinkStateRequest,
    LinkStateUpdate, Neighbour, Output, ProtocolConfig,
};
pub use routes::{MulticastTree, Route, Routes, Topology, TopologyCache};
