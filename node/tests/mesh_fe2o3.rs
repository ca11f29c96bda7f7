//! The mesh with real `boted` processes on loopback, driven by the Rust AMQP
//! 1.0 client `fe2o3-amqp`: the cases of the Qpid Proton suite
//! `tests/interop/test_mesh.py` — 10,000 unsettled and 10,000 presettled
//! across a chain, closest local-then-remote, balanced with a stuck local
//! consumer, no head-of-line blocking between addresses, multicast on a ring
//! exactly once, in-flight deliveries returned when the middle router dies,
//! failover on a square when a router dies under load, closest on a
//! triangle taking the cheaper path and moving to the direct link when a
//! SIGHUP lowers its cost — and one inter-router link cut through a TCP
//! proxy in this process.
//!
//! Tests run one at a time (each starts three to five routers); every wait
//! is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bote_node::mesh::data::HOP_WINDOW;
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::types::messaging::Outcome;
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

use boted::{Router, RouterSpec, WAIT};
use client::*;
use mesh_support::{Edge, converge, mesh};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A - B - C, cost 1 each.
fn chain() -> [Router; 3] {
    let (routers, _) = mesh(
        &["Router.A", "Router.B", "Router.C"],
        &[(0, 1, 1), (1, 2, 1)],
        &[],
        |s| s,
    );
    routers
        .try_into()
        .unwrap_or_else(|_| unreachable!("three routers"))
}

/// Waits until `router` knows `n` other routers with consumers of each of
/// `addresses`.
async fn wait_for_consumers(router: &Router, addresses: &[&str], n: usize) {
    wait_until(&format!("{} to learn of consumers", router.id), || {
        addresses.iter().all(|a| router.consumers_of(a).len() == n)
    })
    .await;
}

fn stop_all(routers: impl IntoIterator<Item = Router>) {
    for r in routers {
        r.stop_cleanly();
    }
}

/// Sends `ids` to `address` on `router` on a fresh connection; asserts every
/// one is accepted.
async fn send_accepted(router: &Router, address: &str, ids: std::ops::Range<u64>) {
    let mut client = Client::connect(router, "tx").await;
    let mut sender = client.sender("tx", address).await;
    let n = ids.clone().count();
    let outcomes = outcomes_of(send_all(&mut sender, ids).await).await;
    assert_eq!(counts(&outcomes), all_accepted(n), "sent to {address}");
    let _ = timeout(WAIT, sender.close()).await;
    client.close().await;
}

