//! The wire form of what crosses between routers, in the protobuf frames
//! of `bote-proto` (`bote.v1`):
//!
//! - control: conversions between the sans-I/O [`ControlMessage`]s of
//!   `bote-topology` and frames ([`to_frame`], [`from_frame`]). Encoding is
//!   total; decoding validates what the protocol needs (non-empty router
//!   ids) and never panics on any input;
//! - data: the transfer and disposition frames the data plane
//!   ([`super::data`]) builds from routed deliveries and outcomes, and
//!   outcomes to and from their wire form ([`outcome_to_wire`],
//!   [`outcome_from_wire`]).

use std::sync::Arc;

use bote_amqp::{AmqpError, DeliveryState};
use bote_proto::v1 as pb;
use bote_proto::v1::frame::Kind;
use bote_topology::{
    Address, AddressRequest, AddressSnapshot, AddressUpdate, ControlMessage, Digest, DigestEntry,
    Hello, LinkStateRecord, LinkStateRequest, LinkStateUpdate, RouterId, Version,
};
use bytes::Bytes;

use crate::delivery::{Reach, RoutedDelivery};

/// A control frame that cannot be turned into a [`ControlMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A router id field was empty.
    #[error("inter-router frame {frame}: field {field} holds an empty router id")]
    EmptyRouterId {
        /// The frame kind.
        frame: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A routed-link frame whose AMQP-encoded performative does not decode
    /// (or is not the one its field names).
    #[error("inter-router frame routed_link: field {field}: {reason}")]
    RoutedPerformative { field: &'static str, reason: String },
}

// ---- link routing (`RoutedLink`) ----

/// What a routed-link frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum RoutedOp {
    /// A client's attach toward the broker on `destination`.
    Attach {
        attach: Box<bote_amqp::Attach>,
        destination: String,
    },
    /// Any other performative of the pair.
    Frame(crate::delivery::routed::Routed),
}

fn amqp_bytes(p: bote_amqp::Performative) -> bytes::Bytes {
    let mut out = bytes::BytesMut::new();
    bote_amqp::encode_frame(0, &p, &[], &mut out);
    out.freeze()
}

