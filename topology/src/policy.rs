//! Forwarding policies (qdrouterd's distributions) as pure functions over
//! candidates: the router's address actors (`boted`) and the simulator
//! (`bote-sim`) both call them, so what the simulator shows is what the
//! router decides.
//!
//! The caller gathers the candidates (local consumer links with their
//! counters; remote routers with consumers, with path cost and the next hop's
//! outstanding deliveries; each marked when this delivery may not go there)
//! and keeps the round-robin [`Cursor`] per address; these functions only
//! decide.

use crate::ids::{Cost, RouterId};
use crate::routes::{MulticastTree, Routes};

/// How deliveries to an address are forwarded (qdrouterd's
/// `distribution`): the one type the router's configuration, its address
/// actors and the simulator share. Spelled `closest`, `balanced`,
/// `multicast` or `unavailable` (with the `serde` feature, also when
/// deserialised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize, serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Distribution {
    /// One consumer gets each message: a local consumer always wins
    /// (round-robin among local ones); otherwise the lowest-cost remote
    /// routers, round-robin among equal cost ([`closest`]).
    Closest,
    /// One consumer gets each message: the one with the least outstanding
    /// work (plus path cost for remote ones) ([`balanced`]). The default.
    #[default]
    Balanced,
    /// Every consumer gets a copy ([`multicast`]).
    Multicast,
    /// No consumer: attaches and messages are refused (`amqp:not-found`).
    Unavailable,
}

impl Distribution {
    /// All distributions, in the order the configuration documents them.
    pub const ALL: [Distribution; 4] = [
        Distribution::Closest,
        Distribution::Balanced,
        Distribution::Multicast,
        Distribution::Unavailable,
    ];

