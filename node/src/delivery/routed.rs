//! The messages of link routing that the router and the mesh both carry
//! (neutral ground, like the rest of `delivery`): one performative of a
//! routed link passed from one end of a pair to the other
//! ([`RoutedFrame`]), and an attach sent on toward the router that holds
//! the broker's connection ([`RemoteRouteAttach`]). A pair's ends are
//! connection actors (the client's, the broker's) or, across the mesh,
//! peer actors, one pair per hop.
//!
//! The address a routed link is matched on: a sender's target address, a
//! receiver's source address, and [`COORDINATOR_ADDRESS`] for a sender
//! whose target is a transaction coordinator (qdrouterd's spelling).

use actix::prelude::*;
use bote_amqp::{AmqpError, Attach, DeliveryState, DeliveryTag};
use bytes::Bytes;

/// What a link route matches a transaction controller's link on.
pub const COORDINATOR_ADDRESS: &str = "$coordinator";

/// The address a link route matches `attach` on (see the module doc), and
/// whether the router receives on the link (`true`: a client's sender).
pub fn routed_address(attach: &Attach) -> (Option<&str>, bool) {
    match attach.role {
        bote_amqp::Role::Sender => match &attach.target {
            Some(t) if t.coordinator => (Some(COORDINATOR_ADDRESS), true),
            t => (t.as_ref().and_then(|t| t.address.as_deref()), true),
        },
        bote_amqp::Role::Receiver => (
            attach
                .source
                .as_ref()
                .filter(|s| !s.dynamic)
                .and_then(|s| s.address.as_deref()),
            false,
        ),
    }
}

/// One performative of a routed link, from one end of a pair to the other.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoutedFrame {
    /// The pair's router-wide id.
    pub route_id: u64,
    pub frame: Routed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// The broker answered the attach (toward the client's end).
    Attached(Box<Attach>),
    /// From the end whose link sends (its receiver granted credit): the
    /// receiver allows `total` deliveries since the link attached;
    /// `drain` asks the far sender to use its credit up.
    Credit { total: u32, drain: bool },
    /// From the end whose link receives: the far sender completed a drain.
    Drained,
    /// A transfer frame, from the receiving end to the sending end.
    Transfer {
        delivery_id: u32,
        tag: DeliveryTag,
        message_format: u32,
        first: bool,
        more: bool,
        settled: bool,
        aborted: bool,
        payload: Bytes,
        /// The sender's delivery state on the first frame (a transactional
        /// send's transactional-state).
        state: Option<DeliveryState>,
    },
    /// The far receiver updated or settled a delivery: `delivery_id` is the
    /// receiving end's.
    Disposition {
        delivery_id: u32,
        state: Option<DeliveryState>,
        settled: bool,
    },
    /// The other end detached (or its connection or stream went).
    Detach {
        closed: bool,
        error: Option<AmqpError>,
    },
}

/// To a peer actor: carry a client's attach (`route_id` names the pair
/// with `peer` on this router) toward `destination`, the router holding the
/// broker's connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteRouteAttach {
    pub route_id: u64,
    pub attach: Box<Attach>,
    pub destination: String,
    pub peer: Recipient<RoutedFrame>,
}

/// A neighbour's peer actor as an end of routed link pairs.
#[derive(Clone)]
pub struct LinkPeer {
    pub frames: Recipient<RoutedFrame>,
    pub attach: Recipient<RemoteRouteAttach>,
}
