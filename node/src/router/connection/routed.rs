//! A connection actor's routed links (link routing, [`crate::router::link_route`]):
//! on a client's connection, an attach that matches a `[[link-route]]` is
//! paired with a link the router attaches on a broker's (route-container)
//! connection; each end passes what its engine reports for the link to the
//! other end as a [`RoutedFrame`], and does what the other end sends.
//!
//! Credit: the end whose link *sends* (its peer is a receiver) reports the
//! receiver's limit as a running total (`delivery-count + credit` of its
//! link, both counted from 0 at attach); the end whose link *receives*
//! grants its far sender that total minus the transfers it has received
//! on the link, so transfers still on their way between the two actors
//! are never granted twice. Drain is passed to the far sender and the
//! sending end completes it (engine manual drain) only when the far sender
//! has. Transfers pass frame by frame; outcomes and settlement are the far
//! end's, passed back as dispositions: the router settles nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;

use super::ConnectionActor;
use crate::config::{
    ConnectorConfig, LinkDirection, LinkRouteConfig, ListenerConfig, Role as ConfigRole,
};
use crate::delivery::ConnId;
use crate::delivery::routed::{RemoteRouteAttach, Routed, RoutedFrame};
use crate::model::ConnectionInfo;
use crate::router::Shared;
use crate::router::link_route::{AutoLinkState, RouteAttach, RouteContainer};
use bote_amqp::{
    AmqpError, Attach, Connection, ConnectionConfig, DeliveryState, IncomingTransfer, LinkConfig,
    LinkDetached, LinkId, Role, SaslConfig, SendDelivery, SessionId, Side, condition,
};

/// What a route-container connection (the router dialled a broker) keeps.
pub(in crate::router) struct Outbound {
    connector: Arc<ConnectorConfig>,
    /// Told when the actor stops, so the connector dials again.
    done: Option<tokio::sync::oneshot::Sender<()>>,
    /// The session the routed links are attached on (begun with the first).
    session: Option<SessionId>,
    /// Routed links on this connection (the balancing load).
    links: Arc<AtomicUsize>,
    /// The auto-links attached on this connection: link -> index in
    /// `Shared::auto_links`.
    auto: crate::delivery::FastMap<LinkId, usize>,
}

/// How long a failed auto-link waits before the router attaches it again.
const AUTO_LINK_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// One end of a routed link pair.
pub(in crate::router) struct RoutedEnd {
    route_id: u64,
    /// The other end: a connection actor, or the peer actor of the
    /// neighbour the pair continues through.
    peer: Recipient<RoutedFrame>,
    /// This end's role on its link.
    role: Role,
    /// On the broker's end: the route (the broker's answer is rewritten
    /// back with it).
    route: Option<Arc<LinkRouteConfig>>,
    /// Receiving end: deliveries received on the link since it attached.
    received: u32,
    /// Receiving end: a drain is passed on and not completed yet.
    drain_requested: bool,
    /// Broker's end: the connection's routed-link count, counted down when
    /// the link ends.
    links: Option<Arc<AtomicUsize>>,
    /// This end detached because the other did: its end is not passed back.
    detaching: bool,
    /// The link in the read model (qdstat -l), with its deliveries and
    /// outcomes.
    info: Arc<crate::model::LinkInfo>,
}

fn opposite(role: Role) -> Role {
    match role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    }
}

/// The attach's address rewritten by `f` (a sender's target, a receiver's source).
fn rewrite(attach: &mut Attach, f: impl Fn(&str) -> String) {
    if let Some(a) = attach.target.as_mut().and_then(|t| t.address.as_mut()) {
        *a = f(a);
    }
    if let Some(a) = attach.source.as_mut().and_then(|s| s.address.as_mut()) {
        *a = f(a);
    }
}

/// The link this side attaches or answers with, as the other end's attach
/// says (terminus, filters, properties and capabilities intact).
fn link_config(attach: Attach, role: Role) -> LinkConfig {
    LinkConfig {
        name: attach.name,
        role,
        source: attach.source,
        target: attach.target,
        snd_settle_mode: attach.snd_settle_mode,
        rcv_settle_mode: attach.rcv_settle_mode,
        initial_delivery_count: 0,
        max_message_size: attach.max_message_size,
        offered_capabilities: attach.offered_capabilities,
        desired_capabilities: attach.desired_capabilities,
        properties: attach.properties,
    }
}

