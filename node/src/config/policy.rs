//! `[[vhost]]`: qdrouterd's vhost policy, by its names. A client's `open`
//! hostname picks the vhost (exact, case-insensitive; else the vhost named
//! `$default`; else the connection is refused). The vhost limits its
//! connections (total, per user, per remote host); its user groups
//! (`[vhost.groups.NAME]`, `users = [...]`; users in no group get the
//! `$default` group when `allow-unknown-user`) limit sessions, sending and
//! receiving links per connection, message size, and the addresses they may
//! receive from (`sources`) and send to (`targets`): patterns of the
//! address table's syntax (`*` one token, `#` any number; tokens split on
//! `.` or `/`), where `${user}` stands for the user's name.
//!
//! The same connection and link limits exist per listener (their keys on
//! `[[listener]]`), enforced for every connection whatever its vhost.
//! 0 means unlimited everywhere.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::address::{AddressEntry, AddressKey, AddressTable, Distribution};

/// The vhost for hostnames no vhost names.
pub const DEFAULT_VHOST: &str = "$default";
/// The user group of users in no group.
pub const DEFAULT_GROUP: &str = "$default";

/// `[[vhost]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VhostConfig {
    /// The `open` hostname this vhost is for, or `$default`.
    #[serde(alias = "id")]
    pub hostname: String,
    /// Concurrent connections to the vhost. Default 65535.
    #[serde(default = "many", alias = "maxConnections")]
    pub max_connections: u32,
    /// Concurrent connections per user. Default 65535.
    #[serde(default = "many", alias = "maxConnectionsPerUser")]
    pub max_connections_per_user: u32,
    /// Concurrent connections per remote host. Default 65535.
    #[serde(default = "many", alias = "maxConnectionsPerHost")]
    pub max_connections_per_host: u32,
    /// Users in no group connect with the `$default` group's settings
    /// (true) or are refused (false, qdrouterd's default).
    #[serde(default, alias = "allowUnknownUser")]
    pub allow_unknown_user: bool,
    /// User groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
}

fn many() -> u32 {
    65535
}

/// `[vhost.groups.NAME]` (qdrouterd `vhostUserGroupSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GroupConfig {
    /// The authenticated users of the group (`anonymous` for ANONYMOUS and
    /// clients without SASL). A user belongs to one group at most.
    pub users: Vec<String>,
    /// Overrides the vhost's, when not 0.
    #[serde(alias = "maxConnectionsPerUser")]
    pub max_connections_per_user: u32,
    /// Overrides the vhost's, when not 0.
    #[serde(alias = "maxConnectionsPerHost")]
    pub max_connections_per_host: u32,
    /// Sessions per connection; 0 = unlimited.
    #[serde(alias = "maxSessions")]
    pub max_sessions: u32,
    /// Sending links (client senders) per connection; unset = unlimited,
    /// 0 = none allowed (qdrouterd).
    #[serde(alias = "maxSenders")]
    pub max_senders: Option<u32>,
    /// Receiving links (client receivers) per connection; unset =
    /// unlimited, 0 = none allowed.
    #[serde(alias = "maxReceivers")]
    pub max_receivers: Option<u32>,
    /// Largest message in bytes; 0 = the listener's limit.
    #[serde(alias = "maxMessageSize")]
    pub max_message_size: u64,
    /// Address patterns the group may receive from; unset = any.
    pub sources: Option<Vec<String>>,
    /// Address patterns the group may send to; unset = any.
    pub targets: Option<Vec<String>>,
    /// May attach receivers with a dynamic source. Default true.
    #[serde(alias = "allowDynamicSource")]
    pub allow_dynamic_source: Option<bool>,
    /// May attach senders without a target (anonymous senders). Default true.
    #[serde(alias = "allowAnonymousSender")]
    pub allow_anonymous_sender: Option<bool>,
}

/// A set of address patterns with `${user}` substituted, as a lookup.
#[derive(Debug)]
pub struct Patterns(AddressTable);

impl Patterns {
    /// Builds the set for `user`; the error names the bad pattern.
    pub fn new(patterns: &[String], user: &str) -> Result<Patterns, String> {
        let entries = patterns
            .iter()
            .map(|p| AddressEntry {
                name: None,
                key: AddressKey::Pattern(p.replace("${user}", user)),
                distribution: Distribution::Closest,
                priority: None,
            })
            .collect();
        AddressTable::new(entries, Distribution::Unavailable)
            .map(Patterns)
            .map_err(|e| e.to_string())
    }

    /// True if `address` matches one of the patterns.
    pub fn allows(&self, address: &str) -> bool {
        self.0.lookup(address) != Distribution::Unavailable
    }
}

impl VhostConfig {
    /// The group `user` connects as: its group, else `$default` when
    /// unknown users are allowed (`Some(None)` when there is no such
    /// group), else `None` (refused).
    pub fn group_of(&self, user: &str) -> Option<Option<(&str, &GroupConfig)>> {
        if let Some((name, g)) = self
            .groups
            .iter()
            .find(|(_, g)| g.users.iter().any(|u| u == user))
        {
            return Some(Some((name.as_str(), g)));
        }
        if self.allow_unknown_user {
            return Some(
                self.groups
                    .get_key_value(DEFAULT_GROUP)
                    .map(|(n, g)| (n.as_str(), g)),
            );
        }
        None
    }

    /// Checks what serde cannot: patterns, a user in two groups.
    pub fn check(&self) -> Result<(), (Vec<String>, String)> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, g) in &self.groups {
            for u in &g.users {
                if let Some(other) = seen.insert(u, name) {
                    return Err((
                        vec!["groups".into(), name.clone(), "users".into()],
                        format!("user \"{u}\" is already in group \"{other}\""),
                    ));
                }
            }
            for (key, patterns) in [("sources", &g.sources), ("targets", &g.targets)] {
                if let Some(p) = patterns {
                    Patterns::new(p, "user")
                        .map_err(|e| (vec!["groups".into(), name.clone(), key.into()], e))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_substitute_the_user_and_match_tokens() {
        let p = Patterns::new(&["queue.#".into(), "user.${user}.*".into()], "alice").unwrap();
        assert!(p.allows("queue") && p.allows("queue.a.b"));
        assert!(p.allows("user.alice.inbox"));
        assert!(!p.allows("user.bob.inbox"));
        assert!(!p.allows("topic.x"));
    }
}
