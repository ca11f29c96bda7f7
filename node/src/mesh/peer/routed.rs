//! The peer actor as an end of routed link pairs (link routing): each pair
//! of routed link ends on this router whose other end is across this
//! stream. Frames from the local end go on the stream as `RoutedLink`
//! frames under the pair's stream id (the id the side that sent the attach
//! gave it, with `reply` set by the other side); frames from the stream go
//! to the local end under its router-wide id. An attach arriving from the
//! neighbour is handed to the router's data plane, which attaches it to the
//! broker (this router holds its connection) or sends it on toward the
//! router that does. A detach passing either way ends the pair here; a
//! lost stream detaches every local end with `amqp:link:detach-forced`.

use actix::prelude::*;
use bote_amqp::{AmqpError, condition};
use bote_proto::v1 as pb;

use super::PeerActor;
use crate::delivery::FastMap;
use crate::delivery::routed::{RemoteRouteAttach, Routed, RoutedFrame};
use crate::mesh::wire::{self, RoutedOp};

/// The pairs through one stream.
#[derive(Default)]
pub(super) struct PeerRouted {
    /// Local id -> (stream id, this side sent the attach).
    by_local: FastMap<u64, (u64, bool)>,
    /// (this side sent the attach, stream id) -> (local id, local end).
    by_stream: FastMap<(bool, u64), (u64, Recipient<RoutedFrame>)>,
}

impl PeerRouted {
    fn insert(&mut self, local: u64, stream: u64, originated: bool, end: Recipient<RoutedFrame>) {
        self.by_local.insert(local, (stream, originated));
        self.by_stream.insert((originated, stream), (local, end));
    }

    fn remove_local(&mut self, local: u64) {
        if let Some((stream, originated)) = self.by_local.remove(&local) {
            self.by_stream.remove(&(originated, stream));
        }
    }
}

impl PeerActor {
    /// A routed-link frame from the neighbour.
    pub(super) fn on_routed(&mut self, r: pb::RoutedLink, ctx: &mut Context<Self>) {
        let (stream_id, reply, op) = match wire::routed_from_frame(r) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(peer = self.peer_name(), "routed link frame dropped: {e}");
                return;
            }
        };
        match op {
            RoutedOp::Attach {
                attach,
                destination,
            } => {
                let me: Recipient<RoutedFrame> = ctx.address().recipient();
                let routed = match self.hook.get() {
                    Some(data) => data.route_link(attach, &destination, me),
                    None => Err(AmqpError::new(
                        condition::NOT_FOUND,
                        "the router is not started",
                    )),
                };
                match routed {
                    Ok((local, end)) => self.routed.insert(local, stream_id, false, end),
                    Err(error) => {
                        let detach = Routed::Detach {
                            closed: true,
                            error: Some(error),
                        };
                        let frame = wire::routed_to_frame(stream_id, true, RoutedOp::Frame(detach));
                        self.queue([frame], ctx);
                    }
                }
            }
            RoutedOp::Frame(frame) => {
                // Their `reply` frames answer attaches this side sent.
                let key = (reply, stream_id);
                let Some((local, end)) = self.routed.by_stream.get(&key).cloned() else {
                    return;
                };
                if matches!(frame, Routed::Detach { .. }) {
                    self.routed.remove_local(local);
                }
                end.do_send(RoutedFrame {
                    route_id: local,
                    frame,
                });
            }
        }
    }

    /// The stream is lost: every pair's local end is detached.
    pub(super) fn routed_lost(&mut self) {
        let peer = self.peer_name().to_owned();
        for (_, (local, end)) in self.routed.by_stream.drain() {
            end.do_send(RoutedFrame {
                route_id: local,
                frame: Routed::Detach {
                    closed: true,
                    error: Some(AmqpError::new(
                        condition::DETACH_FORCED,
                        format!("the routed link's path through router {peer} was lost"),
                    )),
                },
            });
        }
        self.routed.by_local.clear();
    }
}

impl Handler<RemoteRouteAttach> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: RemoteRouteAttach, ctx: &mut Self::Context) {
        if self.out.is_none() {
            msg.peer.do_send(RoutedFrame {
                route_id: msg.route_id,
                frame: Routed::Detach {
                    closed: true,
                    error: Some(AmqpError::new(
                        condition::DETACH_FORCED,
                        format!("router {} is no longer reachable", self.peer_name()),
                    )),
                },
            });
            return;
        }
        // The local id is router-wide unique: it serves as the stream id.
        self.routed
            .insert(msg.route_id, msg.route_id, true, msg.peer);
        let frame = wire::routed_to_frame(
            msg.route_id,
            false,
            RoutedOp::Attach {
                attach: msg.attach,
                destination: msg.destination,
            },
        );
        self.queue([frame], ctx);
    }
}

impl Handler<RoutedFrame> for PeerActor {
    type Result = ();
    fn handle(&mut self, msg: RoutedFrame, ctx: &mut Self::Context) {
        let Some(&(stream_id, originated)) = self.routed.by_local.get(&msg.route_id) else {
            return;
        };
        if matches!(msg.frame, Routed::Detach { .. }) {
            self.routed.remove_local(msg.route_id);
        }
        let frame = wire::routed_to_frame(stream_id, !originated, RoutedOp::Frame(msg.frame));
        self.queue([frame], ctx);
    }
}