/// Sends a broker's connection the attach of a pair (the address rewritten
/// for the broker), counting the link in the connection's load.
pub(in crate::router) fn send_route_attach(
    container: &RouteContainer,
    route_id: u64,
    mut attach: Attach,
    route: Arc<LinkRouteConfig>,
    peer: Recipient<RoutedFrame>,
) {
    rewrite(&mut attach, |a| route.external_address(a));
    container.links.fetch_add(1, Ordering::Relaxed);
    container.actor.do_send(RouteAttach {
        route_id,
        attach: Box::new(attach),
        peer,
        route,
        links: container.links.clone(),
    });
}

impl ConnectionActor {
    /// A connection the router dialled to a broker (route-container
    /// connector `connector`) over `socket`, logging in with SASL PLAIN
    /// when `credentials` (the PLAIN message) are given, else ANONYMOUS;
    /// `done` is told when it ends.
    pub fn route_container(
        id: ConnId,
        socket: super::Transport,
        connector: Arc<ConnectorConfig>,
        credentials: Option<Vec<u8>>,
        shared: Arc<Shared>,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        let peer = connector.socket_address();
        let settings = Arc::new(ListenerConfig {
            name: Some(connector.name.clone()),
            host: connector.host.clone(),
            port: connector.port,
            role: ConfigRole::RouteContainer,
            idle_timeout_secs: connector.idle_timeout_secs,
            max_frame_size: connector.max_frame_size,
            ..ListenerConfig::default()
        });
        let config = ConnectionConfig {
            container_id: shared.router_id.clone(),
            max_frame_size: connector.max_frame_size,
            idle_timeout: (connector.idle_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(u64::from(connector.idle_timeout_secs))),
            stream_deliveries: true,
            // The far sender's transfers are within the credit its
            // receiver granted end to end: no margin of our own.
            sasl: SaslConfig::Client {
                mechanism: if credentials.is_some() {
                    "PLAIN"
                } else {
                    "ANONYMOUS"
                }
                .to_owned(),
                initial_response: credentials.map(bytes::Bytes::from),
                hostname: Some(connector.host.clone()),
            },
            ..ConnectionConfig::default()
        };
        let mut engine = Connection::new(config, Side::Client, std::time::Instant::now());
        engine.open();
        let mut info = ConnectionInfo::new(id, peer.clone());
        info.role = "route-container";
        info.dir = "out";
        let mut actor = Self::with_engine(id, socket, peer, settings, shared, engine, info);
        actor.outbound = Some(Outbound {
            connector,
            done: Some(done),
            session: None,
            links: Arc::new(AtomicUsize::new(0)),
            auto: Default::default(),
        });
        actor
    }

    /// Routed links on this connection whose end here has `role`.
    pub(super) fn routed_links(&self, role: Role) -> usize {
        self.routed.values().filter(|end| end.role == role).count()
    }

    /// The broker's open arrived: its connection takes routed links now.
    pub(super) fn route_container_opened(&mut self, container_id: &str) {
        let Some(out) = &self.outbound else {
            return;
        };
        tracing::info!(conn = %self.id, connector = %out.connector.name, container = %container_id, "route container connected");
        self.shared.route_containers.register(
            &out.connector.name,
            RouteContainer {
                conn: self.id,
                actor: self.me(),
                container_id: container_id.to_owned(),
                links: out.links.clone(),
            },
        );
        self.shared.advertise_route_container(container_id);
        self.shared.route_containers_changed();
        let connector = out.connector.name.clone();
        for i in 0..self.shared.auto_links.len() {
            if self.shared.auto_links[i]
                .config
                .is_for(&connector, container_id)
            {
                self.attach_auto_link(i);
            }
        }
    }

    /// The session routed links and auto-links are attached on.
    fn outbound_session(&mut self) -> Result<SessionId, bote_amqp::EngineError> {
        match self.outbound.as_ref().and_then(|o| o.session) {
            Some(s) => Ok(s),
            None => {
                let s = self.engine.begin()?;
                if let Some(o) = &mut self.outbound {
                    o.session = Some(s);
                }
                Ok(s)
            }
        }
    }

