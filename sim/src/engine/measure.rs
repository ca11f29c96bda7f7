//! Measurement: the true live graph and the oracle's routes, the routers'
//! route and address errors against them per window, and the run's report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bote_topology::{Address, Routes};
use rand::Rng;

use super::{Simulation, secs};
use crate::oracle::{INF, LiveGraph, jain_index};
use crate::report::{HostTiming, RouterReport, RunReport, Stats, WindowReport};
use crate::scenario::Distribution;

impl Simulation {
    /// (version, live graph, component id per router; dead routers get u32::MAX).
    pub(super) fn live(&mut self) -> (u64, Arc<LiveGraph>, Arc<Vec<u32>>) {
        if let Some((v, g, c)) = &self.live_cache
            && *v == self.graph_version
        {
            return (*v, g.clone(), c.clone());
        }
        let n = self.routers.len();
        let mut adj = vec![Vec::new(); n];
        for l in &self.links {
            if l.up && !l.silent && self.alive(l.a) && self.alive(l.b) {
                adj[l.a as usize].push((l.b, l.cost));
                adj[l.b as usize].push((l.a, l.cost));
            }
        }
        let mut comp = vec![u32::MAX; n];
        let mut next = 0;
        for s in 0..n {
            if comp[s] != u32::MAX || !self.alive(s as u32) {
                continue;
            }
            let mut stack = vec![s];
            comp[s] = next;
            while let Some(u) = stack.pop() {
                for &(v, _) in &adj[u] {
                    if comp[v as usize] == u32::MAX {
                        comp[v as usize] = next;
                        stack.push(v as usize);
                    }
                }
            }
            next += 1;
        }
        let g = Arc::new(LiveGraph { adj });
        let c = Arc::new(comp);
        self.live_cache = Some((self.graph_version, g.clone(), c.clone()));
        (self.graph_version, g, c)
    }

    /// Counts (router, destination) route entries that disagree with the
    /// oracle: (checked, wrong).
    fn route_errors(&mut self) -> (u64, u64) {
        let (_, graph, comp) = self.live();
        let alive: Vec<u32> = (0..self.routers.len() as u32)
            .filter(|&r| self.alive(r))
            .collect();
        let mut comp_size: HashMap<u32, usize> = HashMap::new();
        for &r in &alive {
            *comp_size.entry(comp[r as usize]).or_default() += 1;
        }
        let mut checked = 0u64;
        let mut wrong = 0u64;
        // Reachable counts: no stale routes to dead or cut-off routers.
        for &r in &alive {
            let routes = self.routers[r as usize]
                .plane
                .as_ref()
                .map(|p| p.routes().clone());
            if let Some(routes) = routes {
                checked += 1;
                if routes.reachable_count() != comp_size[&comp[r as usize]] - 1 {
                    wrong += 1;
                }
            }
        }
        let dests: Vec<u32> = if alive.len() <= self.oracle_full_limit {
            alive.clone()
        } else {
            let mut set = BTreeSet::new();
            let k = self.oracle_sample.min(alive.len());
            while set.len() < k {
                set.insert(alive[self.check_rng.random_range(0..alive.len())]);
            }
            set.into_iter().collect()
        };
        let routes: Vec<Option<Arc<Routes>>> = self
            .routers
            .iter()
            .map(|r| r.plane.as_ref().map(|p| p.routes().clone()))
            .collect();
        for d in dests {
            let dist = graph.distances_from(d as usize);
            let d_id = &self.routers[d as usize].id;
            for &r in &alive {
                if r == d {
                    continue;
                }
                let Some(table) = &routes[r as usize] else {
                    continue;
                };
                checked += 1;
                let want = dist[r as usize];
                let ok = match table.route(d_id) {
                    None => want == INF,
                    Some(route) => {
                        want != INF
                            && u64::from(route.cost) == want
                            && self.index.get(&route.next_hop).is_some_and(|&nh| {
                                graph.cost(r as usize, nh as usize).is_some_and(|c| {
                                    dist[nh as usize] != INF
                                        && u64::from(c) + dist[nh as usize] == want
                                })
                            })
                    }
                };
                if !ok {
                    wrong += 1;
                }
            }
        }
        (checked, wrong)
    }

    /// Counts (router, address) entries whose router set differs from the
    /// truth (alive routers with consumers, in the same component):
    /// (wrong, checked).
    pub(super) fn address_errors(&mut self) -> (u64, u64) {
        let (_, _, comp) = self.live();
        let mut truth: BTreeMap<Address, Vec<u32>> = BTreeMap::new();
        for (i, r) in self.routers.iter().enumerate() {
            if r.plane.is_none() {
                continue;
            }
            for a in r.consumers.keys() {
                truth.entry(a.clone()).or_default().push(i as u32);
            }
        }
        let mut wrong = 0u64;
        let mut checked = 0u64;
        for (i, r) in self.routers.iter().enumerate() {
            let Some(plane) = &r.plane else { continue };
            let table = plane.address_table();
            let my_comp = comp[i];
            for (address, holders) in &truth {
                checked += 1;
                let entry = table.get(address);
                let local = holders.contains(&(i as u32));
                let ok = match entry {
                    None => !local && holders.iter().all(|&h| comp[h as usize] != my_comp),
                    Some(e) => {
                        e.local == local
                            && e.routers.len()
                                == holders
                                    .iter()
                                    .filter(|&&h| h != i as u32 && comp[h as usize] == my_comp)
                                    .count()
                            && e.routers.iter().all(|id| {
                                self.index.get(id).is_some_and(|&h| {
                                    h != i as u32
                                        && comp[h as usize] == my_comp
                                        && holders.contains(&h)
                                })
                            })
                    }
                };
                if !ok {
                    wrong += 1;
                }
            }
            // Addresses the router believes in that nobody consumes.
            for (address, _) in table.iter() {
                if !truth.contains_key(address) {
                    checked += 1;
                    wrong += 1;
                }
            }
        }
        (wrong, checked)
    }

