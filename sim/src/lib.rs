//! bote-sim: a deterministic, seeded, discrete-event simulator of large Bote
//! meshes. Every simulated router runs the real `bote-topology` code (link-state
//! database, route computation, control protocol, forwarding policies); the
//! simulator only supplies links with latency, loss and bandwidth, a clock and
//! the scenario's events. It lands with the simulator issue.
