//! Topology generators: line, ring, grid, Erdős–Rényi, Barabási–Albert and
//! edge-list files, producing the [`Mesh`] a simulation starts from.
//!
//! Routers are named `R` + zero-padded index so that the byte order of names
//! (which breaks ties between equal-cost paths) is the numeric order.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rand::Rng;
use rand::rngs::StdRng;

use crate::scenario::{TopologyKind, TopologySpec};

/// One undirected link between two routers (indices, `a < b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshLink {
    /// Lower index end.
    pub a: usize,
    /// Higher index end.
    pub b: usize,
    /// Link cost (at least 1).
    pub cost: u32,
}

/// A generated mesh: router names and links.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// Router names, index = router number.
    pub names: Vec<String>,
    /// Undirected links, `a < b`, no duplicates.
    pub links: Vec<MeshLink>,
    /// Links added by the generator to connect a disconnected random graph.
    pub bridges_added: usize,
    /// Number of connected components (1 unless `connect = false`).
    pub components: usize,
}

/// Why a mesh could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The edge-list file could not be read.
    #[error("edge list {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A line of the edge-list file is malformed.
    #[error("edge list {path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Parameters make no graph.
    #[error("topology {kind}: {message}")]
    Parameters {
        /// The generator.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Router name for index `i` in a mesh of `n`.
pub fn router_name(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).max(1).to_string().len();
    format!("R{i:0width$}")
}

struct Builder {
    n: usize,
    cost: u32,
    seen: HashSet<(usize, usize)>,
    links: Vec<MeshLink>,
}

impl Builder {
    fn new(n: usize, cost: u32) -> Self {
        Builder {
            n,
            cost: cost.max(1),
            seen: HashSet::new(),
            links: Vec::new(),
        }
    }

    fn add(&mut self, x: usize, y: usize) -> bool {
        self.add_cost(x, y, self.cost)
    }

    fn add_cost(&mut self, x: usize, y: usize, cost: u32) -> bool {
        if x == y {
            return false;
        }
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        if self.seen.insert((a, b)) {
            self.links.push(MeshLink {
                a,
                b,
                cost: cost.max(1),
            });
            true
        } else {
            false
        }
    }

    fn finish(self, names: Vec<String>, bridges_added: usize) -> Mesh {
        let components = components(self.n, &self.links).len();
        Mesh {
            names,
            links: self.links,
            bridges_added,
            components,
        }
    }
}

