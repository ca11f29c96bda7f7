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

/// The outcomes (and credit acknowledgements) collected for one ingress
/// connection.
struct ConnOutcomes {
    conn_id: ConnId,
    conn: Arc<Recipient<Returned>>,
    returned: Returned,
}

impl OutcomeBatch {
    pub fn push(&mut self, mut d: RoutedDelivery, state: Option<DeliveryState>) {
        let Some(state) = d.take_outcome(state) else {
            return;
        };
        self.for_origin(&d.origin)
            .outcomes
            .push((d.origin.key, state));
    }

    /// The delivery moved on (into a consumer link's window or the next
    /// hop's): its sender's credit may come back now, before its outcome.
    /// A presettled delivery has no outcome to wait for, so this is its
    /// `None` outcome and it is done; an unsettled one is marked
    /// [`RoutedDelivery::credited`] and keeps its outcome for later.
    /// Multicast copies share their credit with the outcome (the fan-out's,
    /// end to end); a delivery credited already says nothing more.
    pub fn credit(&mut self, d: &mut RoutedDelivery) {
        if d.fanout.is_some() || d.joined.is_some() || d.credited || d.outcome_sent {
            return;
        }
        d.credited = true;
        if d.presettled {
            d.outcome_sent = true;
            self.for_origin(&d.origin)
                .outcomes
                .push((d.origin.key, None));
        } else {
            self.for_origin(&d.origin).moved.push(d.origin.key);
        }
    }

    /// The batch for `origin`'s connection. The connection's recipient is
    /// cloned once per batch, not per delivery (it is shared with the
    /// connection's thread).
    fn for_origin(&mut self, origin: &super::Origin) -> &mut Returned {
        let at = match self
            .by_conn
            .iter()
            .position(|c| c.conn_id == origin.conn_id)
        {
            Some(at) => at,
            None => {
                self.by_conn.push(ConnOutcomes {
                    conn_id: origin.conn_id,
                    conn: origin.conn.clone(),
                    returned: Returned::default(),
                });
                self.by_conn.len() - 1
            }
        };
        &mut self.by_conn[at].returned
    }

    pub fn send(&mut self) {
        for c in self.by_conn.drain(..) {
            c.conn.do_send(c.returned);
        }
    }
}

/// What goes back to the ingress connection (or the previous hop) of routed
/// deliveries: outcomes `(key, state)`, where `state: None` means
/// "forwarded presettled" (replenish credit only); and `moved`, the keys of
/// unsettled deliveries that moved on (into a consumer link's window or the
/// next hop's), whose sender's credit comes back now while their outcome
/// comes later (hop-by-hop credit, end-to-end settlement).
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct Returned {
    pub outcomes: Vec<(u64, Option<DeliveryState>)>,
    pub moved: Vec<u64>,
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
    /// The outcome this one is part of (a multicast delivery that is one of
    /// the copies made for subscription filters at ingress): the aggregate
    /// goes there instead of home.
    parent: Option<Arc<Fanout>>,
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
        Self::under(copies, presettled, None)
    }

    /// Like [`Fanout::new`], its aggregate one outcome of `parent`'s.
    pub fn under(copies: u32, presettled: bool, parent: Option<Arc<Fanout>>) -> Arc<Fanout> {
        Arc::new(Fanout {
            parent,
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
            drop(o);
            if let Some(parent) = &self.parent {
                parent.complete(origin, state);
                return;
            }
            origin.conn.do_send(Returned {
                outcomes: vec![(origin.key, state)],
                moved: Vec::new(),
            });
        }
    }
}
