//! The AMQP engine end to end: a client and a server `Connection` back to
//! back in memory (see `support::pair`), no sockets, no sleeps. Each test is
//! one behaviour of the connection, session or link state machines.

mod support;

use std::time::Duration;

use bote_amqp::DeliveryTag;
use bote_amqp::{
    AmqpError, DeliveryState, ErrorScope, Event, IncomingTransfer, LinkConfig, LinkId,
    Performative, Role, SenderSettleMode, SessionConfig, SessionId, condition,
};
use bote_amqp::{ConnectionConfig, SaslConfig, SendDelivery};
use bytes::Bytes;
use support::pair::{Pair, config};

// ---- helpers ----

fn begin(pair: &mut Pair) -> (SessionId, SessionId) {
    let client = pair.client.begin().expect("client begins a session");
    pair.drive();
    let server = pair
        .take_server_events()
        .into_iter()
        .find_map(|e| match e {
            Event::SessionBegun {
                session,
                remote_initiated: true,
            } => Some(session),
            _ => None,
        })
        .expect("server saw the session begin");
    assert!(
        pair.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::SessionBegun { session, remote_initiated: false } if *session == client)),
        "client saw its session begun"
    );
    (client, server)
}

/// `from` attaches `config`; the other side accepts with the mirror config.
/// Returns (link on the client, link on the server).
fn attach_from_client(pair: &mut Pair, session: SessionId, config: LinkConfig) -> (LinkId, LinkId) {
    let client_link = pair
        .client
        .attach(session, config)
        .expect("client attaches");
    pair.drive();
    let (server_link, attach) = pair
        .take_server_events()
        .into_iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, attach } => Some((link, attach)),
            _ => None,
        })
        .expect("server saw the attach request");
    let role = match attach.role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    let answer = LinkConfig {
        role,
        source: attach.source.clone(),
        target: attach.target.clone(),
        snd_settle_mode: attach.snd_settle_mode,
        ..LinkConfig::sender(attach.name.clone(), None)
    };
    pair.server
        .accept_attach(server_link, answer)
        .expect("server accepts");
    pair.drive();
    assert!(
        pair.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::LinkAttached { link, .. } if *link == client_link)),
        "client saw its link attached"
    );
    (client_link, server_link)
}

fn attach_from_server(pair: &mut Pair, session: SessionId, config: LinkConfig) -> (LinkId, LinkId) {
    let server_link = pair
        .server
        .attach(session, config)
        .expect("server attaches");
    pair.drive();
    let (client_link, attach) = pair
        .take_client_events()
        .into_iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, attach } => Some((link, attach)),
            _ => None,
        })
        .expect("client saw the attach request");
    let role = match attach.role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    let answer = LinkConfig {
        role,
        source: attach.source.clone(),
        target: attach.target.clone(),
        ..LinkConfig::sender(attach.name.clone(), None)
    };
    pair.client
        .accept_attach(client_link, answer)
        .expect("client accepts");
    pair.drive();
    assert!(
        pair.take_server_events()
            .iter()
            .any(|e| matches!(e, Event::LinkAttached { link, .. } if *link == server_link)),
        "server saw its link attached"
    );
    (client_link, server_link)
}

/// A connected pair with one session and a client sender -> server receiver link.
fn sender_link(pair: &mut Pair) -> (LinkId, LinkId) {
    let (cs, _) = begin(pair);
    attach_from_client(pair, cs, LinkConfig::sender("producer", Some("queue")))
}

fn message(context: u64, body: &'static [u8], settled: bool) -> SendDelivery {
    SendDelivery {
        tag: DeliveryTag::from_slice(&context.to_be_bytes()),
        payload: Bytes::from_static(body),
        settled,
        message_format: 0,
        context,
        complete: true,
    }
}

fn transfers(events: &[Event]) -> Vec<&IncomingTransfer> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn dispositions(events: &[Event]) -> Vec<(u64, Option<DeliveryState>, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disposition {
                context,
                state,
                settled,
                ..
            } => Some((*context, state.clone(), *settled)),
            _ => None,
        })
        .collect()
}

fn closed_error(events: &[Event]) -> Option<Option<AmqpError>> {
    events.iter().find_map(|e| match e {
        Event::Closed { error } => Some(error.clone()),
        _ => None,
    })
}

fn is_transfer(p: &Performative) -> bool {
    matches!(p, Performative::Transfer(_))
}

