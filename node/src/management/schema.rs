//! The entity types management serves, as data: qdrouterd's type names
//! (`org.apache.qpid.dispatch.` + short name), its attribute names in the
//! order its agent lists them (`name`, `identity`, `type` first), the base
//! types and the operations each type allows.

/// The prefix of every qdrouterd entity type name.
pub const PREFIX: &str = "org.apache.qpid.dispatch.";

/// The management node's own type (node-level operations use it).
pub const MANAGEMENT_NODE_TYPE: &str = "org.amqp.management";

/// One entity type.
#[derive(Debug, PartialEq, Eq)]
pub struct EntityType {
    /// The short name (`connection`, `router.link`, ...).
    pub short: &'static str,
    /// The full name (`org.apache.qpid.dispatch.connection`).
    pub name: &'static str,
    /// The base types, as GET-TYPES lists them.
    pub extends: &'static [&'static str],
    pub attributes: &'static [&'static str],
    pub operations: &'static [&'static str],
}

impl EntityType {
    /// True if the type has the attribute.
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes.contains(&attribute)
    }

    pub fn allows(&self, operation: &str) -> bool {
        self.operations.contains(&operation)
    }
}

const OPERATIONAL: &[&str] = &[
    "org.apache.qpid.dispatch.operationalEntity",
    "org.apache.qpid.dispatch.entity",
];
const CONFIGURATION: &[&str] = &[
    "org.apache.qpid.dispatch.configurationEntity",
    "org.apache.qpid.dispatch.entity",
];
const READ_ONLY: &[&str] = &["READ", "QUERY"];

pub const ROUTER: EntityType = EntityType {
    short: "router",
    name: "org.apache.qpid.dispatch.router",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "id",
        "mode",
        "area",
        "version",
        "metadata",
        "addrCount",
        "linkCount",
        "nodeCount",
        "linkRouteCount",
        "autoLinkCount",
        "connectionCount",
        "presettledDeliveries",
        "droppedPresettledDeliveries",
        "acceptedDeliveries",
        "rejectedDeliveries",
        "releasedDeliveries",
        "modifiedDeliveries",
        "deliveriesDelayed1Sec",
        "deliveriesDelayed10Sec",
        "deliveriesStuck",
        "deliveriesIngress",
        "deliveriesEgress",
        "deliveriesTransit",
        "deliveriesIngressRouteContainer",
        "deliveriesEgressRouteContainer",
        "deliveriesRedirectedToFallback",
        "linksBlocked",
        "uptimeSeconds",
        "memoryUsage",
        "workerThreads",
    ],
    operations: READ_ONLY,
};

pub const CONNECTION: EntityType = EntityType {
    short: "connection",
    name: "org.apache.qpid.dispatch.connection",
    extends: OPERATIONAL,
    attributes: &[
        "name",
        "identity",
        "host",
        "role",
        "protocol",
        "dir",
        "container",
        "sasl",
        "isAuthenticated",
        "user",
        "isEncrypted",
        "sslProto",
        "sslCipher",
        "properties",
        "sslSsf",
        "tenant",
        "type",
        "ssl",
        "opened",
        "active",
        "adminStatus",
        "operStatus",
        "uptimeSeconds",
        "lastDlvSeconds",
        "enableProtocolTrace",
    ],
    operations: READ_ONLY,
};

pub const LINK: EntityType = EntityType {
    short: "router.link",
    name: "org.apache.qpid.dispatch.router.link",
    extends: OPERATIONAL,
    attributes: &[
        "name",
        "identity",
        "type",
        "linkName",
        "linkType",
        "linkDir",
        "owningAddr",
        "capacity",
        "peer",
        "undeliveredCount",
        "unsettledCount",
        "deliveryCount",
        "connectionId",
        "adminStatus",
        "operStatus",
        "presettledCount",
        "droppedPresettledCount",
        "acceptedCount",
        "rejectedCount",
        "releasedCount",
        "modifiedCount",
        "deliveriesDelayed1Sec",
        "deliveriesDelayed10Sec",
        "deliveriesStuck",
        "ingressHistogram",
        "priority",
        "settleRate",
        "creditAvailable",
        "zeroCreditSeconds",
    ],
    operations: READ_ONLY,
};

pub const ADDRESS: EntityType = EntityType {
    short: "router.address",
    name: "org.apache.qpid.dispatch.router.address",
    extends: OPERATIONAL,
    attributes: &[
        "name",
        "identity",
        "type",
        "key",
        "distribution",
        "inProcess",
        "subscriberCount",
        "remoteCount",
        "containerCount",
        "remoteHostRouters",
        "deliveriesIngress",
        "deliveriesEgress",
        "deliveriesTransit",
        "deliveriesToContainer",
        "deliveriesFromContainer",
        "deliveriesEgressRouteContainer",
        "deliveriesIngressRouteContainer",
        "transitOutstanding",
        "trackedDeliveries",
        "priority",
        "deliveriesRedirectedToFallback",
    ],
    operations: READ_ONLY,
};

/// `linkCosts` (neighbour -> link cost) is Bote's addition: qdrouterd's
/// `linkState` names the neighbours only.
pub const NODE: EntityType = EntityType {
    short: "router.node",
    name: "org.apache.qpid.dispatch.router.node",
    extends: OPERATIONAL,
    attributes: &[
        "name",
        "identity",
        "type",
        "id",
        "protocolVersion",
        "instance",
        "linkState",
        "nextHop",
        "validOrigins",
        "address",
        "routerLink",
        "cost",
        "lastTopoChange",
        "index",
        "linkCosts",
    ],
    operations: READ_ONLY,
};

