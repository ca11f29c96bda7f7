//! Multicast through a router failure with real `boted` processes and the
//! Rust AMQP 1.0 client `fe2o3-amqp` (the Qpid Proton suite is
//! `tests/interop/test_multicast_failover.py`): subscribers on several
//! routers, an at-least-once sender (it sends again whatever comes back
//! released or modified) on another, and a router of the tree killed under
//! load. Per message id the tests count what each subscriber received and
//! what the sender heard. The promise: the copies that were in flight
//! through the lost router are re-forwarded to the routers that were
//! behind it, so every live subscriber gets every message exactly once (a
//! router that delivered a copy already answers the re-forwarded one from
//! its record), and the sender hears one `accepted` per message.
//!
//! Tests run one at a time (each starts four or five routers); every wait
//! is bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;
#[path = "support/mesh.rs"]
mod mesh_support;
#[path = "support/proxy.rs"]
mod proxy;

use boted::Router;
use client::*;
use mesh_support::{Edge, mesh};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Messages per run: hundreds in flight through the router that dies, a
/// run in seconds.
const N: u64 = 20_000;

/// The longest a run's sender may take.
const RUN: Duration = Duration::from_secs(60);

/// How long a batch subscriber holds what it has from the kill on: longer
/// than re-forwarding takes, so the re-forwarded copies find the originals
/// pending and wait for their outcome.
const HOLD: Duration = Duration::from_secs(1);

/// The square A - B - D - C - A, A - C at cost 3: A's tree reaches D
/// through B.
const SQUARE: [Edge; 4] = [(0, 1, 1), (0, 2, 3), (1, 3, 1), (2, 3, 1)];
const SQUARE_IDS: [&str; 4] = ["Router.A", "Router.B", "Router.C", "Router.D"];

/// The ring R1 - R2 - R3 - R4 - R5 - R1, cost 1 each.
const RING: [Edge; 5] = [(0, 1, 1), (1, 2, 1), (2, 3, 1), (3, 4, 1), (4, 0, 1)];
const RING_IDS: [&str; 5] = [
    "Router.R1",
    "Router.R2",
    "Router.R3",
    "Router.R4",
    "Router.R5",
];

/// What `router` logged it re-forwarded when it lost `lost`.
fn re_forwarded(router: &Router, lost: &str) -> Option<usize> {
    let prefix = format!("lost {lost}: ");
    router.lines().iter().find_map(|l| {
        let rest = &l[l.find(&prefix)? + prefix.len()..];
        rest.split(' ').next()?.parse().ok()
    })
}

/// A run under load: subscribers (credit 500) on `subscribed` for
/// `address`; the fault comes once the subscriber on `watched` has
/// `kill_at` of the messages (a `batch` subscriber there then holds what
/// it has for [`HOLD`]); `victim` is the router the fault kills, if any,
/// and `lost` the neighbour the sender's router loses.
struct Load<'a> {
    address: &'a str,
    subscribed: &'a [usize],
    watched: usize,
    batch: bool,
    kill_at: f64,
    victim: Option<usize>,
    lost: &'a str,
}

