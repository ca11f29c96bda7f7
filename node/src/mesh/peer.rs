//! The peer actor: one per inter-router stream (`InterRouter.Exchange`),
//! whichever side dialled. It learns the neighbour's identity from the first
//! frame (always a hello), converts frames to and from control messages
//! ([`super::wire`]), batches outgoing frames into `Batch`es (everything
//! queued by the time the actor gets to flush travels as one gRPC message),
//! and tells the control actor when the stream closes so the neighbour is
//! dropped at once.
//!
//! Outbound frames go through a bounded tokio mpsc channel whose receiver is
//! the gRPC stream's body. Control frames, dispositions and credit
//! acknowledgements go first, in order; when the channel is full for them
//! the actor waits (`ctx.wait`). Transfers wait in the data plane's
//! priority queues ([`PeerData::take_transfers`]) and are encoded a batch
//! at a time while the channel has room; when it has none a task waits for
//! room while the mailbox keeps being read, so later higher-priority
//! deliveries can overtake them. HTTP/2 flow control pushes back on the
//! sender.
//!
//! When the stream closes (or is closed) the neighbour is lost at once:
//! the control actor is told, the streams are dropped and what was in
//! flight to the neighbour is re-forwarded ([`PeerData::lost`]). If
//! deliveries that came from the neighbour are still unsettled here (a
//! consumer has them), the actor stays, with no stream, until their
//! outcomes are in or [`super::dedup::REMEMBERED`] has passed: those
//! outcomes can no longer go back, but they are recorded, and they answer
//! the copies of these deliveries that failover brings on other paths
//! ([`super::dedup`]). Deliveries routed to it meanwhile go back to their
//! address ([`PeerData::refuse`]).

mod routed;

use std::mem;

use actix::prelude::*;
use bote_proto::v1 as pb;
use bote_topology::{ControlMessage, Cost, Hello, InstanceId, RouterId};
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

use super::control::{ControlActor, PeerClosed, PeerIdentified, PeerMessages};
use super::data::{PeerData, PeerDeliver};
use super::wire::{self, Inbound};
use crate::delivery::{Returned, StreamProgress};

/// Capacity, in batches, of each stream's outbound channel. Deliveries
/// wait in the peer's priority queues (`PeerData`) until the channel has
/// room, so this is also how much a higher priority cannot overtake.
pub const OUTBOUND_BATCHES: usize = 16;

/// A batch is closed once its frames carry about this many bytes, so one gRPC
/// message stays well under the peer's limit ([`super::MAX_BATCH_MESSAGE`])
/// and large messages interleave with other traffic.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Cuts queued frames into batches of about [`BATCH_BYTES`], in order.
fn split_batches(frames: Vec<pb::Frame>) -> std::collections::VecDeque<pb::Batch> {
    let mut batches = std::collections::VecDeque::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for frame in frames {
        let size = match &frame.kind {
            Some(pb::frame::Kind::Transfer(t)) => 64 + t.message.len(),
            _ => 64,
        };
        if bytes + size > BATCH_BYTES && !current.is_empty() {
            batches.push_back(pb::Batch::new(mem::take(&mut current)));
            bytes = 0;
        }
        bytes += size;
        current.push(frame);
    }
    if !current.is_empty() {
        batches.push_back(pb::Batch::new(current));
    }
    batches
}

