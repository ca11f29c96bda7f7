//! `botectl topology`: the mesh as one router sees it (its `router.node`
//! entities: each router's next hop and cost from there, and the link costs
//! of each), or the mesh of a `bote-sim` scenario (generated as the
//! simulator generates it, routes computed with the same `bote-topology`
//! code), printed as a table, Graphviz DOT or JSON.

use std::collections::BTreeSet;
use std::path::Path;

use bote_amqp::codec::Value;
use bote_topology::{LinkStateDb, LinkStateRecord, RouterId, Routes};
use serde_json::{Value as Json, json};

use super::render::table;

/// One router as seen from the viewpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterRow {
    pub id: String,
    /// `(self)` for the viewpoint; empty when unreachable.
    pub next_hop: String,
    pub cost: Option<u32>,
    /// Neighbours with the cost of the link to each.
    pub neighbours: Vec<(String, u32)>,
}

/// A mesh from one router's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTopology {
    pub router: String,
    pub routers: Vec<RouterRow>,
}

impl MeshTopology {
    /// From `router.node` rows with `id`, `nextHop`, `cost` and `linkCosts`
    /// (neighbour -> cost), as `attributes` name them.
    pub fn from_nodes(attributes: &[String], rows: &[Vec<Value>]) -> MeshTopology {
        let col = |row: &Vec<Value>, name: &str| {
            attributes
                .iter()
                .position(|a| a == name)
                .and_then(|i| row.get(i).cloned())
                .unwrap_or(Value::Null)
        };
        let mut me = String::new();
        let mut routers: Vec<RouterRow> = rows
            .iter()
            .map(|r| {
                let id = col(r, "id").as_str().unwrap_or_default().to_owned();
                let next_hop = col(r, "nextHop").as_str().unwrap_or_default().to_owned();
                if next_hop == "(self)" {
                    me = id.clone();
                }
                let neighbours = match col(r, "linkCosts") {
                    Value::Map(m) => m
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str()?.to_owned(), u32::try_from(v.as_i64()?).ok()?))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                RouterRow {
                    id,
                    next_hop,
                    cost: col(r, "cost").as_i64().and_then(|c| u32::try_from(c).ok()),
                    neighbours,
                }
            })
            .collect();
        routers.sort_by(|a, b| a.id.cmp(&b.id));
        MeshTopology {
            router: me,
            routers,
        }
    }

    /// The mesh a `bote-sim` scenario starts with (its topology generated
    /// with the scenario's seed), seen from `from` (default: the first
    /// router).
    pub fn from_sim(path: &Path, from: Option<&str>) -> Result<MeshTopology, String> {
        use rand::SeedableRng;
        let scenario = bote_sim::Scenario::load(path).map_err(|e| e.to_string())?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(scenario.file.seed);
        let mesh = bote_sim::generate::generate(scenario.file.topology.get_ref(), &base, &mut rng)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut neighbours: Vec<Vec<(String, u32)>> = vec![Vec::new(); mesh.names.len()];
        for l in &mesh.links {
            neighbours[l.a].push((mesh.names[l.b].clone(), l.cost));
            neighbours[l.b].push((mesh.names[l.a].clone(), l.cost));
        }
        let mut lsdb = LinkStateDb::new();
        for (i, name) in mesh.names.iter().enumerate() {
            let record = LinkStateRecord::new(
                RouterId::from(name.as_str()),
                1,
                1,
                neighbours[i]
                    .iter()
                    .map(|(n, c)| (RouterId::from(n.as_str()), *c)),
            );
            lsdb.offer(std::sync::Arc::new(record));
        }
        let me = match from {
            Some(f) if mesh.names.iter().any(|n| n == f) => f.to_owned(),
            Some(f) => {
                return Err(format!(
                    "{}: no router named {f:?} in the mesh",
                    path.display()
                ));
            }
            None => mesh.names.first().cloned().unwrap_or_default(),
        };
        let routes = Routes::compute(&RouterId::from(me.as_str()), &lsdb);
        let mut routers: Vec<RouterRow> = mesh
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let route = routes.route(&RouterId::from(name.as_str()));
                let mut n = neighbours[i].clone();
                n.sort();
                RouterRow {
                    id: name.clone(),
                    next_hop: if *name == me {
                        "(self)".into()
                    } else {
                        route
                            .as_ref()
                            .map(|r| r.next_hop.as_str().to_owned())
                            .unwrap_or_default()
                    },
                    cost: if *name == me {
                        Some(0)
                    } else {
                        route.map(|r| r.cost)
                    },
                    neighbours: n,
                }
            })
            .collect();
        routers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(MeshTopology {
            router: me,
            routers,
        })
    }

    /// Each link once (lower id first), with its cost.
    pub fn links(&self) -> Vec<(String, String, u32)> {
        let mut seen = BTreeSet::new();
        for r in &self.routers {
            for (n, cost) in &r.neighbours {
                let (a, b) = if r.id < *n { (&r.id, n) } else { (n, &r.id) };
                seen.insert((a.clone(), b.clone(), *cost));
            }
        }
        seen.into_iter().collect()
    }

    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .routers
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    if r.next_hop.is_empty() {
                        "-".into()
                    } else {
                        r.next_hop.clone()
                    },
                    r.cost.map_or("-".into(), |c| c.to_string()),
                    r.neighbours.len().to_string(),
                ]
            })
            .collect();
        let links: Vec<Vec<String>> = self
            .links()
            .into_iter()
            .map(|(a, b, c)| vec![a, b, c.to_string()])
            .collect();
        format!(
            "{}\n{}",
            table(
                &format!(
                    "Routers ({}, seen from {})",
                    self.routers.len(),
                    self.router
                ),
                &["router", "next-hop", "cost", "links"],
                &rows,
            ),
            table(
                &format!("Links ({})", links.len()),
                &["from", "to", "cost"],
                &links
            )
        )
    }

    pub fn dot(&self) -> String {
        let mut out = String::from("graph mesh {\n  node [shape=box];\n");
        for r in &self.routers {
            let style = if r.id == self.router {
                ", style=bold"
            } else {
                ""
            };
            out.push_str(&format!("  {:?} [label={:?}{style}];\n", r.id, r.id));
        }
        for (a, b, c) in self.links() {
            out.push_str(&format!("  {a:?} -- {b:?} [label=\"{c}\"];\n"));
        }
        out.push_str("}\n");
        out
    }

    /// The same shape as the HTTP API's `/api/v1/topology`.
    pub fn json(&self) -> Json {
        json!({
            "router": self.router,
            "routers": self.routers.iter().map(|r| json!({
                "id": r.id, "next_hop": r.next_hop, "cost": r.cost,
                "neighbours": r.neighbours.iter().map(|(n, c)| json!({"id": n, "cost": c}))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "links": self.links().into_iter()
                .map(|(a, b, c)| json!({"from": a, "to": b, "cost": c})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, next: &str, cost: i64, links: &[(&str, i64)]) -> Vec<Value> {
        vec![
            Value::from(id),
            Value::from(next),
            Value::Long(cost),
            Value::Map(
                links
                    .iter()
                    .map(|(n, c)| (Value::from(*n), Value::Long(*c)))
                    .collect(),
            ),
        ]
    }

    #[test]
    fn nodes_become_routers_and_links_listed_once() {
        let names: Vec<String> = ["id", "nextHop", "cost", "linkCosts"]
            .map(String::from)
            .to_vec();
        let t = MeshTopology::from_nodes(
            &names,
            &[
                row("B", "B", 1, &[("A", 1), ("C", 5)]),
                row("A", "(self)", 0, &[("B", 1)]),
                row("C", "B", 6, &[("B", 5)]),
            ],
        );
        assert_eq!(t.router, "A");
        assert_eq!(
            t.links(),
            vec![("A".into(), "B".into(), 1), ("B".into(), "C".into(), 5)]
        );
        assert!(t.dot().contains("\"B\" -- \"C\" [label=\"5\"];"));
        assert_eq!(t.json()["links"][1]["cost"], 5);
        assert!(t.table().contains("Links (2)"));
    }

    #[test]
    fn a_sim_scenario_mesh_is_generated_with_its_seed_and_routed() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sim/scenarios/ring10.toml");
        let t = MeshTopology::from_sim(&path, None).unwrap();
        assert_eq!(t.routers.len(), 10);
        assert_eq!(t.links().len(), 10);
        let far = t.routers.iter().filter_map(|r| r.cost).max().unwrap();
        assert!(far >= 5, "a ring of 10 has a router 5 hops away: {far}");
    }
}
