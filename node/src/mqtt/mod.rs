//! MQTT clients on a router: a listener with `protocol = "mqtt"` hands its
//! connections to [`connection::MqttConnection`] actors, which turn MQTT
//! into the router's own delivery paths, so MQTT and AMQP clients share
//! addresses, distributions, credit, settlement and the mesh:
//!
//! - a PUBLISH becomes a [`crate::delivery::RoutedDelivery`] to the
//!   address named by its topic (QoS 0 presettled, QoS 1 unsettled; the
//!   PUBACK waits for the outcome, `accepted`), its message built once
//!   here ([`message`]);
//! - a SUBSCRIBE becomes a consumer link of the filter's address actor
//!   (wildcard filters: `router::filter`), and deliveries to it go out as
//!   PUBLISH packets (QoS 1 settled by the client's PUBACK).
//!
//! [`codec`] reads and writes the packets (3.1.1 and 5.0, over rumqttc's
//! codecs); [`message`] maps an application message to AMQP and back;
//! [`retain`] keeps retained messages; [`store`] keeps them and the
//! persistent sessions on disk (`[router] data-dir`); [`mesh`] syncs the
//! retained messages between the MQTT routers of a mesh and hands
//! persistent sessions over to the router their client reconnects to.
//! ARCHITECTURE.md ("MQTT") states the mapping and what is not done.

pub mod codec;
pub mod connection;
pub mod mesh;
pub mod message;
pub mod retain;
pub mod store;

use std::sync::Arc;

use actix::Actor;

use crate::router::{Accept, Protocols};

/// The router's MQTT store writer, if it has one (`boted` waits for its
/// last commits when it stops).
pub fn store_writer(shared: &crate::router::Shared) -> Option<store::StoreWriter> {
    let state = shared.protocol_state.get()?.clone();
    state.downcast::<retain::MqttState>().ok()?.store.clone()
}

/// The protocols `boted` serves besides AMQP: MQTT.
pub fn protocols() -> Protocols {
    let accept: Accept = Arc::new(|id, socket, peer, listener, shared, worker| {
        connection::MqttConnection::start_in_arbiter(worker, move |_| {
            connection::MqttConnection::accepted(id, socket, peer, listener, shared)
        });
    });
    Protocols {
        mqtt: Some(accept),
        mqtt_started: Some(Arc::new(retain::start)),
    }
}
