//! A session endpoint (§2.5): its channels, session flow control
//! (next-incoming-id, incoming-window, next-outgoing-id, outgoing-window and
//! the peer's windows), its links by handle and by `(name, role)`, the
//! unsettled deliveries of both directions, and what it has to write next:
//! transfers (as credit and window allow), link and session flows, and
//! coalesced dispositions.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::definitions::{AmqpError, Role, condition};
use super::delivery::{DeliveryMap, DispositionQueue};
use super::event::{Event, IncomingTransfer, LinkDetached, LinkId, SessionId};
use super::frame::{encode_frame, max_transfer_payload, transfer_payload_lower_bound};
use super::link::{IncomingPartial, Link};
use super::performatives::{Attach, Detach, Disposition, Flow, Performative, Transfer};

/// Window and handle limits a session begins with.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Transfer frames the peer may send before this side reopens the window.
    /// The engine reopens it to this value once half is used. 0 leaves the
    /// window closed until [`Connection::set_incoming_window`] opens it.
    ///
    /// [`Connection::set_incoming_window`]: super::connection::Connection::set_incoming_window
    pub incoming_window: u32,
    /// Advertised outgoing window (the engine does not limit itself by it).
    pub outgoing_window: u32,
    /// Highest link handle the peer may use (capped at 65535: the engine
    /// maps the peer's handles through a table indexed by handle).
    pub handle_max: u32,
    /// Receiving links: how many transfers beyond the credit granted (since
    /// the last grant) are taken and counted before the link is detached
    /// with `amqp:link:transfer-limit-exceeded`. 0: strict. Some senders
    /// send a little early: before the first flow arrives (even in the same
    /// read as their attach, before the link is answered), or with their
    /// delivery-count off by one; a margin lets them work while what the
    /// receiver holds stays bounded (credit + margin).
    pub credit_margin: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            incoming_window: i32::MAX as u32,
            outgoing_window: i32::MAX as u32,
            handle_max: 65535,
            credit_margin: 0,
        }
    }
}

/// What went wrong handling a frame, and what must end because of it.
#[derive(Debug)]
pub(crate) enum Fault {
    Connection(AmqpError),
    Session(AmqpError),
    Link(u32, AmqpError),
}

const NO_HANDLE: u32 = u32::MAX;
const MAX_HANDLE_MAX: u32 = 65535;

/// One session endpoint. Its links are reached through the
/// [`Connection`](super::connection::Connection).
#[derive(Debug)]
pub struct Session {
    pub(crate) id: SessionId,
    pub(crate) remote_channel: Option<u16>,
    pub(crate) begin_sent: bool,
    pub(crate) begin_received: bool,
    pub(crate) end_sent: bool,
    pub(crate) config: SessionConfig,
    // Session flow control (§2.5.6).
    pub(crate) next_outgoing_id: u32,
    pub(crate) initial_outgoing_id: u32,
    pub(crate) next_incoming_id: u32,
    pub(crate) incoming_window: u32,
    pub(crate) remote_incoming_window: u32,
    pub(crate) remote_outgoing_window: u32,
    pub(crate) remote_handle_max: u32,
    pub(crate) flow_pending: bool,
    // Links.
    pub(crate) links: Vec<Option<Link>>,
    /// The empty slots of `links` below its end: a new link takes the
    /// lowest, found in O(log n) rather than by scanning the slots (a
    /// session with thousands of links would scan them on every attach).
    free_handles: BTreeSet<u32>,
    remote_handles: Vec<u32>,
    /// The handles of our links by their name and role ([`LinkNames`]).
    names: LinkNames,
    /// Sending links that may have something to write.
    pub(crate) ready: VecDeque<u32>,
    /// Links with a flow frame due.
    pub(crate) flow_links: Vec<u32>,
    // Deliveries.
    pub(crate) next_delivery_id: u32,
    /// Sent, unsettled: (link handle, application context).
    pub(crate) outgoing_unsettled: DeliveryMap<(u32, u64)>,
    /// Received, unsettled: link handle.
    pub(crate) incoming_unsettled: DeliveryMap<u32>,
    pub(crate) dispositions: DispositionQueue,
}

/// Appends an empty slot and returns its index, growing the vector by half
/// its length (at least one slot) instead of doubling from four: most
/// connections hold one session with one link, and a `Link` slot is ~550
/// bytes, a `Session` slot ~380, so four of each were ~2.7 KiB of the
/// ~13 KiB an idle connection took.
pub(crate) fn push_slot<T>(slots: &mut Vec<Option<T>>) -> usize {
    if slots.len() == slots.capacity() {
        slots.reserve_exact((slots.len() / 2).max(1));
    }
    slots.push(None);
    slots.len() - 1
}

