//! fe2o3-amqp client helpers for the tests that drive real `boted`
//! processes: a connection with one session, senders and receivers that
//! attach within [`WAIT`], numbered messages, outcome tallies and consumer
//! tasks. Every wait is bounded by `tokio::time::timeout`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::{CreditMode, SendError};
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::{
    AmqpValue, Body, Message, MessageId, Outcome, Properties, Target,
};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Connection, Delivery, Receiver, Sendable, Sender, Session};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::timeout;

use super::boted::{Router, WAIT};

pub struct Client {
    pub connection: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
}

impl Client {
    pub async fn connect(router: &Router, name: &str) -> Client {
        Client::connect_to(&router.url(), name).await
    }

    /// [`Client::connect`] by the router's AMQP URL.
    pub async fn connect_to(url: &str, name: &str) -> Client {
        let mut connection = timeout(WAIT, Connection::open(name.to_owned(), url))
            .await
            .expect("connection open timed out")
            .expect("connection opens");
        let session = timeout(WAIT, Session::begin(&mut connection))
            .await
            .expect("session begin timed out")
            .expect("session begins");
        Client {
            connection,
            session,
        }
    }

    pub async fn sender(&mut self, name: &str, address: &str) -> Sender {
        timeout(WAIT, Sender::attach(&mut self.session, name, address))
            .await
            .expect("sender attach timed out")
            .expect("sender attaches")
    }

    pub async fn presettled_sender(&mut self, name: &str, address: &str) -> Sender {
        let attach = Sender::builder()
            .name(name)
            .target(address)
            .sender_settle_mode(SenderSettleMode::Settled)
            .attach(&mut self.session);
        timeout(WAIT, attach)
            .await
            .expect("sender attach timed out")
            .expect("sender attaches")
    }

    pub async fn anonymous_sender(&mut self, name: &str) -> Sender {
        let attach = Sender::builder()
            .name(name)
            .target(Target::builder().build())
            .attach(&mut self.session);
        timeout(WAIT, attach)
            .await
            .expect("anonymous sender attach timed out")
            .expect("anonymous sender attaches")
    }

    pub async fn receiver(&mut self, name: &str, address: &str, credit: CreditMode) -> Receiver {
        let attach = Receiver::builder()
            .name(name)
            .source(address)
            .credit_mode(credit)
            .attach(&mut self.session);
        let receiver = timeout(WAIT, attach)
            .await
            .expect("receiver attach timed out")
            .expect("receiver attaches");
        self.barrier().await;
        receiver
    }

    /// A round trip on this connection: once the router answers an attach
    /// sent after the frames already written (a receiver's flow), it has
    /// processed those frames, so a consumer is known before a test sends.
    pub async fn barrier(&mut self) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let attach = Receiver::builder()
            .name(format!("barrier-{n}"))
            .source(format!("barrier.{n}"))
            .credit_mode(CreditMode::Manual)
            .attach(&mut self.session);
        let probe = timeout(WAIT, attach)
            .await
            .expect("barrier attach timed out")
            .expect("barrier attaches");
        timeout(WAIT, probe.close())
            .await
            .expect("barrier detach timed out")
            .expect("barrier detaches");
    }

    pub async fn close(mut self) {
        let _ = timeout(WAIT, self.session.end()).await;
        let _ = timeout(WAIT, self.connection.close()).await;
    }
}

pub fn message(id: u64) -> Sendable<Body<Value>> {
    Sendable::from(
        Message::builder()
            .properties(Properties::builder().message_id(id).build())
            .body(Body::Value(AmqpValue(Value::String(format!(
                "message-{id}"
            )))))
            .build(),
    )
}

pub fn id_of(delivery: &Delivery<Body<Value>>) -> u64 {
    match delivery
        .message()
        .properties
        .as_ref()
        .and_then(|p| p.message_id.as_ref())
    {
        Some(MessageId::Ulong(id)) => *id,
        other => panic!("message without a ulong message-id: {other:?}"),
    }
}

pub type OutcomeFut = DeliveryFut<Result<Outcome, SendError>>;