/// Sends [`N`] at-least-once from `routers[0]` as `load` says, runs
/// `fault`, and checks per message id that every subscriber but the
/// victim's got it exactly once and the sender heard just `accepted`.
/// Returns how many deliveries `routers[0]` logged it re-forwarded when it
/// lost `load.lost`.
async fn kill_under_multicast_load(
    routers: &mut [Router],
    load: Load<'_>,
    fault: impl FnOnce(&mut [Router]),
) -> Option<usize> {
    let Load {
        address,
        subscribed,
        watched,
        batch,
        kill_at,
        victim,
        lost,
    } = load;
    let mut subscribers = Vec::new();
    for &i in subscribed {
        let batch = batch && i == watched;
        subscribers.push((
            i,
            accepting_consumer(&routers[i], address, 500, batch).await,
        ));
    }
    let others = subscribed.iter().filter(|&&i| i != 0).count();
    wait_until("the sender's router to learn of every subscriber", || {
        routers[0].consumers_of(address).len() == others
    })
    .await;
    let url = routers[0].url();
    let target = address.to_owned();
    let tx = tokio::spawn(async move { send_at_least_once(&url, &target, N, RUN).await });
    let watch = &subscribers
        .iter()
        .find(|(i, _)| *i == watched)
        .expect("watched")
        .1;
    let share = async {
        while (watch.seen.load(Ordering::SeqCst) as f64) < kill_at * N as f64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(boted::WAIT, share).await.is_err() {
        panic!(
            "timed out waiting for the watched subscriber to get its share before the \
             fault; {}",
            before_the_fault(routers, &subscribers, tx.is_finished())
        );
    }
    if batch {
        watch.hold.store(true, Ordering::SeqCst);
        wait_until("the subscriber to hold deliveries", || {
            watch.held.load(Ordering::SeqCst) > 0
        })
        .await;
    }
    tokio::task::block_in_place(|| fault(routers));
    tokio::time::sleep(HOLD).await;
    watch.hold.store(false, Ordering::SeqCst);
    let heard = tokio::time::timeout(RUN + Duration::from_secs(10), tx)
        .await
        .expect("the sender finishes")
        .expect("sender task");
    // A duplicate would arrive by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = Vec::new();
    for (i, s) in subscribers {
        let _ = s.stop.send(true);
        received.push((i, s.task));
    }
    for (i, task) in received {
        // The victim's subscriber lost its router: its task may have failed.
        let ids = tokio::time::timeout(boted::WAIT, task).await;
        if Some(i) == victim {
            continue;
        }
        let ids = ids.expect("the subscriber stops").expect("subscriber task");
        println!("{}: {} received", routers[i].id, ids.len());
        assert_each_received_once_and_accepted(&ids, &heard, N);
    }
    re_forwarded(&routers[0], lost)
}

/// What a run looked like when it did not reach its fault: what each
/// subscriber had received and held, whether the sender had finished, and
/// the neighbours each router lost (a router silent for the hello timeout
/// under load is dropped, and its subscribers miss what is sent meanwhile:
/// that, not a stalled flow, also keeps a subscriber below its share).
fn before_the_fault(
    routers: &[Router],
    subscribers: &[(usize, AcceptingConsumer)],
    sender_finished: bool,
) -> String {
    let counts: Vec<String> = subscribers
        .iter()
        .map(|(i, s)| {
            format!(
                "{} received {} (holding {})",
                routers[*i].id,
                s.seen.load(Ordering::SeqCst),
                s.held.load(Ordering::SeqCst)
            )
        })
        .collect();
    let losses: Vec<String> = routers
        .iter()
        .flat_map(|r| {
            r.lines()
                .into_iter()
                .filter(|l| {
                    l.contains("neighbour down")
                        || l.contains("lost Router")
                        || l.contains("hello timeout")
                })
                .map(move |l| format!("{}: {l}", r.id))
        })
        .collect();
    format!(
        "{}; the sender {}; neighbours lost: {}",
        counts.join(", "),
        if sender_finished {
            "had finished"
        } else {
            "had not finished"
        },
        if losses.is_empty() {
            "none".to_owned()
        } else {
            losses.join("\n")
        }
    )
}

fn stop_all_but(routers: Vec<Router>, killed: usize) {
    for (i, r) in routers.into_iter().enumerate() {
        if i != killed {
            r.stop_cleanly();
        }
    }
}

/// The square, subscribers on C and D, B killed once D's has `kill_at`.
async fn square_kill_b(kill_at: f64, batch: bool) {
    let _serial = SERIAL.lock().await;
    let (mut routers, _) = mesh(&SQUARE_IDS, &SQUARE, &[], |s| s);
    assert_eq!(routers[0].next_hop("Router.D").as_deref(), Some("Router.B"));
    let load = Load {
        address: "multicast.failover.square",
        subscribed: &[2, 3],
        watched: 3,
        batch,
        kill_at,
        victim: Some(1),
        lost: "Router.B",
    };
    let n = kill_under_multicast_load(&mut routers, load, |r| r[1].kill()).await;
    println!("kill at {kill_at}: A re-forwarded {n:?}");
    if batch {
        assert!(n.is_some_and(|n| n > 0), "A re-forwarded nothing");
    }
    stop_all_but(routers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_30_percent_every_subscriber_gets_each_message_once_and_it_is_accepted() {
    square_kill_b(0.3, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_50_percent_with_d_accepting_in_batches_each_subscriber_gets_each_once() {
    square_kill_b(0.5, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_at_70_percent_with_d_accepting_in_batches_each_subscriber_gets_each_once() {
    square_kill_b(0.7, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_five_kill_r2_under_load_every_live_subscriber_gets_each_message_once() {
    let _serial = SERIAL.lock().await;
    // A subscriber on every router, the sender on R1, whose tree reaches
    // R3 through R2: R2 dies once R3's subscriber (accepting in batches)
    // has half, and R1 re-forwards around the ring (R5 - R4 - R3).
    let (mut routers, _) = mesh(&RING_IDS, &RING, &[], |s| s);
    assert_eq!(
        routers[0].next_hop("Router.R3").as_deref(),
        Some("Router.R2")
    );
    let load = Load {
        address: "multicast.failover.ring",
        subscribed: &[0, 1, 2, 3, 4],
        watched: 2,
        batch: true,
        kill_at: 0.5,
        victim: Some(1),
        lost: "Router.R2",
    };
    let n = kill_under_multicast_load(&mut routers, load, |r| r[1].kill()).await;
    println!("ring: R1 re-forwarded {n:?}");
    assert!(n.is_some_and(|n| n > 0), "R1 re-forwarded nothing");
    stop_all_but(routers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_link_a_b_cut_under_load_each_subscriber_gets_each_message_once() {
    let _serial = SERIAL.lock().await;
    // A - B through a proxy, closed once D's subscriber (accepting in
    // batches) has half. B lives on and still passes on to D what it had
    // from A, while A re-forwards the same copies through C; C's routes do
    // not change, but A's tree as C sees it does.
    let (mut routers, proxies) = mesh(&SQUARE_IDS, &SQUARE, &[0], |s| s);
    assert_eq!(routers[0].next_hop("Router.D").as_deref(), Some("Router.B"));
    let proxy = &proxies[0];
    let load = Load {
        address: "multicast.failover.cut",
        subscribed: &[2, 3],
        watched: 3,
        batch: true,
        kill_at: 0.5,
        victim: None,
        lost: "Router.B",
    };
    let n = kill_under_multicast_load(&mut routers, load, |_| proxy.cut()).await;
    println!("link A-B cut: A re-forwarded {n:?}");
    assert!(n.is_some_and(|n| n > 0), "A re-forwarded nothing");
    for r in routers {
        r.stop_cleanly();
    }
}