// ---- connection ----

#[test]
fn open_then_close_is_seen_by_both_sides_and_finishes_both() {
    let mut pair = Pair::new(config("client"), config("server"));
    pair.drive();
    let server_saw = pair.take_server_events();
    match server_saw.as_slice() {
        [Event::Opened { remote }] => assert_eq!(remote.container_id, "client"),
        other => panic!("server events: {other:?}"),
    }
    assert_eq!(
        pair.client.remote_open().map(|o| o.container_id.as_str()),
        Some("server")
    );
    pair.client.close(None);
    pair.drive();
    assert_eq!(closed_error(&pair.server_events), Some(None));
    assert_eq!(closed_error(&pair.client_events), Some(None));
    assert!(pair.client.is_closed());
    assert!(pair.server.is_closed());
}

#[test]
fn close_with_error_arrives_with_its_condition() {
    let mut pair = Pair::connected();
    pair.server.close(Some(AmqpError::new(
        condition::CONNECTION_FORCED,
        "router shutting down",
    )));
    pair.drive();
    let error = closed_error(&pair.client_events)
        .flatten()
        .expect("client saw the close error");
    assert_eq!(error.condition.as_str(), condition::CONNECTION_FORCED);
    assert_eq!(error.description.as_deref(), Some("router shutting down"));
    assert!(pair.server.is_closed());
}

#[test]
fn a_close_ends_every_link_and_session_with_what_was_outstanding() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    pair.client
        .send(sender, message(1, b"sent", false))
        .unwrap();
    pair.client
        .send(sender, message(2, b"queued", false))
        .unwrap();
    pair.drive();
    pair.server.close(Some(AmqpError::new(
        condition::CONNECTION_FORCED,
        "shutting down",
    )));
    pair.drive();
    let detached = pair.client_events.iter().find_map(|e| match e {
        Event::LinkDetached(d) if d.link == sender => Some(d.clone()),
        _ => None,
    });
    let detached = detached.expect("the client's link ended with the connection");
    assert_eq!(
        (detached.unsettled, detached.undelivered),
        (vec![1], vec![2])
    );
    assert_eq!(
        detached.error.map(|e| e.condition.0).as_deref(),
        Some(condition::CONNECTION_FORCED)
    );
    assert!(
        pair.client_events.iter().any(
            |e| matches!(e, Event::SessionEnded { session, .. } if *session == sender.session)
        )
    );
    assert!(matches!(
        pair.client_events.last(),
        Some(Event::Closed { .. })
    ));
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, Event::LinkDetached(d) if d.link == receiver))
    );
    assert!(pair.client.link(sender).is_none());
}

#[test]
fn sasl_anonymous_authenticates_then_opens() {
    let client = ConnectionConfig {
        sasl: SaslConfig::Client {
            mechanism: "ANONYMOUS".into(),
            initial_response: None,
            hostname: None,
        },
        ..config("client")
    };
    let server = ConnectionConfig {
        sasl: SaslConfig::Server {
            mechanisms: vec!["ANONYMOUS".into(), "PLAIN".into()],
            required: true,
        },
        ..config("server")
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    assert!(
        pair.server_events.iter().any(
            |e| matches!(e, Event::SaslAuthenticated { mechanism } if mechanism == "ANONYMOUS")
        )
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, Event::SaslAuthenticated { .. }))
    );
    assert!(pair.server.remote_open().is_some());
    assert!(pair.client.remote_open().is_some());
    assert_eq!(pair.server.sasl_mechanism(), Some("ANONYMOUS"));
}

