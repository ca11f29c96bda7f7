//! The scenario's timed events (links down and up, cost changes, crashes
//! and restarts, consumers attaching and detaching) applied to the mesh.

use std::collections::BTreeSet;

use bote_topology::Address;
use rand::Rng;

use super::{Action, Simulation, key};

impl Simulation {
    pub(super) fn apply(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::LinkDown { a, b, silent } => {
                let Some(&l) = self.link_of.get(&key(a, b)) else {
                    return;
                };
                self.take_link_down(l, silent);
            }
            Action::LinkUp { a, b, cost } => {
                let l = match self.link_of.get(&key(a, b)) {
                    Some(&l) => l,
                    None => self.add_link(a, b, cost),
                };
                let link = &mut self.links[l as usize];
                link.up = true;
                link.silent = false;
                let cost = link.cost;
                self.graph_version += 1;
                self.connect(a, b, cost);
            }
            Action::Cost { a, b, cost } => {
                let Some(&l) = self.link_of.get(&key(a, b)) else {
                    return;
                };
                self.links[l as usize].cost = cost;
                self.graph_version += 1;
                let (ida, idb) = (
                    self.routers[a as usize].id.clone(),
                    self.routers[b as usize].id.clone(),
                );
                self.call(a, |p| p.set_link_cost(&idb, cost, now));
                self.call(b, |p| p.set_link_cost(&ida, cost, now));
            }
            Action::Crash { router } => {
                if !self.alive(router) {
                    return;
                }
                let r = &mut self.routers[router as usize];
                r.plane = None;
                r.timer_at = None;
                r.timer_generation += 1;
                r.consumers.clear();
                r.outstanding.clear();
                r.cursors.clear();
                let id = r.id.clone();
                let links = r.links.clone();
                for (l, peer) in links {
                    let link = &mut self.links[l as usize];
                    link.epoch += 1;
                    link.channels.iter_mut().for_each(|c| c.reset(now));
                    if link.up && !link.silent {
                        self.call(peer, |p| p.neighbour_down(&id, now));
                    }
                }
                self.graph_version += 1;
            }
            Action::Restart { router } => {
                if self.alive(router) {
                    return;
                }
                self.routers[router as usize].stats.restarts += 1;
                self.start_router(router);
                let links = self.routers[router as usize].links.clone();
                for (l, peer) in links {
                    let link = &self.links[l as usize];
                    if link.up && !link.silent {
                        let cost = link.cost;
                        self.connect(router, peer, cost);
                    }
                }
                self.graph_version += 1;
            }
            Action::Attach { router, address } => self.attach(router, address),
            Action::Detach { router, address } => {
                let r = &mut self.routers[router as usize];
                let Some(links) = r.consumers.get_mut(&address) else {
                    return;
                };
                links.pop();
                if links.is_empty() {
                    r.consumers.remove(&address);
                    self.call(router, |p| p.remove_local_address(&address, now));
                }
            }
            Action::AttachRandom { address, count } => {
                let alive: Vec<u32> = (0..self.routers.len() as u32)
                    .filter(|&r| self.alive(r))
                    .collect();
                let mut chosen = BTreeSet::new();
                let want = count.min(alive.len());
                while chosen.len() < want {
                    chosen.insert(alive[self.rng.random_range(0..alive.len())]);
                }
                for r in chosen {
                    self.attach(r, address.clone());
                }
            }
            Action::CutRandom {
                count,
                keep_connected,
            } => {
                let mut candidates: Vec<u32> = (0..self.links.len() as u32)
                    .filter(|&l| {
                        let k = &self.links[l as usize];
                        k.up && !k.silent && self.alive(k.a) && self.alive(k.b)
                    })
                    .collect();
                let mut cut = 0;
                while cut < count && !candidates.is_empty() {
                    let i = self.rng.random_range(0..candidates.len());
                    let l = candidates.swap_remove(i);
                    if keep_connected {
                        let before = self.live().2.iter().copied().collect::<BTreeSet<_>>().len();
                        self.links[l as usize].up = false;
                        self.graph_version += 1;
                        let after = self.live().2.iter().copied().collect::<BTreeSet<_>>().len();
                        self.links[l as usize].up = true;
                        self.graph_version += 1;
                        if after > before {
                            continue;
                        }
                    }
                    self.take_link_down(l, false);
                    cut += 1;
                }
            }
            Action::Loss { loss } => self.model.loss = loss,
        }
    }

    fn take_link_down(&mut self, l: u32, silent: bool) {
        let now = self.now;
        let link = &mut self.links[l as usize];
        if !link.up {
            return;
        }
        link.epoch += 1;
        link.channels.iter_mut().for_each(|c| c.reset(now));
        self.graph_version += 1;
        let (a, b) = (link.a, link.b);
        if silent {
            link.silent = true;
            return;
        }
        link.up = false;
        link.silent = false;
        let (ida, idb) = (
            self.routers[a as usize].id.clone(),
            self.routers[b as usize].id.clone(),
        );
        self.call(a, |p| p.neighbour_down(&idb, now));
        self.call(b, |p| p.neighbour_down(&ida, now));
    }

    fn attach(&mut self, router: u32, address: Address) {
        if !self.alive(router) {
            return;
        }
        let now = self.now;
        let links = self.routers[router as usize]
            .consumers
            .entry(address.clone())
            .or_default();
        links.push(0);
        if links.len() == 1 {
            self.call(router, |p| p.add_local_address(address, now));
        }
    }
}
