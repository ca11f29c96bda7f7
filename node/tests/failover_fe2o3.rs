//! Failover under load with real `boted` processes and the Rust AMQP 1.0
//! client `fe2o3-amqp` (issue 20; the Qpid Proton suite is
//! `tests/interop/test_failover.py`): a router on the path, or a link of it,
//! goes away while thousands of unsettled deliveries are in flight through
//! it. The sender is an at-least-once application (it sends again whatever
//! comes back released or modified); per message id the tests count what
//! the consumer received and what the sender heard. The promise: each
//! message reaches the consumer exactly once and the sender hears the
//! consumer's own outcome (`accepted`) for it — a re-forwarded copy of a
//! delivery the consumer already has is answered with that consumer's
//! outcome, never delivered again.
//!
//! Tests run one at a time (each starts four or five routers); every wait
//! is bounded.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;
#[path = "support/mesh.rs"]
mod mesh_support;
#[path = "support/proxy.rs"]
mod proxy;

use boted::{Router, RouterSpec};
use client::*;
use mesh_support::{Edge, mesh};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Messages per run: enough that hundreds are in flight through the router
/// or link that fails, few enough that a run takes seconds.
const N: u64 = 20_000;

/// The longest a run's sender may take.
const RUN: Duration = Duration::from_secs(60);

/// The square A - B - D and A - C - D, the A - C link at cost 3: A reaches
/// D through B (cost 2) rather than C (cost 4).
const SQUARE: [Edge; 4] = [(0, 1, 1), (0, 2, 3), (1, 3, 1), (2, 3, 1)];
const SQUARE_IDS: [&str; 4] = ["Router.A", "Router.B", "Router.C", "Router.D"];

/// What `router` logged it re-forwarded when it lost `lost`.
fn re_forwarded(router: &Router, lost: &str) -> Option<usize> {
    let prefix = format!("lost {lost}: ");
    router.lines().iter().find_map(|l| {
        let rest = &l[l.find(&prefix)? + prefix.len()..];
        rest.split(' ').next()?.parse().ok()
    })
}

/// How the consumer settles.
#[derive(Clone, Copy)]
enum Accept {
    /// Each delivery as it arrives.
    AtOnce,
    /// What arrived, every 50 ms, and nothing for [`HOLD`] from the fault
    /// on: the copies failover brings find the originals pending and must
    /// wait for the consumer's outcome.
    Batch,
}

/// How long a batch consumer holds what it has from the fault on: longer
/// than finding a silent link (hello timeout 500 ms) and re-forwarding.
const HOLD: Duration = Duration::from_secs(1);

/// Sends [`N`] at-least-once from `routers[0]` to a consumer (credit 500)
/// on `routers[consumer]`, runs `fault` once the consumer has `fault_at`
/// of them, and checks per message id that the consumer got it exactly
/// once and the sender heard just `accepted`.
async fn under_load(
    routers: &mut [Router],
    consumer: usize,
    address: &str,
    accept: Accept,
    fault_at: f64,
    fault: impl FnOnce(&mut [Router]),
) {
    let batch = matches!(accept, Accept::Batch);
    let rx = accepting_consumer(&routers[consumer], address, 500, batch).await;
    wait_until("the sender's router to learn of the consumer", || {
        routers[0].consumers_of(address).len() == 1
    })
    .await;
    let url = routers[0].url();
    let target = address.to_owned();
    let tx = tokio::spawn(async move { send_at_least_once(&url, &target, N, RUN).await });
    wait_until("the consumer to get its share before the fault", || {
        rx.seen.load(Ordering::SeqCst) as f64 >= fault_at * N as f64
    })
    .await;
    if batch {
        rx.hold.store(true, Ordering::SeqCst);
        // What it holds is unsettled all the way back to the sender: in
        // flight through what fails.
        wait_until("the consumer to hold deliveries", || {
            rx.held.load(Ordering::SeqCst) > 0
        })
        .await;
    }
    tokio::task::block_in_place(|| fault(routers));
    tokio::time::sleep(HOLD).await;
    rx.hold.store(false, Ordering::SeqCst);
    let heard = tokio::time::timeout(RUN + Duration::from_secs(10), tx)
        .await
        .expect("the sender finishes")
        .expect("sender task");
    // A duplicate would arrive by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.stop.send(true).expect("the consumer listens");
    let received = join_consumers(vec![rx.task]).await.remove(0);
    assert_each_received_once_and_accepted(&received, &heard, N);
}

/// The square under load with B killed once the consumer on D has
/// `kill_at` of the messages.
async fn square_kill_b(kill_at: f64, accept: Accept) {
    let _serial = SERIAL.lock().await;
    let (mut routers, _) = mesh(&SQUARE_IDS, &SQUARE, &[], |s| s);
    assert_eq!(routers[0].next_hop("Router.D").as_deref(), Some("Router.B"));
    under_load(
        &mut routers,
        3,
        "queue.failover.square",
        accept,
        kill_at,
        |r| r[1].kill(),
    )
    .await;
    let in_flight = re_forwarded(&routers[0], "Router.B");
    println!("kill at {kill_at}: A re-forwarded {in_flight:?}");
    assert!(in_flight.is_some_and(|n| n > 0), "A re-forwarded nothing");
    routers.remove(1); // B, killed
    stop_all(routers);
}