    pub(super) fn close_window(&mut self) {
        self.window_wall
            .push(self.window.opened.elapsed().as_secs_f64());
        let (checked, route_wrong) = self.route_errors();
        let (address_wrong, _) = self.address_errors();
        let converged = route_wrong == 0 && address_wrong == 0;
        let at = self.window.at;
        let convergence = converged.then(|| {
            let last = self.window.last_change.unwrap_or(at).max(at);
            secs(last - at)
        });
        self.windows.push(WindowReport {
            at_s: secs(at),
            until_s: secs(self.now),
            events: std::mem::take(&mut self.window.events),
            converged,
            convergence_s: convergence,
            routes_checked: checked,
            route_errors: route_wrong,
            address_errors: address_wrong,
            control_messages: self.control.messages - self.window.messages_at_open,
            control_bytes: self.control.bytes - self.window.bytes_at_open,
        });
    }

    // ----- report -----

    pub(super) fn into_report(mut self, wall: Duration) -> RunReport {
        let names: Vec<String> = self.routers.iter().map(|r| r.id.to_string()).collect();
        let per_router: Vec<RouterReport> = self
            .routers
            .iter()
            .map(|r| RouterReport {
                router: r.id.to_string(),
                messages_sent: r.stats.messages_sent,
                bytes_sent: r.stats.bytes_sent,
                messages_received: r.stats.messages_received,
                bytes_received: r.stats.bytes_received,
                route_changes: r.stats.route_changes,
                recomputes: r.stats.recomputes,
                restarts: r.stats.restarts,
            })
            .collect();
        let msgs: Vec<f64> = per_router.iter().map(|r| r.messages_sent as f64).collect();
        let bytes: Vec<f64> = per_router.iter().map(|r| r.bytes_sent as f64).collect();
        let cpu: Vec<f64> = self
            .routers
            .iter()
            .map(|r| r.stats.cpu.as_secs_f64() * 1e3)
            .collect();
        self.control.messages_per_router = Stats::of(&msgs);
        self.control.bytes_per_router = Stats::of(&bytes);
        self.control.by_kind = self
            .by_kind
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        // Consumers still attached, for fairness over every candidate.
        let mut flows = Vec::new();
        for f in &mut self.flows {
            let mut r = f.report.clone();
            r.delivery_ratio = if r.expected == 0 {
                1.0
            } else {
                r.delivered.min(r.expected) as f64 / r.expected as f64
            };
            r.mean_stretch = if f.stretch_count == 0 {
                0.0
            } else {
                f.stretch_sum / f.stretch_count as f64
            };
            r.per_receiver = f
                .per_receiver
                .iter()
                .map(|(k, v)| (names[*k as usize].clone(), *v))
                .collect();
            if f.distribution == Distribution::Balanced {
                let mut shares: BTreeMap<u32, f64> = f
                    .per_receiver
                    .iter()
                    .map(|(k, v)| (*k, *v as f64))
                    .collect();
                for (i, router) in self.routers.iter().enumerate() {
                    if router.plane.is_some() && router.consumers.contains_key(&f.address) {
                        shares.entry(i as u32).or_insert(0.0);
                    }
                }
                r.jain_index = jain_index(&shares.into_values().collect::<Vec<_>>());
            }
            flows.push(r);
        }
        let boot = self.windows.first().and_then(|w| w.convergence_s);
        let later: Vec<f64> = self
            .windows
            .iter()
            .skip(1)
            .filter_map(|w| w.convergence_s)
            .collect();
        let all_converged = self.windows.iter().all(|w| w.converged);
        let max_divergence = self.divergence.iter().map(|d| d.1).max().unwrap_or(0);
        let final_divergence = self.windows.last().map(|w| w.address_errors).unwrap_or(0);
        let total_cpu: f64 = cpu.iter().sum();
        let route_cpu: Vec<f64> = self
            .routers
            .iter()
            .map(|r| r.stats.route_cpu.as_secs_f64() * 1e3)
            .collect();
        RunReport {
            scenario: self.scenario_name.clone(),
            profile: self.profile.name().to_string(),
            seed: self.seed,
            routers: self.routers.len(),
            links: self.links.len(),
            components: self.mesh_components,
            bridges_added: self.bridges_added,
            duration_s: secs(self.end),
            events_processed: self.events_processed,
            all_converged,
            boot_convergence_s: boot,
            mean_event_convergence_s: (!later.is_empty())
                .then(|| later.iter().sum::<f64>() / later.len() as f64),
            max_event_convergence_s: later.iter().copied().reduce(f64::max),
            windows: std::mem::take(&mut self.windows),
            control: std::mem::take(&mut self.control),
            flows,
            divergence: std::mem::take(&mut self.divergence),
            max_divergence,
            final_divergence,
            per_router,
            host: HostTiming {
                wall_s: wall.as_secs_f64(),
                events_per_s: self.events_processed as f64 / wall.as_secs_f64().max(1e-9),
                control_cpu_ms_per_router: Stats::of(&cpu),
                control_cpu_ms_total: total_cpu,
                route_cpu_ms_per_router: Stats::of(&route_cpu),
                per_router_route_cpu_ms: route_cpu,
                window_wall_s: std::mem::take(&mut self.window_wall),
                per_router_cpu_ms: cpu,
            },
        }
    }
}