    /// Attaches auto-link `index` (of `Shared::auto_links`) to its broker's
    /// queue; it becomes a consumer (`out`) or producer (`in`) of its
    /// address like a client's link.
    fn attach_auto_link(&mut self, index: usize) {
        let shared = self.shared.clone();
        let auto = &shared.auto_links[index];
        let c = auto.config.clone();
        if self.engine.is_closed() {
            return;
        }
        let name = format!("{}.{}", self.shared.router_id, c.name);
        let config = match c.direction {
            LinkDirection::Out => LinkConfig {
                source: Some(bote_amqp::Source {
                    address: Some(c.address.clone()),
                    ..Default::default()
                }),
                ..LinkConfig::sender(name.clone(), Some(c.broker_address()))
            },
            LinkDirection::In => LinkConfig {
                target: Some(bote_amqp::Target {
                    address: Some(c.address.clone()),
                    ..Default::default()
                }),
                ..LinkConfig::receiver(name.clone(), Some(c.broker_address()))
            },
        };
        let attached = self
            .outbound_session()
            .and_then(|s| self.engine.attach(s, config));
        match attached {
            Ok(link) => {
                tracing::info!(conn = %self.id, auto_link = %c.name, address = %c.address, direction = c.direction.as_str(), queue = %c.broker_address(), "auto-link attaching");
                auto.set(AutoLinkState::Attaching, None);
                if let Some(o) = &mut self.outbound {
                    o.auto.insert(link, index);
                }
                match c.direction {
                    LinkDirection::Out => self.register_consumer(link, &name, c.address.clone()),
                    LinkDirection::In => {
                        self.register_producer(link, &name, Some(c.address.clone()))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(conn = %self.id, auto_link = %c.name, "auto-link not attached: {e}");
                auto.set(AutoLinkState::Failed, Some(e.to_string()));
            }
        }
    }

    /// The broker answered an auto-link's attach: active, unless it
    /// refused (null terminus; its detach follows).
    pub(super) fn auto_link_attached(&mut self, link: LinkId, attach: &Attach) {
        let Some(&index) = self.outbound.as_ref().and_then(|o| o.auto.get(&link)) else {
            return;
        };
        let auto = &self.shared.auto_links[index];
        let refused = match auto.config.direction {
            LinkDirection::Out => attach.target.is_none(),
            LinkDirection::In => attach.source.is_none(),
        };
        if !refused {
            tracing::info!(conn = %self.id, auto_link = %auto.config.name, "auto-link active");
            auto.set(AutoLinkState::Active, None);
        }
    }

    /// An auto-link ended while its connection stays: failed, attached
    /// again after [`AUTO_LINK_RETRY`].
    pub(super) fn auto_link_detached(&mut self, d: &LinkDetached, ctx: &mut Context<Self>) {
        let Some(index) = self.outbound.as_mut().and_then(|o| o.auto.remove(&d.link)) else {
            return;
        };
        let auto = &self.shared.auto_links[index];
        let error = d.error.as_ref().map_or_else(
            || "detached by the broker".to_owned(),
            |e| {
                format!(
                    "{}: {}",
                    e.condition,
                    e.description.as_deref().unwrap_or("")
                )
            },
        );
        if self.engine.is_closed() || !d.closed && d.error.is_none() {
            auto.set(AutoLinkState::Inactive, None);
            return;
        }
        tracing::info!(conn = %self.id, auto_link = %auto.config.name, "auto-link failed: {error}; attaching again in {:?}", AUTO_LINK_RETRY);
        auto.set(AutoLinkState::Failed, Some(error));
        ctx.run_later(AUTO_LINK_RETRY, move |act, ctx| {
            act.attach_auto_link(index);
            act.schedule_flush(ctx);
        });
    }

    pub(super) fn route_container_stopped(&mut self) {
        if let Some(out) = &mut self.outbound {
            self.shared
                .route_containers
                .unregister(&out.connector.name, self.id);
            if let Some(id) = self.info.container.get() {
                self.shared.withdraw_route_container(id);
            }
            for (_, &index) in out.auto.iter() {
                self.shared.auto_links[index].set(AutoLinkState::Inactive, None);
            }
            self.shared.route_containers_changed();
            if let Some(done) = out.done.take() {
                let _ = done.send(());
            }
        }
    }

    /// A client's attach: routed if a link route takes it (then `true`,
    /// also when it is refused for want of a broker).
    pub(super) fn try_link_route(&mut self, link: LinkId, attach: &Attach) -> bool {
        if self.outbound.is_some() || self.shared.link_routes.is_empty() {
            return false;
        }
        let (address, incoming) = crate::delivery::routed::routed_address(attach);
        let direction = if incoming {
            LinkDirection::In
        } else {
            LinkDirection::Out
        };
        let Some(address) = address.filter(|a| !a.is_empty()) else {
            return false;
        };
        let Some(route) = self.shared.link_routes.matching(address, direction) else {
            return false;
        };
        let route = Arc::new(route.clone());
        let route_id = self.shared.next_route_id();
        let role = opposite(attach.role);
        let Some(container) = self.shared.route_containers.pick(&route) else {
            // Another router of the mesh may hold the broker.
            if let Some((destination, next)) = self.shared.remote_route_container(&route) {
                if role == Role::Sender {
                    let _ = self.engine.set_manual_drain(link, true);
                }
                tracing::info!(conn = %self.id, link = %attach.name, %address, route = %route.name, %destination, route_id, "attach link-routed through the mesh");
                next.attach.do_send(RemoteRouteAttach {
                    route_id,
                    attach: Box::new(attach.clone()),
                    destination,
                    peer: self.me().recipient(),
                });
                self.insert_routed(
                    link,
                    route_id,
                    next.frames,
                    role,
                    None,
                    (&attach.name, address),
                );
                return true;
            }
            tracing::info!(conn = %self.id, link = %attach.name, %address, route = %route.name, "attach refused: no broker connected for the link route");
            let error = AmqpError::new(
                condition::NOT_FOUND,
                format!(
                    "no route to '{address}': link route '{}' has no broker connected to router {}",
                    route.name, self.shared.router_id
                ),
            );
            let _ = self.engine.refuse_attach(link, error);
            return true;
        };
        if role == Role::Sender {
            let _ = self.engine.set_manual_drain(link, true);
        }
        tracing::info!(conn = %self.id, link = %attach.name, %address, route = %route.name, broker = %container.container_id, route_id, "attach link-routed");
        let peer = self.me().recipient();
        let broker = container.actor.clone().recipient();
        send_route_attach(&container, route_id, attach.clone(), route, peer);
        self.insert_routed(link, route_id, broker, role, None, (&attach.name, address));
        true
    }

    fn insert_routed(
        &mut self,
        link: LinkId,
        route_id: u64,
        peer: Recipient<RoutedFrame>,
        role: Role,
        broker_end: Option<(Arc<LinkRouteConfig>, Arc<AtomicUsize>)>,
        (name, address): (&str, &str),
    ) {
        let (route, links) = broker_end.unzip();
        let dir = match role {
            Role::Sender => crate::model::LinkDir::Out,
            Role::Receiver => crate::model::LinkDir::In,
        };
        let info =
            self.shared
                .model
                .add_link(&self.info, name, dir, Some(Arc::from(address)), 0, None);
        self.routed.insert(
            link,
            RoutedEnd {
                route_id,
                peer,
                role,
                route,
                received: 0,
                drain_requested: false,
                links,
                detaching: false,
                info,
            },
        );
        self.routed_ids.insert(route_id, link);
    }

    /// Broker's end: attach a link for a client's.
    fn on_route_attach(&mut self, msg: RouteAttach) {
        let RouteAttach {
            route_id,
            attach,
            peer,
            route,
            links,
        } = msg;
        let role = attach.role;
        let name = attach.name.clone();
        let address = crate::delivery::routed::routed_address(&attach)
            .0
            .unwrap_or_default()
            .to_owned();
        let attached = self
            .outbound_session()
            .and_then(|s| self.engine.attach(s, link_config(*attach, role)));
        match attached {
            Ok(link) => {
                if role == Role::Sender {
                    let _ = self.engine.set_manual_drain(link, true);
                }
                self.insert_routed(
                    link,
                    route_id,
                    peer,
                    role,
                    Some((route, links)),
                    (&name, &address),
                );
            }
            Err(e) => {
                links.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(conn = %self.id, link = %name, "routed attach to the broker failed: {e}");
                peer.do_send(RoutedFrame {
                    route_id,
                    frame: Routed::Detach {
                        closed: true,
                        error: Some(AmqpError::new(
                            condition::DETACH_FORCED,
                            format!("link '{name}' could not be attached to the broker: {e}"),
                        )),
                    },
                });
            }
        }
    }

    fn send_routed(&self, link: LinkId, frame: Routed) {
        if let Some(end) = self.routed.get(&link) {
            end.peer.do_send(RoutedFrame {
                route_id: end.route_id,
                frame,
            });
        }
    }

    /// Broker's end: the broker answered an attach.
    pub(super) fn routed_attached(&mut self, link: LinkId, mut attach: Box<Attach>) {
        if let Some(end) = self.routed.get(&link) {
            if let Some(route) = &end.route {
                rewrite(&mut attach, |a| route.internal_address(a));
            }
            self.send_routed(link, Routed::Attached(attach));
        }
    }

    /// A flow for a routed link; `false` if the link is not routed.
    pub(super) fn routed_flow(&mut self, link: LinkId, credit: u32, drain: bool) -> bool {
        let Some(end) = self.routed.get_mut(&link) else {
            return false;
        };
        match end.role {
            Role::Sender => {
                let Some(l) = self.engine.link(link) else {
                    return true;
                };
                let total = l.delivery_count().wrapping_add(l.credit());
                self.send_routed(link, Routed::Credit { total, drain });
            }
            Role::Receiver => {
                if drain && credit == 0 && end.drain_requested {
                    end.drain_requested = false;
                    self.send_routed(link, Routed::Drained);
                }
            }
        }
        true
    }

    /// A transfer frame on a routed link goes to the other end; other
    /// links' frames are given back.
    pub(super) fn routed_transfer(&mut self, t: IncomingTransfer) -> Option<IncomingTransfer> {
        let Some(end) = self.routed.get_mut(&t.link) else {
            return Some(t);
        };
        if t.first {
            end.received = end.received.wrapping_add(1);
            end.info.stats.delivery(t.settled);
        }
        self.delivered = true;
        let link = t.link;
        self.send_routed(
            link,
            Routed::Transfer {
                delivery_id: t.delivery_id,
                tag: t.delivery_tag,
                message_format: t.message_format,
                first: t.first,
                more: t.more,
                settled: t.settled,
                aborted: t.aborted,
                payload: t.payload,
                state: t.state,
            },
        );
        None
    }

    /// The far receiver's disposition of a delivery sent on a routed link.
    pub(super) fn routed_disposition(
        &mut self,
        link: LinkId,
        context: u64,
        state: &Option<DeliveryState>,
        settled: bool,
    ) -> bool {
        let Some(end) = self.routed.get(&link) else {
            return false;
        };
        // On a receiving end the far sender settled (receiver settle mode
        // second, which the engine answers as first): nothing to pass.
        if end.role == Role::Sender {
            if settled || state.as_ref().is_some_and(DeliveryState::is_outcome) {
                end.info.stats.outcome(state.as_ref());
            }
            self.send_routed(
                link,
                Routed::Disposition {
                    delivery_id: context as u32,
                    state: state.clone(),
                    settled,
                },
            );
        }
        true
    }

    /// A routed link ended here: the other end detaches too (unless it
    /// started it).
    pub(super) fn routed_detached(&mut self, d: &LinkDetached) -> bool {
        let Some(end) = self.routed.remove(&d.link) else {
            return false;
        };
        self.routed_ids.remove(&end.route_id);
        self.shared.model.remove_link(&self.info, &end.info);
        if let Some(links) = &end.links {
            links.fetch_sub(1, Ordering::Relaxed);
        }
        if !end.detaching {
            // A link ended with its broker's connection (not by a detach)
            // carries no error of its own: the client gets one it can act
            // on. A client that went away is no error to the broker (Proton
            // closes the connection of a link detached with an error).
            let error = match (&d.error, d.closed, &self.outbound) {
                (None, false, Some(o)) => Some(AmqpError::new(
                    condition::DETACH_FORCED,
                    format!("the broker's connection ({}) closed", o.connector.name),
                )),
                (e, _, _) => e.clone(),
            };
            tracing::debug!(conn = %self.id, link = %d.name, route_id = end.route_id, "routed link detached");
            end.peer.do_send(RoutedFrame {
                route_id: end.route_id,
                frame: Routed::Detach {
                    // A link that ended with its connection is closed for
                    // good (a broker answers only a closing detach).
                    closed: d.closed || error.is_some() || self.engine.is_closed(),
                    error,
                },
            });
        }
        true
    }

    /// A session of a route-container connection ended: the next routed
    /// link begins a new one.
    pub(super) fn routed_session_ended(&mut self, session: SessionId) {
        if let Some(o) = &mut self.outbound
            && o.session == Some(session)
        {
            o.session = None;
        }
    }

    /// The connection is going (the actor stops): every routed link's other
    /// end is detached with `amqp:link:detach-forced`.
    pub(super) fn routed_connection_lost(&mut self) {
        let error = self.outbound.as_ref().map(|o| {
            AmqpError::new(
                condition::DETACH_FORCED,
                format!(
                    "the connection to broker '{}' ({}) was lost",
                    o.connector.name, self.peer
                ),
            )
        });
        for (_, end) in self.routed.drain() {
            self.shared.model.remove_link(&self.info, &end.info);
            if let Some(links) = &end.links {
                links.fetch_sub(1, Ordering::Relaxed);
            }
            if end.detaching {
                continue;
            }
            end.peer.do_send(RoutedFrame {
                route_id: end.route_id,
                frame: Routed::Detach {
                    closed: true,
                    error: error.clone(),
                },
            });
        }
        self.routed_ids.clear();
    }

    /// What the other end of a routed link sent.
    fn on_routed_frame(&mut self, route_id: u64, frame: Routed) {
        let Some(&link) = self.routed_ids.get(&route_id) else {
            return;
        };
        let Some(end) = self.routed.get_mut(&link) else {
            return;
        };
        if end.detaching {
            return;
        }
        match frame {
            Routed::Attached(attach) => {
                let attach = *attach;
                let role = end.role;
                if let Err(e) = self.engine.accept_attach(link, link_config(attach, role)) {
                    tracing::warn!(conn = %self.id, route_id, "cannot answer a routed attach: {e}");
                }
            }
            Routed::Credit { total, drain } => {
                let grant = total.wrapping_sub(end.received);
                // A total below what arrived (the far receiver took credit
                // back) grants nothing.
                let grant = if grant > i32::MAX as u32 { 0 } else { grant };
                if drain {
                    end.drain_requested = true;
                }
                if let Err(e) = self.engine.flow(link, grant, drain) {
                    tracing::debug!(conn = %self.id, route_id, "routed credit not applied: {e}");
                }
            }
            Routed::Drained => {
                let _ = self.engine.drained(link);
            }
            Routed::Transfer {
                delivery_id,
                tag,
                message_format,
                first,
                more,
                settled,
                aborted,
                payload,
                state,
            } => {
                let context = u64::from(delivery_id);
                if first && !aborted {
                    end.info.stats.delivery(settled);
                }
                let sent = if first {
                    if aborted {
                        Ok(())
                    } else {
                        self.engine.send_with_state(
                            link,
                            SendDelivery {
                                tag,
                                payload,
                                settled,
                                message_format,
                                context,
                                complete: !more,
                            },
                            state,
                        )
                    }
                } else if aborted {
                    self.engine.abort(link, context).map(|_| ())
                } else {
                    self.engine.send_more(link, payload, !more)
                };
                if let Err(e) = sent {
                    tracing::info!(conn = %self.id, route_id, "routed transfer not sent: {e}");
                    let error = AmqpError::new(
                        condition::DETACH_FORCED,
                        format!("a routed transfer could not be passed on: {e}"),
                    );
                    end.detaching = true;
                    let _ = self.engine.detach(link, true, Some(error.clone()));
                    if let Some(end) = self.routed.get(&link) {
                        end.peer.do_send(RoutedFrame {
                            route_id,
                            frame: Routed::Detach {
                                closed: true,
                                error: Some(error),
                            },
                        });
                    }
                }
            }
            Routed::Disposition {
                delivery_id,
                state,
                settled,
            } => {
                if settled || state.as_ref().is_some_and(DeliveryState::is_outcome) {
                    end.info.stats.outcome(state.as_ref());
                }
                if let Err(e) = self.engine.disposition(link, delivery_id, state, settled) {
                    tracing::debug!(conn = %self.id, route_id, "routed disposition not applied: {e}");
                }
            }
            Routed::Detach { closed, error } => {
                end.detaching = true;
                if let Err(e) = self.engine.detach(link, closed, error) {
                    tracing::debug!(conn = %self.id, route_id, "routed detach: {e}");
                }
            }
        }
    }
}

impl Handler<RouteAttach> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: RouteAttach, ctx: &mut Context<Self>) {
        self.on_route_attach(msg);
        self.schedule_flush(ctx);
    }
}

impl Handler<RoutedFrame> for ConnectionActor {
    type Result = ();
    fn handle(&mut self, msg: RoutedFrame, ctx: &mut Context<Self>) {
        self.on_routed_frame(msg.route_id, msg.frame);
        self.schedule_flush(ctx);
    }
}
