//! Property test of an address's delivery bookkeeping under "resend
//! released" (issue 18): a real [`AddressActor`] routes deliveries to
//! consumer links that settle each one as a generated plan says, through
//! the egress's own [`RoutedDelivery::settled_by_consumer`]. Whatever the
//! plan, distribution and number of consumers:
//!
//! - a delivery that has an outcome from a consumer is never forwarded
//!   again;
//! - a released delivery is forwarded at most once per release, and never
//!   to a consumer that released it;
//! - every delivery ends with exactly one outcome at its sender: the first
//!   non-release outcome a consumer gave it, or `released` once every
//!   consumer has released it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use proptest::prelude::*;

use super::address::{AddressActor, AddressStats, AttachConsumer, Deliver, Forward};
use super::link::LinkCounters;
use crate::config::address::Distribution;
use crate::delivery::{ConnId, Origin, OutcomeBatch, Returned, RoutedDelivery};
use bote_amqp::{DeliveryState, LinkId, SessionId};

/// What a consumer does with a delivery.
#[derive(Clone, Copy, Debug)]
enum Action {
    Accept,
    Release,
    Reject,
    Modify,
    /// Settles without an outcome (taken as accepted).
    Settle,
}

impl Action {
    fn state(self) -> Option<DeliveryState> {
        match self {
            Action::Accept => Some(DeliveryState::Accepted),
            Action::Release => Some(DeliveryState::Released),
            Action::Reject => Some(DeliveryState::Rejected { error: None }),
            Action::Modify => Some(DeliveryState::delivery_failed()),
            Action::Settle => None,
        }
    }

    /// The outcome its sender hears when this is the delivery's last word.
    fn outcome(self) -> DeliveryState {
        self.state().unwrap_or(DeliveryState::Accepted)
    }
}

