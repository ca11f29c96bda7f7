//! The topology file of `botectl up`: routers (id; optional client,
//! inter-router and HTTP ports; optional extra configuration text) and
//! links (a, b, cost), parsed with each value's line so that every error
//! names the file and the line it is about.
//!
//! ```toml
//! router = [{ id = "A" }, { id = "B" }, { id = "C" }]
//! link = [{ a = "A", b = "B" }, { a = "B", b = "C", cost = 2 }]
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

/// A topology file that cannot be used, with the file and line it is about.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct TopologyError {
    pub file: String,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    pub message: String,
}

/// One router of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterDef {
    pub id: String,
    /// The line of its `id`.
    pub line: usize,
    /// The AMQP (client) listener's port; assigned when `None`.
    pub port: Option<PortDef>,
    /// The inter-router listener's port; assigned when `None`.
    pub inter_router_port: Option<PortDef>,
    /// The HTTP API's port; assigned when `None`.
    pub http_port: Option<PortDef>,
    /// Configuration text appended to the router's generated configuration
    /// (address entries, say).
    pub extra: String,
}

/// A port given in the file, with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortDef {
    pub port: u16,
    pub line: usize,
}

/// One link: `b` dials `a`'s inter-router listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDef {
    pub a: String,
    pub b: String,
    pub cost: u32,
    pub line: usize,
}