/// [`BULK`] messages sent on A of a fresh chain and received on C.
async fn bulk_across_the_chain(address: &str, settle: Settle) {
    let _serial = SERIAL.lock().await;
    let [a, b, c] = chain();
    bulk(&a, &c, address, settle).await;
    stop_all([a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_a_b_c_delivers_ten_thousand_unsettled_and_every_outcome_returns() {
    bulk_across_the_chain("queue.chain", Settle::Unsettled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_a_b_c_delivers_ten_thousand_presettled_none_dropped() {
    bulk_across_the_chain("queue.chain.pre", Settle::Presettled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closest_prefers_a_local_consumer_then_the_remote_one() {
    let _serial = SERIAL.lock().await;
    let [a, b, c] = chain();
    let (remote, remote_seen, remote_stop) = consumers_on(&[&c], "closest.pref").await;
    let (local, local_seen, local_stop) = consumers_on(&[&a], "closest.pref").await;
    wait_for_consumers(&a, &["closest.pref"], 1).await;

    send_accepted(&a, "closest.pref", 0..50).await;
    assert_eq!(local_seen[0].load(Ordering::SeqCst), 50);
    local_stop.send(true).expect("local consumer listens");
    assert_eq!(
        sorted(join_consumers(local).await.remove(0)),
        sorted((0..50).collect())
    );
    assert_eq!(
        remote_seen[0].load(Ordering::SeqCst),
        0,
        "the remote consumer got some"
    );

    // With the local consumer gone, C's is the closest.
    send_accepted(&a, "closest.pref", 50..70).await;
    wait_until("the remote consumer to get the rest", || {
        remote_seen[0].load(Ordering::SeqCst) == 20
    })
    .await;
    remote_stop.send(true).expect("remote consumer listens");
    assert_eq!(
        sorted(join_consumers(remote).await.remove(0)),
        sorted((50..70).collect())
    );
    stop_all([a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_across_routers_weighs_a_stuck_local_consumer_against_a_remote_one() {
    let _serial = SERIAL.lock().await;
    let [a, b, c] = chain();
    const TOTAL: usize = 1000;
    let (held, per_good) =
        balanced_with_a_stuck_consumer(&a, &a, &[&c], "queue.balanced.mesh", TOTAL, || {
            a.consumers_of("queue.balanced.mesh").len() == 1
        })
        .await;
    // The stuck local link is weighed by its unsettled count against the
    // remote router's outstanding + cost, and is not chosen past its
    // capacity (250) while the remote one can take deliveries. (With credit
    // hop by hop the remote's outstanding count grows with the hop windows,
    // so the stuck link may fill up to its capacity.)
    assert!(held > 0 && held <= 250, "stuck local consumer holds {held}");
    assert!(
        per_good[0] >= TOTAL - 250,
        "remote consumer got {per_good:?}"
    );
    stop_all([a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_consumer_holds_back_only_its_own_address_and_presettled_waits_for_credit() {
    let _serial = SERIAL.lock().await;
    let [a, b, c] = chain();
    // X: a consumer on C that takes 10 and grants no more credit. Y: a
    // healthy consumer on C; both addresses cross the same A-B and B-C streams.
    let stuck = StuckConsumer::attach(&c, "stuck-x", "queue.hol.x", 10).await;
    let (healthy, healthy_seen, healthy_stop) = consumers_on(&[&c], "queue.hol.y").await;
    wait_for_consumers(&a, &["queue.hol.x", "queue.hol.y"], 1).await;

    // X's presettled sender tries 3000 and counts what it could send.
    let mut x_client = Client::connect(&a, "tx-x").await;
    let mut x_sender = x_client.presettled_sender("tx-x", "queue.hol.x").await;
    let x_sent = Arc::new(AtomicUsize::new(0));
    let (x_stop, mut x_stopped) = watch::channel(false);
    let sent = x_sent.clone();
    let x_task = tokio::spawn(async move {
        for id in 0..3000 {
            tokio::select! {
                _ = x_stopped.changed() => break,
                r = x_sender.send(message(id)) => {
                    r.unwrap_or_else(|e| panic!("presettled send {id} failed: {e}"));
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let _ = timeout(Duration::from_secs(5), x_sender.close()).await;
        x_client.close().await;
    });
    wait_until("the stuck consumer's 10", || stuck.count() == 10).await;

    send_accepted(&a, "queue.hol.y", 0..1000).await;
    wait_until("the healthy consumer's 1000", || {
        healthy_seen[0].load(Ordering::SeqCst) == 1000
    })
    .await;
    // X's sender is held back by credit, not allowed to pile messages up in
    // the mesh: at most what the consumer took, its link's window on C (a
    // link capacity), a window per inter-router hop (A-B, B-C) and its own
    // link capacity — and then no more, however long it waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stuck.count(),
        10,
        "the stuck consumer got more than its credit"
    );
    let sent = x_sent.load(Ordering::SeqCst);
    let bound = 10 + 250 + 2 * HOP_WINDOW as usize + 250;
    assert!(sent <= bound, "X's sender sent {sent}: not held back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        x_sent.load(Ordering::SeqCst),
        sent,
        "X's sender kept sending"
    );

    x_stop.send(true).expect("X's sender listens");
    timeout(WAIT, x_task)
        .await
        .expect("X's sender stops")
        .expect("X's sender task");
    healthy_stop.send(true).expect("healthy consumer listens");
    assert_eq!(
        sorted(join_consumers(healthy).await.remove(0)),
        sorted((0..1000).collect())
    );
    stuck.stop().await;
    stop_all([a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_on_a_five_router_ring_reaches_every_receiver_exactly_once() {
    let _serial = SERIAL.lock().await;
    let ring: Vec<Edge> = (0..5).map(|i| (i, (i + 1) % 5, 1)).collect();
    let (routers, _) = mesh(&["R0", "R1", "R2", "R3", "R4"], &ring, &[], |s| s);
    let all: Vec<&Router> = routers.iter().collect();
    let (tasks, seen, stop) = consumers_on(&all, "multicast.ring").await;
    for r in &routers {
        wait_for_consumers(r, &["multicast.ring"], 4).await;
    }

    const N: u64 = 200;
    send_accepted(&routers[2], "multicast.ring", 0..N).await;
    wait_until("every receiver to get every copy", || {
        seen.iter().all(|s| s.load(Ordering::SeqCst) >= N as usize)
    })
    .await;
    // A duplicate would arrive by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).expect("consumers listen");
    for (i, ids) in join_consumers(tasks).await.into_iter().enumerate() {
        assert_eq!(sorted(ids), (0..N).collect::<Vec<_>>(), "receiver on R{i}");
    }
    stop_all(routers);
}

/// The square A - B - D and A - C - D; A's cheaper path to D is through B.
const SQUARE: [Edge; 4] = [(0, 1, 1), (0, 2, 2), (1, 3, 1), (2, 3, 2)];
const SQUARE_IDS: [&str; 4] = ["Router.A", "Router.B", "Router.C", "Router.D"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_middle_router_returns_every_in_flight_delivery_to_the_sender() {
    let _serial = SERIAL.lock().await;
    let [a, mut b, c] = chain();
    // C's consumer takes 100 and settles none: the rest wait in the mesh.
    let stuck = StuckConsumer::attach(&c, "stuck", "queue.fail", 100).await;
    wait_for_consumers(&a, &["queue.fail"], 1).await;
    let mut tx_client = Client::connect(&a, "fail-tx").await;
    let mut sender = tx_client.sender("fail-tx", "queue.fail").await;
    let futs = send_all(&mut sender, 0..200).await;
    wait_until("the consumer on C to hold 100", || stuck.count() == 100).await;

    tokio::task::block_in_place(|| b.kill());
    // Every delivery ends with an outcome at the sender: none vanishes, and
    // the 100 that reached C through B come back modified.
    let tally = counts(&outcomes_of(futs).await);
    assert_eq!(tally.values().sum::<usize>(), 200);
    assert!(
        tally.keys().all(|k| ["modified", "released"].contains(k)),
        "outcomes {tally:?}"
    );
    assert!(
        tally.get("modified").copied().unwrap_or(0) >= 100,
        "outcomes {tally:?}"
    );
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    stuck.stop().await;
    stop_all([a, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_kill_b_under_load_reroutes_through_c_and_no_message_vanishes() {
    let _serial = SERIAL.lock().await;
    let (mut routers, _) = mesh(&SQUARE_IDS, &SQUARE, &[], |s| s);
    let (a, d) = (&routers[0], &routers[3]);
    assert_eq!(a.next_hop("Router.D").as_deref(), Some("Router.B"));
    let (rx, seen, rx_stop) = consumers_on(&[d], "queue.square").await;
    wait_for_consumers(a, &["queue.square"], 1).await;

    const TOTAL: u64 = 5000;
    let mut tx_client = Client::connect(a, "square-tx").await;
    let mut sender = tx_client.sender("square-tx", "queue.square").await;
    let tx = tokio::spawn(async move {
        let futs = send_all(&mut sender, 0..TOTAL).await;
        let mut outcomes = Vec::with_capacity(futs.len());
        for (id, fut) in futs.into_iter().enumerate() {
            let outcome = timeout(WAIT, fut)
                .await
                .unwrap_or_else(|_| panic!("no outcome for message {id}"));
            outcomes.push(outcome.unwrap_or_else(|e| panic!("message {id} failed: {e}")));
        }
        let _ = timeout(WAIT, sender.close()).await;
        tx_client.close().await;
        outcomes
    });
    wait_until("traffic through B", || {
        seen[0].load(Ordering::SeqCst) > 1000
    })
    .await;
    tokio::task::block_in_place(|| routers[1].kill());
    let a = &routers[0];
    wait_until("A to reroute through C", || {
        a.next_hop("Router.D").as_deref() == Some("Router.C")
    })
    .await;

    // Every message has exactly one outcome at the sender.
    let outcomes = timeout(WAIT, tx)
        .await
        .expect("the sender finishes")
        .expect("sender task");
    assert_eq!(outcomes.len(), TOTAL as usize);
    let tally = counts(&outcomes);
    assert!(
        tally
            .keys()
            .all(|k| ["accepted", "modified", "released"].contains(k)),
        "outcomes {tally:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx_stop.send(true).expect("consumer listens");
    let received = join_consumers(rx).await.remove(0);
    let unique: BTreeSet<u64> = received.iter().copied().collect();
    assert_eq!(
        unique.len(),
        received.len(),
        "a message was delivered twice"
    );
    let accepted: BTreeSet<u64> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Outcome::Accepted(_)))
        .map(|(id, _)| id as u64)
        .collect();
    assert!(
        accepted.is_subset(&unique),
        "accepted but never received: {:?}",
        accepted.difference(&unique).take(10).collect::<Vec<_>>()
    );
    // Copies of what D's consumer had when B died were answered with its
    // own outcome: all accepted.
    assert_eq!(tally, all_accepted(TOTAL as usize), "outcomes");
    routers.remove(1); // B, killed
    stop_all(routers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_link_cut_through_a_proxy_reconverges_without_it_and_traffic_flows() {
    let _serial = SERIAL.lock().await;
    // A - B goes through a proxy in this process. A hello timeout of a
    // minute: noticing the cut in time can only come from the streams closing.
    let (routers, proxies) = mesh(&SQUARE_IDS, &SQUARE, &[0], |s| s.hello(1000, 60_000));
    let proxy = &proxies[0];
    assert_eq!(proxy.forwarded(), 1, "A - B goes through the proxy");
    let (a, b, d) = (&routers[0], &routers[1], &routers[3]);
    let (on_d, seen_d, stop_d) = consumers_on(&[d], "queue.cut.d").await;
    let (on_b, seen_b, stop_b) = consumers_on(&[b], "queue.cut.b").await;
    wait_for_consumers(a, &["queue.cut.d", "queue.cut.b"], 1).await;
    assert_eq!(a.next_hop("Router.D").as_deref(), Some("Router.B"));
    send_accepted(a, "queue.cut.d", 0..100).await;
    send_accepted(a, "queue.cut.b", 0..100).await;

    proxy.cut();
    let without = &SQUARE[1..];
    tokio::task::block_in_place(|| {
        converge(&routers, without, &[true; 4], Duration::from_secs(10))
            .unwrap_or_else(|p| panic!("no reconvergence without A - B: {p}"))
    });
    for (r, peer) in [(a, "Router.B"), (b, "Router.A")] {
        assert!(
            r.lines().iter().any(|l| {
                l.contains(&format!("neighbour down: {peer} (instance "))
                    && l.contains("stream closed")
            }),
            "{} did not drop {peer} on stream close",
            r.id
        );
    }
    assert_eq!(a.next_hop("Router.D").as_deref(), Some("Router.C"));
    assert_eq!(a.next_hop("Router.B").as_deref(), Some("Router.C"));

    // Traffic flows around the cut: A - C - D, and A - C - D - B.
    send_accepted(a, "queue.cut.d", 100..200).await;
    send_accepted(a, "queue.cut.b", 100..200).await;
    for (what, seen, stop, consumer) in [("D", seen_d, stop_d, on_d), ("B", seen_b, stop_b, on_b)] {
        wait_until(&format!("every message at {what}"), || {
            seen[0].load(Ordering::SeqCst) == 200
        })
        .await;
        stop.send(true).expect("consumer listens");
        let got = join_consumers(consumer).await.remove(0);
        assert_eq!(
            sorted(got),
            (0..200).collect::<Vec<_>>(),
            "received on {what}"
        );
    }
    assert_eq!(proxy.forwarded(), 1, "a redial got through the cut link");
    stop_all(routers);
}

const TRACE_A_B_C: [&str; 3] = ["0/Router.A", "0/Router.B", "0/Router.C"];
const TRACE_A_C: [&str; 2] = ["0/Router.A", "0/Router.C"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closest_takes_the_cheaper_path_and_a_cost_change_on_sighup_moves_the_traffic() {
    let _serial = SERIAL.lock().await;
    // A-B and B-C cost 1, A-C cost 10. C dials both (its connectors decide
    // the costs, A adopts them); C's client listener keeps the router
    // annotations, so its receiver sees the path each message took.
    let [a, b, c] = tokio::task::block_in_place(|| {
        let a = RouterSpec::new("Router.A").inter_router(0).start();
        let b = RouterSpec::new("Router.B")
            .inter_router(0)
            .connect("to-a", a.inter_router_port, 1)
            .start();
        let c = RouterSpec::new("Router.C")
            .listener_option(r#"strip-annotations = "no""#)
            .connect("to-b", b.inter_router_port, 1)
            .connect("to-a", a.inter_router_port, 10)
            .start();
        let routers = [a, b, c];
        converge(
            &routers,
            &[(0, 1, 1), (1, 2, 1), (0, 2, 10)],
            &[true; 3],
            WAIT,
        )
        .unwrap_or_else(|p| panic!("the triangle did not converge: {p}"));
        routers
    });
    assert_eq!(a.routes().get("Router.C"), Some(&("Router.B".into(), 2)));
    assert_eq!(c.routes().get("Router.A"), Some(&("Router.B".into(), 2)));

    const N: u64 = 200;
    let (stop, stopped) = watch::channel(false);
    let seen = Arc::new(AtomicUsize::new(0));
    let mut client = Client::connect(&c, "rx").await;
    let receiver = client
        .receiver("rx", "closest.cost", CreditMode::Auto(250))
        .await;
    let rx = spawn_consumer_with(client, receiver, stopped, seen.clone(), |d| {
        (id_of(d), router_annotations(d))
    });
    wait_for_consumers(&a, &["closest.cost"], 1).await;

    // Through B: A-B-C costs 2, the direct link 10.
    send_accepted(&a, "closest.cost", 0..N).await;
    wait_until("the first messages", || {
        seen.load(Ordering::SeqCst) >= N as usize
    })
    .await;

    // Lower A-C to 1 on C, the end that decides it.
    let text = c.reload(|text| text.replace("cost = 10\n", "cost = 1\n"));
    assert!(!text.contains("cost = 10"), "the edit took:\n{text}");
    wait_until("both ends to route A-C directly", || {
        a.routes().get("Router.C") == Some(&("Router.C".into(), 1))
            && c.routes().get("Router.A") == Some(&("Router.A".into(), 1))
    })
    .await;
    for (r, peer) in [(&c, "Router.A"), (&a, "Router.C")] {
        let change = format!("cost of link to {peer} changed 10 -> 1");
        assert!(r.log().contains(&change), "{} did not log {change:?}", r.id);
    }

    // Directly: the trace no longer passes B.
    send_accepted(&a, "closest.cost", N..2 * N).await;
    wait_until("the second messages", || {
        seen.load(Ordering::SeqCst) >= 2 * N as usize
    })
    .await;
    // A duplicate would arrive by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).expect("the receiver listens");
    let received = join_consumers(vec![rx]).await.remove(0);
    assert_eq!(
        sorted(received.iter().map(|(id, _)| *id).collect()),
        (0..2 * N).collect::<Vec<_>>(),
        "lost or duplicated"
    );
    for (id, (ingress, trace)) in &received {
        let path: &[&str] = if *id < N { &TRACE_A_B_C } else { &TRACE_A_C };
        assert_eq!(ingress.as_deref(), Some("0/Router.A"), "message {id}");
        assert_eq!(trace, path, "message {id}");
    }
    stop_all([a, b, c]);
}