    /// The configuration spelling: `closest`, `balanced`, `multicast` or
    /// `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Closest => "closest",
            Distribution::Balanced => "balanced",
            Distribution::Multicast => "multicast",
            Distribution::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `closest`, `balanced`, `multicast`, `unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown distribution \"{0}\" (expected closest, balanced, multicast or unavailable)")]
pub struct UnknownDistribution(pub String);

impl std::str::FromStr for Distribution {
    type Err = UnknownDistribution;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Distribution::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDistribution(s.to_owned()))
    }
}

/// A local consumer link, as balanced distribution sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLink {
    /// Deliveries queued on the link, not yet sent.
    pub undelivered: u32,
    /// Deliveries sent, not yet settled.
    pub unsettled: u32,
    /// The link's capacity (eligible while `undelivered + unsettled` is below it).
    pub capacity: u32,
    /// This delivery came back from the link already (released, or the link
    /// detached before sending it): it goes to another one.
    pub tried: bool,
}

impl LocalLink {
    /// qdrouterd's link value: `undelivered + unsettled`.
    pub fn value(&self) -> u64 {
        u64::from(self.undelivered) + u64::from(self.unsettled)
    }
}

/// A remote router with consumers for the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRouter {
    /// The router with consumers.
    pub router: RouterId,
    /// Path cost to it.
    pub cost: Cost,
    /// Deliveries for this address outstanding (unsettled) on the next-hop
    /// connection toward it.
    pub outstanding: u32,
    /// This delivery may not go there: it visited the router or the next hop
    /// toward it, or was lost with one of them.
    pub excluded: bool,
}

/// The destination chosen for an anycast delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The local consumer link at this index of the candidate slice.
    Local(usize),
    /// The remote router at this index of the candidate slice.
    Remote(usize),
}

/// Round-robin state of one address, kept by the caller between deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Where the next scan of the local links starts (closest; balanced
    /// without remote routers). The caller sets it back to 0 when links
    /// leave and it is past the end.
    pub local: usize,
    /// Counts picks among the equal-cost remote routers (closest); the next
    /// is this modulo their number.
    pub remote: usize,
}

/// Closest: a local consumer wins, round-robin from the cursor over the
/// links not `tried`; otherwise round-robin over the remote routers of
/// lowest cost that are not `excluded`. None if there is no such consumer.
pub fn closest(
    local: &[LocalLink],
    remote: &[RemoteRouter],
    cursor: &mut Cursor,
) -> Option<Choice> {
    let n = local.len();
    for k in 0..n {
        let i = (cursor.local + k) % n;
        if !local[i].tried {
            cursor.local = (i + 1) % n;
            return Some(Choice::Local(i));
        }
    }
    let eligible = || remote.iter().enumerate().filter(|(_, r)| !r.excluded);
    let best = eligible().map(|(_, r)| r.cost).min()?;
    let ties = eligible().filter(|(_, r)| r.cost == best).count();
    let k = cursor.remote % ties;
    cursor.remote = cursor.remote.wrapping_add(1);
    eligible()
        .filter(|(_, r)| r.cost == best)
        .nth(k)
        .map(|(i, _)| Choice::Remote(i))
}

/// Balanced: local link value = undelivered + unsettled, eligible while below
/// capacity, a local link with value 0 wins at once; remote value =
/// outstanding on the next hop + path cost (for `presettled` deliveries just
/// the path cost). The lowest value wins. Links `tried` and routers
/// `excluded` are not candidates.
///
/// Ties: with no remote router at all (`remote` empty) the scan of the local
/// links starts at the cursor, so equally loaded links take turns; with
/// remote routers the earlier candidate wins, locals before remotes
/// (qdrouterd's scan order), and the cursor is left as it is.
///
/// None if no candidate is eligible: then [`balanced_overflow`] decides.
pub fn balanced(
    local: &[LocalLink],
    remote: &[RemoteRouter],
    presettled: bool,
    cursor: &mut Cursor,
) -> Option<Choice> {
    if remote.is_empty() {
        let n = local.len();
        let mut best: Option<(u64, usize)> = None;
        for k in 0..n {
            let i = (cursor.local + k) % n;
            let link = &local[i];
            if link.tried {
                continue;
            }
            let value = link.value();
            if value == 0 {
                best = Some((0, i));
                break;
            }
            if value < u64::from(link.capacity) && best.is_none_or(|(b, _)| value < b) {
                best = Some((value, i));
            }
        }
        let (_, i) = best?;
        cursor.local = (i + 1) % n;
        return Some(Choice::Local(i));
    }
    let mut best: Option<(u64, Choice)> = None;
    for (i, link) in local.iter().enumerate() {
        let value = link.value();
        if link.tried || value >= u64::from(link.capacity) {
            continue;
        }
        if value == 0 {
            return Some(Choice::Local(i));
        }
        if best.is_none_or(|(b, _)| value < b) {
            best = Some((value, Choice::Local(i)));
        }
    }
    for (i, r) in remote.iter().enumerate() {
        if r.excluded {
            continue;
        }
        let value = if presettled {
            u64::from(r.cost)
        } else {
            u64::from(r.outstanding) + u64::from(r.cost)
        };
        if best.is_none_or(|(b, _)| value < b) {
            best = Some((value, Choice::Remote(i)));
        }
    }
    best.map(|(_, c)| c)
}

/// Balanced when [`balanced`] found no eligible candidate (every local link
/// at capacity, no remote router): rather than refuse the delivery, the
/// least loaded local link that is not `tried` queues it (the first of
/// them); the producers' credit bounds that queue. As in [`balanced`], the
/// cursor moves past the link when there is no remote router. None if
/// every local link was tried (or there is none).
pub fn balanced_overflow(
    local: &[LocalLink],
    remote: &[RemoteRouter],
    cursor: &mut Cursor,
) -> Option<Choice> {
    let (i, _) = local
        .iter()
        .enumerate()
        .filter(|(_, link)| !link.tried)
        .min_by_key(|(_, link)| link.value())?;
    if remote.is_empty() {
        cursor.local = (i + 1) % local.len();
    }
    Some(Choice::Local(i))
}

/// Where the copies of one multicast delivery go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MulticastPlan {
    /// One copy per local consumer (their count).
    pub local_copies: usize,
    /// One copy per distinct next hop, sorted by router id.
    pub next_hops: Vec<RouterId>,
    /// For each of `next_hops` (same order), the routers with consumers the
    /// copy through it is for, sorted: where a copy lost with that
    /// neighbour is re-forwarded ([`multicast_toward`]).
    pub destinations: Vec<Vec<RouterId>>,
}

/// Multicast: one copy per local consumer plus one per distinct next hop
/// toward the remote routers with consumers.
///
/// - Delivery that originated here (`arrived_from` None): next hop from the
///   local routes to each consumer router.
/// - Delivery from origin `O` that arrived from neighbour `N`: toward
///   destination `D` only if `O` is a valid origin for `D` here (the local
///   router is on `O`'s tree path to `D`, qdrouterd's rule), through `O`'s
///   tree child; never back to `N`. Routers not on any of `O`'s paths forward
///   nothing further. `origin_tree` is `routes.multicast_tree(O)`; None (origin
///   unknown) forwards to no remote router.
pub fn multicast(
    routes: &Routes,
    local_consumers: usize,
    remote_routers: &[RouterId],
    arrived_from: Option<&RouterId>,
    origin_tree: Option<&MulticastTree>,
) -> MulticastPlan {
    let mut by_hop: Vec<(RouterId, RouterId)> = Vec::new();
    for dest in remote_routers {
        let hop = match arrived_from {
            None => routes.next_hop(dest),
            Some(_) => origin_tree.and_then(|t| t.next_hop_toward(dest)),
        };
        if let Some(hop) = hop
            && Some(hop) != arrived_from
        {
            by_hop.push((hop.clone(), dest.clone()));
        }
    }
    plan_by_hop(local_consumers, by_hop)
}

/// The copies of a multicast delivery re-forwarded around a lost
/// neighbour: one per distinct next hop of the local routes toward the
/// routers it is still for (`destinations`, the ones that were behind the
/// lost neighbour), each for the destinations behind its hop, plus the
/// local consumers' copies if the local router is one of the destinations
/// (`local_consumers` counts them). A destination with no route, or whose
/// next hop `excluded` refuses (a router the copy visited, the lost
/// neighbour), gets no copy: it is given up.
pub fn multicast_toward(
    routes: &Routes,
    local_consumers: usize,
    destinations: &[RouterId],
    excluded: impl Fn(&RouterId) -> bool,
) -> MulticastPlan {
    let own = routes.local();
    let mut local_copies = 0;
    let mut by_hop: Vec<(RouterId, RouterId)> = Vec::new();
    for dest in destinations {
        if dest == own {
            local_copies = local_consumers;
            continue;
        }
        if let Some(hop) = routes.next_hop(dest)
            && !excluded(hop)
            && !excluded(dest)
        {
            by_hop.push((hop.clone(), dest.clone()));
        }
    }
    plan_by_hop(local_copies, by_hop)
}

/// A plan from (next hop, destination) pairs: distinct hops sorted, each
/// with its sorted destinations.
fn plan_by_hop(local_copies: usize, mut by_hop: Vec<(RouterId, RouterId)>) -> MulticastPlan {
    by_hop.sort_unstable();
    by_hop.dedup();
    let mut next_hops: Vec<RouterId> = Vec::new();
    let mut destinations: Vec<Vec<RouterId>> = Vec::new();
    for (hop, dest) in by_hop {
        if next_hops.last() != Some(&hop) {
            next_hops.push(hop);
            destinations.push(Vec::new());
        }
        if let Some(d) = destinations.last_mut() {
            d.push(dest);
        }
    }
    MulticastPlan {
        local_copies,
        next_hops,
        destinations,
    }
}

/// The terminal outcome of one copy of a multicast delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `accepted`.
    Accepted,
    /// `rejected`.
    Rejected,
    /// `released`.
    Released,
    /// `modified`.
    Modified,
}

/// The one outcome the sender of an unsettled multicast delivery sees:
/// rejected if any copy was rejected; otherwise accepted if any was accepted;
/// otherwise (nobody took it: no copies, or all released/modified) released.
pub fn aggregate_outcome(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    let mut accepted = false;
    for o in outcomes {
        match o {
            Outcome::Rejected => return Outcome::Rejected,
            Outcome::Accepted => accepted = true,
            Outcome::Released | Outcome::Modified => {}
        }
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsdb::{LinkStateDb, LinkStateRecord};
    use std::sync::Arc;

    fn remote(router: &str, cost: Cost, outstanding: u32) -> RemoteRouter {
        RemoteRouter {
            router: router.into(),
            cost,
            outstanding,
            excluded: false,
        }
    }

    fn link(undelivered: u32, unsettled: u32, capacity: u32) -> LocalLink {
        LocalLink {
            undelivered,
            unsettled,
            capacity,
            tried: false,
        }
    }

    /// `n` idle local links.
    fn idle(n: usize) -> Vec<LocalLink> {
        vec![link(0, 0, 250); n]
    }

    #[test]
    fn closest_prefers_local_consumers_round_robin() {
        let mut c = Cursor::default();
        let r = [remote("B", 1, 0)];
        let picks: Vec<_> = (0..4).map(|_| closest(&idle(3), &r, &mut c)).collect();
        assert_eq!(
            picks,
            [
                Choice::Local(0),
                Choice::Local(1),
                Choice::Local(2),
                Choice::Local(0)
            ]
            .map(Some)
        );
    }

    #[test]
    fn closest_without_local_consumers_round_robins_over_the_cheapest_remotes() {
        let mut c = Cursor::default();
        let r = [
            remote("B", 2, 0),
            remote("C", 1, 0),
            remote("D", 3, 0),
            remote("E", 1, 0),
        ];
        let picks: Vec<_> = (0..3).map(|_| closest(&[], &r, &mut c)).collect();
        assert_eq!(
            picks,
            [Choice::Remote(1), Choice::Remote(3), Choice::Remote(1)].map(Some)
        );
        assert_eq!(closest(&[], &[], &mut c), None);
    }

    #[test]
    fn balanced_idle_local_link_wins_at_once() {
        let locals = [link(1, 0, 10), link(0, 0, 10)];
        assert_eq!(
            balanced(&locals, &[remote("B", 1, 0)], false, &mut Cursor::default()),
            Some(Choice::Local(1))
        );
    }

    #[test]
    fn balanced_picks_the_lowest_value_and_skips_full_links() {
        // local values 5 (full at capacity 5) and 4; remote value 2 + 1 = 3.
        let locals = [link(3, 2, 5), link(2, 2, 10)];
        let remotes = [remote("B", 1, 2), remote("C", 3, 0)];
        assert_eq!(
            balanced(&locals, &remotes, false, &mut Cursor::default()),
            Some(Choice::Remote(0))
        );
        // A less busy local link beats the remote.
        let locals = [link(3, 2, 5), link(1, 1, 10)];
        assert_eq!(
            balanced(&locals, &remotes, false, &mut Cursor::default()),
            Some(Choice::Local(1))
        );
    }

    #[test]
    fn balanced_ties_go_to_the_local_link_first() {
        let locals = [link(2, 1, 10)];
        let remotes = [remote("B", 1, 2)];
        assert_eq!(
            balanced(&locals, &remotes, false, &mut Cursor::default()),
            Some(Choice::Local(0))
        );
    }

    #[test]
    fn balanced_presettled_remote_choice_is_by_cost_only() {
        let remotes = [remote("B", 1, 50), remote("C", 2, 0)];
        assert_eq!(
            balanced(&[], &remotes, false, &mut Cursor::default()),
            Some(Choice::Remote(1))
        );
        assert_eq!(
            balanced(&[], &remotes, true, &mut Cursor::default()),
            Some(Choice::Remote(0))
        );
    }

    #[test]
    fn closest_skips_links_that_gave_the_delivery_back_and_excluded_routers() {
        let mut c = Cursor::default();
        let mut links = idle(3);
        links[0].tried = true;
        links[1].tried = true;
        assert_eq!(closest(&links, &[], &mut c), Some(Choice::Local(2)));
        assert_eq!(c.local, 0, "the next scan starts after the link taken");
        links[2].tried = true;
        let mut r = [remote("B", 1, 0), remote("C", 2, 0), remote("D", 2, 0)];
        r[0].excluded = true;
        let picks: Vec<_> = (0..3).map(|_| closest(&links, &r, &mut c)).collect();
        assert_eq!(
            picks,
            [Choice::Remote(1), Choice::Remote(2), Choice::Remote(1)].map(Some)
        );
        r[1].excluded = true;
        r[2].excluded = true;
        assert_eq!(closest(&links, &r, &mut c), None);
    }

    #[test]
    fn balanced_without_remote_routers_rotates_equal_links_from_the_cursor() {
        let mut c = Cursor::default();
        let links = [link(1, 0, 10), link(1, 0, 10), link(2, 0, 10)];
        let picks: Vec<_> = (0..3)
            .map(|_| balanced(&links, &[], false, &mut c))
            .collect();
        assert_eq!(
            picks,
            [Choice::Local(0), Choice::Local(1), Choice::Local(0)].map(Some)
        );
        // With a remote router in play, ties go to the first link and the
        // cursor stays where it is.
        let before = c;
        let r = [remote("B", 5, 0)];
        assert_eq!(balanced(&links, &r, false, &mut c), Some(Choice::Local(0)));
        assert_eq!(balanced(&links, &r, false, &mut c), Some(Choice::Local(0)));
        assert_eq!(c, before);
    }

    #[test]
    fn balanced_skips_links_that_gave_the_delivery_back_and_excluded_routers() {
        let mut links = [link(0, 0, 10), link(3, 0, 10)];
        links[0].tried = true;
        let mut r = [remote("B", 1, 0), remote("C", 2, 0)];
        r[0].excluded = true;
        // Link 1 (3) loses to C (0 + 2); B would have won (1).
        let c = &mut Cursor::default();
        assert_eq!(balanced(&links, &r, false, c), Some(Choice::Remote(1)));
        assert_eq!(balanced(&links, &[], false, c), Some(Choice::Local(1)));
    }

    #[test]
    fn balanced_overflow_queues_on_the_least_loaded_link_not_tried() {
        let mut links = [link(5, 5, 10), link(4, 6, 10), link(3, 4, 7)];
        let c = &mut Cursor::default();
        assert_eq!(balanced(&links, &[], false, c), None);
        assert_eq!(balanced_overflow(&links, &[], c), Some(Choice::Local(2)));
        assert_eq!(c.local, 0, "past link 2, without remote routers");
        links[2].tried = true;
        assert_eq!(balanced_overflow(&links, &[], c), Some(Choice::Local(0)));
        assert_eq!(c.local, 1);
        let r = [remote("B", 1, 0)];
        assert_eq!(balanced_overflow(&links, &r, c), Some(Choice::Local(0)));
        assert_eq!(c.local, 1, "with remote routers the cursor stays");
        links[0].tried = true;
        links[1].tried = true;
        assert_eq!(balanced_overflow(&links, &[], c), None);
    }

    #[test]
    fn balanced_with_every_link_full_and_no_remote_has_no_destination() {
        assert_eq!(
            balanced(&[link(5, 5, 10)], &[], false, &mut Cursor::default()),
            None
        );
        assert_eq!(Distribution::default(), Distribution::Balanced);
    }

    /// Line A - B - C - D plus B - E; routes seen from B.
    fn line_routes(local: &str) -> Routes {
        routes_of(
            local,
            &[("A", "B", 1), ("B", "C", 1), ("C", "D", 1), ("B", "E", 1)],
        )
    }

    /// Routes seen from `local` in the mesh of `edges` (a, b, cost).
    fn routes_of(local: &str, edges: &[(&str, &str, Cost)]) -> Routes {
        let mut adj: std::collections::BTreeMap<RouterId, Vec<(RouterId, Cost)>> =
            Default::default();
        for &(a, b, cost) in edges {
            adj.entry(a.into()).or_default().push((b.into(), cost));
            adj.entry(b.into()).or_default().push((a.into(), cost));
        }
        let mut db = LinkStateDb::new();
        for (o, n) in adj {
            db.offer(Arc::new(LinkStateRecord::new(o, 1, 1, n)));
        }
        Routes::compute(&local.into(), &db)
    }

    #[test]
    fn multicast_from_a_local_sender_sends_one_copy_per_distinct_next_hop() {
        let routes = line_routes("B");
        let dests: Vec<RouterId> = ["A", "C", "D", "E"].map(RouterId::from).to_vec();
        let plan = multicast(&routes, 2, &dests, None, None);
        assert_eq!(plan.local_copies, 2);
        assert_eq!(plan.next_hops, ["A", "C", "E"].map(RouterId::from).to_vec());
    }

    #[test]
    fn multicast_relays_only_toward_destinations_it_is_a_valid_origin_path_for() {
        let routes = line_routes("B");
        let origin: RouterId = "A".into();
        let tree = routes.multicast_tree(&origin).expect("A known");
        let dests: Vec<RouterId> = ["A", "D", "E"].map(RouterId::from).to_vec();
        let plan = multicast(&routes, 1, &dests, Some(&origin), Some(&tree));
        // Never back to A (it came from there); D via C; E directly.
        assert_eq!(plan.next_hops, ["C", "E"].map(RouterId::from).to_vec());
        // A message from D arriving at C is not relayed by B toward C's side.
        let from_d = routes.multicast_tree(&"D".into()).expect("D known");
        let plan = multicast(
            &routes,
            0,
            &["C".into(), "A".into()],
            Some(&"C".into()),
            Some(&from_d),
        );
        assert_eq!(plan.next_hops, vec![RouterId::from("A")]);
        // Unknown origin: local copies only.
        let plan = multicast(&routes, 1, &dests, Some(&"C".into()), None);
        assert_eq!(
            plan,
            MulticastPlan {
                local_copies: 1,
                next_hops: vec![],
                destinations: vec![]
            }
        );
    }

    #[test]
    fn multicast_plans_say_which_routers_are_behind_each_next_hop() {
        // A - B - D, A - C, all cost 1: from A, D is behind B.
        let routes = routes_of("A", &[("A", "B", 1), ("B", "D", 1), ("A", "C", 1)]);
        let dests: Vec<RouterId> = ["B", "C", "D"].map(RouterId::from).to_vec();
        let plan = multicast(&routes, 0, &dests, None, None);
        assert_eq!(plan.next_hops, ["B", "C"].map(RouterId::from).to_vec());
        assert_eq!(
            plan.destinations,
            vec![
                ["B", "D"].map(RouterId::from).to_vec(),
                vec![RouterId::from("C")]
            ]
        );
    }

    #[test]
    fn a_re_forwarded_multicast_copy_goes_toward_its_destinations_only_never_through_an_excluded_hop()
     {
        // The square A - B - D - C - A after B is lost (A - C, C - D left):
        // from A, the copy for D goes through C; one for A itself is local.
        let routes = routes_of("A", &[("A", "C", 3), ("C", "D", 1)]);
        let plan = multicast_toward(&routes, 2, &["A", "D"].map(RouterId::from), |r| {
            r.as_str() == "B"
        });
        assert_eq!(plan.local_copies, 2);
        assert_eq!(plan.next_hops, vec![RouterId::from("C")]);
        assert_eq!(plan.destinations, vec![vec![RouterId::from("D")]]);
        // Not a destination: no local copies; an excluded hop: given up.
        let plan = multicast_toward(&routes, 2, &["D"].map(RouterId::from), |r| {
            r.as_str() == "C"
        });
        assert_eq!(plan, MulticastPlan::default());
        // No route to it (the lost router itself): given up.
        let plan = multicast_toward(&routes, 2, &["B"].map(RouterId::from), |_| false);
        assert_eq!(plan, MulticastPlan::default());
    }

    #[test]
    fn multicast_outcome_rejected_beats_accepted_beats_released() {
        use Outcome::*;
        assert_eq!(aggregate_outcome([Accepted, Released, Modified]), Accepted);
        assert_eq!(aggregate_outcome([Accepted, Rejected, Accepted]), Rejected);
        assert_eq!(aggregate_outcome([Released, Modified]), Released);
        assert_eq!(aggregate_outcome([]), Released);
    }
}
