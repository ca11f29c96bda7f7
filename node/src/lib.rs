//! bote-node: the Bote router (`boted`), its CLI (`botectl`) and the pieces
//! they are made of. Today that is the sans-I/O AMQP 1.0 engine in [`amqp`];
//! the actors, the inter-router peers, management and telemetry come with
//! later issues and drive that engine from outside.

pub mod amqp;
pub mod bench;
pub mod config;
pub mod mesh;
pub mod router;
