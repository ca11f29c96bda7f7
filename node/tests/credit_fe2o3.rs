//! Credit hop by hop, settlement end to end (issue 12), with real `boted`
//! processes and real clients: `fe2o3-amqp`, and raw AMQP frames for the
//! clients that behave as no well-kept library does (a sender that sends
//! before the router's first flow, one whose delivery-count is off by one,
//! a receiver in receiver-settle-mode `second`).
//!
//! - a sender's credit comes back as its deliveries move on (into the
//!   consumer link's window), not when they settle: with a consumer that
//!   took 10 and settles none, the sender sends exactly 10 + the link's
//!   window (250) + its own credit (250), and when the consumer leaves the
//!   10 it had come back `modified` and the 500 it never got `released`;
//! - across A - B - C, a stuck unsettled consumer holds back only its own
//!   address, by at most a window per hop;
//! - lenient credit: transfers a little beyond credit are taken (a link
//!   capacity's worth since the last grant), one more is detached with
//!   `amqp:link:transfer-limit-exceeded`;
//! - receiver settle mode `second`: the router's settling disposition
//!   carries the consumer's outcome.
//!
//! Tests run one at a time; every wait is bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bote_amqp::{
    AMQP_HEADER, Attach, Begin, DeliveryState, Detach, Disposition, Flow, Open, Performative,
    ReceiverSettleMode, Role, SenderSettleMode, Source, Target, Transfer, decode_frame,
    encode_frame,
};
use bote_node::mesh::data::HOP_WINDOW;
use bytes::BytesMut;
use fe2o3_amqp::link::CreditMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;
#[path = "support/mesh.rs"]
mod mesh_support;
#[path = "support/proxy.rs"]
mod proxy;

use boted::{Router, WAIT};
use client::*;
use mesh_support::mesh;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The routers' link capacity (the default listener's).
const LINK_CAPACITY: usize = 250;