#[test]
fn sasl_plain_is_decided_by_the_application() {
    let client = ConnectionConfig {
        sasl: SaslConfig::Client {
            mechanism: "PLAIN".into(),
            initial_response: Some(Bytes::from_static(b"\0alice\0secret")),
            hostname: Some("router".into()),
        },
        ..config("client")
    };
    let server = ConnectionConfig {
        sasl: SaslConfig::Server {
            mechanisms: vec!["PLAIN".into()],
            required: true,
        },
        ..config("server")
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    let init = pair.take_server_events();
    match init.as_slice() {
        [
            Event::SaslInit {
                mechanism,
                initial_response,
                hostname,
            },
        ] => {
            assert_eq!(mechanism, "PLAIN");
            assert_eq!(initial_response.as_deref(), Some(&b"\0alice\0secret"[..]));
            assert_eq!(hostname.as_deref(), Some("router"));
        }
        other => panic!("server events: {other:?}"),
    }
    assert!(
        pair.client.remote_open().is_none(),
        "nothing opens before the decision"
    );
    pair.server.sasl_outcome(true).expect("decision pending");
    pair.drive();
    assert!(pair.server.remote_open().is_some());
    assert!(pair.client.remote_open().is_some());
}

#[test]
fn sasl_plain_refused_by_the_application_fails_the_client() {
    let client = ConnectionConfig {
        sasl: SaslConfig::Client {
            mechanism: "PLAIN".into(),
            initial_response: Some(Bytes::from_static(b"\0mallory\0guess")),
            hostname: None,
        },
        ..config("client")
    };
    let server = ConnectionConfig {
        sasl: SaslConfig::Server {
            mechanisms: vec!["PLAIN".into()],
            required: true,
        },
        ..config("server")
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    pair.server.sasl_outcome(false).expect("decision pending");
    pair.drive();
    assert!(pair.client_events.iter().any(|e| matches!(e,
        Event::ProtocolError { scope: ErrorScope::Connection, error } if error.condition.as_str() == condition::UNAUTHORIZED_ACCESS)));
    assert!(pair.client.is_closed());
    assert!(pair.server.is_closed());
    assert!(pair.server.remote_open().is_none());
}

#[test]
fn server_offering_sasl_also_accepts_a_client_without_sasl() {
    let server = ConnectionConfig {
        sasl: SaslConfig::Server {
            mechanisms: vec!["ANONYMOUS".into()],
            required: false,
        },
        ..config("server")
    };
    let mut pair = Pair::new(config("client"), server);
    pair.drive();
    assert!(pair.server.remote_open().is_some());
    assert!(pair.client.remote_open().is_some());
    assert_eq!(pair.server.sasl_mechanism(), None);
}

// ---- sessions ----

#[test]
fn several_sessions_begin_and_end_independently() {
    let mut pair = Pair::connected();
    let (c1, s1) = begin(&mut pair);
    let (c2, s2) = begin(&mut pair);
    let (c3, _s3) = begin(&mut pair);
    assert_ne!(c1, c2);
    assert_ne!(s1, s2);
    pair.client.end_session(c2, None).unwrap();
    pair.drive();
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { session, error: None } if *session == s2))
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { session, .. } if *session == c2))
    );
    assert!(pair.client.session(c2).is_none());
    assert!(pair.client.session(c1).is_some_and(|s| s.is_mapped()));
    assert!(pair.client.session(c3).is_some_and(|s| s.is_mapped()));
    // A link still works on a surviving session.
    let (sender, receiver) =
        attach_from_client(&mut pair, c3, LinkConfig::sender("after-end", Some("q")));
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    pair.client
        .send(sender, message(1, b"hello", true))
        .unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 1);
}

#[test]
fn end_with_error_arrives_with_its_condition_and_detaches_its_links() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server
        .end_session(
            receiver.session,
            Some(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                "too many sessions",
            )),
        )
        .unwrap();
    pair.drive();
    let ended = pair.client_events.iter().find_map(|e| match e {
        Event::SessionEnded { session, error } if *session == sender.session => error.clone(),
        _ => None,
    });
    assert_eq!(
        ended.map(|e| e.condition.0),
        Some(condition::RESOURCE_LIMIT_EXCEEDED.to_owned())
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, Event::LinkDetached(d) if d.link == sender))
    );
    assert!(pair.server_events.iter().any(|e| matches!(e, Event::SessionEnded { session, error: None } if *session == receiver.session)));
    assert!(pair.client.link(sender).is_none());
}

#[test]
fn zero_session_window_blocks_transfers_until_a_flow_opens_it() {
    let server = ConnectionConfig {
        session: SessionConfig {
            incoming_window: 0,
            ..SessionConfig::default()
        },
        ..config("server")
    };
    let mut pair = Pair::new(config("client"), server);
    pair.drive();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 10, false).unwrap();
    pair.drive();
    assert_eq!(
        pair.client.link(sender).unwrap().credit(),
        10,
        "the link has credit"
    );
    for i in 0..3 {
        pair.client
            .send(sender, message(i, b"blocked", true))
            .unwrap();
    }
    pair.drive();
    assert_eq!(
        pair.to_server.count(is_transfer),
        0,
        "no transfer while the window is zero"
    );
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 3);
    pair.server
        .set_incoming_window(receiver.session, 2)
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.to_server.count(is_transfer),
        2,
        "the window admits exactly two frames"
    );
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 1);
    pair.server
        .set_incoming_window(receiver.session, 100)
        .unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 3);
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 0);
}