/// How long a credit acknowledgement may wait for other frames to go with
/// (or for its delivery's outcome, which acknowledges it too): a request
/// answered within it costs the stream no frame of its own, and a busy
/// stream always has something to carry it sooner.
const CREDIT_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// One inter-router stream and the neighbour on its other end.
pub struct PeerActor {
    conn: u64,
    description: String,
    own_id: RouterId,
    own_instance: InstanceId,
    cost: Cost,
    control: Addr<ControlActor>,
    peer: Option<RouterId>,
    /// Frames to the neighbour; `None` once it is lost.
    out: Option<mpsc::Sender<pb::Batch>>,
    /// The stream of frames from the neighbour.
    inbound: Option<SpawnHandle>,
    pending: Vec<pb::Frame>,
    flush_queued: bool,
    /// A task waits for room in the outbound channel, then flushes.
    room_awaited: bool,
    /// A timer will send the credit acknowledgements still waiting
    /// ([`PeerData::take_credit_acks`]).
    credit_acks_armed: bool,
    data: PeerData,
    closed: Option<oneshot::Sender<()>>,
    /// Where the neighbour's frames and bytes are counted (`/metrics`).
    stats: std::sync::Arc<super::MeshStats>,
    /// This stream's counts: its own until the neighbour says who it is,
    /// then the neighbour's (what came before is added to them).
    traffic: std::sync::Arc<super::NeighbourTraffic>,
    /// Where arriving routed attaches go (the router's data plane).
    hook: super::DataHook,
    /// The routed link pairs through this stream (link routing).
    routed: routed::PeerRouted,
    /// When the control actor was last told the neighbour was heard from
    /// (control messages, or data alone at most every [`HEARD_REPORT`]).
    heard_reported: Option<std::time::Instant>,
}

/// How often a stream that carries only data tells the control actor the
/// neighbour is alive: a hello queued behind a flood of transfers arrives
/// late, but the transfers show the neighbour is there (well inside the
/// hello timeout, 3 s by default).
const HEARD_REPORT: std::time::Duration = std::time::Duration::from_millis(500);

/// What the control actor needs to start a [`PeerActor`] on a new stream.
pub struct PeerStream {
    /// Frames from the neighbour.
    pub inbound: Streaming<pb::Batch>,
    /// Frames to the neighbour.
    pub out: mpsc::Sender<pb::Batch>,
    /// Our link cost to the neighbour.
    pub cost: Cost,
    /// Who dialled whom, for logs ("connector B to 127.0.0.1:5001").
    pub description: String,
    /// Fired when the stream has closed (the connector then redials).
    pub closed: Option<oneshot::Sender<()>>,
}

impl PeerActor {
    /// Starts the actor on `stream` (on the current arbiter). Its first
    /// frame is a hello carrying our id and instance.
    #[allow(clippy::too_many_arguments)]
    pub fn start_on(
        stream: PeerStream,
        conn: u64,
        own_id: RouterId,
        own_instance: InstanceId,
        control: Addr<ControlActor>,
        hook: super::DataHook,
        records: std::sync::Arc<super::dedup::Records>,
        stats: std::sync::Arc<super::MeshStats>,
    ) -> Addr<PeerActor> {
        PeerActor::create(move |ctx| {
            let inbound = ctx.add_stream(stream.inbound);
            let mut data = PeerData::new(hook.clone(), own_id.clone(), conn, records);
            data.started(ctx.address().recipient());
            PeerActor {
                conn,
                description: stream.description,
                own_id,
                own_instance,
                cost: stream.cost,
                control,
                peer: None,
                out: Some(stream.out),
                inbound: Some(inbound),
                pending: Vec::new(),
                flush_queued: false,
                room_awaited: false,
                credit_acks_armed: false,
                data,
                closed: stream.closed,
                stats,
                traffic: Default::default(),
                hook,
                routed: Default::default(),
                heard_reported: None,
            }
        })
    }

    fn queue(&mut self, frames: impl IntoIterator<Item = pb::Frame>, ctx: &mut Context<Self>) {
        if self.out.is_none() {
            // Lost: nothing more goes to the neighbour.
            return;
        }
        self.pending.extend(frames);
        self.schedule_flush(ctx);
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_queued && (!self.pending.is_empty() || self.data.has_queued()) {
            self.flush_queued = true;
            ctx.notify(Flush);
        }
    }

