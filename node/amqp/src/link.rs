//! A link endpoint (§2.6): its name, role and handles, its attach/detach
//! state, link flow control (delivery-count, link-credit, available, drain)
//! and the counters a router reads per link: credit, delivery count,
//! unsettled and undelivered (queued) deliveries.
//!
//! Links are keyed in their session by `(name, role)`, so a sender and a
//! receiver with the same name are two links, as Qpid Proton expects.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::codec::Symbol;
use super::definitions::{
    DeliveryTag, Fields, ReceiverSettleMode, Role, SenderSettleMode, Source, Target,
};
use super::delivery::OutgoingDelivery;

/// What the application attaches (or answers an attach) with.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub name: String,
    /// This side's role: `Sender` sends transfers on the link.
    pub role: Role,
    pub source: Option<Source>,
    pub target: Option<Target>,
    pub snd_settle_mode: SenderSettleMode,
    /// `Second` is accepted from a peer sender but a receiver of this engine
    /// always settles first (it answers `First`): the router settles as it
    /// forwards the outcome.
    pub rcv_settle_mode: ReceiverSettleMode,
    pub initial_delivery_count: u32,
    pub max_message_size: Option<u64>,
    pub offered_capabilities: Option<Vec<Symbol>>,
    pub desired_capabilities: Option<Vec<Symbol>>,
    pub properties: Option<Fields>,
}

impl LinkConfig {
    /// A sending link with the given name and target address.
    pub fn sender(name: impl Into<String>, target: Option<&str>) -> Self {
        LinkConfig {
            name: name.into(),
            role: Role::Sender,
            source: Some(Source::default()),
            target: Some(Target {
                address: target.map(str::to_owned),
                ..Target::default()
            }),
            ..Self::base()
        }
    }

    /// A receiving link with the given name and source address.
    pub fn receiver(name: impl Into<String>, source: Option<&str>) -> Self {
        LinkConfig {
            name: name.into(),
            role: Role::Receiver,
            source: Some(Source {
                address: source.map(str::to_owned),
                ..Source::default()
            }),
            target: Some(Target::default()),
            ..Self::base()
        }
    }

    fn base() -> Self {
        LinkConfig {
            name: String::new(),
            role: Role::Sender,
            source: None,
            target: None,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            initial_delivery_count: 0,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }
}

/// The partly received delivery of a receiving link.
#[derive(Debug)]
pub(crate) struct IncomingPartial {
    pub delivery_id: u32,
    pub tag: DeliveryTag,
    pub message_format: u32,
    pub settled: bool,
    pub size: u64,
    /// Collected frames when the engine assembles deliveries.
    pub assembly: Option<BytesMut>,
}

/// One link endpoint. Read its counters through the accessors; the
/// [`Connection`](super::connection::Connection) changes it.
#[derive(Debug)]
pub struct Link {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) handle: u32,
    pub(crate) remote_handle: Option<u32>,
    pub(crate) attach_sent: bool,
    pub(crate) attach_received: bool,
    pub(crate) detach_sent: bool,
    pub(crate) detach_received: bool,
    pub(crate) snd_settle_mode: SenderSettleMode,
    pub(crate) rcv_settle_mode: ReceiverSettleMode,
    pub(crate) source: Option<Source>,
    pub(crate) target: Option<Target>,
    /// The remote's attach, kept until the link is answered.
    pub(crate) remote_max_message_size: Option<u64>,
    pub(crate) max_message_size: Option<u64>,
    pub(crate) delivery_count: u32,
    pub(crate) link_credit: u32,
    pub(crate) available: Option<u32>,
    pub(crate) drain: bool,
    /// A flow frame for this link is due at the next transmit.
    pub(crate) flow_pending: bool,
    /// Sending: deliveries not yet fully written.
    pub(crate) queue: VecDeque<OutgoingDelivery>,
    /// Sending: on the session's ready list.
    pub(crate) ready: bool,
    /// Unsettled deliveries on this link (either role).
    pub(crate) unsettled: u32,
    /// Receiving: the delivery in progress.
    pub(crate) incoming: Option<IncomingPartial>,
    /// Receiving: transfers still accepted without credit after the sender
    /// advanced its delivery-count over credit it had (a drain). A sender may
    /// write that flow before transfers it had already taken credit for
    /// (fe2o3-amqp 0.18 does); they are within the credit granted, so they
    /// are taken, up to the amount the flow consumed, not refused.
    pub(crate) late_allowance: u32,
    /// Receiving: transfers taken beyond credit since the last grant, at
    /// most `credit_margin` (see [`crate::SessionConfig::credit_margin`]).
    pub(crate) credit_margin: u32,
    pub(crate) beyond_credit: u32,
    /// Receiving: every transfer taken beyond credit on this link.
    pub(crate) transfers_beyond_credit: u64,
    /// Sending: the application completes a receiver's drain itself
    /// ([`Connection::drained`](super::connection::Connection::drained)), as
    /// a router does on a routed link whose drain travels to the far sender.
    pub(crate) manual_drain: bool,
    /// Sending, with `manual_drain`: the application said the drain is
    /// complete; the engine uses up the credit once the queue is empty.
    pub(crate) drain_release: bool,
}