#[test]
fn a_small_incoming_window_is_reopened_by_the_engine_as_transfers_arrive() {
    let server = ConnectionConfig {
        session: SessionConfig {
            incoming_window: 4,
            ..SessionConfig::default()
        },
        ..config("server")
    };
    let mut pair = Pair::new(config("client"), server);
    pair.drive();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 100, false).unwrap();
    pair.drive();
    for i in 0..50 {
        pair.client
            .send(sender, message(i, b"windowed", true))
            .unwrap();
    }
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 50);
    assert!(
        pair.to_client
            .count(|p| matches!(p, Performative::Flow(f) if f.handle.is_none()))
            >= 10
    );
}

// ---- links ----

#[test]
fn links_carry_messages_in_both_directions() {
    let mut pair = Pair::connected();
    let (cs, ss) = begin(&mut pair);
    let (c_send, s_recv) = attach_from_client(&mut pair, cs, LinkConfig::sender("up", Some("in")));
    let (c_recv, s_send) =
        attach_from_server(&mut pair, ss, LinkConfig::sender("down", Some("out")));
    assert_eq!(pair.client.link(c_recv).unwrap().role(), Role::Receiver);
    pair.server.flow(s_recv, 5, false).unwrap();
    pair.client.flow(c_recv, 5, false).unwrap();
    pair.drive();
    pair.client
        .send(c_send, message(1, b"ping", false))
        .unwrap();
    pair.server
        .send(s_send, message(2, b"pong", false))
        .unwrap();
    pair.drive();
    let up = transfers(&pair.server_events);
    let down = transfers(&pair.client_events);
    assert_eq!(up.len(), 1);
    assert_eq!(down.len(), 1);
    assert_eq!(&up[0].payload[..], b"ping");
    assert_eq!(up[0].link, s_recv);
    assert_eq!(&down[0].payload[..], b"pong");
    assert_eq!(down[0].link, c_recv);
    assert_eq!(&down[0].delivery_tag[..], &2u64.to_be_bytes());
}

#[test]
fn a_sender_and_a_receiver_with_the_same_name_are_two_links() {
    let mut pair = Pair::connected();
    let (cs, ss) = begin(&mut pair);
    let (c_send, s_recv) = attach_from_client(&mut pair, cs, LinkConfig::sender("twin", Some("q")));
    let (c_recv, s_send) =
        attach_from_client(&mut pair, cs, LinkConfig::receiver("twin", Some("q")));
    assert_ne!(c_send, c_recv);
    assert_ne!(s_recv, s_send);
    assert_eq!(s_recv.session, ss);
    assert_eq!(pair.server.link(s_recv).unwrap().role(), Role::Receiver);
    assert_eq!(pair.server.link(s_send).unwrap().role(), Role::Sender);
    pair.server.flow(s_recv, 1, false).unwrap();
    pair.client.flow(c_recv, 1, false).unwrap();
    pair.drive();
    pair.client.send(c_send, message(1, b"a", true)).unwrap();
    pair.server.send(s_send, message(2, b"b", true)).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events)[0].link, s_recv);
    assert_eq!(transfers(&pair.client_events)[0].link, c_recv);
    // A third attach with the same name and role is refused locally.
    assert!(
        pair.client
            .attach(cs, LinkConfig::sender("twin", Some("q")))
            .is_err()
    );
}

#[test]
fn a_sender_without_credit_sends_nothing_until_credit_arrives() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    for i in 0..3 {
        pair.client
            .send(sender, message(i, b"queued", true))
            .unwrap();
    }
    pair.drive();
    assert_eq!(pair.to_server.count(is_transfer), 0);
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 3);
    pair.server.add_credit(receiver, 2).unwrap();
    pair.drive();
    assert!(pair.client_events.iter().any(
        |e| matches!(e, Event::Flow { link, credit: 2, drain: false, .. } if *link == sender)
    ));
    assert_eq!(transfers(&pair.server_events).len(), 2);
    let link = pair.client.link(sender).unwrap();
    assert_eq!(
        (link.credit(), link.delivery_count(), link.undelivered()),
        (0, 2, 1)
    );
    assert_eq!(pair.server.link(receiver).unwrap().credit(), 0);
    pair.server.add_credit(receiver, 1).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 3);
}

