//! `botectl stat`, `manage` and `topology`: a management client of any
//! router (AMQP management over one connection, `-r ROUTER` to reach
//! another router of the mesh through its `_topo/0/<id>/$management`), the
//! tables and JSON it prints, and the topology renderings (table, DOT,
//! JSON), also of a `bote-sim` scenario's mesh.

pub mod cli;
pub mod client;
pub mod render;
pub mod topology;

pub use client::{Client, ManageError};