impl Session {
    pub(crate) fn new(id: SessionId, mut config: SessionConfig) -> Self {
        config.handle_max = config.handle_max.min(MAX_HANDLE_MAX);
        Session {
            id,
            remote_channel: None,
            begin_sent: false,
            begin_received: false,
            end_sent: false,
            next_outgoing_id: 0,
            initial_outgoing_id: 0,
            next_incoming_id: 0,
            incoming_window: config.incoming_window,
            remote_incoming_window: 0,
            remote_outgoing_window: 0,
            remote_handle_max: u32::MAX,
            flow_pending: false,
            links: Vec::new(),
            free_handles: BTreeSet::new(),
            remote_handles: Vec::new(),
            names: LinkNames::default(),
            ready: VecDeque::new(),
            flow_links: Vec::new(),
            next_delivery_id: 0,
            outgoing_unsettled: DeliveryMap::default(),
            incoming_unsettled: DeliveryMap::default(),
            dispositions: DispositionQueue::default(),
            config,
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }
    /// Transfer frames the peer may still send before this side reopens.
    pub fn incoming_window(&self) -> u32 {
        self.incoming_window
    }
    /// Transfer frames this side may still send before the peer reopens.
    pub fn remote_incoming_window(&self) -> u32 {
        self.remote_incoming_window
    }
    /// Deliveries this side sent on the session and the peer has not settled.
    pub fn outgoing_unsettled(&self) -> usize {
        self.outgoing_unsettled.len()
    }
    /// Deliveries this side received on the session and has not settled.
    pub fn incoming_unsettled(&self) -> usize {
        self.incoming_unsettled.len()
    }
    /// Both begins exchanged and no end sent.
    pub fn is_mapped(&self) -> bool {
        self.begin_sent && self.begin_received && !self.end_sent
    }
    /// The link with this local handle.
    pub fn link(&self, handle: u32) -> Option<&Link> {
        self.links.get(handle as usize).and_then(Option::as_ref)
    }
    /// Local handles of the links in this session.
    pub fn link_handles(&self) -> impl Iterator<Item = u32> + '_ {
        self.links.iter().flatten().map(|l| l.handle)
    }

    pub(crate) fn link_mut(&mut self, handle: u32) -> Option<&mut Link> {
        self.links.get_mut(handle as usize).and_then(Option::as_mut)
    }

    fn link_id(&self, handle: u32) -> LinkId {
        LinkId {
            session: self.id,
            handle,
        }
    }

    fn local_handle(&self, remote: u32) -> Option<u32> {
        match self.remote_handles.get(remote as usize) {
            Some(&h) if h != NO_HANDLE => Some(h),
            _ => None,
        }
    }

    /// Creates a link endpoint under the lowest free handle.
    pub(crate) fn add_link(&mut self, name: String, role: Role) -> Option<u32> {
        let links = &self.links;
        if self
            .names
            .find(role, &name, |h| is_link(links, h, role, &name))
            .is_some()
        {
            return None;
        }
        let limit = self.remote_handle_max.min(u32::MAX - 1) as usize;
        let slot = match self.free_handles.pop_first() {
            Some(h) => h as usize,
            None if self.links.len() <= limit => push_slot(&mut self.links),
            None => return None,
        };
        let handle = slot as u32;
        self.names.insert(role, &name, handle);
        let mut link = Link::new(name, role, handle);
        if role == Role::Receiver {
            link.credit_margin = self.config.credit_margin;
        }
        self.links[slot] = Some(link);
        Some(handle)
    }

    /// Frees a link endpoint after both detaches.
    pub(crate) fn remove_link(&mut self, handle: u32) -> Option<Link> {
        let link = self.links.get_mut(handle as usize)?.take()?;
        self.free_handles.insert(handle);
        self.names.remove(link.role, &link.name, handle);
        if let Some(r) = link.remote_handle
            && let Some(slot) = self.remote_handles.get_mut(r as usize)
        {
            *slot = NO_HANDLE;
        }
        while let Some(None) = self.links.last() {
            self.links.pop();
            self.free_handles.remove(&(self.links.len() as u32));
        }
        Some(link)
    }

    /// Queues a flow for a link at the next transmit.
    pub(crate) fn schedule_link_flow(&mut self, handle: u32) {
        if let Some(link) = self.link_mut(handle)
            && !link.flow_pending
        {
            link.flow_pending = true;
            self.flow_links.push(handle);
        }
    }

