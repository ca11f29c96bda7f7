//! `[[link-route]]` (qdrouterd's `linkRoute`): which attaches are not
//! message-routed but passed, link for link, to a broker's connection (a
//! connector with `role = "route-container"`, named by `connection`, or any
//! route-container connection whose peer opened with `container-id`).
//!
//! A route matches the attach's address (a sender's target, a receiver's
//! source) by `prefix` or `pattern`, with the same token rules and the same
//! precedence as `[[address]]` entries ([`super::address`]); `direction`
//! says which links it takes: `in` the links of clients that send (the
//! router receives on them), `out` those of clients that receive. A prefix
//! usually has one route each way. `add-external-prefix` and
//! `del-external-prefix` rewrite the address the broker sees: the
//! `del-external-prefix` is taken off the front (when present), then
//! `add-external-prefix` put on; the broker's answer is rewritten back.

use serde::Deserialize;

use super::address::{AddressEntry, AddressKey, AddressTable, AddressTableError, Distribution};

/// Which links a route takes, seen from the router (qdrouterd's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkDirection {
    /// Links on which the router receives: clients' senders.
    In,
    /// Links on which the router sends: clients' receivers.
    Out,
}

impl LinkDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDirection::In => "in",
            LinkDirection::Out => "out",
        }
    }
}

/// `[[link-route]]` as written; becomes a [`LinkRouteConfig`] once validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawLinkRoute {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub pattern: Option<String>,
    pub direction: LinkDirection,
    #[serde(alias = "connector")]
    pub connection: Option<String>,
    #[serde(alias = "containerId")]
    pub container_id: Option<String>,
    #[serde(alias = "addExternalPrefix")]
    pub add_external_prefix: Option<String>,
    #[serde(alias = "delExternalPrefix")]
    pub del_external_prefix: Option<String>,
}

/// Where a route's attaches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDestination {
    /// The route-container connector with this name.
    Connection(String),
    /// Any route-container connection whose peer's container-id is this.
    ContainerId(String),
}

/// One validated link route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRouteConfig {
    /// Name for management and logs (`linkRoute/<n>` when not given).
    pub name: String,
    pub key: AddressKey,
    pub direction: LinkDirection,
    pub destination: RouteDestination,
    pub add_external_prefix: Option<String>,
    pub del_external_prefix: Option<String>,
}

impl LinkRouteConfig {
    /// The address the broker sees for a client's `address`.
    pub fn external_address(&self, address: &str) -> String {
        let rest = match &self.del_external_prefix {
            Some(p) => address.strip_prefix(p.as_str()).unwrap_or(address),
            None => address,
        };
        match &self.add_external_prefix {
            Some(p) => format!("{p}{rest}"),
            None => rest.to_owned(),
        }
    }

    /// The client's address for an address the broker answered with (the
    /// inverse of [`external_address`](Self::external_address)).
    pub fn internal_address(&self, external: &str) -> String {
        let rest = match &self.add_external_prefix {
            Some(p) => external.strip_prefix(p.as_str()).unwrap_or(external),
            None => external,
        };
        match &self.del_external_prefix {
            Some(p) => format!("{p}{rest}"),
            None => rest.to_owned(),
        }
    }
}

/// The link routes, matched per direction.
#[derive(Debug, Clone, Default)]
pub struct LinkRouteTable {
    routes: Vec<LinkRouteConfig>,
    /// Per direction: a table whose entry `i` stands for `index[i]`.
    incoming: (AddressTable, Vec<usize>),
    outgoing: (AddressTable, Vec<usize>),
}

impl LinkRouteTable {
    /// Builds the table. Errors name the route (index into `routes`).
    pub fn new(routes: Vec<LinkRouteConfig>) -> Result<Self, (usize, AddressTableError)> {
        let side =
            |dir: LinkDirection| -> Result<(AddressTable, Vec<usize>), (usize, AddressTableError)> {
                let index: Vec<usize> = routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.direction == dir)
                    .map(|(i, _)| i)
                    .collect();
                let entries = index
                    .iter()
                    .map(|&i| AddressEntry {
                        name: Some(routes[i].name.clone()),
                        key: routes[i].key.clone(),
                        distribution: Distribution::Balanced,
                        priority: None,
                    })
                    .collect();
                let table = AddressTable::new(entries, Distribution::Balanced).map_err(|e| {
                    let at = match &e {
                        AddressTableError::InvalidPattern { index: j, .. }
                        | AddressTableError::Duplicate { index: j, .. } => index[*j],
                    };
                    (at, e)
                })?;
                Ok((table, index))
            };
        Ok(LinkRouteTable {
            incoming: side(LinkDirection::In)?,
            outgoing: side(LinkDirection::Out)?,
            routes,
        })
    }

    /// The route that takes a link of `direction` for `address`, if any.
    pub fn matching(&self, address: &str, direction: LinkDirection) -> Option<&LinkRouteConfig> {
        let (table, index) = match direction {
            LinkDirection::In => &self.incoming,
            LinkDirection::Out => &self.outgoing,
        };
        let (i, _) = table.matching(address)?;
        self.routes.get(index[i])
    }

    /// The routes in configuration order.
    pub fn routes(&self) -> &[LinkRouteConfig] {
        &self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: AddressKey, direction: LinkDirection) -> LinkRouteConfig {
        LinkRouteConfig {
            name: key.as_str().to_owned(),
            key,
            direction,
            destination: RouteDestination::Connection("broker".into()),
            add_external_prefix: None,
            del_external_prefix: None,
        }
    }

    #[test]
    fn routes_match_by_direction_and_token_prefix() {
        let table = LinkRouteTable::new(vec![
            route(AddressKey::Prefix("broker".into()), LinkDirection::In),
            route(AddressKey::Pattern("q.*.x".into()), LinkDirection::Out),
        ])
        .unwrap();
        assert!(table.matching("broker.q1", LinkDirection::In).is_some());
        assert!(table.matching("broker", LinkDirection::In).is_some());
        assert!(table.matching("brokerx", LinkDirection::In).is_none());
        assert!(table.matching("broker.q1", LinkDirection::Out).is_none());
        assert_eq!(
            table
                .matching("q.a.x", LinkDirection::Out)
                .map(|r| r.name.as_str()),
            Some("q.*.x")
        );
        assert!(table.matching("q.a.y", LinkDirection::Out).is_none());
    }

    #[test]
    fn external_prefixes_rewrite_the_address_and_back() {
        let mut r = route(AddressKey::Prefix("b".into()), LinkDirection::In);
        r.del_external_prefix = Some("b.".into());
        r.add_external_prefix = Some("queue/".into());
        assert_eq!(r.external_address("b.orders"), "queue/orders");
        assert_eq!(r.internal_address("queue/orders"), "b.orders");
    }

    #[test]
    fn a_duplicate_route_names_the_later_one() {
        let err = LinkRouteTable::new(vec![
            route(AddressKey::Prefix("a".into()), LinkDirection::In),
            route(AddressKey::Prefix("b".into()), LinkDirection::Out),
            route(AddressKey::Pattern("a.#".into()), LinkDirection::In),
        ])
        .unwrap_err();
        assert_eq!(err.0, 2);
    }
}
