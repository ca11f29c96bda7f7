//! Traffic: flows sending into their ingress router, each copy forwarded
//! hop by hop with the router's real routes and forwarding policy
//! (`bote_topology::policy`, as the router's address actors call it), and
//! what arrives at the consumers.

use bote_topology::policy::{self, Choice};
use bote_topology::{LocalLink, RemoteRouter, RouterId};

use super::{DataCopy, Ev, LINK_CAPACITY, Simulation, key};
use crate::oracle::INF;
use crate::scenario::Distribution;

impl Simulation {
    pub(super) fn flow_send(&mut self, flow: u32) {
        let f = &mut self.flows[flow as usize];
        if self.now >= f.stop {
            return;
        }
        let msg = f.next_msg;
        f.next_msg += 1;
        f.report.sent += 1;
        let next = self.now + f.interval;
        let (from, address, distribution) = (f.from, f.address.clone(), f.distribution);
        if next < f.stop {
            self.queue.push(next, Ev::FlowSend { flow });
        }
        // Expected deliveries from the ground truth.
        let (_, _, comp) = self.live();
        let holders: Vec<u32> = (0..self.routers.len() as u32)
            .filter(|&r| {
                self.alive(r)
                    && self.routers[r as usize].consumers.contains_key(&address)
                    && comp[r as usize] == comp[from as usize]
            })
            .collect();
        let f = &mut self.flows[flow as usize];
        if self.routers[from as usize].plane.is_none() {
            f.report.dropped += 1;
            return;
        }
        match distribution {
            Distribution::Multicast => f.report.expected += holders.len() as u64,
            _ => f.report.expected += u64::from(!holders.is_empty()),
        }
        let copy = DataCopy {
            flow,
            msg,
            trace: Vec::new(),
            cost: 0,
        };
        self.forward(from, None, copy);
    }