pub const LISTENER: EntityType = EntityType {
    short: "listener",
    name: "org.apache.qpid.dispatch.listener",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "host",
        "port",
        "socketAddressFamily",
        "role",
        "cost",
        "sslProfile",
        "saslMechanisms",
        "authenticatePeer",
        "saslPlugin",
        "requireEncryption",
        "requireSsl",
        "trustedCertsFile",
        "maxFrameSize",
        "maxSessions",
        "maxSessionFrames",
        "idleTimeoutSeconds",
        "initialHandshakeTimeoutSeconds",
        "stripAnnotations",
        "linkCapacity",
        "multiTenant",
        "failoverUrls",
        "healthz",
        "metrics",
        "websockets",
        "http",
        "httpRootDir",
        "messageLoggingComponents",
        "policyVhost",
        "openProperties",
    ],
    operations: &["CREATE", "READ", "DELETE", "QUERY"],
};

pub const CONNECTOR: EntityType = EntityType {
    short: "connector",
    name: "org.apache.qpid.dispatch.connector",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "host",
        "port",
        "protocolFamily",
        "role",
        "cost",
        "sslProfile",
        "saslMechanisms",
        "allowRedirect",
        "maxFrameSize",
        "maxSessions",
        "maxSessionFrames",
        "idleTimeoutSeconds",
        "stripAnnotations",
        "linkCapacity",
        "verifyHostname",
        "saslUsername",
        "saslPassword",
        "messageLoggingComponents",
        "failoverUrls",
        "connectionStatus",
        "connectionMsg",
        "policyVhost",
        "openProperties",
    ],
    operations: &["CREATE", "READ", "UPDATE", "DELETE", "QUERY"],
};

pub const CONFIG_ADDRESS: EntityType = EntityType {
    short: "router.config.address",
    name: "org.apache.qpid.dispatch.router.config.address",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "prefix",
        "distribution",
        "waypoint",
        "ingressPhase",
        "egressPhase",
        "pattern",
        "priority",
        "fallback",
    ],
    operations: &["CREATE", "READ", "DELETE", "QUERY"],
};

/// `[[link-route]]` entries, with whether a broker for each is reachable
/// (`qdstat --linkroutes`). Read-only here: routes come from the
/// configuration file.
pub const CONFIG_LINK_ROUTE: EntityType = EntityType {
    short: "router.config.linkRoute",
    name: "org.apache.qpid.dispatch.router.config.linkRoute",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "prefix",
        "pattern",
        "addExternalPrefix",
        "delExternalPrefix",
        "containerId",
        "connection",
        "distribution",
        "direction",
        "operStatus",
    ],
    operations: READ_ONLY,
};

/// `[[auto-link]]` entries with their state and last error
/// (`qdstat --autolinks`). Read-only here.
pub const CONFIG_AUTO_LINK: EntityType = EntityType {
    short: "router.config.autoLink",
    name: "org.apache.qpid.dispatch.router.config.autoLink",
    extends: CONFIGURATION,
    attributes: &[
        "name",
        "identity",
        "type",
        "address",
        "direction",
        "phase",
        "containerId",
        "connection",
        "externalAddress",
        "fallback",
        "linkRef",
        "operStatus",
        "lastError",
    ],
    operations: READ_ONLY,
};

/// qdrouterd's memory pools. Bote has none, so a QUERY returns no rows
/// (and `qdstat -m` says "No memory statistics available").
pub const ALLOCATOR: EntityType = EntityType {
    short: "allocator",
    name: "org.apache.qpid.dispatch.allocator",
    extends: OPERATIONAL,
    attributes: &[
        "name",
        "identity",
        "type",
        "typeName",
        "typeSize",
        "transferBatchSize",
        "localFreeListMax",
        "globalFreeListMax",
        "totalAllocFromHeap",
        "totalFreeToHeap",
        "heldByThreads",
        "batchesRebalancedToThreads",
        "batchesRebalancedToGlobal",
    ],
    operations: READ_ONLY,
};

/// Every type, in the order GET-TYPES lists them.
pub const ENTITY_TYPES: &[&EntityType] = &[
    &ROUTER,
    &CONNECTION,
    &LINK,
    &ADDRESS,
    &NODE,
    &LISTENER,
    &CONNECTOR,
    &CONFIG_ADDRESS,
    &CONFIG_LINK_ROUTE,
    &CONFIG_AUTO_LINK,
    &ALLOCATOR,
];

/// The type named `name`, long (`org.apache.qpid.dispatch.connection`) or
/// short (`connection`).
pub fn lookup(name: &str) -> Option<&'static EntityType> {
    let short = name.strip_prefix(PREFIX).unwrap_or(name);
    ENTITY_TYPES.iter().copied().find(|t| t.short == short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_found_by_long_and_short_name_and_list_name_identity_type_first() {
        for t in ENTITY_TYPES {
            assert_eq!(t.name, format!("{PREFIX}{}", t.short));
            assert_eq!(lookup(t.name), Some(*t));
            assert_eq!(lookup(t.short), Some(*t));
            for base in ["name", "identity", "type"] {
                assert!(t.has(base), "{} lacks {base}", t.name);
            }
            let mut seen = std::collections::HashSet::new();
            assert!(
                t.attributes.iter().all(|a| seen.insert(a)),
                "{} repeats an attribute",
                t.name
            );
        }
        assert_eq!(lookup("org.apache.qpid.dispatch.policy"), None);
    }
}