/// A checked topology: unique ids, links between known routers, connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The file it came from (for messages).
    pub file: String,
    pub routers: Vec<RouterDef>,
    pub links: Vec<LinkDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    router: Vec<RawRouter>,
    #[serde(default)]
    link: Vec<RawLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRouter {
    id: Spanned<String>,
    port: Option<Spanned<u16>>,
    inter_router_port: Option<Spanned<u16>>,
    http_port: Option<Spanned<u16>>,
    #[serde(default)]
    extra: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    a: Spanned<String>,
    b: Spanned<String>,
    cost: Option<Spanned<u32>>,
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Topology {
    /// Reads and checks the topology file at `path`.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the topology file: {e}"),
        })?;
        Topology::parse(&file, &text)
    }

    /// Parses and checks `text` (named `file` in messages).
    pub fn parse(file: &str, text: &str) -> Result<Topology, TopologyError> {
        let err = |line: usize, message: String| TopologyError {
            file: file.to_owned(),
            line,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            err(line, e.message().trim().to_owned())
        })?;
        if raw.router.is_empty() {
            return Err(err(
                1,
                "no routers: add `router = [{ id = \"A\" }, …]`".into(),
            ));
        }
        let mut routers = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut ports: BTreeMap<u16, (String, usize)> = BTreeMap::new();
        for r in raw.router {
            let line = line_of(text, r.id.span().start);
            let id = r.id.into_inner();
            if id.is_empty()
                || id
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '/')
            {
                return Err(err(
                    line,
                    format!("\"{id}\" is not a router id (no spaces, quotes or '/')"),
                ));
            }
            if let Some(first) = seen.get(&id) {
                return Err(err(
                    line,
                    format!("duplicate router id \"{id}\" (first at line {first})"),
                ));
            }
            seen.insert(id.clone(), line);
            let mut port = |p: Option<Spanned<u16>>| -> Result<Option<PortDef>, TopologyError> {
                let Some(p) = p else { return Ok(None) };
                let line = line_of(text, p.span().start);
                let port = p.into_inner();
                if port == 0 {
                    return Err(err(
                        line,
                        "port 0: leave the port out to have one assigned".into(),
                    ));
                }
                if let Some((other, first)) = ports.get(&port) {
                    return Err(err(
                        line,
                        format!("port {port} is also router {other}'s (line {first})"),
                    ));
                }
                ports.insert(port, (id.clone(), line));
                Ok(Some(PortDef { port, line }))
            };
            let def = RouterDef {
                port: port(r.port)?,
                inter_router_port: port(r.inter_router_port)?,
                http_port: port(r.http_port)?,
                id,
                line,
                extra: r.extra,
            };
            routers.push(def);
        }
        let mut links = Vec::new();
        let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
        for l in raw.link {
            let line = line_of(text, l.a.span().start);
            let (a_line, b_line) = (line, line_of(text, l.b.span().start));
            let (a, b) = (l.a.into_inner(), l.b.into_inner());
            for (end, end_line) in [(&a, a_line), (&b, b_line)] {
                if !seen.contains_key(end) {
                    return Err(err(end_line, format!("link to unknown router \"{end}\"")));
                }
            }
            if a == b {
                return Err(err(line, format!("link from router \"{a}\" to itself")));
            }
            let key = if a < b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            };
            if let Some(first) = pairs.get(&key) {
                return Err(err(
                    line,
                    format!("second link between \"{a}\" and \"{b}\" (first at line {first})"),
                ));
            }
            pairs.insert(key, line);
            let cost = match l.cost {
                None => 1,
                Some(c) => {
                    let cost_line = line_of(text, c.span().start);
                    let cost = c.into_inner();
                    if cost == 0 {
                        return Err(err(cost_line, "cost 0: a link's cost is at least 1".into()));
                    }
                    cost
                }
            };
            links.push(LinkDef { a, b, cost, line });
        }
        let topology = Topology {
            file: file.to_owned(),
            routers,
            links,
        };
        if let Some(lost) = topology.unreachable().first() {
            let first = &topology.routers[0].id;
            return Err(err(
                lost.line,
                format!(
                    "disconnected topology: router \"{}\" has no path of links to router \"{first}\"",
                    lost.id
                ),
            ));
        }
        Ok(topology)
    }

    /// The routers with no path of links to the first router.
    fn unreachable(&self) -> Vec<&RouterDef> {
        let mut neighbours: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in &self.links {
            neighbours.entry(&l.a).or_default().push(&l.b);
            neighbours.entry(&l.b).or_default().push(&l.a);
        }
        let mut reached = BTreeSet::new();
        let mut queue = VecDeque::from([self.routers[0].id.as_str()]);
        while let Some(r) = queue.pop_front() {
            if reached.insert(r) {
                queue.extend(neighbours.get(r).into_iter().flatten().copied());
            }
        }
        self.routers
            .iter()
            .filter(|r| !reached.contains(r.id.as_str()))
            .collect()
    }

    /// The file's text for this topology (inline tables, one router or link
    /// a line), as `up --generate` writes it.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("router = [\n");
        for r in &self.routers {
            text.push_str(&format!("  {{ id = \"{}\" }},\n", r.id));
        }
        text.push_str("]\nlink = [\n");
        for l in &self.links {
            text.push_str(&format!(
                "  {{ a = \"{}\", b = \"{}\", cost = {} }},\n",
                l.a, l.b, l.cost
            ));
        }
        text.push_str("]\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, String> {
        Topology::parse("t.toml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_line_of_three_parses_with_default_costs() {
        let t = parse(
            "router = [{ id = \"A\" }, { id = \"B\", port = 25672 }, { id = \"C\" }]\n\
             link = [{ a = \"A\", b = \"B\" }, { a = \"B\", b = \"C\", cost = 3 }]\n",
        )
        .unwrap();
        assert_eq!(t.routers.len(), 3);
        assert_eq!(
            t.routers[1].port,
            Some(PortDef {
                port: 25672,
                line: 1
            })
        );
        assert_eq!(t.links[0].cost, 1);
        assert_eq!(t.links[1].cost, 3);
        let again = parse(&t.to_toml()).unwrap();
        let ends = |t: &Topology| -> Vec<(String, String, u32)> {
            t.links
                .iter()
                .map(|l| (l.a.clone(), l.b.clone(), l.cost))
                .collect()
        };
        assert_eq!(ends(&again), ends(&t));
        assert_eq!(again.links[1].line, 8, "to_toml writes one link a line");
    }

    #[test]
    fn each_bad_file_names_its_line() {
        let cases = [
            (
                "[[router]]\nid = \"A\"\n[[router]]\nid = \"A\"\n",
                "t.toml:4: duplicate router id \"A\" (first at line 2)",
            ),
            (
                "[[router]]\nid = \"A\"\n[[link]]\na = \"A\"\nb = \"Z\"\n",
                "t.toml:5: link to unknown router \"Z\"",
            ),
            (
                "[[router]]\nid = \"A\"\n[[router]]\nid = \"B\"\n[[router]]\nid = \"C\"\n[[link]]\na = \"A\"\nb = \"B\"\n",
                "t.toml:6: disconnected topology: router \"C\" has no path of links to router \"A\"",
            ),
            (
                "[[router]]\nid = \"A\"\nport = 5000\n[[router]]\nid = \"B\"\nhttp-port = 5000\n",
                "t.toml:6: port 5000 is also router A's (line 3)",
            ),
            (
                "[[router]]\nid = \"A\"\ncolour = 1\n",
                "t.toml:3: unknown field `colour`",
            ),
            ("", "t.toml:1: no routers"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(
                got.starts_with(want),
                "{got:?} does not start with {want:?}"
            );
        }
    }
}
