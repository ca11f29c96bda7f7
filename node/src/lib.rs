//! bote-node: the Bote router (`boted`, its binary) and the pieces it is
//! made of beside the sans-I/O AMQP 1.0 engine (the `bote-amqp` crate): the
//! typed configuration ([`config`]), the router's actors ([`router`]), its
//! place in a mesh of routers ([`mesh`]), the delivery types the two carry
//! ([`delivery`]), the state it reports to tests and tools ([`state`]), and
//! its log and trace output ([`telemetry`]), and TLS at run time
//! ([`tls`]: reloadable rustls configurations, the session record). The read model of counters
//! ([`model`]) and AMQP management ([`management`]) serve `qdstat`,
//! `qdmanage`, `botectl` and the HTTP API ([`http`]). The command line
//! (`botectl`) is a crate of its own.

pub mod config;
pub mod delivery;
pub mod http;
pub mod management;
pub mod mesh;
pub mod model;
pub mod mqtt;
pub mod otlp;
pub mod router;
pub mod state;
pub mod telemetry;
pub mod tls;