    /// Sends what is pending: control frames, dispositions and credit
    /// acknowledgements first, in order; then transfers from the priority
    /// queues, a batch at a time while the outbound channel has room (when
    /// it has none they stay queued, where later higher-priority ones can
    /// overtake them, and a task waits for room).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_queued = false;
        let Some(out) = self.out.clone() else {
            self.pending.clear();
            return;
        };
        if !self.pending.is_empty() {
            // Credit acknowledgements still waiting go with whatever else goes.
            self.pending.extend(self.data.take_credit_acks());
            let batches = split_batches(mem::take(&mut self.pending));
            if !self.send_batches(&out, batches, ctx) {
                return;
            }
        }
        let me = ctx.address();
        while self.data.has_queued() {
            if out.capacity() == 0 {
                self.await_room(&out, ctx);
                return;
            }
            let mut frames = self
                .data
                .take_transfers(BATCH_BYTES, |_| me.clone().recipient());
            if frames.is_empty() {
                continue;
            }
            frames.extend(self.data.take_credit_acks());
            let batch = std::collections::VecDeque::from([pb::Batch::new(frames)]);
            if !self.send_batches(&out, batch, ctx) {
                return;
            }
        }
    }

    /// A task waits for room in the outbound channel, then flushes again.
    fn await_room(&mut self, out: &mpsc::Sender<pb::Batch>, ctx: &mut Context<Self>) {
        if mem::replace(&mut self.room_awaited, true) {
            return;
        }
        let out = out.clone();
        ctx.spawn(
            async move {
                // The permit is dropped at once: the flush takes the room.
                let _ = out.reserve().await;
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.room_awaited = false;
                act.flush(ctx);
            }),
        );
    }

    /// Puts batches on the outbound channel, in order; false when the
    /// actor has to wait (the channel is full: the rest is sent by a
    /// `ctx.wait`, which holds the mailbox to keep order) or stop.
    fn send_batches(
        &mut self,
        out: &mpsc::Sender<pb::Batch>,
        mut batches: std::collections::VecDeque<pb::Batch>,
        ctx: &mut Context<Self>,
    ) -> bool {
        {
            use std::sync::atomic::Ordering::Relaxed;
            let frames: usize = batches.iter().map(|b| b.frames().len()).sum();
            let bytes: usize = batches.iter().map(|b| b.wire_len()).sum();
            self.traffic.frames_out.fetch_add(frames as u64, Relaxed);
            self.traffic.bytes_out.fetch_add(bytes as u64, Relaxed);
        }
        while let Some(batch) = batches.pop_front() {
            match out.try_send(batch) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    // Keep order: the rest waits behind this one.
                    batches.push_front(batch);
                    let out = out.clone();
                    ctx.wait(
                        async move {
                            for batch in batches {
                                if out.send(batch).await.is_err() {
                                    break;
                                }
                            }
                        }
                        .into_actor(self)
                        .map(|_, act, ctx| act.schedule_flush(ctx)),
                    );
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    ctx.stop();
                    return false;
                }
            }
        }
        true
    }

    fn close(&mut self, reason: &str, ctx: &mut Context<Self>) {
        tracing::warn!(
            "closing inter-router stream ({}): {reason}",
            self.description
        );
        ctx.stop();
    }

    fn peer_name(&self) -> &str {
        self.peer.as_ref().map_or("<unidentified>", |p| p.as_str())
    }
}

impl Actor for PeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let hello = ControlMessage::Hello(Hello {
            router: self.own_id.clone(),
            instance: self.own_instance,
            seen: Vec::new(),
            // The control plane's own hello (sent when the neighbour comes
            // up) states the cost, if this end decides it.
            cost: None,
        });
        self.queue([wire::to_frame(&hello)], ctx);
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        if self.out.is_none() {
            // Lost already: this is the end of the wait for outcomes.
            return Running::Stop;
        }
        self.lose(ctx);
        if !self.data.holds_arrivals() {
            return Running::Stop;
        }
        // Stay for the outcomes of what came from the neighbour (module doc).
        ctx.run_later(super::dedup::REMEMBERED, |_, ctx| ctx.stop());
        Running::Continue
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        // Lost in `stopping` already, unless the actor was stopped another way.
        if self.out.is_some() {
            self.lose(ctx);
        }
    }
}