#[test]
fn credit_updates_are_batched_into_one_flow_per_link() {
    let mut pair = Pair::connected();
    let (_, receiver) = sender_link(&mut pair);
    let before = pair.to_client.count(|p| matches!(p, Performative::Flow(_)));
    for _ in 0..10 {
        pair.server.add_credit(receiver, 1).unwrap();
    }
    pair.drive();
    let after = pair.to_client.count(|p| matches!(p, Performative::Flow(_)));
    assert_eq!(after - before, 1);
    assert_eq!(pair.server.link(receiver).unwrap().credit(), 10);
}

#[test]
fn drain_uses_up_the_credit_the_sender_cannot_fill() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    for i in 0..3 {
        pair.client.send(sender, message(i, b"m", true)).unwrap();
    }
    pair.server.flow(receiver, 10, true).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 3);
    let s = pair.client.link(sender).unwrap();
    assert_eq!(
        (s.credit(), s.delivery_count()),
        (0, 10),
        "delivery-count advanced over the unused credit"
    );
    let r = pair.server.link(receiver).unwrap();
    assert_eq!((r.credit(), r.delivery_count()), (0, 10));
    assert!(
        pair.server_events.iter().any(
            |e| matches!(e, Event::Flow { link, credit: 0, drain: true, .. } if *link == receiver)
        ),
        "the receiver learns the drain completed"
    );
    // New messages wait for new credit.
    pair.client
        .send(sender, message(9, b"later", true))
        .unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 3);
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 4);
}

#[test]
fn manual_drain_waits_for_the_application_then_uses_up_the_credit() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.client.set_manual_drain(sender, true).unwrap();
    pair.client.send(sender, message(0, b"m", true)).unwrap();
    pair.server.flow(receiver, 5, true).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 1);
    let s = pair.client.link(sender).unwrap();
    assert_eq!(
        (s.credit(), s.delivery_count()),
        (4, 1),
        "the engine does not complete the drain by itself"
    );
    assert!(
        !pair.server_events.iter().any(
            |e| matches!(e, Event::Flow { link, credit: 0, drain: true, .. } if *link == receiver)
        ),
        "no drained flow yet"
    );
    // One more delivery arrives from afar, then the far sender has drained.
    pair.client.send(sender, message(1, b"n", true)).unwrap();
    pair.client.drained(sender).unwrap();
    pair.drive();
    assert_eq!(transfers(&pair.server_events).len(), 2);
    let s = pair.client.link(sender).unwrap();
    assert_eq!((s.credit(), s.delivery_count()), (0, 5));
    assert!(
        pair.server_events.iter().any(
            |e| matches!(e, Event::Flow { link, credit: 0, drain: true, .. } if *link == receiver)
        ),
        "the receiver learns the drain completed"
    );
}

#[test]
fn unsettled_delivery_accepted_by_the_receiver_is_seen_accepted_by_the_sender() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 10, false).unwrap();
    pair.drive();
    pair.client
        .send(sender, message(42, b"important", false))
        .unwrap();
    pair.drive();
    let t = transfers(&pair.server_events)[0].clone();
    assert!(!t.settled);
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 1);
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 1);
    pair.server.accept(receiver, t.delivery_id).unwrap();
    pair.drive();
    assert_eq!(
        dispositions(&pair.client_events),
        vec![(42, Some(DeliveryState::Accepted), true)]
    );
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 0);
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 0);
    assert_eq!(
        pair.client
            .session(sender.session)
            .unwrap()
            .outgoing_unsettled(),
        0
    );
}

#[test]
fn the_sender_settles_after_an_unsettled_outcome() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 10, false).unwrap();
    pair.drive();
    pair.client.send(sender, message(7, b"m", false)).unwrap();
    pair.drive();
    let id = transfers(&pair.server_events)[0].delivery_id;
    pair.server
        .disposition(receiver, id, Some(DeliveryState::Released), false)
        .unwrap();
    pair.drive();
    let seen = pair.client_events.iter().find_map(|e| match e {
        Event::Disposition {
            delivery_id,
            context: 7,
            state,
            settled: false,
            ..
        } => Some((*delivery_id, state.clone())),
        _ => None,
    });
    let (delivery_id, state) = seen.expect("sender saw the released state");
    assert_eq!(state, Some(DeliveryState::Released));
    pair.client
        .disposition(sender, delivery_id, state, true)
        .unwrap();
    pair.drive();
    assert!(
        pair.server_events.iter().any(
            |e| matches!(e, Event::Disposition { link, settled: true, .. } if *link == receiver)
        )
    );
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 0);
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 0);
}