fn amqp_performative(
    field: &'static str,
    data: bytes::Bytes,
) -> Result<bote_amqp::Performative, WireError> {
    let bad = |reason: String| WireError::RoutedPerformative { field, reason };
    let mut buf = bytes::BytesMut::from(&data[..]);
    match bote_amqp::decode_frame(&mut buf, u32::MAX) {
        Ok(Some(bote_amqp::Frame {
            body: bote_amqp::FrameBody::Amqp(p),
            ..
        })) => Ok(p),
        Ok(_) => Err(bad("not a whole AMQP frame".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The frame for one op of the pair `route_id` on a stream (`reply`: this
/// side received the pair's attach).
pub fn routed_to_frame(route_id: u64, reply: bool, op: RoutedOp) -> pb::Frame {
    use crate::delivery::routed::Routed;
    use pb::routed_link::Op;
    let op = match op {
        RoutedOp::Attach {
            attach,
            destination,
        } => Op::Attach(pb::RoutedAttach {
            attach: amqp_bytes(bote_amqp::Performative::Attach(attach)),
            destination,
        }),
        RoutedOp::Frame(Routed::Attached(a)) => {
            Op::Attached(amqp_bytes(bote_amqp::Performative::Attach(a)))
        }
        RoutedOp::Frame(Routed::Credit { total, drain }) => {
            Op::Credit(pb::RoutedCredit { total, drain })
        }
        RoutedOp::Frame(Routed::Drained) => Op::Drained(true),
        RoutedOp::Frame(Routed::Transfer {
            delivery_id,
            tag,
            message_format,
            first,
            more,
            settled,
            aborted,
            payload,
            state,
        }) => Op::Transfer(pb::RoutedTransfer {
            state: state.map_or_else(bytes::Bytes::new, |state| {
                amqp_bytes(bote_amqp::Performative::Disposition(
                    bote_amqp::Disposition {
                        role: bote_amqp::Role::Sender,
                        first: delivery_id,
                        last: None,
                        settled: false,
                        state: Some(state),
                        batchable: false,
                    },
                ))
            }),
            delivery_id,
            tag: tag.to_bytes(),
            message_format,
            first,
            more,
            settled,
            aborted,
            payload,
        }),
        RoutedOp::Frame(Routed::Disposition {
            delivery_id,
            state,
            settled,
        }) => Op::Disposition(amqp_bytes(bote_amqp::Performative::Disposition(
            bote_amqp::Disposition {
                role: bote_amqp::Role::Receiver,
                first: delivery_id,
                last: None,
                settled,
                state,
                batchable: false,
            },
        ))),
        RoutedOp::Frame(Routed::Detach { closed, error }) => Op::Detach(amqp_bytes(
            bote_amqp::Performative::Detach(bote_amqp::Detach {
                handle: 0,
                closed,
                error,
            }),
        )),
    };
    pb::Frame {
        kind: Some(Kind::RoutedLink(pb::RoutedLink {
            route_id,
            reply,
            op: Some(op),
        })),
    }
}

/// Decodes a routed-link frame: `(route_id, reply, op)`; `None` for an op
/// this version does not know.
pub fn routed_from_frame(r: pb::RoutedLink) -> Result<Option<(u64, bool, RoutedOp)>, WireError> {
    use crate::delivery::routed::Routed;
    use bote_amqp::Performative as P;
    use pb::routed_link::Op;
    let wrong = |field: &'static str| WireError::RoutedPerformative {
        field,
        reason: "holds another performative".into(),
    };
    let op = match r.op {
        None => return Ok(None),
        Some(Op::Attach(a)) => match amqp_performative("attach", a.attach)? {
            P::Attach(attach) => RoutedOp::Attach {
                attach,
                destination: a.destination,
            },
            _ => return Err(wrong("attach")),
        },
        Some(Op::Attached(a)) => match amqp_performative("attached", a)? {
            P::Attach(attach) => RoutedOp::Frame(Routed::Attached(attach)),
            _ => return Err(wrong("attached")),
        },
        Some(Op::Credit(c)) => RoutedOp::Frame(Routed::Credit {
            total: c.total,
            drain: c.drain,
        }),
        Some(Op::Drained(_)) => RoutedOp::Frame(Routed::Drained),
        Some(Op::Transfer(t)) => RoutedOp::Frame(Routed::Transfer {
            state: if t.state.is_empty() {
                None
            } else {
                match amqp_performative("transfer.state", t.state)? {
                    P::Disposition(d) => d.state,
                    _ => return Err(wrong("transfer.state")),
                }
            },
            delivery_id: t.delivery_id,
            tag: t.tag.into(),
            message_format: t.message_format,
            first: t.first,
            more: t.more,
            settled: t.settled,
            aborted: t.aborted,
            payload: t.payload,
        }),
        Some(Op::Disposition(d)) => match amqp_performative("disposition", d)? {
            P::Disposition(d) => RoutedOp::Frame(Routed::Disposition {
                delivery_id: d.first,
                state: d.state,
                settled: d.settled,
            }),
            _ => return Err(wrong("disposition")),
        },
        Some(Op::Detach(d)) => match amqp_performative("detach", d)? {
            P::Detach(d) => RoutedOp::Frame(Routed::Detach {
                closed: d.closed,
                error: d.error,
            }),
            _ => return Err(wrong("detach")),
        },
    };
    Ok(Some((r.route_id, r.reply, op)))
}

/// What one received frame means to the mesh.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A control message for the control plane.
    Control(ControlMessage),
    /// A data frame (transfer, disposition, credit): for the data plane.
    Data(Kind),
    /// A frame of a routed link (link routing): for the peer actor's pairs.
    Routed(pb::RoutedLink),
    /// A frame of a kind this version does not know: ignored, as the schema's
    /// compatibility rules require.
    Unknown,
}

fn router(frame: &'static str, field: &'static str, id: String) -> Result<RouterId, WireError> {
    if id.is_empty() {
        Err(WireError::EmptyRouterId { frame, field })
    } else {
        Ok(RouterId::from(id))
    }
}

fn routers(
    frame: &'static str,
    field: &'static str,
    ids: Vec<String>,
) -> Result<Vec<RouterId>, WireError> {
    ids.into_iter().map(|id| router(frame, field, id)).collect()
}

fn strings(ids: &[RouterId]) -> Vec<String> {
    ids.iter().map(|r| r.as_str().to_owned()).collect()
}

fn address_strings(addresses: &[Address]) -> Vec<String> {
    addresses.iter().map(|a| a.as_str().to_owned()).collect()
}

fn addresses(list: Vec<String>) -> Vec<Address> {
    list.into_iter().map(Address::from).collect()
}

fn version_to_pb(v: Option<Version>) -> Option<pb::Version> {
    v.map(|(instance, sequence)| pb::Version { instance, sequence })
}

fn version_from_pb(v: Option<pb::Version>) -> Option<Version> {
    v.map(|v| (v.instance, v.sequence))
}

/// Encodes a control message as a frame.
pub fn to_frame(message: &ControlMessage) -> pb::Frame {
    let kind = match message {
        ControlMessage::Hello(h) => Kind::Hello(pb::Hello {
            router_id: h.router.as_str().to_owned(),
            instance: h.instance,
            neighbours_seen: strings(&h.seen),
            link_cost: h.cost.unwrap_or(0),
            // This version reads both compact data forms and credit
            // acknowledgements (see `mesh::data`).
            accepts_same_route: true,
            accepts_disposition_ranges: true,
            accepts_credit_acks: true,
        }),
        ControlMessage::LinkStateUpdate(u) => Kind::LinkStateUpdate(pb::LinkStateUpdate {
            records: u
                .records
                .iter()
                .map(|r| pb::LinkStateRecord {
                    origin: r.origin.as_str().to_owned(),
                    instance: r.instance,
                    sequence: r.sequence,
                    neighbours: r
                        .neighbours
                        .iter()
                        .map(|(id, cost)| pb::NeighbourCost {
                            router_id: id.as_str().to_owned(),
                            cost: *cost,
                        })
                        .collect(),
                })
                .collect(),
        }),
        ControlMessage::LinkStateRequest(r) => Kind::LinkStateRequest(pb::LinkStateRequest {
            all: r.origins.is_none(),
            origins: r.origins.as_deref().map(strings).unwrap_or_default(),
        }),
        ControlMessage::AddressUpdate(u) => Kind::AddressUpdate(pb::AddressUpdate {
            origin: u.origin.as_str().to_owned(),
            instance: u.instance,
            sequence: u.sequence,
            added: address_strings(&u.added),
            removed: address_strings(&u.removed),
        }),
        ControlMessage::Digest(d) => Kind::Digest(pb::Digest {
            link_state_hash: d.link_state_hash,
            address_hash: d.address_hash,
            full: d.entries.is_some(),
            entries: d
                .entries
                .iter()
                .flatten()
                .map(|e| pb::DigestEntry {
                    origin: e.origin.as_str().to_owned(),
                    link_state: version_to_pb(e.link_state),
                    addresses: version_to_pb(e.addresses),
                })
                .collect(),
        }),
        ControlMessage::AddressRequest(r) => Kind::AddressRequest(pb::AddressRequest {
            origins: strings(&r.origins),
        }),
        ControlMessage::AddressSnapshot(s) => Kind::AddressSnapshot(pb::AddressSnapshot {
            origin: s.origin.as_str().to_owned(),
            instance: s.instance,
            sequence: s.sequence,
            addresses: address_strings(&s.addresses),
        }),
    };
    pb::Frame { kind: Some(kind) }
}

/// Decodes one received frame.
pub fn from_frame(frame: pb::Frame) -> Result<Inbound, WireError> {
    let Some(kind) = frame.kind else {
        return Ok(Inbound::Unknown);
    };
    let message = match kind {
        Kind::Hello(h) => ControlMessage::Hello(Hello {
            router: router("hello", "router_id", h.router_id)?,
            instance: h.instance,
            seen: routers("hello", "neighbours_seen", h.neighbours_seen)?,
            // 0 (the proto3 default, and what older routers send) = not stated.
            cost: (h.link_cost > 0).then_some(h.link_cost),
        }),
        Kind::LinkStateUpdate(u) => {
            let mut records = Vec::with_capacity(u.records.len());
            for r in u.records {
                let origin = router("link_state_update", "origin", r.origin)?;
                let mut neighbours = Vec::with_capacity(r.neighbours.len());
                for n in r.neighbours {
                    neighbours.push((
                        router("link_state_update", "router_id", n.router_id)?,
                        n.cost,
                    ));
                }
                records.push(Arc::new(LinkStateRecord::new(
                    origin, r.instance, r.sequence, neighbours,
                )));
            }
            ControlMessage::LinkStateUpdate(LinkStateUpdate { records })
        }
        Kind::LinkStateRequest(r) => ControlMessage::LinkStateRequest(LinkStateRequest {
            origins: if r.all {
                None
            } else {
                Some(routers("link_state_request", "origins", r.origins)?)
            },
        }),
        Kind::AddressUpdate(u) => ControlMessage::AddressUpdate(Arc::new(AddressUpdate {
            origin: router("address_update", "origin", u.origin)?,
            instance: u.instance,
            sequence: u.sequence,
            added: addresses(u.added),
            removed: addresses(u.removed),
        })),
        Kind::Digest(d) => ControlMessage::Digest(Digest {
            link_state_hash: d.link_state_hash,
            address_hash: d.address_hash,
            entries: if d.full {
                let mut entries = Vec::with_capacity(d.entries.len());
                for e in d.entries {
                    entries.push(DigestEntry {
                        origin: router("digest", "origin", e.origin)?,
                        link_state: version_from_pb(e.link_state),
                        addresses: version_from_pb(e.addresses),
                    });
                }
                Some(entries)
            } else {
                None
            },
        }),
        Kind::AddressRequest(r) => ControlMessage::AddressRequest(AddressRequest {
            origins: routers("address_request", "origins", r.origins)?,
        }),
        Kind::AddressSnapshot(s) => ControlMessage::AddressSnapshot(AddressSnapshot {
            origin: router("address_snapshot", "origin", s.origin)?,
            instance: s.instance,
            sequence: s.sequence,
            addresses: addresses(s.addresses),
        }),
        data @ (Kind::Transfer(_) | Kind::Disposition(_) | Kind::Credit(_)) => {
            return Ok(Inbound::Data(data));
        }
        Kind::RoutedLink(r) => return Ok(Inbound::Routed(r)),
    };
    Ok(Inbound::Control(message))
}

// ---- Data frames ----

/// The route fields of a departing transfer.
pub(super) enum Route {
    /// The previous message's (`same_route`).
    Same,
    Full {
        address: Bytes,
        trace: Vec<Bytes>,
        hops_left: u32,
    },
}

pub(super) fn transfer_frame(
    id: u64,
    d: &RoutedDelivery,
    message: Bytes,
    route: Route,
    more: bool,
    trace_context: Option<crate::delivery::trace::WireContext>,
) -> pb::Frame {
    let (address, trace, hops_left, same_route) = match route {
        Route::Same => (Bytes::new(), Vec::new(), 0, true),
        Route::Full {
            address,
            trace,
            hops_left,
        } => (address, trace, hops_left, false),
    };
    pb::Frame {
        kind: Some(pb::frame::Kind::Transfer(pb::Transfer {
            delivery_id: id,
            address,
            message,
            settled: d.presettled,
            priority: u32::from(d.priority),
            ingress_router: trace.first().cloned().unwrap_or_default(),
            trace,
            trace_context: trace_context.map(|w| pb::TraceContext {
                traceparent: w.traceparent,
                tracestate: w.tracestate,
            }),
            more,
            aborted: false,
            hops_left,
            ingress_sequence: d.ingress_sequence,
            resend: d.resend,
            same_route,
            destinations: match &d.reach {
                Reach::Toward(routers) => routers
                    .iter()
                    .map(|r| Bytes::copy_from_slice(r.as_str().as_bytes()))
                    .collect(),
                Reach::Tree | Reach::Behind(_) => Vec::new(),
            },
        })),
    }
}

pub(super) fn continuation(id: u64, message: Bytes, more: bool, aborted: bool) -> pb::Frame {
    pb::Frame {
        kind: Some(pb::frame::Kind::Transfer(pb::Transfer {
            delivery_id: id,
            message,
            more,
            aborted,
            ..pb::Transfer::default()
        })),
    }
}

pub(super) fn disposition(id: u64, state: Option<DeliveryState>) -> pb::Frame {
    disposition_range(id, id, state)
}

pub(super) fn disposition_range(first: u64, last: u64, state: Option<DeliveryState>) -> pb::Frame {
    pb::Frame {
        kind: Some(pb::frame::Kind::Disposition(pb::Disposition {
            delivery_id: first,
            outcome: state.map(outcome_to_wire),
            settled: true,
            last_delivery_id: if last > first { last } else { 0 },
        })),
    }
}

/// Disposition frames for outcomes in the order given: with `ranges`, one
/// per run of consecutive ids with the same outcome; without (a neighbour
/// that does not read ranges), one per delivery.
pub(super) fn dispositions(
    outcomes: Vec<(u64, Option<DeliveryState>)>,
    ranges: bool,
) -> Vec<pb::Frame> {
    let mut frames = Vec::new();
    let mut run: Option<(u64, u64, Option<DeliveryState>)> = None;
    for (id, state) in outcomes {
        match &mut run {
            Some((_, last, same))
                if ranges && last.checked_add(1) == Some(id) && *same == state =>
            {
                *last = id;
            }
            _ => {
                if let Some((first, last, state)) = run.replace((id, id, state)) {
                    frames.push(disposition_range(first, last, state));
                }
            }
        }
    }
    if let Some((first, last, state)) = run {
        frames.push(disposition_range(first, last, state));
    }
    frames
}

/// Credit acknowledgements for unsettled deliveries that moved on (a
/// disposition with no outcome and `settled = false`), in ascending order
/// of id: with `ranges`, one per run of consecutive ids.
pub(super) fn credit_acks(mut ids: Vec<u64>, ranges: bool) -> Vec<pb::Frame> {
    ids.sort_unstable();
    let ack = |first: u64, last: u64| pb::Frame {
        kind: Some(pb::frame::Kind::Disposition(pb::Disposition {
            delivery_id: first,
            outcome: None,
            settled: false,
            last_delivery_id: if last > first { last } else { 0 },
        })),
    };
    let mut frames = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    for id in ids {
        match &mut run {
            Some((_, last)) if ranges && last.checked_add(1) == Some(id) => *last = id,
            _ => {
                if let Some((first, last)) = run.replace((id, id)) {
                    frames.push(ack(first, last));
                }
            }
        }
    }
    if let Some((first, last)) = run {
        frames.push(ack(first, last));
    }
    frames
}

/// An AMQP delivery state as it crosses between routers.
pub fn outcome_to_wire(state: DeliveryState) -> pb::Outcome {
    use pb::outcome::Kind;
    let kind = match state {
        DeliveryState::Accepted => Kind::Accepted(pb::Accepted {}),
        DeliveryState::Rejected { error } => Kind::Rejected(pb::Rejected {
            condition: error
                .as_ref()
                .map(|e| e.condition.as_str().to_owned())
                .unwrap_or_default(),
            description: error.and_then(|e| e.description).unwrap_or_default(),
        }),
        DeliveryState::Modified {
            delivery_failed,
            undeliverable_here,
            ..
        } => Kind::Modified(pb::Modified {
            delivery_failed,
            undeliverable_here,
        }),
        DeliveryState::Released | DeliveryState::Received { .. } | DeliveryState::Other(_) => {
            Kind::Released(pb::Released {})
        }
    };
    pb::Outcome { kind: Some(kind) }
}

/// The AMQP delivery state of an outcome from another router.
pub fn outcome_from_wire(outcome: pb::Outcome) -> DeliveryState {
    use pb::outcome::Kind;
    match outcome.kind {
        Some(Kind::Accepted(_)) => DeliveryState::Accepted,
        Some(Kind::Rejected(r)) => DeliveryState::Rejected {
            error: (!r.condition.is_empty()).then(|| AmqpError::new(&r.condition, r.description)),
        },
        Some(Kind::Modified(m)) => DeliveryState::Modified {
            delivery_failed: m.delivery_failed,
            undeliverable_here: m.undeliverable_here,
            message_annotations: None,
        },
        Some(Kind::Released(_)) | None => DeliveryState::Released,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_amqp::condition;
    use prost::Message;

    fn id(s: &str) -> RouterId {
        RouterId::from(s)
    }

    /// Encodes to a frame, through protobuf bytes, and back.
    fn round_trip(message: &ControlMessage) -> ControlMessage {
        let bytes = to_frame(message).encode_to_vec();
        let frame = pb::Frame::decode(bytes.as_slice()).expect("frame decodes");
        match from_frame(frame).expect("frame converts") {
            Inbound::Control(m) => m,
            other => panic!("not a control message: {other:?}"),
        }
    }

    fn every_message_kind() -> Vec<ControlMessage> {
        vec![
            ControlMessage::Hello(Hello {
                router: id("Router.A"),
                instance: 1_764_130_000_123,
                seen: vec![id("Router.B"), id("Router.C")],
                cost: Some(10),
            }),
            ControlMessage::Hello(Hello {
                router: id("Router.A"),
                instance: 0,
                seen: vec![],
                cost: None,
            }),
            ControlMessage::Hello(Hello {
                router: id("Router.A"),
                instance: 3,
                seen: vec![id("Router.C")],
                cost: Some(u32::MAX),
            }),
            ControlMessage::LinkStateUpdate(LinkStateUpdate {
                records: vec![
                    Arc::new(LinkStateRecord::new(
                        id("A"),
                        7,
                        3,
                        [(id("B"), 1), (id("C"), 10)],
                    )),
                    Arc::new(LinkStateRecord::new(id("D"), 9, 1, [])),
                ],
            }),
            ControlMessage::LinkStateRequest(LinkStateRequest { origins: None }),
            ControlMessage::LinkStateRequest(LinkStateRequest {
                origins: Some(vec![]),
            }),
            ControlMessage::LinkStateRequest(LinkStateRequest {
                origins: Some(vec![id("B"), id("E")]),
            }),
            ControlMessage::AddressUpdate(Arc::new(AddressUpdate {
                origin: id("C"),
                instance: 5,
                sequence: 12,
                added: vec![Address::from("queue.a"), Address::from("closest.b")],
                removed: vec![Address::from("multicast.x")],
            })),
            ControlMessage::Digest(Digest {
                link_state_hash: u64::MAX,
                address_hash: 0x0123_4567_89ab_cdef,
                entries: None,
            }),
            ControlMessage::Digest(Digest {
                link_state_hash: 1,
                address_hash: 2,
                entries: Some(vec![]),
            }),
            ControlMessage::Digest(Digest {
                link_state_hash: 1,
                address_hash: 2,
                entries: Some(vec![
                    DigestEntry {
                        origin: id("A"),
                        link_state: Some((3, 4)),
                        addresses: None,
                    },
                    DigestEntry {
                        origin: id("B"),
                        link_state: None,
                        addresses: Some((5, 0)),
                    },
                ]),
            }),
            ControlMessage::AddressRequest(AddressRequest {
                origins: vec![id("A"), id("Z")],
            }),
            ControlMessage::AddressSnapshot(AddressSnapshot {
                origin: id("B"),
                instance: 2,
                sequence: 40,
                addresses: vec![Address::from("a"), Address::from("b")],
            }),
        ]
    }

    #[test]
    fn every_control_message_survives_topology_to_proto_to_topology() {
        for message in every_message_kind() {
            assert_eq!(round_trip(&message), message);
        }
    }

    #[test]
    fn link_state_request_for_everything_differs_from_a_request_for_nothing() {
        let all = to_frame(&ControlMessage::LinkStateRequest(LinkStateRequest {
            origins: None,
        }));
        let none = to_frame(&ControlMessage::LinkStateRequest(LinkStateRequest {
            origins: Some(vec![]),
        }));
        assert_ne!(all, none);
    }

    #[test]
    fn a_hello_states_its_link_cost_as_a_positive_number_and_zero_means_not_stated() {
        let stated = ControlMessage::Hello(Hello {
            router: id("Router.C"),
            instance: 9,
            seen: vec![],
            cost: Some(1),
        });
        match to_frame(&stated).kind {
            Some(Kind::Hello(h)) => {
                assert_eq!(h.link_cost, 1);
                // Every hello announces the compact data forms this version
                // reads (`mesh::data`).
                assert!(
                    h.accepts_same_route && h.accepts_disposition_ranges && h.accepts_credit_acks
                );
            }
            other => panic!("not a hello: {other:?}"),
        }
        let unstated = ControlMessage::Hello(Hello {
            router: id("Router.C"),
            instance: 9,
            seen: vec![],
            cost: None,
        });
        match to_frame(&unstated).kind {
            Some(Kind::Hello(h)) => assert_eq!(h.link_cost, 0),
            other => panic!("not a hello: {other:?}"),
        }
        // A hello from a router that predates the field decodes as "not stated".
        let old = pb::Frame {
            kind: Some(Kind::Hello(pb::Hello {
                router_id: "Router.Old".into(),
                instance: 1,
                neighbours_seen: vec![],
                ..pb::Hello::default()
            })),
        };
        match from_frame(old) {
            Ok(Inbound::Control(ControlMessage::Hello(h))) => assert_eq!(h.cost, None),
            other => panic!("not a hello: {other:?}"),
        }
    }

    #[test]
    fn data_frames_are_handed_to_the_data_plane_and_empty_frames_ignored() {
        let credit = Kind::Credit(pb::Credit {
            address: "queue.a".into(),
            credit: 10,
            drain: false,
        });
        assert_eq!(
            from_frame(pb::Frame {
                kind: Some(credit.clone())
            }),
            Ok(Inbound::Data(credit))
        );
        assert_eq!(from_frame(pb::Frame { kind: None }), Ok(Inbound::Unknown));
    }

    #[test]
    fn an_empty_router_id_is_rejected_naming_the_frame_and_field() {
        let frame = pb::Frame {
            kind: Some(Kind::Hello(pb::Hello {
                router_id: String::new(),
                instance: 1,
                ..pb::Hello::default()
            })),
        };
        let err = from_frame(frame).expect_err("empty id rejected");
        assert_eq!(
            err,
            WireError::EmptyRouterId {
                frame: "hello",
                field: "router_id"
            }
        );
        assert!(err.to_string().contains("hello"));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if let Ok(frame) = pb::Frame::decode(bytes.as_slice()) {
                let _ = from_frame(frame);
            }
        }
    }

    #[test]
    fn outcomes_cross_the_wire_unchanged() {
        for state in [
            DeliveryState::Accepted,
            DeliveryState::Released,
            DeliveryState::Rejected {
                error: Some(AmqpError::new(condition::NOT_FOUND, "no such address")),
            },
            DeliveryState::Modified {
                delivery_failed: true,
                undeliverable_here: true,
                message_annotations: None,
            },
        ] {
            assert_eq!(outcome_from_wire(outcome_to_wire(state.clone())), state);
        }
    }

    #[test]
    fn routed_link_frames_round_trip_with_their_performatives_intact() {
        use crate::delivery::routed::Routed;
        use bote_amqp::{AmqpError, Attach, DeliveryState, Role, Source, condition};
        let attach = Attach {
            name: "l1".into(),
            handle: 0,
            role: Role::Receiver,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source: Some(Source {
                address: Some("broker.q".into()),
                filter: Some(vec![(
                    "apache.org:selector-filter:string".into(),
                    bote_amqp::codec::Value::String("colour = 'red'".into()),
                )]),
                ..Source::default()
            }),
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let ops = vec![
            RoutedOp::Attach {
                attach: Box::new(attach.clone()),
                destination: "Router.C".into(),
            },
            RoutedOp::Frame(Routed::Attached(Box::new(attach))),
            RoutedOp::Frame(Routed::Credit {
                total: 7,
                drain: true,
            }),
            RoutedOp::Frame(Routed::Drained),
            RoutedOp::Frame(Routed::Transfer {
                delivery_id: 3,
                tag: bote_amqp::DeliveryTag::from(b"t"),
                message_format: 0,
                first: true,
                more: false,
                settled: false,
                aborted: false,
                payload: bytes::Bytes::from_static(b"\x00Sw\xa1\x01x"),
                state: Some(DeliveryState::Other(bote_amqp::codec::Value::Described(
                    Box::new((
                        bote_amqp::codec::Descriptor::Code(0x34),
                        bote_amqp::codec::Value::List(vec![bote_amqp::codec::Value::Binary(
                            bytes::Bytes::from_static(b"txn-1"),
                        )]),
                    )),
                ))),
            }),
            RoutedOp::Frame(Routed::Disposition {
                delivery_id: 3,
                state: Some(DeliveryState::Accepted),
                settled: true,
            }),
            RoutedOp::Frame(Routed::Detach {
                closed: true,
                error: Some(AmqpError::new(condition::DETACH_FORCED, "gone")),
            }),
        ];
        for op in ops {
            let frame = routed_to_frame(42, true, op.clone());
            let Some(Kind::RoutedLink(r)) = frame.kind else {
                panic!("not a routed link frame");
            };
            assert_eq!(routed_from_frame(r), Ok(Some((42, true, op))));
        }
    }
}
