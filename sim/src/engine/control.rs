//! The control planes: starting each simulated router's real
//! `ControlPlane`, connecting neighbours, driving it (calls, timers) and
//! carrying its control messages over the simulated links.

use std::sync::Arc;
use std::time::Instant;

use bote_topology::{ControlMessage, ControlPlane, Output, RouterId};

use super::{Ev, Simulation, key};
use crate::link::Transit;

impl Simulation {
    pub(super) fn boot(&mut self) {
        for r in 0..self.routers.len() as u32 {
            self.start_router(r);
        }
        for l in 0..self.links.len() {
            let (a, b, cost) = (self.links[l].a, self.links[l].b, self.links[l].cost);
            self.connect(a, b, cost);
        }
    }

    pub(super) fn start_router(&mut self, r: u32) {
        let router = &mut self.routers[r as usize];
        router.instance += 1;
        let t0 = Instant::now();
        let mut plane = ControlPlane::new(
            router.id.clone(),
            router.instance,
            self.config.clone(),
            self.now,
        );
        plane.share_topologies(self.topologies.clone());
        router.plane = Some(plane);
        router.stats.cpu += t0.elapsed();
        self.after_call(r);
    }

    pub(super) fn alive(&self, r: u32) -> bool {
        self.routers[r as usize].plane.is_some()
    }

    /// Both ends learn the transport is up.
    pub(super) fn connect(&mut self, a: u32, b: u32, cost: u32) {
        if !(self.alive(a) && self.alive(b)) {
            return;
        }
        let (ida, idb) = (
            self.routers[a as usize].id.clone(),
            self.routers[b as usize].id.clone(),
        );
        let now = self.now;
        self.call(a, |p| p.neighbour_up(idb, cost, now));
        self.call(b, |p| p.neighbour_up(ida, cost, now));
    }

    /// Runs `f` on router `r`'s control plane (timed), then drains outputs and
    /// re-arms its timer.
    pub(super) fn call(&mut self, r: u32, f: impl FnOnce(&mut ControlPlane)) {
        let router = &mut self.routers[r as usize];
        let Some(plane) = router.plane.as_mut() else {
            return;
        };
        let pending = plane.recompute_pending();
        let t0 = Instant::now();
        f(plane);
        let spent = t0.elapsed();
        router.stats.cpu += spent;
        if pending && !plane.recompute_pending() {
            // This call ran the debounced route computation.
            router.stats.route_cpu += spent;
            router.stats.recomputes += 1;
        }
        self.after_call(r);
    }

    fn after_call(&mut self, r: u32) {
        let now = self.now;
        loop {
            let out = {
                let Some(plane) = self.routers[r as usize].plane.as_mut() else {
                    return;
                };
                plane.poll_output()
            };
            let Some(out) = out else { break };
            match out {
                Output::Send { to, message } => self.send_control(r, &to, message),
                Output::RoutesChanged => {
                    self.routers[r as usize].stats.route_changes += 1;
                    self.window.last_change = Some(now);
                }
                Output::AddressesChanged { .. } => {
                    self.window.last_change = Some(now);
                }
            }
        }
        self.arm_timer(r);
    }

    /// Makes sure a timer event is pending no later than the control plane's
    /// deadline. A pending event that is too early is harmless (it re-arms
    /// when it fires), so only an *earlier* deadline schedules a new event:
    /// this keeps stale timers from piling up in the queue.
    pub(super) fn arm_timer(&mut self, r: u32) {
        let now = self.now;
        let router = &mut self.routers[r as usize];
        let Some(plane) = router.plane.as_ref() else {
            return;
        };
        let Some(t) = plane.poll_timeout() else {
            return;
        };
        let t = t.max(now);
        if router.timer_at.is_none_or(|pending| t < pending) {
            router.timer_at = Some(t);
            router.timer_generation += 1;
            let generation = router.timer_generation;
            self.queue.push(
                t,
                Ev::Timer {
                    router: r,
                    generation,
                },
            );
        }
    }

    /// `message.wire_size()`, with the per-record sizes of link-state updates
    /// memoised: records are immutable and shared (`Arc`), and a 10,000-router
    /// boot sends each one thousands of times inside database-sized updates.
    /// The cache holds a clone of each record so its address is never reused.
    pub(super) fn wire_size(&mut self, message: &ControlMessage) -> usize {
        let ControlMessage::LinkStateUpdate(update) = message else {
            return message.wire_size();
        };
        let mut body = 0usize;
        for record in &update.records {
            let ptr = Arc::as_ptr(record) as usize;
            let size = match self.record_sizes.get(&ptr) {
                Some((_, size)) => *size,
                None => {
                    let size = record.wire_size();
                    self.record_sizes.insert(ptr, (record.clone(), size));
                    size
                }
            };
            body += 2 + size;
        }
        1 + bote_topology::ids::varint_len(body as u64) + body
    }

    fn send_control(&mut self, from: u32, to: &RouterId, message: ControlMessage) {
        let Some(&to_idx) = self.index.get(to) else {
            return;
        };
        let bytes = self.wire_size(&message);
        let kind = message.kind();
        *self.by_kind.entry(kind).or_default() += 1;
        let stats = &mut self.routers[from as usize].stats;
        stats.messages_sent += 1;
        stats.bytes_sent += bytes as u64;
        self.control.messages += 1;
        self.control.bytes += bytes as u64;
        let Some(&l) = self.link_of.get(&key(from, to_idx)) else {
            self.control.dropped += 1;
            return;
        };
        let link = &mut self.links[l as usize];
        if !link.up || link.silent {
            self.control.dropped += 1;
            return;
        }
        let dir = usize::from(from != link.a);
        let lossy = self
            .loss_kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind));
        match link.channels[dir].send(self.now, bytes, &self.model, lossy, &mut self.rng) {
            Transit::Lost => self.control.lost += 1,
            Transit::Arrives(at) => {
                let epoch = link.epoch;
                self.queue.push(
                    at,
                    Ev::Control {
                        link: l,
                        epoch,
                        from,
                        to: to_idx,
                        bytes: bytes as u32,
                        message,
                    },
                );
            }
        }
    }
}
