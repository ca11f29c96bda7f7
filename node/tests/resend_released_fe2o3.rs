//! Resend released (issue 18) with the Rust client `fe2o3-amqp` against real
//! `boted` processes: receiver R1 releases every delivery, receiver R2
//! accepts every delivery (or takes them presettled), both on one balanced
//! address with a credit window of 50. Each released delivery must be sent
//! to R2, a delivery R2 has must never be sent again, and the sender must
//! hear `accepted` for every one. The duplicate was reported in about one
//! run of four, so each test repeats the exchange in a loop bounded in runs
//! and time and counts the receipts per message after every run. Across a
//! chain, R1 sits nearer the sender than R2 or further from it. And two
//! consumers that both release get each message once, then it goes home
//! released. The same cases as `tests/interop/test_resend_released.py`
//! (Qpid Proton).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Delivery, Receiver};
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

const MESSAGES: u64 = 200;
const CREDIT: u32 = 50;
const RUNS: usize = 12;
/// Runs after the third stop once the test has taken this long.
const RUN_BUDGET: Duration = Duration::from_secs(15);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one receiver does with each delivery.
#[derive(Clone, Copy, PartialEq)]
enum Settle {
    Release,
    Accept,
    /// The link is attached with sender settle mode `settled`: the router
    /// sends it every delivery presettled and counts it delivered at once.
    Presettled,
}

/// Receives until stopped, settling each delivery as `settle` says and
/// topping the credit up to [`CREDIT`] whenever half of it is used (fe2o3's
/// automatic credit counts only deliveries the receiver settles, not those
/// that arrive settled); returns the message ids received, in order.
fn consume(
    mut receiver: Receiver,
    settle: Settle,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Receiver, Vec<u64>)> {
    tokio::spawn(async move {
        let mut ids = Vec::new();
        receiver.set_credit(CREDIT).await.expect("grants credit");
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                d = receiver.recv::<Body<Value>>() => {
                    let d: Delivery<Body<Value>> = d.expect("receives");
                    ids.push(id_of(&d));
                    match settle {
                        Settle::Release => receiver.release(&d).await.expect("releases"),
                        Settle::Accept => receiver.accept(&d).await.expect("accepts"),
                        Settle::Presettled => {}
                    }
                    if ids.len() % (CREDIT as usize / 2) == 0 {
                        receiver.set_credit(CREDIT).await.expect("grants credit");
                    }
                }
            }
        }
        (receiver, ids)
    })
}

async fn attach(client: &mut Client, name: &str, address: &str, settle: Settle) -> Receiver {
    let mut builder = Receiver::builder()
        .name(name)
        .source(address)
        .credit_mode(CreditMode::Manual);
    if settle == Settle::Presettled {
        builder = builder.sender_settle_mode(SenderSettleMode::Settled);
    }
    let receiver = timeout(WAIT, builder.attach(&mut client.session))
        .await
        .expect("receiver attach timed out")
        .expect("receiver attaches");
    client.barrier().await;
    receiver
}

/// What one run saw: the sender's outcome tally and each receiver's
/// receipts per message id.
struct Run {
    outcomes: BTreeMap<&'static str, usize>,
    r1: BTreeMap<u64, usize>,
    r2: BTreeMap<u64, usize>,
}

fn per_id(ids: Vec<u64>) -> BTreeMap<u64, usize> {
    let mut per: BTreeMap<u64, usize> = (0..MESSAGES).map(|i| (i, 0)).collect();
    for id in ids {
        *per.entry(id).or_default() += 1;
    }
    per
}

/// One run: R1 (releasing) on `r1_on` and R2 on `r2_on` (one connection and
/// session when both are the same router), [`MESSAGES`] sent from `tx`
/// once `ready` holds.
async fn one_run(
    tx: &Router,
    r1_on: &Router,
    r2_on: &Router,
    address: &str,
    r2_settle: Settle,
    ready: impl Fn() -> bool,
) -> Run {
    let (stop_tx, stop) = watch::channel(false);
    let mut c1 = Client::connect(r1_on, "resend-r1").await;
    let r1 = attach(&mut c1, "R1", address, Settle::Release).await;
    let mut c2 = if std::ptr::eq(r1_on, r2_on) {
        None
    } else {
        Some(Client::connect(r2_on, "resend-r2").await)
    };
    let r2 = attach(c2.as_mut().unwrap_or(&mut c1), "R2", address, r2_settle).await;
    let t1 = consume(r1, Settle::Release, stop.clone());
    let t2 = consume(r2, r2_settle, stop);
    wait_until("the sender's router to know both consumers", ready).await;

    let mut tx_client = Client::connect(tx, "resend-tx").await;
    let mut sender = tx_client.sender("resend-tx", address).await;
    let outcomes: Vec<Outcome> = outcomes_of(send_all(&mut sender, 0..MESSAGES).await).await;
    // A duplicate still on its way has a moment to show.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_tx.send(true).expect("consumers listen");
    let (r1, got1) = timeout(WAIT, t1).await.expect("R1 stops").expect("R1");
    let (r2, got2) = timeout(WAIT, t2).await.expect("R2 stops").expect("R2");
    for r in [r1, r2] {
        let _ = timeout(WAIT, r.close()).await;
    }
    let _ = timeout(WAIT, sender.close()).await;
    tx_client.close().await;
    if let Some(c2) = c2 {
        c2.close().await;
    }
    c1.close().await;
    Run {
        outcomes: counts(&outcomes),
        r1: per_id(got1),
        r2: per_id(got2),
    }
}