#[test]
fn presettled_deliveries_leave_nothing_unsettled() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 10, false).unwrap();
    pair.drive();
    for i in 0..5 {
        pair.client
            .send(sender, message(i, b"fire and forget", true))
            .unwrap();
    }
    pair.drive();
    assert!(transfers(&pair.server_events).iter().all(|t| t.settled));
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 0);
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 0);
    assert!(
        pair.server.accept(receiver, 0).is_err(),
        "a presettled delivery cannot be settled again"
    );
}

#[test]
fn snd_settle_mode_settled_forces_presettled_sends() {
    let mut pair = Pair::connected();
    let (cs, _) = begin(&mut pair);
    let config = LinkConfig {
        snd_settle_mode: SenderSettleMode::Settled,
        ..LinkConfig::sender("settled", Some("q"))
    };
    let (sender, receiver) = attach_from_client(&mut pair, cs, config);
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    pair.client.send(sender, message(1, b"m", false)).unwrap();
    pair.drive();
    assert!(transfers(&pair.server_events)[0].settled);
}

#[test]
fn contiguous_settlements_go_out_as_one_disposition_range() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 100, false).unwrap();
    pair.drive();
    for i in 0..10 {
        pair.client
            .send(sender, message(i, b"batch", false))
            .unwrap();
    }
    pair.drive();
    let ids: Vec<u32> = transfers(&pair.server_events)
        .iter()
        .map(|t| t.delivery_id)
        .collect();
    assert_eq!(ids.len(), 10);
    for &id in &ids[..8] {
        pair.server.accept(receiver, id).unwrap();
    }
    pair.server
        .disposition(
            receiver,
            ids[8],
            Some(DeliveryState::Rejected { error: None }),
            true,
        )
        .unwrap();
    pair.server.accept(receiver, ids[9]).unwrap();
    pair.drive();
    let frames: Vec<(u32, Option<u32>)> = pair
        .to_client
        .performatives()
        .filter_map(|p| match p {
            Performative::Disposition(d) => Some((d.first, d.last)),
            _ => None,
        })
        .collect();
    assert_eq!(
        frames,
        vec![(ids[0], Some(ids[7])), (ids[8], None), (ids[9], None)]
    );
    let seen = dispositions(&pair.client_events);
    assert_eq!(seen.len(), 10);
    assert_eq!(
        seen[8],
        (8, Some(DeliveryState::Rejected { error: None }), true)
    );
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 0);
}

