//! bote-node: the Bote router (`boted`), its CLI (`botectl`) and the pieces
//! they are made of: the sans-I/O AMQP 1.0 engine ([`amqp`]), the typed
//! configuration ([`config`]), the router's actors ([`router`]), its place in
//! a mesh of routers ([`mesh`]) and the throughput tool ([`bench`]).
//! Management and telemetry come with later issues.

pub mod amqp;
pub mod bench;
pub mod config;
pub mod delivery;
pub mod mesh;
pub mod router;