/// A sender task that sends up to `n` unsettled messages (ids from 0) and
/// counts them in `sent` as each goes out (a send waits for credit); told
/// to stop, it awaits the outcomes of what it sent and returns them.
fn held_sender(
    mut client: Client,
    mut sender: fe2o3_amqp::Sender,
    n: u64,
    sent: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<BTreeMap<&'static str, usize>> {
    tokio::spawn(async move {
        let mut futs = Vec::new();
        for id in 0..n {
            tokio::select! {
                _ = stop.changed() => break,
                r = sender.send_batchable(message(id)) => {
                    futs.push(r.unwrap_or_else(|e| panic!("send {id} failed: {e}")));
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let outcomes = counts(&outcomes_of(futs).await);
        let _ = timeout(WAIT, sender.close()).await;
        client.barrier().await;
        client.close().await;
        outcomes
    })
}

/// The outcomes of a sender whose consumer took 10 and left: those 10
/// modified, every other one released (at least `held` sent: it may send a
/// few more before its router hears that the consumer is gone; they come
/// back released too).
fn assert_leaving_outcomes(outcomes: BTreeMap<&'static str, usize>, held: usize) {
    let sent: usize = outcomes.values().sum();
    assert!(sent >= held, "{outcomes:?}, {held} held");
    assert_eq!(
        outcomes,
        BTreeMap::from([("modified", 10), ("released", sent - 10)])
    );
}

/// Waits until `sent` has not moved for `quiet`, then returns it.
async fn settled_count(sent: &AtomicUsize, quiet: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = sent.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(quiet).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last && now > 0 {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sender never stopped: {now} sent"
        );
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_comes_back_before_settlement_and_a_leaving_consumer_returns_exactly_what_it_never_got_released()
 {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.A");
    let stuck = StuckConsumer::attach(&router, "stuck", "queue.credit", 10).await;
    let mut client = Client::connect(&router, "tx").await;
    let sender = client.sender("tx", "queue.credit").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let task = held_sender(client, sender, 1000, sent.clone(), stopped);

    // None is settled, yet the sender sends past its link capacity: the
    // consumer's 10, the link's window the router holds for it (250; their
    // credit came back as they entered it), and its own credit (250).
    let held = settled_count(&sent, Duration::from_millis(500)).await;
    assert_eq!(stuck.count(), 10);
    assert_eq!(held, 10 + LINK_CAPACITY + LINK_CAPACITY, "{held} sent");

    // The consumer leaves: what it had comes back modified, what it never
    // got released — exactly.
    stuck.stop().await;
    stop.send(true).expect("sender listens");
    let outcomes = timeout(WAIT, task)
        .await
        .expect("sender ends")
        .expect("sender task");
    assert_leaving_outcomes(outcomes, held);
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_unsettled_consumer_holds_back_only_its_own_address_by_a_window_per_hop() {
    let _serial = SERIAL.lock().await;
    let (routers, _) = mesh(
        &["Router.A", "Router.B", "Router.C"],
        &[(0, 1, 1), (1, 2, 1)],
        &[],
        |s| s,
    );
    let [a, b, c]: [Router; 3] = routers
        .try_into()
        .unwrap_or_else(|_| unreachable!("three routers"));
    let stuck = StuckConsumer::attach(&c, "stuck-x", "queue.hol.x", 10).await;
    let (healthy, healthy_seen, healthy_stop) = consumers_on(&[&c], "queue.hol.y").await;
    wait_until("A to learn both consumers", || {
        ["queue.hol.x", "queue.hol.y"]
            .iter()
            .all(|q| a.consumers_of(q).len() == 1)
    })
    .await;

    let mut x_client = Client::connect(&a, "tx-x").await;
    let x_sender = x_client.sender("tx-x", "queue.hol.x").await;
    let x_sent = Arc::new(AtomicUsize::new(0));
    let (x_stop, x_stopped) = watch::channel(false);
    let x_task = held_sender(x_client, x_sender, 4000, x_sent.clone(), x_stopped);
    wait_until("the stuck consumer's 10", || stuck.count() == 10).await;

    // Y crosses the same A-B and B-C streams and is not held behind X.
    send_accepted(&a, "queue.hol.y", 0..1000).await;
    wait_until("the healthy consumer's 1000", || {
        healthy_seen[0].load(Ordering::SeqCst) == 1000
    })
    .await;

    // X's sender got credit back long before any settlement (more than its
    // link capacity, more than one hop's window), but is held: the
    // consumer's 10, its link's window on C, a window per inter-router hop
    // (B-C, A-B), its own credit.
    let held = settled_count(&x_sent, Duration::from_millis(700)).await;
    let bound = 10 + LINK_CAPACITY + 2 * HOP_WINDOW as usize + LINK_CAPACITY;
    assert!(
        held > HOP_WINDOW as usize + LINK_CAPACITY && held <= bound,
        "X's sender sent {held}; bound {bound}"
    );
    assert_eq!(
        stuck.count(),
        10,
        "the stuck consumer got more than its credit"
    );

    // The consumer leaves: 10 modified, every other one released (back
    // through B and A, which find no other consumer), none lost.
    stuck.stop().await;
    x_stop.send(true).expect("X's sender listens");
    let outcomes = timeout(WAIT, x_task)
        .await
        .expect("X ends")
        .expect("X task");
    assert_leaving_outcomes(outcomes, held);
    healthy_stop.send(true).expect("healthy consumer listens");
    assert_eq!(
        sorted(join_consumers(healthy).await.remove(0)),
        sorted((0..1000).collect())
    );
    for r in [a, b, c] {
        r.stop_cleanly();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_middle_router_with_the_windows_full_returns_every_delivery() {
    let _serial = SERIAL.lock().await;
    let (routers, _) = mesh(
        &["Router.A", "Router.B", "Router.C"],
        &[(0, 1, 1), (1, 2, 1)],
        &[],
        |s| s,
    );
    let [a, mut b, c]: [Router; 3] = routers
        .try_into()
        .unwrap_or_else(|_| unreachable!("three routers"));
    // C's consumer takes 10 and settles none: the windows of A, B and C
    // fill with deliveries whose credit came back long ago.
    let stuck = StuckConsumer::attach(&c, "stuck", "queue.windows", 10).await;
    wait_until("A to learn of the consumer", || {
        a.consumers_of("queue.windows").len() == 1
    })
    .await;
    let mut client = Client::connect(&a, "tx").await;
    let sender = client.sender("tx", "queue.windows").await;
    let sent = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let task = held_sender(client, sender, 4000, sent.clone(), stopped);
    let held = settled_count(&sent, Duration::from_millis(700)).await;
    assert!(held > HOP_WINDOW as usize + LINK_CAPACITY, "{held} sent");

    tokio::task::block_in_place(|| b.kill());
    stop.send(true).expect("sender listens");
    // Every delivery ends with an outcome at the sender, none vanishes: what
    // A had out to B (the consumer's 10 among them: A cannot know which)
    // may have been delivered and comes back modified, what never left A
    // released.
    let outcomes = timeout(WAIT, task)
        .await
        .expect("sender ends")
        .expect("sender task");
    let total: usize = outcomes.values().sum();
    assert_eq!(total, sent.load(Ordering::SeqCst), "{outcomes:?}");
    assert!(
        outcomes
            .keys()
            .all(|k| *k == "modified" || *k == "released"),
        "{outcomes:?}"
    );
    assert_eq!(stuck.count(), 10);
    stuck.stop().await;
    a.stop_cleanly();
    c.stop_cleanly();
}

/// Sends `ids` unsettled from a client of `router` and asserts all accepted.
async fn send_accepted(router: &Router, address: &str, ids: std::ops::Range<u64>) {
    let n = ids.clone().count();
    let mut client = Client::connect(router, "tx-accepted").await;
    let mut sender = client.sender("tx-accepted", address).await;
    let outcomes = outcomes_of(send_all(&mut sender, ids).await).await;
    assert_eq!(counts(&outcomes), all_accepted(n));
    let _ = timeout(WAIT, sender.close()).await;
    client.close().await;
}

// --- raw AMQP frames --------------------------------------------------------

/// An AMQP connection written frame by frame (no SASL, one session on
/// channel 0, link handle 0), for client behaviour no library shows.
struct Raw {
    socket: TcpStream,
    input: BytesMut,
}

impl Raw {
    /// Opens a connection and a session on `router`.
    async fn open(router: &Router) -> Raw {
        let socket = TcpStream::connect(("127.0.0.1", router.port))
            .await
            .expect("raw connect");
        let mut raw = Raw {
            socket,
            input: BytesMut::new(),
        };
        let mut out = BytesMut::from(&AMQP_HEADER[..]);
        let open = Open {
            container_id: "raw-client".into(),
            max_frame_size: 65536,
            channel_max: 0,
            ..Open::default()
        };
        encode_frame(0, &Performative::Open(Box::new(open)), &[], &mut out);
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 1 << 20,
            outgoing_window: 1 << 20,
            handle_max: 16,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        encode_frame(0, &Performative::Begin(begin), &[], &mut out);
        raw.write(&out).await;
        // The router's header, open and begin.
        let mut header = [0u8; 8];
        timeout(WAIT, raw.socket.read_exact(&mut header))
            .await
            .expect("router's header in time")
            .expect("router's header");
        assert_eq!(header, AMQP_HEADER);
        loop {
            if let Performative::Begin(_) = raw.next().await {
                break;
            }
        }
        raw
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("raw write");
    }

    /// The next performative from the router (heartbeats skipped).
    async fn next(&mut self) -> Performative {
        loop {
            if let Some(frame) = decode_frame(&mut self.input, 1 << 20).expect("a valid frame") {
                match frame.body {
                    bote_amqp::FrameBody::Amqp(p) => return p,
                    _ => continue,
                }
            }
            let n = timeout(WAIT, self.socket.read_buf(&mut self.input))
                .await
                .expect("a frame from the router in time")
                .expect("raw read");
            assert!(n > 0, "the router closed the connection");
        }
    }

    /// Attaches a sending link (handle 0) to `address`, announcing
    /// `initial_delivery_count`.
    fn attach_sender(address: &str, initial_delivery_count: u32, out: &mut BytesMut) {
        let attach = Attach {
            name: "raw-sender".into(),
            handle: 0,
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Unsettled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Source::default()),
            target: Some(Target {
                address: Some(address.into()),
                ..Target::default()
            }),
            initial_delivery_count: Some(initial_delivery_count),
            unsettled: None,
            incomplete_unsettled: false,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        encode_frame(0, &Performative::Attach(Box::new(attach)), &[], out);
    }

    /// An unsettled transfer of message `id` (a ulong message-id and a
    /// string body) on handle 0.
    fn transfer(id: u32, out: &mut BytesMut) {
        let mut message = vec![0x00, 0x53, 0x73, 0xc0, 0x0a, 0x01, 0x80];
        message.extend_from_slice(&u64::from(id).to_be_bytes());
        let body = format!("message-{id}");
        message.extend_from_slice(&[0x00, 0x53, 0x77, 0xa1, body.len() as u8]);
        message.extend_from_slice(body.as_bytes());
        let t = Transfer {
            handle: 0,
            delivery_id: Some(id),
            delivery_tag: Some(bote_amqp::DeliveryTag::from_slice(&id.to_be_bytes())),
            message_format: Some(0),
            settled: Some(false),
            ..Transfer::default()
        };
        encode_frame(0, &Performative::Transfer(t), &message, out);
    }
}

/// What a raw sender heard: outcomes by delivery id, and the link's detach.
#[derive(Default)]
struct Heard {
    outcomes: BTreeMap<u32, DeliveryState>,
    detach: Option<Detach>,
}

impl Heard {
    fn on(&mut self, p: Performative) -> Option<Flow> {
        match p {
            Performative::Disposition(Disposition {
                first,
                last,
                state: Some(state),
                ..
            }) => {
                for id in first..=last.unwrap_or(first) {
                    self.outcomes.insert(id, state.clone());
                }
            }
            Performative::Detach(d) => self.detach = Some(d),
            Performative::Flow(f) if f.handle == Some(0) => return Some(f),
            _ => {}
        }
        None
    }

    fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut c = BTreeMap::new();
        for s in self.outcomes.values() {
            let name = match s {
                DeliveryState::Accepted => "accepted",
                DeliveryState::Released => "released",
                DeliveryState::Modified { .. } => "modified",
                DeliveryState::Rejected { .. } => "rejected",
                _ => "other",
            };
            *c.entry(name).or_insert(0) += 1;
        }
        c
    }
}

/// An accepting fe2o3 consumer of `address` on `router`.
async fn accepting(router: &Router, address: &str) -> (Consumers1, Arc<AtomicUsize>) {
    let mut client = Client::connect(router, "rx").await;
    let receiver = client.receiver("rx", address, CreditMode::Auto(100)).await;
    client.barrier().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = watch::channel(false);
    let task = spawn_consumer(client, receiver, stopped, seen.clone());
    ((task, stop), seen)
}

type Consumers1 = (tokio::task::JoinHandle<Vec<u64>>, watch::Sender<bool>);

async fn stop_consumer((task, stop): Consumers1) -> Vec<u64> {
    stop.send(true).expect("consumer listens");
    timeout(WAIT, task)
        .await
        .expect("consumer stops")
        .expect("consumer task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_sends_before_the_first_flow_is_taken_within_the_margin() {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.A");
    let (consumer, seen) = accepting(&router, "queue.early").await;
    let mut raw = Raw::open(&router).await;
    // Attach and 20 transfers in one write, before any flow could arrive.
    const N: u32 = 20;
    let mut out = BytesMut::new();
    Raw::attach_sender("queue.early", 0, &mut out);
    for id in 0..N {
        Raw::transfer(id, &mut out);
    }
    raw.write(&out).await;
    let mut heard = Heard::default();
    while heard.outcomes.len() < N as usize && heard.detach.is_none() {
        let p = raw.next().await;
        heard.on(p);
    }
    assert!(heard.detach.is_none(), "detached: {:?}", heard.detach);
    assert_eq!(heard.counts(), BTreeMap::from([("accepted", N as usize)]));
    wait_until("the consumer's 20", || {
        seen.load(Ordering::SeqCst) == N as usize
    })
    .await;
    assert_eq!(
        sorted(stop_consumer(consumer).await),
        (0..u64::from(N)).collect::<Vec<_>>()
    );
    assert!(
        router.log().contains("sender sent beyond its link credit"),
        "the router counted them"
    );
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_delivery_count_is_off_by_one_works() {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.A");
    let (consumer, seen) = accepting(&router, "queue.off-by-one").await;
    let mut raw = Raw::open(&router).await;
    // It announces initial-delivery-count 1 but counts from 0: it always
    // believes it has one credit more than the router granted.
    let mut out = BytesMut::new();
    Raw::attach_sender("queue.off-by-one", 1, &mut out);
    raw.write(&out).await;
    const N: u32 = 1000;
    let mut count: u32 = 0;
    let mut credit: i64 = 0;
    let mut heard = Heard::default();
    while heard.outcomes.len() < N as usize && heard.detach.is_none() {
        let p = raw.next().await;
        if let Some(flow) = heard.on(p) {
            credit = i64::from(flow.delivery_count.unwrap_or(1))
                + i64::from(flow.link_credit.unwrap_or(0))
                - i64::from(count);
        }
        let mut out = BytesMut::new();
        while credit > 0 && count < N {
            Raw::transfer(count, &mut out);
            count += 1;
            credit -= 1;
        }
        if !out.is_empty() {
            raw.write(&out).await;
        }
    }
    assert!(heard.detach.is_none(), "detached: {:?}", heard.detach);
    assert_eq!(heard.counts(), BTreeMap::from([("accepted", N as usize)]));
    wait_until("the consumer's 1000", || {
        seen.load(Ordering::SeqCst) == N as usize
    })
    .await;
    assert_eq!(
        sorted(stop_consumer(consumer).await),
        (0..u64::from(N)).collect::<Vec<_>>()
    );
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_past_the_margin_is_detached_with_transfer_limit_exceeded() {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.A");
    let mut raw = Raw::open(&router).await;
    // No consumer: the router grants no credit at all. The margin (one link
    // capacity) is taken, released (no consumer); one more detaches the
    // link (outcomes not sent by then are lost with it, as for any link
    // detached with unsettled deliveries).
    let n = LINK_CAPACITY as u32 + 1;
    let mut out = BytesMut::new();
    Raw::attach_sender("queue.nobody", 0, &mut out);
    for id in 0..n {
        Raw::transfer(id, &mut out);
    }
    raw.write(&out).await;
    let mut heard = Heard::default();
    while heard.detach.is_none() {
        let p = raw.next().await;
        heard.on(p);
    }
    let detach = heard.detach.take().expect("detached");
    let error = detach.error.expect("with an error");
    assert_eq!(
        error.condition.0,
        bote_amqp::condition::TRANSFER_LIMIT_EXCEEDED
    );
    assert!(
        error
            .description
            .as_deref()
            .is_some_and(|d| d.contains("margin of 250")),
        "{error:?}"
    );
    assert!(
        heard.counts().keys().all(|k| *k == "released"),
        "{:?}",
        heard.counts()
    );
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_settle_mode_second_gets_the_outcome_on_the_settling_disposition() {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.A");
    let mut raw = Raw::open(&router).await;
    let mut out = BytesMut::new();
    let attach = Attach {
        name: "raw-receiver".into(),
        handle: 0,
        role: Role::Receiver,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::Second,
        source: Some(Source {
            address: Some("queue.second".into()),
            ..Source::default()
        }),
        target: Some(Target::default()),
        initial_delivery_count: None,
        unsettled: None,
        incomplete_unsettled: false,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    encode_frame(0, &Performative::Attach(Box::new(attach)), &[], &mut out);
    let flow = Flow {
        next_incoming_id: Some(0),
        incoming_window: 1 << 20,
        next_outgoing_id: 0,
        outgoing_window: 1 << 20,
        handle: Some(0),
        delivery_count: Some(0),
        link_credit: Some(10),
        ..Flow::default()
    };
    encode_frame(0, &Performative::Flow(flow), &[], &mut out);
    raw.write(&out).await;
    let answer = loop {
        if let Performative::Attach(a) = raw.next().await {
            break a;
        }
    };
    wait_until("the router to know the consumer", || {
        router.log().contains("receiver attached")
    })
    .await;

    let mut client = Client::connect(&router, "tx").await;
    let mut sender = client.sender("tx", "queue.second").await;
    let fut = send_all(&mut sender, 0..1).await;
    let delivery_id = loop {
        if let Performative::Transfer(t) = raw.next().await {
            break t.delivery_id.expect("first transfer has an id");
        }
    };
    // The consumer accepts, unsettled (mode second: the sender settles).
    let mut out = BytesMut::new();
    let accept = Disposition {
        role: Role::Receiver,
        first: delivery_id,
        last: None,
        settled: false,
        state: Some(DeliveryState::Accepted),
        batchable: false,
    };
    encode_frame(0, &Performative::Disposition(accept), &[], &mut out);
    raw.write(&out).await;
    let settling = loop {
        if let Performative::Disposition(d) = raw.next().await {
            break d;
        }
    };
    if answer.rcv_settle_mode == ReceiverSettleMode::Second {
        assert!(settling.settled, "{settling:?}");
        assert_eq!(
            settling.state,
            Some(DeliveryState::Accepted),
            "the outcome, carried"
        );
    } else {
        panic!("the router answered mode {:?}", answer.rcv_settle_mode);
    }
    assert_eq!(counts(&outcomes_of(fut).await), all_accepted(1));
    let _ = timeout(WAIT, sender.close()).await;
    client.close().await;
    router.stop_cleanly();
}