    /// Puts a sending link on the ready list.
    pub(crate) fn schedule_send(&mut self, handle: u32) {
        if let Some(link) = self.link_mut(handle)
            && !link.ready
        {
            link.ready = true;
            self.ready.push_back(handle);
        }
    }

    /// Collects what is outstanding on a link that is going away and reports it.
    pub(crate) fn finish_link(
        &mut self,
        handle: u32,
        closed: bool,
        error: Option<AmqpError>,
        events: &mut VecDeque<Event>,
    ) {
        let Some(link) = self.remove_link(handle) else {
            return;
        };
        let undelivered = link
            .queue
            .iter()
            .filter(|d| !d.started)
            .map(|d| d.context)
            .collect();
        let unsettled = self
            .outgoing_unsettled
            .extract_if(|&(h, _)| h == handle)
            .into_iter()
            .map(|(_, (_, ctx))| ctx)
            .collect();
        self.incoming_unsettled.extract_if(|&h| h == handle);
        events.push_back(Event::LinkDetached(Box::new(LinkDetached {
            link: self.link_id(handle),
            name: link.name,
            role: link.role,
            closed,
            error,
            undelivered,
            unsettled,
        })));
    }

    /// The session-level fields of a flow frame.
    pub(crate) fn flow_frame(&self) -> Flow {
        Flow {
            next_incoming_id: self.begin_received.then_some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: self.config.outgoing_window,
            ..Flow::default()
        }
    }

    fn link_flow_frame(&self, link: &Link) -> Flow {
        Flow {
            handle: Some(link.handle),
            // A receiver that has not seen the sender's attach does not know
            // the delivery-count yet and leaves it out (§2.7.4).
            delivery_count: (link.role == Role::Sender || link.attach_received)
                .then_some(link.delivery_count),
            link_credit: Some(link.link_credit),
            available: link.available,
            drain: link.drain,
            ..self.flow_frame()
        }
    }

    // ---- Incoming performatives ----

    pub(crate) fn on_attach(
        &mut self,
        attach: Attach,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        if attach.handle > self.config.handle_max {
            return Err(Fault::Connection(AmqpError::new(
                condition::FRAMING_ERROR,
                format!(
                    "attach of link '{}': handle {} exceeds handle-max {}",
                    attach.name, attach.handle, self.config.handle_max
                ),
            )));
        }
        if self.local_handle(attach.handle).is_some() {
            return Err(Fault::Session(AmqpError::new(
                condition::HANDLE_IN_USE,
                format!(
                    "attach of link '{}': handle {} is already in use",
                    attach.name, attach.handle
                ),
            )));
        }
        let our_role = match attach.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        let links = &self.links;
        let existing = self.names.find(our_role, &attach.name, |h| {
            is_link(links, h, our_role, &attach.name)
        });
        let (handle, answered) = match existing {
            Some(h) => {
                let link = self
                    .link_mut(h)
                    .ok_or_else(|| internal("link table out of step"))?;
                if link.attach_received || !link.attach_sent {
                    return Err(Fault::Session(AmqpError::new(
                        condition::NOT_ALLOWED,
                        format!(
                            "attach of link '{}': a link with that name and role is already attached",
                            attach.name
                        ),
                    )));
                }
                (h, true)
            }
            None => {
                let h = self
                    .add_link(attach.name.clone(), our_role)
                    .ok_or_else(|| {
                        Fault::Session(AmqpError::new(
                            condition::RESOURCE_LIMIT_EXCEEDED,
                            format!("attach of link '{}': no free handle", attach.name),
                        ))
                    })?;
                (h, false)
            }
        };
        let remote = attach.handle as usize;
        if self.remote_handles.len() <= remote {
            self.remote_handles.resize(remote + 1, NO_HANDLE);
        }
        self.remote_handles[remote] = handle;
        let link = self
            .link_mut(handle)
            .ok_or_else(|| internal("link vanished"))?;
        link.remote_handle = Some(attach.handle);
        link.attach_received = true;
        link.remote_max_message_size = attach.max_message_size.filter(|&m| m > 0);
        match our_role {
            Role::Receiver => {
                link.delivery_count = attach.initial_delivery_count.unwrap_or(0);
                link.snd_settle_mode = attach.snd_settle_mode;
            }
            Role::Sender => {
                if answered {
                    link.rcv_settle_mode = attach.rcv_settle_mode;
                }
            }
        }
        let link_id = self.link_id(handle);
        events.push_back(if answered {
            Event::LinkAttached {
                link: link_id,
                attach: Box::new(attach),
            }
        } else {
            Event::AttachRequested {
                link: link_id,
                attach: Box::new(attach),
            }
        });
        Ok(())
    }