/// Builds the mesh described by `spec`; `base` resolves a relative edge-list
/// path; `rng` is the run's seeded generator.
pub fn generate(spec: &TopologySpec, base: &Path, rng: &mut StdRng) -> Result<Mesh, GenerateError> {
    let n = spec.size;
    let names = || (0..n).map(|i| router_name(i, n)).collect::<Vec<_>>();
    match spec.kind {
        TopologyKind::Line => {
            let mut b = Builder::new(n, spec.cost);
            for i in 1..n {
                b.add(i - 1, i);
            }
            Ok(b.finish(names(), 0))
        }
        TopologyKind::Ring => {
            let mut b = Builder::new(n, spec.cost);
            for i in 1..n {
                b.add(i - 1, i);
            }
            if n > 2 {
                b.add(n - 1, 0);
            }
            Ok(b.finish(names(), 0))
        }
        TopologyKind::Grid => {
            let (rows, cols) = match (spec.rows, spec.cols) {
                (Some(r), Some(c)) => (r, c),
                (Some(r), None) => (r, n.div_ceil(r.max(1))),
                (None, Some(c)) => (n.div_ceil(c.max(1)), c),
                (None, None) => {
                    let r = (n as f64).sqrt().floor().max(1.0) as usize;
                    (r, n.div_ceil(r))
                }
            };
            if rows == 0 || cols == 0 {
                return Err(GenerateError::Parameters {
                    kind: "grid",
                    message: "rows and cols must be at least 1".into(),
                });
            }
            // With explicit rows and cols the grid is full; otherwise the last
            // row is partial so the router count is exactly `size`.
            let total = if spec.rows.is_some() && spec.cols.is_some() {
                rows * cols
            } else {
                n
            };
            let mut b = Builder::new(total, spec.cost);
            for i in 0..total {
                let (r, c) = (i / cols, i % cols);
                if c + 1 < cols && i + 1 < total {
                    b.add(i, i + 1);
                }
                if r + 1 < rows && i + cols < total {
                    b.add(i, i + cols);
                }
            }
            let names = (0..total).map(|i| router_name(i, total)).collect();
            Ok(b.finish(names, 0))
        }
        TopologyKind::Random => {
            let p = match spec.p {
                Some(p) => p,
                None => {
                    let d = spec.mean_degree.unwrap_or(4.0);
                    if n > 1 {
                        (d / (n - 1) as f64).min(1.0)
                    } else {
                        0.0
                    }
                }
            };
            let mut b = Builder::new(n, spec.cost);
            if p > 0.0 && n > 1 {
                // Geometric skipping over the n(n-1)/2 pairs: O(edges), not O(n^2).
                let total_pairs = (n as u128) * (n as u128 - 1) / 2;
                let mut idx: u128 = 0;
                let log_q = (1.0 - p).ln();
                loop {
                    if p < 1.0 {
                        let u: f64 = rng.random::<f64>();
                        let skip = ((1.0 - u).ln() / log_q).floor();
                        idx += skip as u128;
                    }
                    if idx >= total_pairs {
                        break;
                    }
                    let (x, y) = pair_of(idx, n);
                    b.add(x, y);
                    idx += 1;
                }
            }
            let mut bridges = 0;
            if spec.connect {
                let comps = components(n, &b.links);
                // Join every component to the previous one at random members.
                for w in comps.windows(2) {
                    let x = w[0][rng.random_range(0..w[0].len())];
                    let y = w[1][rng.random_range(0..w[1].len())];
                    if b.add(x, y) {
                        bridges += 1;
                    }
                }
            }
            Ok(b.finish(names(), bridges))
        }
        TopologyKind::ScaleFree => {
            let m = spec.m.unwrap_or(2).max(1);
            let mut b = Builder::new(n, spec.cost);
            // Start from a clique of m+1 routers, then attach each new router
            // to m distinct existing ones chosen proportionally to degree.
            let core = (m + 1).min(n);
            for i in 0..core {
                for j in 0..i {
                    b.add(i, j);
                }
            }
            let mut ends: Vec<usize> = b.links.iter().flat_map(|l| [l.a, l.b]).collect();
            for v in core..n {
                let mut chosen: Vec<usize> = Vec::with_capacity(m);
                let mut guard = 0;
                while chosen.len() < m.min(v) && guard < 100 * m {
                    guard += 1;
                    let t = if ends.is_empty() {
                        rng.random_range(0..v)
                    } else {
                        ends[rng.random_range(0..ends.len())]
                    };
                    if !chosen.contains(&t) {
                        chosen.push(t);
                    }
                }
                for t in chosen {
                    if b.add(v, t) {
                        ends.push(v);
                        ends.push(t);
                    }
                }
            }
            Ok(b.finish(names(), 0))
        }
        TopologyKind::File => {
            let rel = spec.file.as_deref().ok_or(GenerateError::Parameters {
                kind: "file",
                message: "missing `file`".into(),
            })?;
            let path = if rel.is_absolute() {
                rel.to_path_buf()
            } else {
                base.join(rel)
            };
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| GenerateError::Read {
                path: shown.clone(),
                source,
            })?;
            parse_edge_list(&text, &shown, spec.cost)
        }
    }
}

/// Parses an edge list: `a b [cost]` per line, `#` starts a comment; router
/// names are taken as written and numbered in order of first appearance.
pub fn parse_edge_list(text: &str, path: &str, default_cost: u32) -> Result<Mesh, GenerateError> {
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut pending: Vec<(usize, usize, u32)> = Vec::new();
    for (ln, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let syntax = |message: String| GenerateError::Syntax {
            path: path.to_string(),
            line: ln + 1,
            message,
        };
        if !(2..=3).contains(&parts.len()) {
            return Err(syntax(format!("expected `a b [cost]`, got {line:?}")));
        }
        let cost = match parts.get(2) {
            Some(c) => c
                .parse::<u32>()
                .map_err(|_| syntax(format!("cost {c:?} is not a whole number")))?,
            None => default_cost,
        };
        let mut id = |name: &str| {
            *index.entry(name.to_string()).or_insert_with(|| {
                names.push(name.to_string());
                names.len() - 1
            })
        };
        let a = id(parts[0]);
        let b = id(parts[1]);
        if a == b {
            return Err(syntax(format!("self-link on {}", parts[0])));
        }
        pending.push((a, b, cost));
    }
    let mut b = Builder::new(names.len(), default_cost);
    for (x, y, c) in pending {
        b.add_cost(x, y, c);
    }
    Ok(b.finish(names, 0))
}