/// Sends messages `ids` as batchable transfers; returns the outcome futures.
pub async fn send_all(sender: &mut Sender, ids: std::ops::Range<u64>) -> Vec<OutcomeFut> {
    let mut outcomes = Vec::with_capacity(ids.clone().count());
    for id in ids {
        let fut = timeout(WAIT, sender.send_batchable(message(id)))
            .await
            .unwrap_or_else(|_| panic!("send of message {id} timed out (no credit)"))
            .unwrap_or_else(|e| panic!("send of message {id} failed: {e}"));
        outcomes.push(fut);
    }
    outcomes
}

/// Awaits outcome futures in send order.
pub async fn outcomes_of(futs: Vec<OutcomeFut>) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(futs.len());
    for (i, fut) in futs.into_iter().enumerate() {
        let outcome = timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("outcome of delivery {i} timed out"))
            .unwrap_or_else(|e| panic!("delivery {i} failed: {e}"));
        out.push(outcome);
    }
    out
}

pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted(_) => "accepted",
        Outcome::Rejected(_) => "rejected",
        Outcome::Released(_) => "released",
        Outcome::Modified(_) => "modified",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

pub fn counts(outcomes: &[Outcome]) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for o in outcomes {
        *c.entry(outcome_name(o)).or_insert(0) += 1;
    }
    c
}

pub fn all_accepted(n: usize) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([("accepted", n)])
}

/// Receives until `expect` messages arrived (accepting each when `accept`),
/// returning their ids in arrival order.
pub async fn receive_ids(receiver: &mut Receiver, expect: usize, accept: bool) -> Vec<u64> {
    let mut ids = Vec::with_capacity(expect);
    while ids.len() < expect {
        let delivery: Delivery<Body<Value>> = timeout(WAIT, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("receive timed out after {} messages", ids.len()))
            .expect("receive");
        ids.push(id_of(&delivery));
        if accept {
            receiver.accept(&delivery).await.expect("accept");
        }
    }
    ids
}

/// A receiver task that accepts everything until told to stop; returns the
/// ids it received. `seen` counts arrivals as they happen.
pub fn spawn_consumer(
    client: Client,
    receiver: Receiver,
    stop: watch::Receiver<bool>,
    seen: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    spawn_consumer_with(client, receiver, stop, seen, id_of)
}

/// [`spawn_consumer`] keeping `record(delivery)` of each delivery.
pub fn spawn_consumer_with<T: Send + 'static>(
    client: Client,
    mut receiver: Receiver,
    mut stop: watch::Receiver<bool>,
    seen: Arc<AtomicUsize>,
    record: impl Fn(&Delivery<Body<Value>>) -> T + Send + 'static,
) -> tokio::task::JoinHandle<Vec<T>> {
    tokio::spawn(async move {
        let mut records = Vec::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                delivery = receiver.recv::<Body<Value>>() => {
                    let delivery = delivery.expect("consumer receives");
                    records.push(record(&delivery));
                    seen.fetch_add(1, Ordering::SeqCst);
                    receiver.accept(&delivery).await.expect("consumer accepts");
                }
            }
        }
        let _ = timeout(WAIT, receiver.close()).await;
        client.close().await;
        records
    })
}

/// A delivery's router annotations: `x-opt-qd.ingress` and `x-opt-qd.trace`
/// (empty when absent).
pub fn router_annotations(delivery: &Delivery<Body<Value>>) -> (Option<String>, Vec<String>) {
    let annotation = |key: &str| {
        delivery
            .message()
            .message_annotations
            .as_ref()
            .and_then(|a| {
                a.0.iter().find_map(|(k, v)| match k {
                    OwnedKey::Symbol(s) if s.as_str() == key => Some(v.clone()),
                    _ => None,
                })
            })
    };
    let ingress = annotation("x-opt-qd.ingress").map(|v| match v {
        Value::String(s) => s,
        other => panic!("x-opt-qd.ingress is not a string: {other:?}"),
    });
    let trace = match annotation("x-opt-qd.trace") {
        None => Vec::new(),
        Some(Value::List(hops)) => hops
            .into_iter()
            .map(|h| match h {
                Value::String(s) => s,
                other => panic!("x-opt-qd.trace entry is not a string: {other:?}"),
            })
            .collect(),
        Some(other) => panic!("x-opt-qd.trace is not a list: {other:?}"),
    };
    (ingress, trace)
}