/// What happened, shared by the test's actors (all on one thread).
#[derive(Default)]
struct Log {
    /// Per delivery key: the consumers that received it, in order.
    received: BTreeMap<u64, Vec<usize>>,
    /// Per key: the consumers that released it.
    released: BTreeMap<u64, Vec<usize>>,
    /// Per key: the non-release outcome a consumer gave it.
    decided: BTreeMap<u64, DeliveryState>,
    /// Per key: the outcomes its sender heard.
    outcomes: BTreeMap<u64, Vec<Option<DeliveryState>>>,
    /// Broken invariants, in the order they were seen.
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

/// A consumer link's egress: settles each delivery as `plan[key][index]`
/// says and hands released ones back to the address, as the connection
/// actor does.
struct Consumer {
    index: usize,
    link: (ConnId, LinkId),
    plan: Arc<Vec<Vec<Action>>>,
    counters: Arc<LinkCounters>,
    address: Addr<AddressActor>,
    log: Shared,
}

impl Actor for Consumer {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Consumer {
    type Result = ();
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        let mut returns = OutcomeBatch::default();
        for d in msg.deliveries {
            self.counters
                .undelivered
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let key = d.origin.key;
            let action = self.plan[key as usize][self.index];
            {
                let mut log = self.log.lock().unwrap();
                if let Some(state) = log.decided.get(&key) {
                    let v = format!(
                        "key {key} forwarded to consumer {} after outcome {state:?}",
                        self.index
                    );
                    log.violations.push(v);
                }
                if log
                    .released
                    .get(&key)
                    .is_some_and(|r| r.contains(&self.index))
                {
                    let v = format!(
                        "key {key} offered again to consumer {}, which released it",
                        self.index
                    );
                    log.violations.push(v);
                }
                log.received.entry(key).or_default().push(self.index);
                match action {
                    Action::Release => log.released.entry(key).or_default().push(self.index),
                    other => {
                        log.decided.insert(key, other.outcome());
                    }
                }
            }
            if let Some(d) = d.settled_by_consumer(self.link, action.state(), &mut returns) {
                self.address.do_send(Forward(vec![d]));
            }
        }
        returns.send();
    }
}

/// The senders' connection: records the outcomes that come home.
struct Ingress(Shared);

impl Actor for Ingress {
    type Context = Context<Self>;
}

impl Handler<Returned> for Ingress {
    type Result = ();
    fn handle(&mut self, msg: Returned, _: &mut Context<Self>) {
        let mut log = self.0.lock().unwrap();
        for (key, state) in msg.outcomes {
            log.outcomes.entry(key).or_default().push(state);
        }
    }
}

fn delivery(address: &Arc<str>, home: &Arc<Recipient<Returned>>, key: u64) -> RoutedDelivery {
    let origin = Origin {
        conn: home.clone(),
        conn_id: ConnId(0),
        key,
    };
    super::connection::routed(
        address.clone(),
        Bytes::from_static(b"message"),
        false,
        origin,
        None,
    )
}

/// Routes one delivery per row of `plan` to `consumers` consumer links on
/// an address of `distribution` (in `batches` forwards) and returns the
/// log once every delivery has an outcome (or after a bounded wait).
fn run(
    plan: Vec<Vec<Action>>,
    consumers: usize,
    distribution: Distribution,
    batches: usize,
) -> Log {
    let log = Shared::default();
    let total = plan.len();
    let plan = Arc::new(plan);
    let shared = log.clone();
    actix::System::new().block_on(async move {
        let address: Arc<str> = Arc::from("queue.props");
        let actor = AddressActor::new(
            address.clone(),
            distribution,
            Arc::new(AddressStats::default()),
            None,
        )
        .start();
        for index in 0..consumers {
            let link = LinkId {
                session: SessionId(0),
                handle: index as u32,
            };
            let conn = ConnId(1 + index as u64 % 2);
            let counters = Arc::new(LinkCounters::default());
            let consumer = Consumer {
                index,
                link: (conn, link),
                plan: plan.clone(),
                counters: counters.clone(),
                address: actor.clone(),
                log: shared.clone(),
            }
            .start();
            actor.do_send(AttachConsumer {
                conn,
                link,
                deliver: consumer.recipient(),
                counters,
                capacity: 250,
            });
        }
        let home = Arc::new(Ingress(shared.clone()).start().recipient());
        let keys: Vec<u64> = (0..total as u64).collect();
        for chunk in keys.chunks(total.div_ceil(batches.max(1)).max(1)) {
            let deliveries = chunk
                .iter()
                .map(|&k| delivery(&address, &home, k))
                .collect();
            actor.do_send(Forward(deliveries));
        }
        // Every delivery answered, then a moment for anything still moving
        // (a resend that should not be) to show.
        for _ in 0..400 {
            let done = {
                let log = shared.lock().unwrap();
                log.outcomes.len() == total || !log.violations.is_empty()
            };
            if done {
                break;
            }
            actix::clock::sleep(Duration::from_millis(5)).await;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    });
    std::mem::take(&mut *log.lock().unwrap())
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Release),
        2 => Just(Action::Accept),
        1 => Just(Action::Reject),
        1 => Just(Action::Modify),
        1 => Just(Action::Settle),
    ]
}

fn distribution() -> impl Strategy<Value = Distribution> {
    prop_oneof![Just(Distribution::Balanced), Just(Distribution::Closest)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_outcome_ends_a_delivery_and_each_release_forwards_it_at_most_once(
        (consumers, plan) in (1usize..4).prop_flat_map(|n| {
            (Just(n), proptest::collection::vec(proptest::collection::vec(action(), n), 1..24))
        }),
        distribution in distribution(),
        batches in 1usize..4,
    ) {
        let log = run(plan.clone(), consumers, distribution, batches);
        prop_assert!(log.violations.is_empty(), "{:?}", log.violations);
        for (key, row) in plan.iter().enumerate() {
            let key = key as u64;
            let received = log.received.get(&key).cloned().unwrap_or_default();
            let releases = log.released.get(&key).map_or(0, Vec::len);
            // The first consumer that did not release decides the outcome;
            // with every consumer releasing it goes home released.
            let expected = received
                .iter()
                .map(|&c| row[c])
                .find(|a| !matches!(a, Action::Release))
                .map_or(DeliveryState::Released, Action::outcome);
            prop_assert_eq!(
                log.outcomes.get(&key).cloned().unwrap_or_default(),
                vec![Some(expected)],
                "key {}: received by {:?}", key, received
            );
            // Forwarded once, then once more per release while a consumer
            // that has not had it is left.
            let decided = usize::from(log.decided.contains_key(&key));
            prop_assert_eq!(received.len(), releases + decided, "key {}: {:?}", key, received);
            prop_assert!(received.len() <= consumers, "key {}: {:?}", key, received);
        }
    }
}
