//! Interop tests: real `boted` processes on ephemeral loopback ports, driven
//! by the Rust AMQP 1.0 client `fe2o3-amqp`. The same cases
//! as the Qpid Proton suite in `tests/interop`: bulk transfer unsettled and
//! presettled, closest / balanced / multicast distribution, request/reply
//! through a dynamic receiver, credit only while a consumer exists, outcomes
//! when a receiver leaves, unavailable addresses, large messages, many
//! connections, and bad input that must close only the offending connection.
//!
//! Every test owns its router (a [`Router`] guard that kills the process on
//! drop) and ends by stopping it with SIGTERM and asserting exit code 0. Every
//! wait is bounded by `tokio::time::timeout`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fe2o3_amqp::link::{CreditMode, ReceiverAttachError, SenderAttachError};
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition};
use fe2o3_amqp::types::messaging::{
    AmqpValue, Body, Message, MessageId, Outcome, Properties, Source,
};
use fe2o3_amqp::types::primitives::{Binary, Value};
use fe2o3_amqp::{Delivery, Receiver, Sendable, Sender};
use tokio::time::timeout;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;

use boted::{Router, WAIT};
use client::*;

fn is_not_found(e: &fe2o3_amqp::types::definitions::Error) -> bool {
    e.condition == ErrorCondition::AmqpError(AmqpError::NotFound)
}

/// Sends one message through the router on fresh connections and asserts it
/// arrives and is accepted: the router still serves new clients.
async fn assert_router_still_works(router: &Router, address: &str) {
    let mut rx_client = Client::connect(router, "after-rx").await;
    let mut receiver = rx_client
        .receiver("after-rx", address, CreditMode::Auto(10))
        .await;
    let mut tx_client = Client::connect(router, "after-tx").await;
    let mut sender = tx_client.sender("after-tx", address).await;
    let outcomes = send_all(&mut sender, 0..1).await;
    assert_eq!(receive_ids(&mut receiver, 1, true).await, vec![0]);
    assert_eq!(counts(&outcomes_of(outcomes).await), all_accepted(1));
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
}

// --- bulk transfer --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unsettled_messages_arrive_none_lost_all_accepted() {
    let router = Router::start("Router.F");
    bulk(&router, &router, "queue.bulk", Settle::Unsettled).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_presettled_messages_arrive_none_lost() {
    let router = Router::start("Router.F");
    bulk(&router, &router, "queue.bulk", Settle::Presettled).await;
    router.stop_cleanly();
}

// --- distribution ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closest_round_robins_over_three_receivers() {
    let router = Router::start("Router.F");
    let (tasks, _seen, stop) = consumers(&router, "closest.rr", 3).await;
    let mut tx_client = Client::connect(&router, "rr-tx").await;
    let mut sender = tx_client.sender("rr-tx", "closest.rr").await;

    let outcomes = outcomes_of(send_all(&mut sender, 0..300).await).await;
    assert_eq!(counts(&outcomes), all_accepted(300));
    stop.send(true).expect("consumers listen");
    let got = join_consumers(tasks).await;

    let mut per_receiver: Vec<usize> = got.iter().map(Vec::len).collect();
    per_receiver.sort_unstable();
    assert_eq!(per_receiver, vec![100, 100, 100]);
    let mut all: Vec<u64> = got.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..300).collect::<Vec<_>>());
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_skips_a_receiver_that_never_settles() {
    let router = Router::start("Router.F");
    let (held, per_good) = balanced_with_a_stuck_consumer(
        &router,
        &router,
        &[&router, &router],
        "queue.balanced",
        2000,
        || true,
    )
    .await;
    // Balanced weighs the stuck link by its unsettled count: it is chosen
    // only while it is the least loaded. With credit hop by hop the
    // settling links may be full too (each up to its window, 250, with the
    // sender's own credit, 250, on top), so it can take a little past its
    // capacity, never its whole credit (1000).
    assert!(
        held > 0 && held <= 2 * 250,
        "stuck receiver holds {held}: more than two link capacities"
    );
    assert!(
        per_good.iter().all(|&n| n > 0),
        "both settling consumers got messages: {per_good:?}"
    );
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_gives_every_receiver_every_message_once() {
    let router = Router::start("Router.F");
    let (tasks, seen, stop) = consumers(&router, "multicast.news", 3).await;
    let mut tx_client = Client::connect(&router, "mc-tx").await;
    let mut sender = tx_client.sender("mc-tx", "multicast.news").await;

    const N: u64 = 500;
    let outcomes = outcomes_of(send_all(&mut sender, 0..N).await).await;
    assert_eq!(counts(&outcomes), all_accepted(N as usize));
    wait_until("every receiver got every copy", || {
        seen.iter().all(|s| s.load(Ordering::SeqCst) >= N as usize)
    })
    .await;
    // A round trip through the router on the sender's connection before
    // stopping: any extra copy would already have been forwarded.
    tx_client.barrier().await;
    stop.send(true).expect("consumers listen");
    for mut ids in join_consumers(tasks).await {
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..N).collect::<Vec<_>>(),
            "each receiver gets each message once"
        );
    }
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    router.stop_cleanly();
}

