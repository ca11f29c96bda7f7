//! The oracle: shortest-path distances on the *true* live graph (links that
//! are up between routers that are running), against which the routers'
//! own tables are checked. It does not route anything; it only answers
//! "what cost should this router see to that one", so a route is right when
//! its cost equals the true distance and its next hop lies on a shortest path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Unreachable.
pub const INF: u64 = u64::MAX;

/// The live graph as adjacency lists of (neighbour, cost), undirected.
#[derive(Debug, Clone, Default)]
pub struct LiveGraph {
    /// Adjacency, index = router.
    pub adj: Vec<Vec<(u32, u32)>>,
}

impl LiveGraph {
    /// Distances from `src` to every router (Dijkstra; [`INF`] if unreachable).
    pub fn distances_from(&self, src: usize) -> Vec<u64> {
        let mut dist = vec![INF; self.adj.len()];
        let mut heap = BinaryHeap::new();
        dist[src] = 0;
        heap.push(Reverse((0u64, src as u32)));
        while let Some(Reverse((d, u))) = heap.pop() {
            if d > dist[u as usize] {
                continue;
            }
            for &(v, c) in &self.adj[u as usize] {
                let nd = d + u64::from(c.max(1));
                if nd < dist[v as usize] {
                    dist[v as usize] = nd;
                    heap.push(Reverse((nd, v)));
                }
            }
        }
        dist
    }

    /// The link cost between two adjacent routers.
    pub fn cost(&self, a: usize, b: usize) -> Option<u32> {
        self.adj[a]
            .iter()
            .find(|(v, _)| *v as usize == b)
            .map(|&(_, c)| c)
    }
}

/// Jain's fairness index of a set of shares: 1 = perfectly even, 1/n = one
/// taker. `None` for an empty or all-zero set.
pub fn jain_index(shares: &[f64]) -> Option<f64> {
    let sum: f64 = shares.iter().sum();
    let sq: f64 = shares.iter().map(|x| x * x).sum();
    if shares.is_empty() || sq == 0.0 {
        return None;
    }
    Some(sum * sum / (shares.len() as f64 * sq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_follow_the_cheapest_path() {
        // 0 -1- 1 -1- 2, and 0 -5- 2.
        let g = LiveGraph {
            adj: vec![
                vec![(1, 1), (2, 5)],
                vec![(0, 1), (2, 1)],
                vec![(1, 1), (0, 5)],
                vec![],
            ],
        };
        assert_eq!(g.distances_from(0), vec![0, 1, 2, INF]);
    }

    #[test]
    fn jain_index_is_one_when_even_and_one_over_n_for_a_single_taker() {
        assert_eq!(jain_index(&[5.0, 5.0, 5.0]), Some(1.0));
        assert!((jain_index(&[9.0, 0.0, 0.0]).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(jain_index(&[]), None);
    }
}