/// Polls `pred` (a cheap counter read) until true, bounded by [`WAIT`].
pub async fn wait_until(what: &str, pred: impl Fn() -> bool) {
    let waited = timeout(WAIT, async {
        while !pred() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// Consumer tasks (see [`spawn_consumer`]) with their arrival counters and
/// the switch that stops them.
pub type Consumers = (
    Vec<tokio::task::JoinHandle<Vec<u64>>>,
    Vec<Arc<AtomicUsize>>,
    watch::Sender<bool>,
);

/// `n` consumers of `address` on `router`, each on its own connection.
pub async fn consumers(router: &Router, address: &str, n: usize) -> Consumers {
    consumers_on(&vec![router; n], address).await
}

/// One consumer of `address` on each of `routers` (auto credit 250, accepts
/// everything), each on its own connection, attached before this returns.
pub async fn consumers_on(routers: &[&Router], address: &str) -> Consumers {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut seen = Vec::new();
    for (i, router) in routers.iter().enumerate() {
        let name = format!("consumer-{i}");
        let mut client = Client::connect(router, &name).await;
        let receiver = client.receiver(&name, address, CreditMode::Auto(250)).await;
        let count = Arc::new(AtomicUsize::new(0));
        seen.push(count.clone());
        tasks.push(spawn_consumer(client, receiver, stop_rx.clone(), count));
    }
    (tasks, seen, stop_tx)
}

pub async fn join_consumers<T>(tasks: Vec<tokio::task::JoinHandle<Vec<T>>>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            timeout(WAIT, t)
                .await
                .expect("consumer stops")
                .expect("consumer task"),
        );
    }
    out
}

/// A consumer that grants `credit` once and never settles what it receives.
pub struct StuckConsumer {
    /// Deliveries received so far.
    pub seen: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StuckConsumer {
    /// Attaches on `router` (its credit known to the router on return).
    pub async fn attach(router: &Router, name: &str, address: &str, credit: u32) -> StuckConsumer {
        let mut client = Client::connect(router, name).await;
        let mut receiver = client.receiver(name, address, CreditMode::Manual).await;
        receiver
            .set_credit(credit)
            .await
            .expect("stuck receiver grants credit");
        client.barrier().await;
        let seen = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let count = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    d = receiver.recv::<Body<Value>>() => {
                        d.expect("stuck receiver receives");
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            client.close().await;
        });
        StuckConsumer { seen, stop, task }
    }

    pub fn count(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// Closes its connection, its deliveries still unsettled.
    pub async fn stop(self) {
        self.stop.send(true).expect("stuck consumer listens");
        timeout(WAIT, self.task)
            .await
            .expect("stuck consumer stops")
            .expect("stuck task");
    }
}

/// Balanced `address` with a consumer on `stuck_on` that takes 1000 credits
/// and never settles and a settling consumer on each of `good_on`: sends
/// `total` from `tx` and waits until each message reached some consumer;
/// asserts that exactly the deliveries the settling consumers took are
/// accepted. `ready` tells when the sender's router knows every consumer.
/// Returns how many the stuck consumer holds and how many each
/// settling consumer got.
pub async fn balanced_with_a_stuck_consumer(
    tx: &Router,
    stuck_on: &Router,
    good_on: &[&Router],
    address: &str,
    total: usize,
    ready: impl Fn() -> bool,
) -> (usize, Vec<usize>) {
    let stuck = StuckConsumer::attach(stuck_on, "stuck", address, 1000).await;
    let (tasks, seen, stop) = consumers_on(good_on, address).await;
    wait_until("the sender's router to know every consumer", ready).await;
    let mut tx_client = Client::connect(tx, "balanced-tx").await;
    let mut sender = tx_client.sender("balanced-tx", address).await;
    let futs = send_all(&mut sender, 0..total as u64).await;
    wait_until("every message received by some consumer", || {
        stuck.count() + seen.iter().map(|s| s.load(Ordering::SeqCst)).sum::<usize>() == total
    })
    .await;
    let held = stuck.count();

    // Exactly the deliveries the settling consumers accepted have outcomes.
    let mut pending: FuturesUnordered<_> = futs.into_iter().collect();
    let mut settled = Vec::new();
    while settled.len() < total - held {
        let next = timeout(WAIT, pending.next())
            .await
            .expect("outcome of a settled delivery")
            .expect("outcomes left");
        settled.push(next.expect("delivery outcome"));
    }
    assert_eq!(counts(&settled), all_accepted(total - held));
    let per_good: Vec<usize> = seen.iter().map(|s| s.load(Ordering::SeqCst)).collect();

    stop.send(true).expect("consumers listen");
    join_consumers(tasks).await;
    stuck.stop().await;
    drop(pending);
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    (held, per_good)
}

pub const BULK: u64 = 10_000;

pub fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

/// How a bulk sender settles.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Unsettled: every outcome must come back accepted.
    Unsettled,
    /// Presettled: nothing comes back; none may be dropped.
    Presettled,
}

/// Sends `BULK` messages to `address` on `tx_router` and receives them on
/// `rx_router` (the same router, or the far end of a mesh): every id arrives
/// exactly once and, unsettled, every outcome is accepted.
pub async fn bulk(tx_router: &Router, rx_router: &Router, address: &str, settle: Settle) {
    let mut rx_client = Client::connect(rx_router, "bulk-rx").await;
    let mut receiver = rx_client
        .receiver("bulk-rx", address, CreditMode::Auto(250))
        .await;
    let mut tx_client = Client::connect(tx_router, "bulk-tx").await;
    let mut sender = match settle {
        Settle::Unsettled => tx_client.sender("bulk-tx", address).await,
        Settle::Presettled => tx_client.presettled_sender("bulk-tx", address).await,
    };

    let consumer = tokio::spawn(async move {
        // Accepting a presettled delivery sends nothing but replenishes the
        // client's automatic credit.
        let ids = receive_ids(&mut receiver, BULK as usize, true).await;
        (receiver, ids)
    });
    match settle {
        Settle::Unsettled => {
            let outcomes = outcomes_of(send_all(&mut sender, 0..BULK).await).await;
            assert_eq!(counts(&outcomes), all_accepted(BULK as usize));
        }
        Settle::Presettled => {
            for id in 0..BULK {
                timeout(WAIT, sender.send(message(id)))
                    .await
                    .unwrap_or_else(|_| panic!("presettled send {id} timed out"))
                    .unwrap_or_else(|e| panic!("presettled send {id} failed: {e}"));
            }
        }
    }
    let (receiver, ids) = timeout(WAIT, consumer)
        .await
        .expect("consumer finished")
        .expect("consumer");
    assert_eq!(
        sorted(ids),
        (0..BULK).collect::<Vec<_>>(),
        "every id received exactly once"
    );
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
}

/// Every outcome an at-least-once sender heard for each message id, in order.
pub type Heard = BTreeMap<u64, Vec<&'static str>>;

/// An at-least-once application: sends messages `0..n` to `address` on the
/// router at `url`, unsettled, and sends again each one that comes back released
/// or modified, until every one is accepted or rejected (bounded by
/// `within`). Returns every outcome it heard per message id.
pub async fn send_at_least_once(url: &str, address: &str, n: u64, within: Duration) -> Heard {
    use tokio::sync::mpsc::unbounded_channel;
    let mut client = Client::connect_to(url, "at-least-once").await;
    let mut sender = client.sender("at-least-once", address).await;
    let (to_send, mut ids) = unbounded_channel::<u64>();
    let (sent, mut in_flight) = unbounded_channel::<(u64, OutcomeFut)>();
    for id in 0..n {
        to_send.send(id).expect("the sending task listens");
    }
    let sending = tokio::spawn(async move {
        while let Some(id) = ids.recv().await {
            let fut = sender
                .send_batchable(message(id))
                .await
                .unwrap_or_else(|e| panic!("send of message {id} failed: {e}"));
            if sent.send((id, fut)).is_err() {
                break;
            }
        }
        let _ = timeout(WAIT, sender.close()).await;
    });
    let mut outcomes = FuturesUnordered::new();
    let mut heard = Heard::new();
    let mut settled = 0;
    let run = async {
        while settled < n {
            tokio::select! {
                Some((id, fut)) = in_flight.recv() => {
                    outcomes.push(async move { (id, fut.await) });
                }
                Some((id, outcome)) = outcomes.next(), if !outcomes.is_empty() => {
                    let outcome = outcome.unwrap_or_else(|e| panic!("message {id} failed: {e}"));
                    let name = outcome_name(&outcome);
                    heard.entry(id).or_default().push(name);
                    match outcome {
                        Outcome::Accepted(_) | Outcome::Rejected(_) => settled += 1,
                        _ => to_send.send(id).expect("the sending task listens"),
                    }
                }
                else => panic!("the sending task ended"),
            }
        }
    };
    if timeout(within, run).await.is_err() {
        panic!("the at-least-once sender timed out: {settled} of {n} messages settled");
    }
    drop(to_send);
    timeout(WAIT, sending)
        .await
        .expect("the sending task ends")
        .expect("sending task");
    client.close().await;
    heard
}

/// A consumer task (see [`accepting_consumer`]).
pub struct AcceptingConsumer {
    /// The ids it received, in arrival order, once stopped.
    pub task: tokio::task::JoinHandle<Vec<u64>>,
    /// Deliveries received so far.
    pub seen: Arc<AtomicUsize>,
    /// Stops it.
    pub stop: watch::Sender<bool>,
    /// While set, a batch consumer accepts nothing (it holds what it has).
    pub hold: Arc<std::sync::atomic::AtomicBool>,
    /// Deliveries a batch consumer holds, not accepted yet.
    pub held: Arc<AtomicUsize>,
}

/// A consumer of `address` on `router` granting `credit` (automatic
/// credit) that accepts each delivery at once or, with `batch`, accepts what
/// arrived every 50 ms (as a consumer that processes in batches), unless
/// told to hold.
pub async fn accepting_consumer(
    router: &Router,
    address: &str,
    credit: u32,
    batch: bool,
) -> AcceptingConsumer {
    let mut client = Client::connect(router, "consumer").await;
    let mut receiver = client
        .receiver("consumer", address, CreditMode::Auto(credit))
        .await;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holding = hold.clone();
    let held_now = Arc::new(AtomicUsize::new(0));
    let unaccepted = held_now.clone();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut held = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tick.tick() => {
                    if !held.is_empty() && !holding.load(Ordering::SeqCst) {
                        receiver.accept_all(&held).await.expect("consumer accepts");
                        held.clear();
                        unaccepted.store(0, Ordering::SeqCst);
                    }
                }
                delivery = receiver.recv::<Body<Value>>() => {
                    let delivery = delivery.expect("consumer receives");
                    ids.push(id_of(&delivery));
                    count.fetch_add(1, Ordering::SeqCst);
                    if batch {
                        held.push(delivery);
                        unaccepted.store(held.len(), Ordering::SeqCst);
                    } else {
                        receiver.accept(&delivery).await.expect("consumer accepts");
                    }
                }
            }
        }
        let _ = timeout(WAIT, receiver.close()).await;
        client.close().await;
        ids
    });
    AcceptingConsumer {
        task,
        seen,
        stop,
        hold,
        held: held_now,
    }
}