impl PeerActor {
    /// The neighbour is lost: the control actor learns it at once, the
    /// streams are dropped, and what was in flight to it is re-forwarded.
    fn lose(&mut self, ctx: &mut Context<Self>) {
        self.out = None;
        self.pending.clear();
        if let Some(inbound) = self.inbound.take() {
            ctx.cancel_future(inbound);
        }
        self.data.lost(self.peer.as_ref());
        self.routed_lost();
        self.control.do_send(PeerClosed { conn: self.conn });
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
    }
}

impl StreamHandler<Result<pb::Batch, Status>> for PeerActor {
    fn finished(&mut self, ctx: &mut Self::Context) {
        // Once lost, the end of the stream (it may still be polled once
        // after it was cancelled) does not end the wait for outcomes.
        if self.out.is_some() {
            ctx.stop();
        }
    }

    fn handle(&mut self, item: Result<pb::Batch, Status>, ctx: &mut Self::Context) {
        if self.out.is_none() {
            return;
        }
        let batch = match item {
            Ok(batch) => batch,
            Err(status) => {
                tracing::info!(
                    peer = self.peer_name(),
                    "inter-router stream ({}) failed: {}",
                    self.description,
                    status.message()
                );
                ctx.stop();
                return;
            }
        };
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.traffic
                .frames_in
                .fetch_add(batch.frames().len() as u64, Relaxed);
            self.traffic
                .bytes_in
                .fetch_add(batch.wire_len() as u64, Relaxed);
        }
        let mut messages = Vec::with_capacity(batch.frames().len());
        for frame in batch.into_frames() {
            if self.peer.is_none()
                && let Some(pb::frame::Kind::Hello(h)) = &frame.kind
            {
                // The stream's first hello says which compact data forms
                // the neighbour reads.
                self.data.neighbour_reads(
                    h.accepts_same_route,
                    h.accepts_disposition_ranges,
                    h.accepts_credit_acks,
                );
            }
            let message = match wire::from_frame(frame) {
                Ok(Inbound::Control(message)) => message,
                Ok(Inbound::Data(kind)) => {
                    if self.peer.is_some() {
                        let frames = self.data.inbound(kind);
                        self.queue(frames, ctx);
                    }
                    continue;
                }
                Ok(Inbound::Routed(r)) => {
                    if self.peer.is_some() {
                        self.on_routed(r, ctx);
                    }
                    continue;
                }
                Ok(Inbound::Unknown) => continue,
                Err(e) => {
                    self.close(&format!("from {}: {e}", self.peer_name()), ctx);
                    return;
                }
            };
            if self.peer.is_none() {
                let ControlMessage::Hello(hello) = &message else {
                    self.close(
                        &format!("first frame is a {}, not a hello", message.kind()),
                        ctx,
                    );
                    return;
                };
                if hello.router == self.own_id {
                    self.close(
                        &format!("the peer claims our own router id {}", hello.router),
                        ctx,
                    );
                    return;
                }
                self.peer = Some(hello.router.clone());
                let shared = self.stats.traffic(&hello.router);
                shared.absorb(&self.traffic);
                self.traffic = shared;
                let instance = crate::delivery::NeighbourInstance {
                    instance: hello.instance,
                    stream: self.conn,
                };
                self.data.identified(hello.router.clone(), instance);
                self.control.do_send(PeerIdentified {
                    conn: self.conn,
                    router: hello.router.clone(),
                    instance: hello.instance,
                    cost: self.cost,
                    description: self.description.clone(),
                    addr: ctx.address(),
                    reads_compact: self.data.reads_compact(),
                });
            }
            messages.push(message);
        }
        self.data.route_arrived();
        if self.data.take_waits_started() {
            // Copies that started waiting for an outcome: answered by then.
            ctx.run_later(super::dedup::OUTCOME_WAIT, |act, _| {
                act.data.expire_waiting()
            });
        }
        if let Some(from) = &self.peer {
            // Data alone says the neighbour is alive too (an empty list),
            // told at most every HEARD_REPORT.
            let now = std::time::Instant::now();
            if !messages.is_empty()
                || self
                    .heard_reported
                    .is_none_or(|at| now.duration_since(at) >= HEARD_REPORT)
            {
                self.heard_reported = Some(now);
                self.control.do_send(PeerMessages {
                    conn: self.conn,
                    from: from.clone(),
                    messages,
                });
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for PeerActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush(ctx);
    }
}

/// Control messages for the neighbour (from the control actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendControl(pub Vec<ControlMessage>);

impl Handler<SendControl> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SendControl, ctx: &mut Self::Context) {
        let frames: Vec<pb::Frame> = msg.0.iter().map(wire::to_frame).collect();
        self.queue(frames, ctx);
    }
}

