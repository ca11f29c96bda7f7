//! Outcomes on their way home to the ingress connection: one [`Returned`]
//! message per connection ([`OutcomeBatch`] collects them), and the one
//! aggregated outcome of a multicast delivery's copies ([`Fanout`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::prelude::*;
use bote_topology::policy::{Outcome, aggregate_outcome};

use super::{ConnId, Origin, RoutedDelivery};
use bote_amqp::DeliveryState;

/// Outcomes collected for their ingress connections, sent as one message per
/// connection when the collecting actor flushes.
#[derive(Default)]
pub struct OutcomeBatch {
    by_conn: Vec<ConnOutcomes>,
}

/// The outcomes collected for one ingress connection.
type ConnOutcomes = (
    ConnId,
    Arc<Recipient<Returned>>,
    Vec<(u64, Option<DeliveryState>)>,
);

impl OutcomeBatch {
    pub fn push(&mut self, mut d: RoutedDelivery, state: Option<DeliveryState>) {
        let Some(state) = d.take_outcome(state) else {
            return;
        };
        let origin = &d.origin;
        // The connection's recipient is cloned once per batch, not per
        // delivery (it is shared with the connection's thread).
        match self
            .by_conn
            .iter_mut()
            .find(|(id, _, _)| *id == origin.conn_id)
        {
            Some((_, _, v)) => v.push((origin.key, state)),
            None => self.by_conn.push((
                origin.conn_id,
                origin.conn.clone(),
                vec![(origin.key, state)],
            )),
        }
    }

    pub fn send(&mut self) {
        for (_, conn, outcomes) in self.by_conn.drain(..) {
            conn.do_send(Returned { outcomes });
        }
    }
}

/// Outcomes of routed deliveries, sent back to their ingress connection:
/// `(key, state)`, where `state: None` means "forwarded presettled"
/// (replenish credit only).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Returned {
    pub outcomes: Vec<(u64, Option<DeliveryState>)>,
}

/// The shared outcome of the copies of one unsettled multicast delivery:
/// rejected if any copy was rejected; otherwise accepted if any was
/// accepted; otherwise (nobody took it) released, as
/// `bote_topology::policy::aggregate_outcome` decides. It is decided when
/// the last copy has its outcome: a copy lost with a neighbour and
/// re-forwarded keeps its share ([`Fanout::add`] when it splits), so the
/// aggregate waits for the re-forwarded copies too (the bound is in
/// ARCHITECTURE.md, failover).
pub struct Fanout {
    remaining: AtomicU32,
    presettled: bool,
    outcome: std::sync::Mutex<FanoutOutcome>,
}

struct FanoutOutcome {
    /// The aggregate of the outcomes so far (released before any).
    so_far: Outcome,
    /// The last rejection, sent home with its error when the aggregate is
    /// rejected.
    rejected: Option<DeliveryState>,
}

impl Fanout {
    /// `copies` copies share the outcome; a presettled fan-out only
    /// replenishes the sender's credit once, when the last copy is sent.
    pub fn new(copies: u32, presettled: bool) -> Arc<Fanout> {
        Arc::new(Fanout {
            remaining: AtomicU32::new(copies),
            presettled,
            outcome: std::sync::Mutex::new(FanoutOutcome {
                so_far: Outcome::Released,
                rejected: None,
            }),
        })
    }

    /// `more` copies join the ones that share the outcome: a copy that
    /// holds its own share is being re-forwarded as `more + 1` copies
    /// (called before it gives its share to them, so the aggregate is not
    /// decided meanwhile).
    pub fn add(&self, more: u32) {
        self.remaining.fetch_add(more, Ordering::AcqRel);
    }

    /// Records one copy's outcome; the last copy sends the aggregate home.
    pub fn complete(&self, origin: &Origin, state: Option<DeliveryState>) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            let outcome = match &state {
                Some(DeliveryState::Accepted) => Outcome::Accepted,
                Some(DeliveryState::Rejected { .. }) => Outcome::Rejected,
                Some(DeliveryState::Modified { .. }) => Outcome::Modified,
                // Released, or no terminal outcome: nobody took this copy.
                _ => Outcome::Released,
            };
            o.so_far = aggregate_outcome([o.so_far, outcome]);
            if outcome == Outcome::Rejected {
                o.rejected = state;
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            let state = match (self.presettled, o.so_far, &o.rejected) {
                (true, _, _) => None,
                (false, Outcome::Rejected, Some(rejected)) => Some(rejected.clone()),
                (false, Outcome::Accepted, _) => Some(DeliveryState::Accepted),
                _ => Some(DeliveryState::Released),
            };
            origin.conn.do_send(Returned {
                outcomes: vec![(origin.key, state)],
            });
        }
    }
}
