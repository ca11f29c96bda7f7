//! botectl: the Bote command line as a library (the `botectl` binary is its
//! thin `main`). It is a client of routers: it talks AMQP through the
//! sans-I/O engine (`bote-amqp`) and starts `boted` processes, and shares no
//! code with the router itself.
//!
//! - [`bench`]: `botectl bench`, throughput and latency of message transfer
//!   directly between clients (the baseline) or through routers it connects
//!   to or spawns.
//! - [`spawn`]: starting `boted` processes on this machine and reading their
//!   state file; the bench's `--spawn` and bote-node's integration tests
//!   start routers through it.
//!
//! - [`certs`]: `botectl certs`, a throw-away CA and certificates for TLS
//!   tests and examples.
//!
//! - [`manage`]: `botectl stat`, `manage` and `topology`, a management
//!   client of any router (and, through the mesh, of any other).
//!
//! - [`deploy`]: `botectl up`/`status`/`down`, a mesh of `boted` processes
//!   on this machine from a topology file, and `config-from-env`, a router's
//!   configuration from environment variables (container image, Kubernetes).

pub mod bench;
pub mod certs;
pub mod deploy;
pub mod manage;
pub mod spawn;
pub mod user;