fn stop_all(routers: impl IntoIterator<Item = Router>) {
    for r in routers {
        r.stop_cleanly();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_30_percent_every_message_reaches_the_consumer_once_and_is_accepted() {
    square_kill_b(0.3, Accept::AtOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_50_percent_every_message_reaches_the_consumer_once_and_is_accepted() {
    square_kill_b(0.5, Accept::AtOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_70_percent_with_a_consumer_accepting_in_batches_accepts_each_once() {
    square_kill_b(0.7, Accept::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_middle_of_a_longer_path_re_forwards_on_the_detour_and_accepts_each_once() {
    let _serial = SERIAL.lock().await;
    // A - B - C - D, and the detour B - E - D (cost 4 against 2 through
    // C). C dies: B, in the middle of the path, re-forwards what it had
    // sent to C through E, and the answers go back D - E - B - A.
    let ids = ["Router.A", "Router.B", "Router.C", "Router.D", "Router.E"];
    let edges: [Edge; 5] = [(0, 1, 1), (1, 2, 1), (2, 3, 1), (1, 4, 2), (3, 4, 2)];
    let (mut routers, _) = mesh(&ids, &edges, &[], |s| s);
    assert_eq!(routers[1].next_hop("Router.D").as_deref(), Some("Router.C"));
    under_load(
        &mut routers,
        3,
        "queue.failover.longer",
        Accept::Batch,
        0.5,
        |r| r[2].kill(),
    )
    .await;
    let in_flight = re_forwarded(&routers[1], "Router.C");
    println!("B re-forwarded {in_flight:?}");
    assert!(in_flight.is_some_and(|n| n > 0), "B re-forwarded nothing");
    routers.remove(2); // C, killed
    stop_all(routers);
}

/// The square with A - B through a proxy, cut once the consumer on D has
/// half of the messages: closed (both sockets shut), or silent (nothing
/// forwarded, found by the hello timeout of 500 ms).
async fn square_cut_a_b(silent: bool) {
    let _serial = SERIAL.lock().await;
    let (mut routers, proxies) = mesh(&SQUARE_IDS, &SQUARE, &[0], |s: RouterSpec| {
        s.hello(100, 500)
    });
    assert_eq!(routers[0].next_hop("Router.D").as_deref(), Some("Router.B"));
    let proxy = &proxies[0];
    under_load(
        &mut routers,
        3,
        "queue.failover.cut",
        Accept::Batch,
        0.5,
        |_| {
            if silent { proxy.silence() } else { proxy.cut() }
        },
    )
    .await;
    let in_flight = re_forwarded(&routers[0], "Router.B");
    println!("A re-forwarded {in_flight:?}");
    assert!(in_flight.is_some_and(|n| n > 0), "A re-forwarded nothing");
    proxy.cut();
    stop_all(routers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_link_a_b_closed_under_load_each_message_reaches_the_consumer_once_and_is_accepted()
{
    square_cut_a_b(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_link_a_b_silent_past_the_hello_timeout_each_message_is_received_once_and_accepted()
{
    square_cut_a_b(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_deliveries_a_consumer_holds_wait_and_come_back_modified_when_it_leaves_unsettled()
 {
    let _serial = SERIAL.lock().await;
    let (mut routers, _) = mesh(&SQUARE_IDS, &SQUARE, &[], |s| s);
    let address = "queue.failover.left";
    // D's consumer takes 50 and settles none.
    let stuck = StuckConsumer::attach(&routers[3], "stuck", address, 50).await;
    wait_until("A to learn of the consumer", || {
        routers[0].consumers_of(address).len() == 1
    })
    .await;
    let mut client = Client::connect(&routers[0], "held-tx").await;
    let mut sender = client.sender("held-tx", address).await;
    let futs = send_all(&mut sender, 0..50).await;
    wait_until("the consumer to hold 50", || stuck.count() == 50).await;

    tokio::task::block_in_place(|| routers[1].kill());
    let a = &routers[0];
    wait_until("A to re-forward the 50 through C", || {
        re_forwarded(a, "Router.B") == Some(50)
    })
    .await;
    // D finds each copy held by its consumer: it waits for the consumer's
    // outcome, neither delivered again nor answered yet.
    let mut outcomes: FuturesUnordered<_> = futs.into_iter().collect();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), outcomes.next())
            .await
            .is_err(),
        "a copy was answered while the consumer held its original"
    );
    // The consumer leaves without settling: each copy is answered modified
    // (it may have been processed), and none was delivered twice.
    stuck.stop().await;
    let mut tally = Vec::new();
    while let Some(outcome) = tokio::time::timeout(boted::WAIT, outcomes.next())
        .await
        .expect("an outcome for every message")
    {
        tally.push(outcome.expect("delivery outcome"));
    }
    assert_eq!(counts(&tally), BTreeMap::from([("modified", 50)]));
    let _ = tokio::time::timeout(boted::WAIT, sender.close()).await;
    client.close().await;
    routers.remove(1); // B, killed
    stop_all(routers);
}