    pub(crate) fn on_flow(
        &mut self,
        flow: Flow,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        // Session window (§2.5.6): what the peer still lets us send.
        // next-incoming-id(peer) + incoming-window(peer) - next-outgoing-id:
        // the transfers sent since the peer wrote this flow use up its window.
        let next_incoming = flow.next_incoming_id.unwrap_or(self.initial_outgoing_id);
        let in_flight = self.next_outgoing_id.wrapping_sub(next_incoming);
        self.remote_incoming_window = flow.incoming_window.saturating_sub(in_flight);
        self.remote_outgoing_window = flow.outgoing_window;
        let Some(remote) = flow.handle else {
            if flow.echo {
                self.flow_pending = true;
            }
            return Ok(());
        };
        let handle = self
            .local_handle(remote)
            .ok_or_else(|| unattached("flow", remote))?;
        let id = self.link_id(handle);
        let link = self
            .link_mut(handle)
            .ok_or_else(|| unattached("flow", remote))?;
        match link.role {
            Role::Sender => {
                let credit = flow.link_credit.unwrap_or(link.link_credit);
                link.apply_receiver_flow(flow.delivery_count, credit, link.delivery_count);
                link.drain = flow.drain;
                let (credit, has_queue) = (link.link_credit, !link.queue.is_empty());
                let auto_drain = !link.manual_drain;
                events.push_back(Event::Flow {
                    link: id,
                    credit,
                    drain: flow.drain,
                    available: flow.available,
                });
                if credit > 0 && has_queue {
                    self.schedule_send(handle);
                }
                if flow.echo || (flow.drain && credit > 0 && auto_drain) {
                    self.schedule_link_flow(handle);
                }
            }
            Role::Receiver => {
                link.apply_sender_flow(flow.delivery_count);
                link.available = flow.available;
                if flow.drain && link.link_credit == 0 {
                    link.drain = false;
                }
                events.push_back(Event::Flow {
                    link: id,
                    credit: link.link_credit,
                    drain: flow.drain,
                    available: flow.available,
                });
                if flow.echo {
                    self.schedule_link_flow(handle);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn on_transfer(
        &mut self,
        mut transfer: Transfer,
        payload: Bytes,
        stream: bool,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Fault> {
        if self.incoming_window == 0 {
            return Err(Fault::Session(AmqpError::new(
                condition::WINDOW_VIOLATION,
                format!(
                    "transfer on handle {} with the session's incoming window closed",
                    transfer.handle
                ),
            )));
        }
        self.incoming_window -= 1;
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        self.remote_outgoing_window = self.remote_outgoing_window.saturating_sub(1);
        if self.config.incoming_window > 0
            && self.incoming_window <= self.config.incoming_window / 2
        {
            self.incoming_window = self.config.incoming_window;
            self.flow_pending = true;
        }
        let remote = transfer.handle;
        let handle = self
            .local_handle(remote)
            .ok_or_else(|| unattached("transfer", remote))?;
        let id = self.link_id(handle);
        let link = self
            .link_mut(handle)
            .ok_or_else(|| unattached("transfer", remote))?;
        if link.detach_sent {
            return Ok(());
        }
        if link.role != Role::Receiver {
            return Err(Fault::Session(AmqpError::new(
                condition::NOT_ALLOWED,
                format!(
                    "transfer on link '{}' where this side is the sender",
                    link.name
                ),
            )));
        }
        let first = link.incoming.is_none();
        if first {
            let Some(delivery_id) = transfer.delivery_id else {
                return Err(Fault::Session(AmqpError::new(
                    condition::NOT_ALLOWED,
                    format!(
                        "first transfer of a delivery on link '{}' has no delivery-id",
                        link.name
                    ),
                )));
            };
            if link.link_credit > 0 {
                link.link_credit -= 1;
                link.delivery_count = link.delivery_count.wrapping_add(1);
            } else if link.late_allowance > 0 {
                // Sent before the sender's drain flow that consumed this
                // credit (see `Link::late_allowance`): already counted in
                // the delivery-count that flow carried.
                link.late_allowance -= 1;
            } else if link.beyond_credit < link.credit_margin {
                // A sender a little ahead of its credit (see
                // `LinkConfig::credit_margin`): taken and counted.
                link.beyond_credit += 1;
                link.transfers_beyond_credit += 1;
                link.delivery_count = link.delivery_count.wrapping_add(1);
            } else {
                let description = if link.credit_margin == 0 {
                    format!("transfer on link '{}' without link credit", link.name)
                } else {
                    format!(
                        "transfer on link '{}' beyond its link credit and the margin of {} transfers",
                        link.name, link.credit_margin
                    )
                };
                return Err(Fault::Link(
                    handle,
                    AmqpError::new(condition::TRANSFER_LIMIT_EXCEEDED, description),
                ));
            }
            let settled = transfer.settled.unwrap_or(false);
            link.incoming = Some(IncomingPartial {
                delivery_id,
                tag: transfer.delivery_tag.take().unwrap_or_default(),
                message_format: transfer.message_format.unwrap_or(0),
                settled,
                size: 0,
                assembly: None,
            });
            if !settled && !transfer.aborted {
                link.unsettled += 1;
                self.incoming_unsettled.insert(delivery_id, handle);
            }
        }
        let link = self
            .link_mut(handle)
            .ok_or_else(|| internal("link vanished"))?;
        let Some(partial) = link.incoming.as_mut() else {
            return Err(internal("no delivery in progress"));
        };
        if let Some(d) = transfer.delivery_id
            && d != partial.delivery_id
        {
            return Err(Fault::Session(AmqpError::new(
                condition::NOT_ALLOWED,
                format!(
                    "transfer on link '{}' with delivery-id {d} while delivery {} is incomplete",
                    link.name, partial.delivery_id
                ),
            )));
        }
        let delivery_id = partial.delivery_id;
        let mut settle_now = false;
        if !first && transfer.settled == Some(true) && !partial.settled {
            partial.settled = true;
            settle_now = true;
        }
        partial.size += payload.len() as u64;
        if let Some(max) = link.max_message_size
            && partial.size > max
        {
            return Err(Fault::Link(
                handle,
                AmqpError::new(
                    condition::MESSAGE_SIZE_EXCEEDED,
                    format!(
                        "delivery {delivery_id} on link '{}' exceeds max-message-size {max}",
                        link.name
                    ),
                ),
            ));
        }
        let ended = transfer.aborted || !transfer.more;
        if transfer.aborted && !partial.settled {
            settle_now = true;
        }
        let mut out = IncomingTransfer {
            link: id,
            delivery_id,
            delivery_tag: partial.tag.clone(),
            message_format: partial.message_format,
            first,
            more: transfer.more && !transfer.aborted,
            settled: partial.settled,
            aborted: transfer.aborted,
            state: transfer.state,
            payload,
        };
        let mut report = true;
        if !stream && !transfer.aborted {
            if first && ended {
                // A one-frame delivery: hand over the received slice as is.
            } else {
                let buf = partial.assembly.get_or_insert_with(BytesMut::new);
                buf.extend_from_slice(&out.payload);
                if ended {
                    out.payload = std::mem::take(buf).freeze();
                    out.first = true;
                } else {
                    report = false;
                }
            }
        }
        if ended {
            link.incoming = None;
        }
        if settle_now {
            // Settled (or aborted) by the sender mid-delivery.
            if self.incoming_unsettled.remove(delivery_id).is_some()
                && let Some(link) = self.link_mut(handle)
            {
                link.unsettled = link.unsettled.saturating_sub(1);
            }
        }
        if report {
            events.push_back(Event::Transfer(out));
        }
        Ok(())
    }

    pub(crate) fn on_disposition(&mut self, d: Disposition, events: &mut VecDeque<Event>) {
        let last = d.last.unwrap_or(d.first);
        match d.role {
            // The peer's receiver updates deliveries this side sent.
            Role::Receiver => {
                for id in self.outgoing_unsettled.span_ids(d.first, last) {
                    let Some(&(handle, context)) = self.outgoing_unsettled.get(id) else {
                        continue;
                    };
                    if d.settled {
                        self.outgoing_unsettled.remove(id);
                        if let Some(link) = self.link_mut(handle) {
                            link.unsettled = link.unsettled.saturating_sub(1);
                        }
                    }
                    events.push_back(Event::Disposition {
                        link: self.link_id(handle),
                        delivery_id: id,
                        context,
                        state: d.state.clone(),
                        settled: d.settled,
                    });
                }
            }
            // The peer's sender updates deliveries this side received.
            Role::Sender => {
                for id in self.incoming_unsettled.span_ids(d.first, last) {
                    let Some(&handle) = self.incoming_unsettled.get(id) else {
                        continue;
                    };
                    if d.settled {
                        self.incoming_unsettled.remove(id);
                        if let Some(link) = self.link_mut(handle) {
                            link.unsettled = link.unsettled.saturating_sub(1);
                        }
                    }
                    events.push_back(Event::Disposition {
                        link: self.link_id(handle),
                        delivery_id: id,
                        context: 0,
                        state: d.state.clone(),
                        settled: d.settled,
                    });
                }
            }
        }
    }

    /// A remote detach. Returns the detach this side must answer with (if
    /// it has not detached already); the link is then gone.
    pub(crate) fn on_detach(
        &mut self,
        detach: Detach,
        events: &mut VecDeque<Event>,
    ) -> Result<Option<(Option<Attach>, Detach)>, Fault> {
        let remote = detach.handle;
        let handle = self
            .local_handle(remote)
            .ok_or_else(|| unattached("detach", remote))?;
        let link = self
            .link_mut(handle)
            .ok_or_else(|| unattached("detach", remote))?;
        link.detach_received = true;
        let reply = if link.detach_sent {
            None
        } else {
            link.detach_sent = true;
            let attach = (!link.attach_sent).then(|| {
                link.attach_sent = true;
                refusal_attach(link)
            });
            Some((
                attach,
                Detach {
                    handle,
                    closed: detach.closed,
                    error: None,
                },
            ))
        };
        self.finish_link(handle, detach.closed, detach.error, events);
        Ok(reply)
    }

    // ---- Outgoing ----

    /// Writes what credit and windows allow: transfers of ready links, then
    /// due link flows (completing drains), the session flow, and coalesced
    /// dispositions. Stops adding transfers once `out` reaches `budget` bytes.
    pub(crate) fn write_pending(
        &mut self,
        channel: u16,
        remote_max_frame: u32,
        out: &mut BytesMut,
        budget: usize,
    ) {
        if !self.begin_received || self.end_sent {
            return;
        }
        while self.remote_incoming_window > 0 && out.len() < budget {
            let Some(&handle) = self.ready.front() else {
                break;
            };
            let next_delivery_id = self.next_delivery_id;
            let Some(link) = self.links.get_mut(handle as usize).and_then(Option::as_mut) else {
                self.ready.pop_front();
                continue;
            };
            let blocked = link.detach_sent
                || !link.attach_received
                || match link.queue.front() {
                    None => true,
                    Some(d) => {
                        (!d.started && link.link_credit == 0)
                            || (!d.aborted && d.drained() && !d.complete)
                    }
                };
            if blocked {
                link.ready = false;
                self.ready.pop_front();
                if link.drain
                    && link.queue.is_empty()
                    && !link.flow_pending
                    && link.role == Role::Sender
                    && (!link.manual_drain || link.drain_release)
                {
                    link.flow_pending = true;
                    self.flow_links.push(handle);
                }
                continue;
            }
            let Some(d) = link.queue.front_mut() else {
                continue;
            };
            let first = !d.started;
            if first {
                d.started = true;
                d.delivery_id = next_delivery_id;
                self.next_delivery_id = next_delivery_id.wrapping_add(1);
                link.link_credit -= 1;
                link.delivery_count = link.delivery_count.wrapping_add(1);
                if !d.settled {
                    link.unsettled += 1;
                    self.outgoing_unsettled
                        .insert(d.delivery_id, (handle, d.context));
                }
            }
            let mut transfer = Transfer {
                handle,
                delivery_id: first.then_some(d.delivery_id),
                delivery_tag: first.then(|| d.tag.clone()),
                message_format: first.then_some(d.message_format),
                settled: (first || d.aborted).then_some(d.settled || d.aborted),
                state: if first { d.state.take() } else { None },
                more: true,
                aborted: d.aborted,
                ..Transfer::default()
            };
            let finished = if d.aborted {
                transfer.more = false;
                encode_frame(channel, &Performative::Transfer(transfer), &[], out);
                true
            } else {
                // Lay the performative out to size it only when the next
                // chunk may not fit under a cheap bound (large messages).
                let room = match transfer_payload_lower_bound(remote_max_frame, &transfer) {
                    Some(room) if d.next_chunk_len() <= room => room,
                    _ => max_transfer_payload(remote_max_frame, &transfer),
                }
                .max(1);
                let chunk = d.take(room);
                let finished = d.complete && d.drained();
                transfer.more = !finished;
                encode_frame(channel, &Performative::Transfer(transfer), &chunk, out);
                finished
            };
            self.remote_incoming_window -= 1;
            self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
            if finished
                && let Some(sent) = link.queue.pop_front()
                && sent.aborted
                && !sent.settled
                && self.outgoing_unsettled.remove(sent.delivery_id).is_some()
            {
                link.unsettled = link.unsettled.saturating_sub(1);
            }
        }
        // Keep the list's allocation across transmits.
        let mut due = std::mem::take(&mut self.flow_links);
        for &handle in &due {
            let Some(link) = self.links.get_mut(handle as usize).and_then(Option::as_mut) else {
                continue;
            };
            link.flow_pending = false;
            if link.detach_sent || !link.attach_sent {
                continue;
            }
            if link.role == Role::Sender
                && link.drain
                && link.queue.is_empty()
                && (!link.manual_drain || link.drain_release)
            {
                // Drain (§2.6.7): use up the credit by advancing delivery-count.
                link.delivery_count = link.delivery_count.wrapping_add(link.link_credit);
                link.link_credit = 0;
                link.drain_release = false;
            }
            let flow = self.links[handle as usize]
                .as_ref()
                .map(|l| self.link_flow_frame(l));
            if let Some(flow) = flow {
                encode_frame(channel, &Performative::Flow(flow), &[], out);
            }
        }
        due.clear();
        self.flow_links = due;
        if self.flow_pending {
            self.flow_pending = false;
            encode_frame(channel, &Performative::Flow(self.flow_frame()), &[], out);
        }
        for d in self.dispositions.drain() {
            let disposition = Disposition {
                role: d.role,
                first: d.first,
                last: (d.last != d.first).then_some(d.last),
                settled: d.settled,
                state: d.state,
                batchable: false,
            };
            encode_frame(channel, &Performative::Disposition(disposition), &[], out);
        }
    }
}

/// An attach answering for a link with null terminus (a refusal or a detach
/// before the application answered).
pub(crate) fn refusal_attach(link: &Link) -> Attach {
    Attach {
        name: link.name.clone(),
        handle: link.handle,
        role: link.role,
        snd_settle_mode: link.snd_settle_mode,
        rcv_settle_mode: link.rcv_settle_mode,
        source: None,
        target: None,
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: (link.role == Role::Sender).then_some(link.delivery_count),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// True if `handle` holds our link `name` of `role`.
fn is_link(links: &[Option<Link>], handle: u32, role: Role, name: &str) -> bool {
    links
        .get(handle as usize)
        .and_then(Option::as_ref)
        .is_some_and(|l| l.role == role && l.name == name)
}

/// The handles of a session's links by (role of our end, link name), for
/// an attach that names an existing link and to refuse a duplicate name.
///
/// Keyed by the SipHash of role and name (the session's own random key,
/// so a peer cannot choose colliding names), not by the name itself: the
/// name is compared on the link ([`is_link`]), the map holds no copy of
/// it, and growing the map moves 16-byte entries without reading a name
/// (keyed by `String`, a session growing to a thousand links re-hashed
/// every name, a cache miss each, once per doubling).
#[derive(Debug, Default)]
struct LinkNames {
    key: std::collections::hash_map::RandomState,
    by_hash: HashMap<u64, u32, std::hash::BuildHasherDefault<Prehashed>>,
    /// Further handles whose hash is in `by_hash` under another handle
    /// (two names with one 64-bit hash: practically never).
    collided: Vec<(u64, u32)>,
}

impl LinkNames {
    fn hash(&self, role: Role, name: &str) -> u64 {
        use std::hash::BuildHasher;
        self.key.hash_one((role == Role::Sender, name))
    }

    /// The handle of the link `name` of `role`, `is` telling whether a
    /// handle holds it.
    fn find(&self, role: Role, name: &str, is: impl Fn(u32) -> bool) -> Option<u32> {
        self.find_hashed(self.hash(role, name), is)
    }

    fn insert(&mut self, role: Role, name: &str, handle: u32) {
        self.insert_hashed(self.hash(role, name), handle);
    }

    fn remove(&mut self, role: Role, name: &str, handle: u32) {
        self.remove_hashed(self.hash(role, name), handle);
    }

    fn find_hashed(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        // A hash is in `collided` only while `by_hash` holds it too.
        let first = *self.by_hash.get(&hash)?;
        if is(first) {
            return Some(first);
        }
        self.collided
            .iter()
            .find(|&&(h, handle)| h == hash && is(handle))
            .map(|&(_, handle)| handle)
    }

    fn insert_hashed(&mut self, hash: u64, handle: u32) {
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(handle);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push((hash, handle)),
        }
    }

    fn remove_hashed(&mut self, hash: u64, handle: u32) {
        if let Some(i) = self.collided.iter().position(|&e| e == (hash, handle)) {
            self.collided.swap_remove(i);
        } else if self.by_hash.get(&hash) == Some(&handle) {
            match self.collided.iter().position(|&(h, _)| h == hash) {
                Some(i) => {
                    let (_, other) = self.collided.swap_remove(i);
                    self.by_hash.insert(hash, other);
                }
                None => {
                    self.by_hash.remove(&hash);
                }
            }
        }
    }
}

/// The hasher of [`LinkNames`]' map, whose keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); any other input is
        // folded in rather than lost.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn unattached(what: &str, handle: u32) -> Fault {
    Fault::Session(AmqpError::new(
        condition::UNATTACHED_HANDLE,
        format!("{what} on handle {handle}, which no link is attached to"),
    ))
}

fn internal(what: &str) -> Fault {
    Fault::Connection(AmqpError::new(
        condition::INTERNAL_ERROR,
        format!("session state: {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_link_per_role_and_free_again_once_removed() {
        let mut s = Session::new(SessionId(0), SessionConfig::default());
        let r = s.add_link("x".into(), Role::Receiver).unwrap();
        let t = s.add_link("x".into(), Role::Sender).unwrap();
        assert_ne!(r, t);
        assert!(s.add_link("x".into(), Role::Sender).is_none());
        let links = &s.links;
        let find = |role| s.names.find(role, "x", |h| is_link(links, h, role, "x"));
        assert_eq!(find(Role::Receiver), Some(r));
        assert_eq!(find(Role::Sender), Some(t));
        s.remove_link(r).unwrap();
        let links = &s.links;
        let find = |role| s.names.find(role, "x", |h| is_link(links, h, role, "x"));
        assert_eq!(find(Role::Receiver), None);
        assert_eq!(find(Role::Sender), Some(t));
        assert_eq!(s.add_link("x".into(), Role::Receiver), Some(r));
    }

    #[test]
    fn names_with_one_hash_are_told_apart_by_the_link() {
        let mut n = LinkNames::default();
        // Handles 1, 2 and 3 share hash 7; `is` says which handle is meant.
        for h in [1, 2, 3] {
            n.insert_hashed(7, h);
        }
        n.insert_hashed(8, 4);
        for h in [1, 2, 3] {
            assert_eq!(n.find_hashed(7, |x| x == h), Some(h));
        }
        assert_eq!(n.find_hashed(7, |x| x == 4), None);
        assert_eq!(n.find_hashed(8, |x| x == 4), Some(4));
        // Removing the one in the map promotes a collided one.
        n.remove_hashed(7, 1);
        assert_eq!(n.find_hashed(7, |x| x == 1), None);
        assert_eq!(n.find_hashed(7, |x| x == 2), Some(2));
        assert_eq!(n.find_hashed(7, |x| x == 3), Some(3));
        n.remove_hashed(7, 3);
        n.remove_hashed(7, 2);
        assert_eq!(n.find_hashed(7, |_| true), None);
        assert!(n.collided.is_empty());
        // Removing a handle that is not there changes nothing.
        n.remove_hashed(8, 9);
        assert_eq!(n.find_hashed(8, |_| true), Some(4));
    }

    #[test]
    fn a_new_link_takes_the_lowest_free_handle_and_trailing_slots_are_dropped() {
        let mut s = Session::new(SessionId(0), SessionConfig::default());
        let handles: Vec<u32> = (0..5)
            .map(|i| s.add_link(format!("l{i}"), Role::Receiver).unwrap())
            .collect();
        assert_eq!(handles, [0, 1, 2, 3, 4]);
        assert!(
            s.add_link("l1".into(), Role::Receiver).is_none(),
            "name in use"
        );
        for h in [3, 1] {
            s.remove_link(h).unwrap();
        }
        assert_eq!(s.add_link("a".into(), Role::Sender), Some(1));
        // Removing the last link drops the empty slots before it too.
        s.remove_link(4).unwrap();
        assert_eq!(s.links.len(), 3);
        assert!(s.free_handles.is_empty());
        assert_eq!(s.add_link("b".into(), Role::Sender), Some(3));
        assert_eq!(s.add_link("c".into(), Role::Sender), Some(4));
        assert_eq!(s.link_handles().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn slots_grow_by_half_from_one_not_by_doubling_from_four() {
        let mut slots: Vec<Option<[u8; 512]>> = Vec::new();
        assert_eq!(push_slot(&mut slots), 0);
        assert_eq!(slots.capacity(), 1);
        assert_eq!(push_slot(&mut slots), 1);
        assert_eq!(slots.capacity(), 2);
        assert_eq!(push_slot(&mut slots), 2);
        assert_eq!(slots.capacity(), 3);
        for _ in 3..1000 {
            push_slot(&mut slots);
        }
        assert_eq!(slots.len(), 1000);
        assert!(slots.capacity() < 1500, "capacity {}", slots.capacity());
    }
}