#[test]
fn a_multi_frame_message_arrives_byte_identical() {
    let client = ConnectionConfig {
        max_frame_size: 512,
        ..config("client")
    };
    let server = ConnectionConfig {
        max_frame_size: 512,
        ..config("server")
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    let body: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let payload = Bytes::from(body.clone());
    pair.client
        .send(
            sender,
            SendDelivery {
                payload,
                ..message(1, b"", false)
            },
        )
        .unwrap();
    pair.drive();
    let got = transfers(&pair.server_events);
    assert_eq!(got.len(), 1, "assembled into one delivery");
    assert!(got[0].first && !got[0].more);
    assert_eq!(got[0].payload.len(), body.len());
    assert!(got[0].payload == body, "payload is byte-identical");
    let frames = pair
        .to_server
        .frames
        .iter()
        .filter(|f| {
            matches!(
                &f.body,
                bote_amqp::FrameBody::Amqp(Performative::Transfer(_))
            )
        })
        .count();
    assert!(
        frames >= 200,
        "split into {frames} frames of at most 512 bytes"
    );
    assert_eq!(pair.server.link(receiver).unwrap().delivery_count(), 1);
}

#[test]
fn streamed_deliveries_are_reported_frame_by_frame() {
    let server = ConnectionConfig {
        stream_deliveries: true,
        ..config("server")
    };
    let client = ConnectionConfig {
        max_frame_size: 512,
        ..config("client")
    };
    let server = ConnectionConfig {
        max_frame_size: 512,
        ..server
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 1, false).unwrap();
    pair.drive();
    let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    pair.client
        .send(
            sender,
            SendDelivery {
                payload: Bytes::from(body.clone()),
                complete: false,
                ..message(1, b"", false)
            },
        )
        .unwrap();
    pair.drive();
    let partial = transfers(&pair.server_events).len();
    assert!(partial > 1, "frames arrive before the delivery is complete");
    assert!(transfers(&pair.server_events).iter().all(|t| t.more));
    pair.client
        .send_more(sender, Bytes::from_static(b"tail"), true)
        .unwrap();
    pair.drive();
    let got = transfers(&pair.server_events);
    assert!(got[0].first && got[1..].iter().all(|t| !t.first));
    assert!(!got.last().unwrap().more);
    let joined: Vec<u8> = got.iter().flat_map(|t| t.payload.iter().copied()).collect();
    let mut expected = body;
    expected.extend_from_slice(b"tail");
    assert_eq!(joined, expected);
}

#[test]
fn an_aborted_transfer_is_reported_and_leaves_nothing_unsettled() {
    let server = ConnectionConfig {
        stream_deliveries: true,
        ..config("server")
    };
    let mut pair = Pair::new(config("client"), server);
    pair.drive();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 2, false).unwrap();
    pair.drive();
    pair.client
        .send(
            sender,
            SendDelivery {
                complete: false,
                ..message(5, b"partial", false)
            },
        )
        .unwrap();
    pair.drive();
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 1);
    assert!(pair.client.abort(sender, 5).unwrap());
    pair.drive();
    let got = transfers(&pair.server_events);
    assert_eq!(got.len(), 2);
    assert!(got[1].aborted && !got[1].more);
    assert_eq!(pair.server.link(receiver).unwrap().unsettled(), 0);
    assert_eq!(pair.client.link(sender).unwrap().unsettled(), 0);
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 0);
    // The link carries the next delivery normally.
    pair.client
        .send(sender, message(6, b"whole", false))
        .unwrap();
    pair.drive();
    let got = transfers(&pair.server_events);
    assert_eq!(&got[2].payload[..], b"whole");
    assert!(!got[2].aborted);
}

#[test]
fn a_message_over_the_receivers_max_message_size_is_refused_by_send() {
    let mut pair = Pair::connected();
    let (cs, _) = begin(&mut pair);
    let sender = pair
        .client
        .attach(cs, LinkConfig::sender("limited", Some("q")))
        .unwrap();
    pair.drive();
    let requested = pair.take_server_events().into_iter().find_map(|e| match e {
        Event::AttachRequested { link, .. } => Some(link),
        _ => None,
    });
    let config = LinkConfig {
        max_message_size: Some(100),
        ..LinkConfig::receiver("limited", Some("q"))
    };
    pair.server
        .accept_attach(requested.unwrap(), config)
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.link(sender).unwrap().remote_max_message_size(),
        Some(100)
    );
    let big = SendDelivery {
        payload: Bytes::from(vec![0u8; 200]),
        ..message(1, b"", false)
    };
    assert!(matches!(
        pair.client.send(sender, big),
        Err(bote_amqp::EngineError::MessageSizeExceeded {
            size: 200,
            max: 100,
            ..
        })
    ));
    assert!(
        pair.client
            .send(sender, message(2, b"small", false))
            .is_ok()
    );
}

#[test]
fn aborting_a_delivery_that_never_started_drops_it() {
    let mut pair = Pair::connected();
    let (sender, _receiver) = sender_link(&mut pair);
    pair.client.send(sender, message(1, b"x", false)).unwrap();
    assert!(pair.client.abort(sender, 1).unwrap());
    assert!(!pair.client.abort(sender, 1).unwrap());
    assert_eq!(pair.client.link(sender).unwrap().undelivered(), 0);
}