// --- request/reply --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_with_a_dynamic_reply_to() {
    let router = Router::start("Router.F");

    // The echo service answers each request to its reply-to through an
    // anonymous sender, with the body upper-cased.
    let mut server_client = Client::connect(&router, "echo").await;
    let mut requests = server_client
        .receiver("echo-rx", "service.echo", CreditMode::Auto(100))
        .await;
    let mut replies_out = server_client.anonymous_sender("echo-tx").await;
    const N: usize = 50;
    let server = tokio::spawn(async move {
        for _ in 0..N {
            let req: Delivery<Body<Value>> = timeout(WAIT, requests.recv())
                .await
                .expect("request timed out")
                .expect("request");
            requests.accept(&req).await.expect("accept request");
            let props = req
                .message()
                .properties
                .clone()
                .expect("request properties");
            let body = match req.body() {
                Body::Value(v) => match &v.0 {
                    Value::String(s) => s.to_uppercase(),
                    other => panic!("request body {other:?}"),
                },
                other => panic!("request body {other:?}"),
            };
            let mut reply_props = Properties::builder()
                .to(props.reply_to.clone().expect("request has reply-to"))
                .build();
            reply_props.correlation_id = props.correlation_id.clone();
            let reply = Message::builder()
                .properties(reply_props)
                .body(Body::Value(AmqpValue(Value::String(body))))
                .build();
            let outcome = timeout(WAIT, replies_out.send(Sendable::from(reply)))
                .await
                .expect("reply timed out")
                .expect("reply sent");
            assert_eq!(outcome_name(&outcome), "accepted");
        }
        server_client.close().await;
    });

    let mut client = Client::connect(&router, "requester").await;
    let attach = Receiver::builder()
        .name("reply-rx")
        .source(Source::builder().dynamic(true).build())
        .credit_mode(CreditMode::Auto(100))
        .attach(&mut client.session);
    let mut reply_rx = timeout(WAIT, attach)
        .await
        .expect("dynamic attach timed out")
        .expect("dynamic receiver attaches");
    let reply_to = reply_rx
        .source()
        .as_ref()
        .and_then(|s| s.address.clone())
        .expect("the router assigns the dynamic address");
    assert!(
        reply_to.starts_with("_topo/0/Router.F/temp."),
        "dynamic address {reply_to}"
    );
    let mut sender = client.sender("req-tx", "service.echo").await;
    let mut futs = Vec::new();
    for i in 0..N as u64 {
        let mut props = Properties::builder().reply_to(reply_to.clone()).build();
        props.correlation_id = Some(MessageId::Ulong(i));
        let request = Message::builder()
            .properties(props)
            .body(Body::Value(AmqpValue(Value::String(format!("ping-{i}")))))
            .build();
        futs.push(
            timeout(WAIT, sender.send_batchable(Sendable::from(request)))
                .await
                .expect("request send timed out")
                .expect("request sent"),
        );
    }
    let mut replies = HashMap::new();
    while replies.len() < N {
        let reply: Delivery<Body<Value>> = timeout(WAIT, reply_rx.recv())
            .await
            .expect("reply timed out")
            .expect("reply");
        reply_rx.accept(&reply).await.expect("accept reply");
        let corr = match reply
            .message()
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.clone())
        {
            Some(MessageId::Ulong(c)) => c,
            other => panic!("reply correlation id {other:?}"),
        };
        let body = match reply.body() {
            Body::Value(v) => v.0.clone(),
            other => panic!("reply body {other:?}"),
        };
        replies.insert(corr, body);
    }
    assert_eq!(counts(&outcomes_of(futs).await), all_accepted(N));
    for i in 0..N as u64 {
        assert_eq!(replies.get(&i), Some(&Value::String(format!("PING-{i}"))));
    }
    timeout(WAIT, server)
        .await
        .expect("server finishes")
        .expect("server task");
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, reply_rx.close()).await;
    client.close().await;
    router.stop_cleanly();
}

