//! Outcomes on their way home to the ingress connection: one [`Returned`]
//! message per connection ([`OutcomeBatch`] collects them), and the one
//! aggregated outcome of a multicast delivery's copies ([`Fanout`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::prelude::*;

use super::{ConnId, Origin, RoutedDelivery};
use crate::amqp::definitions::DeliveryState;

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
/// accepted if any consumer accepted and none rejected; rejected if any
/// rejected; released if nobody took it (the spec of DESIGN.md §3).
pub struct Fanout {
    remaining: AtomicU32,
    presettled: bool,
    outcome: std::sync::Mutex<FanoutOutcome>,
}

#[derive(Default)]
struct FanoutOutcome {
    accepted: bool,
    rejected: Option<DeliveryState>,
}

impl Fanout {
    /// `copies` copies share the outcome; a presettled fan-out only
    /// replenishes the sender's credit once, when the last copy is sent.
    pub fn new(copies: u32, presettled: bool) -> Arc<Fanout> {
        Arc::new(Fanout {
            remaining: AtomicU32::new(copies),
            presettled,
            outcome: std::sync::Mutex::new(FanoutOutcome::default()),
        })
    }

    /// Records one copy's outcome; the last copy sends the aggregate home.
    pub fn complete(&self, origin: &Origin, state: Option<DeliveryState>) {
        {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            match state {
                Some(DeliveryState::Accepted) => o.accepted = true,
                Some(s @ DeliveryState::Rejected { .. }) => o.rejected = Some(s),
                _ => {}
            }
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            let state = if self.presettled {
                None
            } else if let Some(r) = &o.rejected {
                Some(r.clone())
            } else if o.accepted {
                Some(DeliveryState::Accepted)
            } else {
                Some(DeliveryState::Released)
            };
            origin.conn.do_send(Returned {
                outcomes: vec![(origin.key, state)],
            });
        }
    }
}
