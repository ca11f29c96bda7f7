//! Generated topologies for `botectl up --generate`: a ring, a random
//! connected mesh of a given average degree, or a full mesh of N routers
//! (`R1` … `RN`, every link cost 1), and the ordinal wiring of a
//! Kubernetes StatefulSet (router N dials its `degree` predecessors).

use std::collections::BTreeSet;

use super::file::{LinkDef, RouterDef, Topology};

/// qdrouterd's default address prefixes, as boted's embedded default
/// configuration has them: every generated configuration starts with them
/// (a configuration file replaces the embedded default wholesale).
pub const DEFAULT_ADDRESSES: &str = "\n[[address]]\nprefix = \"closest\"\ndistribution = \"closest\"\n\
\n[[address]]\nprefix = \"multicast\"\ndistribution = \"multicast\"\n\
\n[[address]]\nprefix = \"unicast\"\ndistribution = \"closest\"\n\
\n[[address]]\nprefix = \"exclusive\"\ndistribution = \"closest\"\n\
\n[[address]]\nprefix = \"broadcast\"\ndistribution = \"multicast\"\n";

/// The shape of a generated topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Ring,
    /// A random spanning tree plus random links up to `n * degree / 2` links.
    Random {
        degree: usize,
    },
    Full,
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Shape, String> {
        match s {
            "ring" => Ok(Shape::Ring),
            "full" => Ok(Shape::Full),
            _ => match s.strip_prefix("random:").map(str::parse::<usize>) {
                Some(Ok(degree)) if degree >= 1 => Ok(Shape::Random { degree }),
                _ => Err(format!(
                    "\"{s}\" is not ring, full or random:DEGREE (DEGREE ≥ 1)"
                )),
            },
        }
    }
}

/// A small deterministic generator (splitmix64), so a seed gives the same mesh.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// The pairs (i, j), i < j, of routers 0..n linked in `shape`.
pub fn pairs(shape: Shape, n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut set = BTreeSet::new();
    match shape {
        Shape::Ring => {
            for i in 0..n {
                let j = (i + 1) % n;
                if i != j {
                    set.insert((i.min(j), i.max(j)));
                }
            }
        }
        Shape::Full => {
            for j in 0..n {
                for i in 0..j {
                    set.insert((i, j));
                }
            }
        }
        Shape::Random { degree } => {
            let mut rng = SplitMix(seed);
            for j in 1..n {
                let i = rng.below(j);
                set.insert((i, j));
            }
            let want = (n * degree / 2).min(n * n.saturating_sub(1) / 2);
            let mut tries = 0;
            while set.len() < want && tries < 100 * want {
                tries += 1;
                let (i, j) = (rng.below(n), rng.below(n));
                if i != j {
                    set.insert((i.min(j), i.max(j)));
                }
            }
        }
    }
    set.into_iter().collect()
}

/// A generated topology of `n` routers named `R1` … `Rn`.
pub fn topology(shape: Shape, n: usize, seed: u64) -> Topology {
    let id = |i: usize| format!("R{}", i + 1);
    Topology {
        file: "(generated)".into(),
        routers: (0..n)
            .map(|i| RouterDef {
                id: id(i),
                line: 0,
                port: None,
                inter_router_port: None,
                http_port: None,
                extra: String::new(),
            })
            .collect(),
        links: pairs(shape, n, seed)
            .into_iter()
            .map(|(i, j)| LinkDef {
                a: id(i),
                b: id(j),
                cost: 1,
                line: 0,
            })
            .collect(),
    }
}

/// The ordinals router `ordinal` of a StatefulSet dials: its `degree`
/// predecessors (all routers before it when `degree` is 0). Only the higher
/// ordinal of a pair dials, so each pair has at most one connection, and
/// every router but 0 dials its predecessor, so the mesh is connected.
pub fn ordinal_peers(ordinal: usize, degree: usize) -> Vec<usize> {
    let from = if degree == 0 {
        0
    } else {
        ordinal.saturating_sub(degree)
    };
    (from..ordinal).rev().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use super::*;

    fn connected(n: usize, pairs: &[(usize, usize)]) -> bool {
        let mut adj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(a, b) in pairs {
            adj.entry(a).or_default().push(b);
            adj.entry(b).or_default().push(a);
        }
        let mut seen = BTreeSet::new();
        let mut q = VecDeque::from([0]);
        while let Some(r) = q.pop_front() {
            if seen.insert(r) {
                q.extend(adj.get(&r).into_iter().flatten());
            }
        }
        seen.len() == n
    }

    #[test]
    fn ordinal_wiring_is_a_connected_mesh_with_one_connection_per_pair() {
        for n in 1..=24 {
            for degree in 0..=6 {
                let mut connections = Vec::new();
                for ordinal in 0..n {
                    for peer in ordinal_peers(ordinal, degree) {
                        assert!(peer < ordinal, "router {ordinal} dials {peer}");
                        connections.push((peer, ordinal));
                    }
                }
                let unique: BTreeSet<_> = connections.iter().copied().collect();
                assert_eq!(
                    unique.len(),
                    connections.len(),
                    "n={n} degree={degree}: a pair twice"
                );
                assert!(
                    connected(n, &connections),
                    "n={n} degree={degree}: not connected"
                );
                let d = if degree == 0 { n } else { degree };
                let want: usize = (0..n).map(|o| o.min(d)).sum();
                assert_eq!(connections.len(), want, "n={n} degree={degree}");
                if degree == 0 {
                    assert_eq!(connections.len(), n * (n - 1) / 2, "full mesh of {n}");
                }
            }
        }
    }

    #[test]
    fn generated_shapes_are_connected_with_the_asked_link_counts() {
        for n in [2, 3, 10, 100] {
            let ring = pairs(Shape::Ring, n, 1);
            assert_eq!(ring.len(), if n == 2 { 1 } else { n });
            assert!(connected(n, &ring));
            let full = pairs(Shape::Full, n, 1);
            assert_eq!(full.len(), n * (n - 1) / 2);
            let random = pairs(Shape::Random { degree: 3 }, n, 7);
            assert!(connected(n, &random), "random n={n}");
            assert_eq!(random.len(), (n * 3 / 2).min(n * (n - 1) / 2));
            assert_eq!(
                random,
                pairs(Shape::Random { degree: 3 }, n, 7),
                "same seed, same mesh"
            );
        }
        assert_eq!("random:3".parse(), Ok(Shape::Random { degree: 3 }));
        assert!("random:x".parse::<Shape>().is_err());
    }
}