// --- credit and settlement ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credit_while_nobody_listens_then_credit_when_a_receiver_attaches() {
    let router = Router::start("Router.F");
    let mut tx_client = Client::connect(&router, "later-tx").await;
    let mut sender = tx_client.sender("later-tx", "queue.later").await;
    let mut sending = tokio::spawn(async move {
        let futs = send_all(&mut sender, 0..10).await;
        let outcomes = outcomes_of(futs).await;
        (sender, outcomes)
    });
    // With no consumer the router grants no credit: nothing is sent.
    assert!(
        timeout(Duration::from_secs(1), &mut sending).await.is_err(),
        "the sender could send with no consumer"
    );

    let mut rx_client = Client::connect(&router, "later-rx").await;
    let mut receiver = rx_client
        .receiver("later-rx", "queue.later", CreditMode::Auto(50))
        .await;
    let mut ids = receive_ids(&mut receiver, 10, true).await;
    let (sender, outcomes) = timeout(WAIT, sending)
        .await
        .expect("sends complete")
        .expect("sender task");
    ids.sort_unstable();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    assert_eq!(counts(&outcomes), all_accepted(10));
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_leaving_with_unsettled_returns_modified_for_sent_released_for_rest() {
    let router = Router::start("Router.F");
    let mut rx_client = Client::connect(&router, "leave-rx").await;
    let mut receiver = rx_client
        .receiver("leave-rx", "queue.leave", CreditMode::Manual)
        .await;
    receiver.set_credit(5).await.expect("grant 5 credits");
    rx_client.barrier().await;
    let mut tx_client = Client::connect(&router, "leave-tx").await;
    let mut sender = tx_client.sender("leave-tx", "queue.leave").await;

    let futs = send_all(&mut sender, 0..20).await;
    let got = receive_ids(&mut receiver, 5, false).await;
    assert_eq!(got.len(), 5);
    // The receiver's connection closes with its 5 deliveries unsettled.
    drop(receiver);
    rx_client.close().await;

    let outcomes = outcomes_of(futs).await;
    assert_eq!(
        counts(&outcomes),
        BTreeMap::from([("modified", 5), ("released", 15)]),
        "outcomes {outcomes:?}"
    );
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Modified(m) => {
                assert!(
                    got.contains(&(i as u64)),
                    "message {i} was not sent yet is modified"
                );
                assert_eq!(
                    m.delivery_failed,
                    Some(true),
                    "modified {i} without delivery-failed"
                );
            }
            Outcome::Released(_) => {
                assert!(!got.contains(&(i as u64)), "sent message {i} released")
            }
            other => panic!("outcome {other:?}"),
        }
    }
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_address_is_refused_with_not_found() {
    let router = Router::start("Router.F");
    // Each refusal on its own connection: after a refused attach fe2o3 0.18
    // sometimes sends a second detach for the same handle (one echoing the
    // router's error, one plain), which the router rightly answers by ending
    // the session with amqp:session:unattached-handle. The refusal itself is
    // decided before that, so separate connections keep the cases apart.
    let mut tx_client = Client::connect(&router, "unavailable-tx").await;
    let sender = timeout(
        WAIT,
        Sender::attach(&mut tx_client.session, "tx", "unavailable.x"),
    )
    .await
    .expect("sender attach timed out");
    match sender {
        Err(SenderAttachError::RemoteClosedWithError(e)) if is_not_found(&e) => {}
        Err(other) => panic!("sender refused with {other:?}, expected amqp:not-found"),
        Ok(_) => panic!("sender to an unavailable address attached"),
    }
    let mut rx_client = Client::connect(&router, "unavailable-rx").await;
    let receiver = timeout(
        WAIT,
        Receiver::attach(&mut rx_client.session, "rx", "unavailable.y"),
    )
    .await
    .expect("receiver attach timed out");
    match receiver {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) if is_not_found(&e) => {}
        Err(other) => panic!("receiver refused with {other:?}, expected amqp:not-found"),
        Ok(_) => panic!("receiver from an unavailable address attached"),
    }
    tx_client.close().await;
    rx_client.close().await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_sender_routes_by_to_and_an_unavailable_to_is_rejected() {
    let router = Router::start("Router.F");
    let mut rx_client = Client::connect(&router, "anon-rx").await;
    let mut receiver = rx_client
        .receiver("anon-rx", "queue.anon", CreditMode::Auto(10))
        .await;
    let mut tx_client = Client::connect(&router, "anon-tx").await;
    let mut sender = tx_client.anonymous_sender("anon-tx").await;
    let mut futs = Vec::new();
    for (id, to) in [
        (0, "queue.anon"),
        (1, "queue.anon"),
        (2, "queue.anon"),
        (99, "unavailable.z"),
    ] {
        let msg = Message::builder()
            .properties(Properties::builder().message_id(id as u64).to(to).build())
            .body(Body::Value(AmqpValue(Value::String(format!(
                "message-{id}"
            )))))
            .build();
        futs.push(
            timeout(WAIT, sender.send_batchable(Sendable::from(msg)))
                .await
                .expect("anonymous send timed out")
                .expect("anonymous send"),
        );
    }
    let mut ids = receive_ids(&mut receiver, 3, true).await;
    ids.sort_unstable();
    assert_eq!(ids, vec![0, 1, 2]);
    let outcomes = outcomes_of(futs).await;
    let names: Vec<&str> = outcomes.iter().map(outcome_name).collect();
    assert_eq!(names, ["accepted", "accepted", "accepted", "rejected"]);
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
    router.stop_cleanly();
}

