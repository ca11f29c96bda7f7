//! AMQP management (draft 9) as qdrouterd implements it, so that the real
//! `qdstat` and `qdmanage` work against Bote unchanged:
//!
//! - [`schema`]: the entity types as data (qdrouterd's names, attributes and
//!   operations);
//! - [`message`]: a request decoded from the message a client sent, and the
//!   reply encoded as the message that goes back to its `reply-to`;
//! - [`agent`]: the operations (QUERY, READ, CREATE, UPDATE, DELETE,
//!   GET-TYPES, GET-ATTRIBUTES, GET-OPERATIONS, GET-MGMT-NODES) over what a
//!   router exposes through the [`agent::Managed`] trait;
//! - [`json`]: AMQP values as JSON, for the HTTP API.
//!
//! The endpoint itself (a consumer of `$management` and
//! `_topo/0/<id>/$management` like any client's receiver) is
//! `router::management`; it answers from the read model ([`crate::model`]).

pub mod agent;
pub mod json;
pub mod message;
pub mod schema;