/// The `idx`-th unordered pair (x, y), y < x, in row order.
fn pair_of(idx: u128, _n: usize) -> (usize, usize) {
    // Row x holds pairs (x, 0..x); rows start at x(x-1)/2.
    let mut x = (((8.0 * idx as f64 + 1.0).sqrt() + 1.0) / 2.0).floor() as u128;
    while x * (x - 1) / 2 > idx {
        x -= 1;
    }
    while (x + 1) * x / 2 <= idx {
        x += 1;
    }
    let y = idx - x * (x - 1) / 2;
    (x as usize, y as usize)
}

/// Connected components (lists of members, each sorted, ordered by lowest member).
pub fn components(n: usize, links: &[MeshLink]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for l in links {
        let (ra, rb) = (find(&mut parent, l.a), find(&mut parent, l.b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for v in 0..n {
        let r = find(&mut parent, v);
        groups.entry(r).or_default().push(v);
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(kind: TopologyKind, size: usize) -> TopologySpec {
        TopologySpec {
            kind,
            size,
            rows: None,
            cols: None,
            p: None,
            mean_degree: None,
            connect: true,
            m: None,
            file: None,
            cost: 1,
        }
    }

    #[test]
    fn ring_of_ten_has_ten_links_and_names_sort_numerically() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = generate(&spec(TopologyKind::Ring, 10), Path::new("."), &mut rng).unwrap();
        assert_eq!(m.links.len(), 10);
        assert_eq!(m.names[3], "R3");
        let m = generate(&spec(TopologyKind::Line, 100), Path::new("."), &mut rng).unwrap();
        assert_eq!(m.names[7], "R07");
        assert!(m.names.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn grid_of_twelve_is_three_by_four() {
        let mut rng = StdRng::seed_from_u64(1);
        let m = generate(&spec(TopologyKind::Grid, 12), Path::new("."), &mut rng).unwrap();
        assert_eq!(m.names.len(), 12);
        // 3 rows x 4 cols: 3*3 horizontal + 2*4 vertical.
        assert_eq!(m.links.len(), 17);
    }

    #[test]
    fn random_graph_is_connected_and_seeded() {
        let s = spec(TopologyKind::Random, 500);
        let a = generate(&s, Path::new("."), &mut StdRng::seed_from_u64(7)).unwrap();
        let b = generate(&s, Path::new("."), &mut StdRng::seed_from_u64(7)).unwrap();
        assert_eq!(a.links, b.links);
        assert_eq!(a.components, 1);
        let mean = 2.0 * a.links.len() as f64 / 500.0;
        assert!((3.0..5.5).contains(&mean), "mean degree {mean}");
    }

    #[test]
    fn scale_free_graph_has_m_links_per_new_router() {
        let mut s = spec(TopologyKind::ScaleFree, 1000);
        s.m = Some(2);
        let m = generate(&s, Path::new("."), &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(m.components, 1);
        assert_eq!(m.links.len(), 3 + 2 * 997);
    }

    #[test]
    fn pair_indexing_enumerates_all_pairs() {
        let mut seen = Vec::new();
        for i in 0..10u128 {
            seen.push(pair_of(i, 5));
        }
        assert_eq!(seen[0], (1, 0));
        assert_eq!(seen[9], (4, 3));
    }

    #[test]
    fn edge_list_errors_name_file_and_line() {
        let m = parse_edge_list("a b\nb c 3 # slow\n", "e.txt", 1).unwrap();
        assert_eq!(m.names, vec!["a", "b", "c"]);
        assert_eq!(m.links[1].cost, 3);
        let err = parse_edge_list("a b\nb c x\n", "e.txt", 1).unwrap_err();
        assert!(err.to_string().starts_with("edge list e.txt:2:"), "{err}");
    }
}