impl Link {
    pub(crate) fn new(name: String, role: Role, handle: u32) -> Self {
        Link {
            name,
            role,
            handle,
            remote_handle: None,
            attach_sent: false,
            attach_received: false,
            detach_sent: false,
            detach_received: false,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: None,
            target: None,
            remote_max_message_size: None,
            max_message_size: None,
            delivery_count: 0,
            link_credit: 0,
            available: None,
            drain: false,
            flow_pending: false,
            queue: VecDeque::new(),
            ready: false,
            unsettled: 0,
            incoming: None,
            late_allowance: 0,
            credit_margin: 0,
            beyond_credit: 0,
            transfers_beyond_credit: 0,
            manual_drain: false,
            drain_release: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// This side's role on the link.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The link's local (output) handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }
    /// Credit: on a sending link what the peer lets this side send; on a
    /// receiving link what this side has granted and not yet seen used.
    pub fn credit(&self) -> u32 {
        self.link_credit
    }
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }
    pub fn drain(&self) -> bool {
        self.drain
    }
    /// Receiving: transfers taken beyond the credit granted, within the
    /// link's margin ([`crate::SessionConfig::credit_margin`]), since it
    /// attached.
    pub fn transfers_beyond_credit(&self) -> u64 {
        self.transfers_beyond_credit
    }
    /// Deliveries sent (or received) on this link and not yet settled.
    pub fn unsettled(&self) -> u32 {
        self.unsettled
    }
    /// Sending: deliveries handed to the engine and not yet fully written.
    pub fn undelivered(&self) -> usize {
        self.queue.len()
    }
    /// Both attaches have been exchanged and no detach yet.
    pub fn is_attached(&self) -> bool {
        self.attach_sent && self.attach_received && !self.detach_sent && !self.detach_received
    }
    pub fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }
    pub fn snd_settle_mode(&self) -> SenderSettleMode {
        self.snd_settle_mode
    }
    /// The peer's max-message-size for this link (`None`: no limit).
    pub fn remote_max_message_size(&self) -> Option<u64> {
        self.remote_max_message_size
    }

    /// Sending links: credit from the receiver's flow (§2.6.7):
    /// `delivery-count(rcv) + link-credit(rcv) - delivery-count(snd)`,
    /// in serial-number arithmetic and never below zero.
    pub(crate) fn apply_receiver_flow(
        &mut self,
        delivery_count: Option<u32>,
        credit: u32,
        initial: u32,
    ) {
        let rcv_count = delivery_count.unwrap_or(initial);
        let c = rcv_count
            .wrapping_add(credit)
            .wrapping_sub(self.delivery_count) as i32;
        self.link_credit = c.max(0) as u32;
    }

    /// Receiving links: the sender's flow moved its delivery-count on (a
    /// drain that consumed credit): what was skipped is no longer credit.
    pub(crate) fn apply_sender_flow(&mut self, delivery_count: Option<u32>) {
        if let Some(snd_count) = delivery_count {
            let advanced = snd_count.wrapping_sub(self.delivery_count) as i32;
            if advanced > 0 {
                let consumed = (advanced as u32).min(self.link_credit);
                self.link_credit -= consumed;
                self.late_allowance = consumed;
                self.delivery_count = snd_count;
            }
        }
    }
}
