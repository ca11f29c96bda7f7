//! `[[auto-link]]` (qdrouterd's `autoLink`): a link the router itself keeps
//! attached to a broker's queue on a route-container connection, so that
//! the queue takes part in message routing of `address`. `direction =
//! "out"`: the router sends to the queue what is sent to the address (the
//! queue is a consumer of the address); `direction = "in"`: the router
//! receives from the queue and routes it to the address's consumers (the
//! queue is a producer). The queue's name on the broker is
//! `external-address`, or the address itself.

use serde::Deserialize;

use super::link_route::{LinkDirection, RouteDestination};

/// `[[auto-link]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAutoLink {
    pub name: Option<String>,
    #[serde(alias = "addr")]
    pub address: String,
    pub direction: LinkDirection,
    #[serde(alias = "connector")]
    pub connection: Option<String>,
    #[serde(alias = "containerId")]
    pub container_id: Option<String>,
    #[serde(alias = "externalAddress", alias = "externalAddr")]
    pub external_address: Option<String>,
}

/// One validated auto-link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoLinkConfig {
    /// Name for management and logs (`autoLink/<n>` when not given).
    pub name: String,
    pub address: String,
    pub direction: LinkDirection,
    pub destination: RouteDestination,
    pub external_address: Option<String>,
}

impl AutoLinkConfig {
    /// The queue's address on the broker.
    pub fn broker_address(&self) -> &str {
        self.external_address.as_deref().unwrap_or(&self.address)
    }

    /// Whether the route-container connection of `connector`, whose broker
    /// is `container_id`, is this auto-link's.
    pub fn is_for(&self, connector: &str, container_id: &str) -> bool {
        match &self.destination {
            RouteDestination::Connection(name) => name == connector,
            RouteDestination::ContainerId(id) => id == container_id,
        }
    }
}