    pub(super) fn forward(&mut self, r: u32, arrived_from: Option<u32>, mut copy: DataCopy) {
        let flow = copy.flow as usize;
        let Some(plane) = self.routers[r as usize].plane.as_ref() else {
            self.flows[flow].report.dropped += 1;
            return;
        };
        copy.trace.push(r);
        let routes = plane.routes().clone();
        let address = self.flows[flow].address.clone();
        let remote_ids: Vec<RouterId> = plane
            .address_table()
            .get(&address)
            .map(|e| e.routers.iter().cloned().collect())
            .unwrap_or_default();
        let distribution = self.flows[flow].distribution;
        let local_links: Vec<u32> = self.routers[r as usize]
            .consumers
            .get(&address)
            .cloned()
            .unwrap_or_default();
        match distribution {
            Distribution::Closest | Distribution::Balanced => {
                // The candidates as the router's address actor gathers them:
                // remote routers it may not go to (a next hop on the trace)
                // stay in the list, marked excluded.
                let mut candidates: Vec<RemoteRouter> = Vec::new();
                let mut hops: Vec<u32> = Vec::new();
                for dest in &remote_ids {
                    let Some(route) = routes.route(dest) else {
                        continue;
                    };
                    let Some(&nh) = self.index.get(&route.next_hop) else {
                        continue;
                    };
                    let outstanding = self.routers[r as usize]
                        .outstanding
                        .get(&(nh, address.clone()))
                        .copied()
                        .unwrap_or(0);
                    candidates.push(RemoteRouter {
                        router: dest.clone(),
                        cost: route.cost,
                        outstanding,
                        excluded: copy.trace.contains(&nh),
                    });
                    hops.push(nh);
                }
                let excluded = candidates.iter().filter(|c| c.excluded).count();
                let locals: Vec<LocalLink> = local_links
                    .iter()
                    .map(|&u| LocalLink {
                        undelivered: 0,
                        unsettled: u,
                        capacity: LINK_CAPACITY,
                        tried: false,
                    })
                    .collect();
                let cursor = self.routers[r as usize]
                    .cursors
                    .entry(address.clone())
                    .or_default();
                // The router's own choice (`AddressActor::pick`).
                let choice = if distribution == Distribution::Closest {
                    policy::closest(&locals, &candidates, cursor)
                } else {
                    policy::balanced(&locals, &candidates, false, cursor)
                        .or_else(|| policy::balanced_overflow(&locals, &candidates, cursor))
                };
                match choice {
                    Some(Choice::Local(i)) => {
                        self.deliver(r, &copy);
                        let instance = self.routers[r as usize].instance;
                        if let Some(links) = self.routers[r as usize].consumers.get_mut(&address)
                            && let Some(u) = links.get_mut(i)
                        {
                            *u += 1;
                        }
                        let settle_at = self.now + self.flows[flow].settle_after;
                        self.queue.push(
                            settle_at,
                            Ev::SettleLocal {
                                router: r,
                                flow: copy.flow,
                                link_index: i,
                                instance,
                            },
                        );
                        // Release the outstanding counts along the path back.
                        let hops: Vec<(u32, u32)> =
                            copy.trace.windows(2).map(|w| (w[0], w[1])).collect();
                        if !hops.is_empty() {
                            self.queue.push(
                                settle_at + self.model.latency,
                                Ev::Settle {
                                    flow: copy.flow,
                                    hops,
                                },
                            );
                        }
                    }
                    Some(Choice::Remote(i)) => {
                        let nh = hops[i];
                        *self.routers[r as usize]
                            .outstanding
                            .entry((nh, address))
                            .or_default() += 1;
                        self.send_data(r, nh, copy);
                    }
                    None => {
                        let report = &mut self.flows[flow].report;
                        report.dropped += 1;
                        if excluded > 0 {
                            report.loop_drops += 1;
                        }
                    }
                }
            }
            // Refused when the scenario is read; nothing could take it.
            Distribution::Unavailable => self.flows[flow].report.dropped += 1,
            Distribution::Multicast => {
                let origin_id = self.routers[copy.trace[0] as usize].id.clone();
                let from_id = arrived_from.map(|f| self.routers[f as usize].id.clone());
                let tree = if from_id.is_some() {
                    routes.multicast_tree(&origin_id)
                } else {
                    None
                };
                let plan = policy::multicast(
                    &routes,
                    local_links.len(),
                    &remote_ids,
                    from_id.as_ref(),
                    tree.as_deref(),
                );
                if plan.local_copies > 0 {
                    self.deliver(r, &copy);
                }
                for hop in plan.next_hops {
                    let Some(&nh) = self.index.get(&hop) else {
                        continue;
                    };
                    if copy.trace.contains(&nh) {
                        self.flows[flow].report.loop_drops += 1;
                        self.flows[flow].report.dropped += 1;
                        continue;
                    }
                    self.send_data(r, nh, copy.clone());
                }
            }
        }
    }

    fn send_data(&mut self, from: u32, to: u32, mut copy: DataCopy) {
        let flow = copy.flow as usize;
        let Some(&l) = self.link_of.get(&key(from, to)) else {
            self.flows[flow].report.dropped += 1;
            return;
        };
        let link = &self.links[l as usize];
        if !link.up || link.silent || !self.alive(to) {
            self.flows[flow].report.dropped += 1;
            return;
        }
        copy.cost += u64::from(link.cost);
        let epoch = link.epoch;
        let at = self.now + self.model.latency;
        self.queue.push(
            at,
            Ev::Data {
                link: l,
                epoch,
                from,
                to,
                copy,
            },
        );
    }

    fn deliver(&mut self, r: u32, copy: &DataCopy) {
        let flow = copy.flow as usize;
        let ingress = copy.trace[0];
        let version = self.graph_version;
        let need = self.flows[flow]
            .oracle
            .as_ref()
            .is_none_or(|(v, _)| *v != version);
        if need {
            let (_, graph, _) = self.live();
            let dist = graph.distances_from(ingress as usize);
            self.flows[flow].oracle = Some((version, dist));
        }
        let f = &mut self.flows[flow];
        if !f.received.insert((copy.msg, r)) {
            f.report.duplicates += 1;
            return;
        }
        f.report.delivered += 1;
        *f.per_receiver.entry(r).or_default() += 1;
        if let Some((_, dist)) = &f.oracle {
            let best = dist[r as usize];
            let stretch = if best == 0 || best == INF {
                1.0
            } else {
                copy.cost as f64 / best as f64
            };
            f.stretch_sum += stretch;
            f.stretch_count += 1;
            f.report.max_stretch = f.report.max_stretch.max(stretch);
        }
    }
}