/// Repeats [`one_run`] (at least three times, at most [`RUNS`] or within
/// [`RUN_BUDGET`]) on fresh addresses, checking each run with `check`.
async fn runs(
    tx: &Router,
    r1_on: &Router,
    r2_on: &Router,
    prefix: &str,
    r2_settle: Settle,
    ready: impl Fn(&str) -> bool,
    check: impl Fn(usize, Run),
) {
    let start = Instant::now();
    for run in 0..RUNS {
        if run >= 3 && start.elapsed() > RUN_BUDGET {
            break;
        }
        let address = format!("{prefix}.{run}");
        check(
            run,
            one_run(tx, r1_on, r2_on, &address, r2_settle, || ready(&address)).await,
        );
    }
}

/// The ids whose number of receipts `ok` refuses, with that number.
fn not(per: &BTreeMap<u64, usize>, ok: impl Fn(usize) -> bool) -> Vec<(u64, usize)> {
    per.iter()
        .filter(|&(_, &n)| !ok(n))
        .map(|(&i, &n)| (i, n))
        .collect()
}

/// How many, and the first few (for a failure message).
fn first_few(v: &[(u64, usize)]) -> String {
    format!("{} messages, e.g. {:?}", v.len(), &v[..v.len().min(4)])
}

/// R2 got every message exactly once, R1 none twice, and the sender heard
/// `accepted` for all.
fn r2_got_each_once(run: usize, r: Run) {
    let r2 = not(&r.r2, |n| n == 1);
    assert!(
        r2.is_empty(),
        "run {run}: R2's receipts not 1: {}",
        first_few(&r2)
    );
    let r1 = not(&r.r1, |n| n <= 1);
    assert!(
        r1.is_empty(),
        "run {run}: R1 got more than once: {}",
        first_few(&r1)
    );
    assert_eq!(
        r.outcomes,
        all_accepted(MESSAGES as usize),
        "run {run}: sender outcomes"
    );
}

/// [`runs`] with R1, R2 (on one connection and session) and the sender on
/// one router.
async fn on_one_router(prefix: &str, r2_settle: Settle, check: impl Fn(usize, Run)) {
    let _serial = SERIAL.lock().await;
    let router = Router::start("Router.F");
    let r = &router;
    runs(r, r, r, prefix, r2_settle, |_| true, check).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_r2_accepted_is_not_resent_when_r1_releases() {
    on_one_router("queue.resend", Settle::Accept, r2_got_each_once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_taking_deliveries_presettled_gets_each_released_one_once() {
    on_one_router("queue.resend.pre", Settle::Presettled, r2_got_each_once).await;
}

/// A consumer that gave a delivery back is not offered it again, so two
/// consumers that release everything do not pass deliveries between them
/// for ever: each sees each message once, then it goes home released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releasing_consumers_each_get_a_delivery_once_then_it_goes_back_released() {
    on_one_router("queue.resend.both", Settle::Release, |run, r| {
        for (name, per) in [("R1", &r.r1), ("R2", &r.r2)] {
            let wrong = not(per, |n| n == 1);
            assert!(
                wrong.is_empty(),
                "run {run}: {name}'s receipts not 1: {}",
                first_few(&wrong)
            );
        }
        let released = BTreeMap::from([("released", MESSAGES as usize)]);
        assert_eq!(r.outcomes, released, "run {run}: sender outcomes");
    })
    .await;
}

/// A - B - C, cost 1 each, the sender on A: R1 on `r1_on` and R2 on `r2_on`
/// (indexes into the chain).
async fn across_the_chain(prefix: &str, r1_on: usize, r2_on: usize, r2_settle: Settle) {
    let _serial = SERIAL.lock().await;
    let (routers, _) = tokio::task::block_in_place(|| {
        let ids: Vec<String> = ["Router.A", "Router.B", "Router.C"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let edges = [(0, 1, 1), (1, 2, 1)];
        let (routers, proxies) = mesh_support::start_mesh(&ids, &edges, &[], |s| s);
        mesh_support::converge(&routers, &edges, &[true; 3], WAIT)
            .unwrap_or_else(|p| panic!("the chain did not converge: {p}"));
        (routers, proxies)
    });
    let a = &routers[0];
    let ready = |address: &str| a.consumers_of(address).len() == 2;
    let (r1, r2) = (&routers[r1_on], &routers[r2_on]);
    runs(a, r1, r2, prefix, r2_settle, ready, r2_got_each_once).await;
    for r in routers {
        r.stop_cleanly();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_released_on_b_is_resent_to_c() {
    across_the_chain("queue.resend.chain.bc", 1, 2, Settle::Accept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_released_on_b_is_resent_to_c_taking_them_presettled() {
    across_the_chain("queue.resend.chain.bc.pre", 1, 2, Settle::Presettled).await;
}

/// C has no other consumer and gives R1's releases back to B, which must
/// resend them to R2 rather than return them to the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_released_on_c_comes_back_to_b_and_is_resent_to_b() {
    across_the_chain("queue.resend.chain.cb", 2, 1, Settle::Accept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_released_on_c_comes_back_to_b_and_is_resent_to_b_taking_them_presettled() {
    across_the_chain("queue.resend.chain.cb.pre", 2, 1, Settle::Presettled).await;
}
