//! Deploying a mesh: the topology file ([`file`]), generated topologies and
//! the Kubernetes ordinal wiring ([`generate`]), `botectl up`/`status`/`down`
//! on this machine ([`run`]), and a router's configuration from environment
//! variables for the container image ([`env`]).

pub mod env;
pub mod file;
pub mod generate;
pub mod run;