// --- large messages -------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64).
fn payload(size: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(size);
    out
}

async fn large_messages_arrive_identical(size: usize) {
    let router = Router::start("Router.F");
    let mut rx_client = Client::connect(&router, "large-rx").await;
    let mut receiver = rx_client
        .receiver("large-rx", "queue.large", CreditMode::Auto(10))
        .await;
    let mut tx_client = Client::connect(&router, "large-tx").await;
    let mut sender = tx_client.sender("large-tx", "queue.large").await;

    let bodies: Vec<Vec<u8>> = (0..2)
        .map(|i| payload(size, 0x9e37_79b9_7f4a_7c15 + i))
        .collect();
    let mut futs = Vec::new();
    for body in &bodies {
        let msg = Message::builder().data(Binary::from(body.clone())).build();
        futs.push(
            timeout(WAIT, sender.send_batchable(Sendable::from(msg)))
                .await
                .expect("large send timed out")
                .expect("large send"),
        );
    }
    for (i, expected) in bodies.iter().enumerate() {
        let delivery: Delivery<Body<Value>> = timeout(WAIT, receiver.recv())
            .await
            .expect("large receive timed out")
            .expect("large receive");
        receiver.accept(&delivery).await.expect("accept");
        let got: Vec<u8> = match delivery.body() {
            Body::Data(batch) => batch.iter().flat_map(|d| d.0.iter().copied()).collect(),
            other => panic!(
                "message {i}: body is not data: {:?}",
                std::mem::discriminant(other)
            ),
        };
        assert_eq!(got.len(), expected.len(), "message {i} size");
        assert!(got == *expected, "message {i} differs from what was sent");
    }
    assert_eq!(counts(&outcomes_of(futs).await), all_accepted(2));
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_messages_arrive_identical() {
    large_messages_arrive_identical(1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mib_messages_arrive_identical() {
    large_messages_arrive_identical(5 << 20).await;
}

// --- many connections -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections() {
    let router = Router::start("Router.F");
    const PAIRS: usize = 100;
    const EACH: u64 = 20;
    // 100 receiving connections, all open before any sender connects.
    let mut receivers = Vec::new();
    for i in 0..PAIRS {
        let mut client = Client::connect(&router, &format!("many-rx-{i}")).await;
        let receiver = timeout(
            WAIT,
            Receiver::builder()
                .name(format!("many-rx-{i}"))
                .source(format!("queue.many.{i}"))
                .credit_mode(CreditMode::Auto(50))
                .attach(&mut client.session),
        )
        .await
        .expect("receiver attach timed out")
        .expect("receiver attaches");
        receivers.push((client, receiver));
    }
    // 100 sending connections, all open at once with the receivers.
    let mut senders = Vec::new();
    for i in 0..PAIRS {
        let mut client = Client::connect(&router, &format!("many-tx-{i}")).await;
        let sender = client
            .sender(&format!("many-tx-{i}"), &format!("queue.many.{i}"))
            .await;
        senders.push((client, sender));
    }
    let rx_tasks: Vec<_> = receivers
        .into_iter()
        .map(|(client, mut receiver)| {
            tokio::spawn(async move {
                let ids = receive_ids(&mut receiver, EACH as usize, true).await;
                (client, receiver, ids)
            })
        })
        .collect();
    let tx_tasks: Vec<_> = senders
        .into_iter()
        .map(|(client, mut sender)| {
            tokio::spawn(async move {
                let outcomes = outcomes_of(send_all(&mut sender, 0..EACH).await).await;
                (client, sender, outcomes)
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tx_tasks {
        let (client, sender, outcomes) = timeout(WAIT, t)
            .await
            .expect("sender finishes")
            .expect("sender task");
        assert_eq!(counts(&outcomes), all_accepted(EACH as usize));
        done.push((client, sender));
    }
    let mut total = 0;
    let mut rx_done = Vec::new();
    for t in rx_tasks {
        let (client, receiver, mut ids) = timeout(WAIT, t)
            .await
            .expect("receiver finishes")
            .expect("receiver task");
        ids.sort_unstable();
        assert_eq!(ids, (0..EACH).collect::<Vec<_>>());
        total += ids.len();
        rx_done.push((client, receiver));
    }
    assert_eq!(total, PAIRS * EACH as usize);
    for (client, sender) in done {
        let _ = timeout(WAIT, sender.close()).await;
        client.close().await;
    }
    for (client, receiver) in rx_done {
        let _ = timeout(WAIT, receiver.close()).await;
        client.close().await;
    }
    router.stop_cleanly();
}

// --- bad input --------------------------------------------------------------------

const AMQP_HEADER: &[u8] = b"AMQP\x00\x01\x00\x00";

fn frame(channel: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&[2, 0]);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// The conditions a peer may close with for a frame on an unused channel.
const UNKNOWN_SESSION_ERRORS: [&str; 3] = [
    "amqp:not-allowed",
    "amqp:session:unattached-handle",
    "amqp:connection:framing-error",
];

/// open(container-id="x"): a described list8 with one field.
const OPEN_BODY: &[u8] = b"\x00\x53\x10\xc0\x04\x01\xa1\x01x";

/// Writes `data` on a raw TCP connection and reads the router's reply until
/// it names one of `conditions` (or the router closes the socket). Then
/// answers with our own close and asserts that the router closes the socket.
/// Every read is bounded.
async fn raw_exchange(
    router: &Router,
    data: Vec<u8>,
    conditions: &'static [&'static str],
) -> Vec<u8> {
    let port = router.port;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("raw connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        // The router may close before reading everything; a reset is fine.
        let _ = s.write_all(&data);
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let mut eof = false;
        while !conditions.iter().any(|c| contains(&out, c)) {
            match s.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => panic!("no close naming {conditions:?} within 10 s; got {out:?}"),
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if !eof {
            // close (list0): the close handshake ends and the socket with it.
            let _ = s.write_all(&frame(0, b"\x00\x53\x18\x45"));
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if is_timeout(&e) => {
                        panic!("router kept the offending connection open after the close handshake; got {out:?}")
                    }
                    Err(_) => break,
                }
            }
        }
        out
    })
    .await
    .expect("raw exchange task")
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An innocent fe2o3 connection attached before the bad input; after it the
/// router must still deliver to it, and new clients must still work.
struct Survivor {
    client: Client,
    receiver: Receiver,
}

impl Survivor {
    async fn attach(router: &Router) -> Survivor {
        let mut client = Client::connect(router, "survivor").await;
        let receiver = client
            .receiver("survivor", "queue.survivor", CreditMode::Auto(10))
            .await;
        Survivor { client, receiver }
    }

    async fn assert_still_served(mut self, router: &Router) {
        let mut tx_client = Client::connect(router, "survivor-tx").await;
        let mut sender = tx_client.sender("survivor-tx", "queue.survivor").await;
        let outcomes = send_all(&mut sender, 7..8).await;
        assert_eq!(receive_ids(&mut self.receiver, 1, true).await, vec![7]);
        assert_eq!(counts(&outcomes_of(outcomes).await), all_accepted(1));
        let _ = timeout(WAIT, sender.close()).await;
        let _ = timeout(WAIT, self.receiver.close()).await;
        tx_client.close().await;
        self.client.close().await;
        assert_router_still_works(router, "queue.after").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_protocol_header_closes_only_that_connection_with_framing_error() {
    let router = Router::start("Router.F");
    let survivor = Survivor::attach(&router).await;
    let mut data = AMQP_HEADER.to_vec();
    data.extend_from_slice(&[0xff; 64]);
    let out = raw_exchange(
        &router,
        data,
        &["amqp:connection:framing-error", "amqp:decode-error"],
    )
    .await;
    assert!(out.starts_with(AMQP_HEADER), "reply {out:?}");
    assert!(
        contains(&out, "amqp:connection:framing-error") || contains(&out, "amqp:decode-error"),
        "no framing-error/decode-error in reply {out:?}"
    );
    survivor.assert_still_served(&router).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_max_frame_size_closes_only_that_connection_with_framing_error() {
    let router = Router::start("Router.F");
    let survivor = Survivor::attach(&router).await;
    let mut data = AMQP_HEADER.to_vec();
    data.extend_from_slice(&frame(0, OPEN_BODY));
    // A 70 kB frame; the listener's max-frame-size is 16 KiB.
    let mut big = OPEN_BODY.to_vec();
    big.extend_from_slice(&[0x40; 70_000]);
    data.extend_from_slice(&frame(0, &big));
    let out = raw_exchange(&router, data, &["amqp:connection:framing-error"]).await;
    assert!(
        contains(&out, "amqp:connection:framing-error"),
        "no framing-error in reply {out:?}"
    );
    survivor.assert_still_served(&router).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_on_unknown_session_closes_only_that_connection_with_an_error() {
    let router = Router::start("Router.F");
    let survivor = Survivor::attach(&router).await;
    let mut data = AMQP_HEADER.to_vec();
    data.extend_from_slice(&frame(0, OPEN_BODY));
    // attach(name="l", handle=0, role=sender) on channel 5, which has no session.
    data.extend_from_slice(&frame(5, b"\x00\x53\x12\xc0\x06\x03\xa1\x01l\x43\x42"));
    let out = raw_exchange(&router, data, &UNKNOWN_SESSION_ERRORS).await;
    assert!(
        UNKNOWN_SESSION_ERRORS.iter().any(|c| contains(&out, c)),
        "no connection error in reply {out:?}"
    );
    survivor.assert_still_served(&router).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_unsettled_deliveries_and_exits_zero() {
    let mut router = Router::start("Router.S");
    let mut rx_client = Client::connect(&router, "stop-rx").await;
    let mut receiver = rx_client
        .receiver("stop-rx", "queue.stop", CreditMode::Manual)
        .await;
    receiver.set_credit(10).await.expect("grant 10 credits");
    rx_client.barrier().await;
    let mut tx_client = Client::connect(&router, "stop-tx").await;
    let mut sender = tx_client.sender("stop-tx", "queue.stop").await;
    let futs = send_all(&mut sender, 0..10).await;
    receive_ids(&mut receiver, 10, false).await;

    let code = tokio::task::block_in_place(|| router.stop());
    assert_eq!(code, Some(0), "boted exited {code:?}:\n{}", router.log());
    let mut outcomes = Vec::new();
    for fut in futs {
        outcomes.push(timeout(WAIT, fut).await.expect("outcome after shutdown"));
    }
    let released = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Released(_))))
        .count();
    assert_eq!(released, 10, "outcomes after SIGTERM: {outcomes:?}");
    drop(receiver);
    drop(sender);
    let _ = (tx_client, rx_client);
}