#[test]
fn detach_with_error_arrives_with_its_condition() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server
        .detach(
            receiver,
            true,
            Some(AmqpError::new(condition::DETACH_FORCED, "address deleted")),
        )
        .unwrap();
    pair.drive();
    let detached = pair.client_events.iter().find_map(|e| match e {
        Event::LinkDetached(d) if d.link == sender => Some(d.clone()),
        _ => None,
    });
    let detached = detached.expect("client saw the detach");
    assert!(detached.closed);
    assert_eq!(
        detached.error.map(|e| e.condition.0),
        Some(condition::DETACH_FORCED.to_owned())
    );
    assert!(
        pair.server_events.iter().any(
            |e| matches!(e, Event::LinkDetached(d) if d.link == receiver && d.error.is_none())
        )
    );
    assert!(pair.client.link(sender).is_none());
    assert!(pair.server.link(receiver).is_none());
}

#[test]
fn sender_detach_reports_queued_and_unsettled_deliveries_by_context() {
    let mut pair = Pair::connected();
    let (sender, receiver) = sender_link(&mut pair);
    pair.server.flow(receiver, 2, false).unwrap();
    pair.drive();
    for i in 1..=4 {
        pair.client.send(sender, message(i, b"m", false)).unwrap();
    }
    pair.drive();
    pair.server.detach(receiver, true, None).unwrap();
    pair.drive();
    let detached = pair.client_events.iter().find_map(|e| match e {
        Event::LinkDetached(d) if d.link == sender => Some(d.clone()),
        _ => None,
    });
    let detached = detached.expect("client saw the detach");
    assert_eq!(detached.unsettled, vec![1, 2], "sent but unsettled");
    assert_eq!(detached.undelivered, vec![3, 4], "never sent");
}

#[test]
fn a_refused_attach_arrives_with_null_terminus_and_the_error() {
    let mut pair = Pair::connected();
    let (cs, _) = begin(&mut pair);
    let link = pair
        .client
        .attach(cs, LinkConfig::sender("nowhere", Some("missing")))
        .unwrap();
    pair.drive();
    let requested = pair.take_server_events().into_iter().find_map(|e| match e {
        Event::AttachRequested { link, .. } => Some(link),
        _ => None,
    });
    pair.server
        .refuse_attach(
            requested.unwrap(),
            AmqpError::new(condition::NOT_FOUND, "no route to 'missing'"),
        )
        .unwrap();
    pair.drive();
    let attached = pair.client_events.iter().find_map(|e| match e {
        Event::LinkAttached { link: l, attach } if *l == link => Some(attach.clone()),
        _ => None,
    });
    assert_eq!(attached.expect("the refusal attach").target, None);
    let detached = pair.client_events.iter().find_map(|e| match e {
        Event::LinkDetached(d) if d.link == link => Some(d.clone()),
        _ => None,
    });
    let error = detached
        .expect("the refusal detach")
        .error
        .expect("with an error");
    assert_eq!(error.condition.as_str(), condition::NOT_FOUND);
}

// ---- idle timeout ----

#[test]
fn heartbeats_keep_an_idle_connection_open() {
    let client = ConnectionConfig {
        idle_timeout: Some(Duration::from_secs(10)),
        ..config("client")
    };
    let server = ConnectionConfig {
        idle_timeout: Some(Duration::from_secs(10)),
        ..config("server")
    };
    let mut pair = Pair::new(client, server);
    pair.drive();
    for _ in 0..30 {
        pair.advance(Duration::from_secs(2));
    }
    assert!(closed_error(&pair.client_events).is_none());
    assert!(closed_error(&pair.server_events).is_none());
    assert!(!pair.client.is_closed() && !pair.server.is_closed());
    assert!(pair.to_server.empty_frames() >= 5, "client sent heartbeats");
    assert!(pair.to_client.empty_frames() >= 5, "server sent heartbeats");
}

#[test]
fn silence_closes_the_connection_with_resource_limit_exceeded() {
    let server = ConnectionConfig {
        idle_timeout: Some(Duration::from_secs(10)),
        ..config("server")
    };
    let mut pair = Pair::new(config("client"), server);
    pair.drive();
    pair.advance_server_only(Duration::from_secs(9));
    assert!(!pair.server.is_closed());
    pair.advance_server_only(Duration::from_secs(2));
    assert!(pair.server_events.iter().any(|e| matches!(e,
        Event::ProtocolError { scope: ErrorScope::Connection, error } if error.condition.as_str() == condition::RESOURCE_LIMIT_EXCEEDED)));
    let error = closed_error(&pair.client_events)
        .flatten()
        .expect("client got a close with an error");
    assert_eq!(error.condition.as_str(), condition::RESOURCE_LIMIT_EXCEEDED);
    assert!(pair.server.is_closed());
}