/// Frames of any kind for the neighbour (the data plane's entry point); they
/// share batches with control frames, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendFrames(pub Vec<pb::Frame>);

impl Handler<SendFrames> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: SendFrames, ctx: &mut Self::Context) {
        self.queue(msg.0, ctx);
    }
}

/// Close the stream (the neighbour is then dropped), logging `0` as reason.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub String);

impl Handler<Close> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        self.close(&msg.0, ctx);
    }
}

impl Handler<PeerDeliver> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: PeerDeliver, ctx: &mut Self::Context) {
        if self.out.is_none() {
            self.data.refuse(msg.0, self.peer.as_ref());
            return;
        }
        self.data.enqueue(msg.0);
        self.schedule_flush(ctx);
    }
}

impl Handler<Returned> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: Returned, ctx: &mut Self::Context) {
        for (_, state) in &msg.outcomes {
            // `None`: a presettled delivery moved on; no outcome to count.
            if let Some(state) = state {
                self.stats.incoming_outcomes.outcome(Some(state));
            }
        }
        let frames = self.data.returned(msg.outcomes, msg.moved);
        self.queue(frames, ctx);
        if self.data.credit_acks_wait() && !self.credit_acks_armed {
            self.credit_acks_armed = true;
            ctx.run_later(CREDIT_ACK_DELAY, |act, ctx| {
                act.credit_acks_armed = false;
                let frames = act.data.take_credit_acks();
                act.queue(frames, ctx);
            });
        }
        if self.out.is_none() && !self.data.holds_arrivals() {
            // Lost, and every outcome it waited for is in.
            ctx.stop();
        }
    }
}

impl Handler<StreamProgress> for PeerActor {
    type Result = ();

    fn handle(&mut self, msg: StreamProgress, ctx: &mut Self::Context) {
        self.data.stream_progress(msg.context);
        self.schedule_flush(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(len: usize) -> pb::Frame {
        pb::Frame {
            kind: Some(pb::frame::Kind::Transfer(pb::Transfer {
                message: bytes::Bytes::from(vec![0u8; len]),
                ..pb::Transfer::default()
            })),
        }
    }

    #[test]
    fn large_transfers_are_split_into_bounded_batches_in_order() {
        let frames: Vec<pb::Frame> = (0..40).map(|_| transfer(64 * 1024)).collect();
        let batches = split_batches(frames);
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let mut total = 0;
        for b in &batches {
            let bytes: usize = b
                .frames()
                .iter()
                .map(|f| match &f.kind {
                    Some(pb::frame::Kind::Transfer(t)) => t.message.len(),
                    _ => 0,
                })
                .sum();
            assert!(bytes <= BATCH_BYTES, "batch of {bytes} bytes");
            total += b.frames().len();
        }
        assert_eq!(total, 40);
        // A single frame larger than the limit still goes, alone.
        let big = split_batches(vec![transfer(3 * BATCH_BYTES), transfer(10)]);
        assert_eq!(big.len(), 2);
    }
}