/// Per message id `0..n`: `received` (ids in arrival order) holds each
/// exactly once and the sender heard exactly `accepted` for each; panics
/// with a tally of what went wrong otherwise.
pub fn assert_each_received_once_and_accepted(received: &[u64], heard: &Heard, n: u64) {
    let mut times: BTreeMap<u64, usize> = BTreeMap::new();
    for id in received {
        *times.entry(*id).or_default() += 1;
    }
    let twice: Vec<(u64, usize)> = times
        .iter()
        .filter(|(_, t)| **t > 1)
        .map(|(i, t)| (*i, *t))
        .collect();
    let missing: Vec<u64> = (0..n).filter(|i| !times.contains_key(i)).collect();
    let not_accepted: Vec<(u64, &Vec<&str>)> = heard
        .iter()
        .filter(|(_, o)| o.as_slice() != ["accepted"])
        .map(|(i, o)| (*i, o))
        .collect();
    let mut tally: BTreeMap<&Vec<&str>, usize> = BTreeMap::new();
    for (_, o) in &not_accepted {
        *tally.entry(o).or_default() += 1;
    }
    assert!(
        twice.is_empty() && missing.is_empty() && not_accepted.is_empty(),
        "{} received more than once (e.g. {:?}), {} never received (e.g. {:?}), \
         {} not just accepted at the sender: {tally:?} (e.g. {:?})",
        twice.len(),
        &twice[..twice.len().min(5)],
        missing.len(),
        &missing[..missing.len().min(5)],
        not_accepted.len(),
        &not_accepted[..not_accepted.len().min(5)],
    );
}
