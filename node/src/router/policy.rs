//! Connection and link policy of client connections: the limits of the
//! listener and of the vhost the client's `open` hostname picks
//! (`config::policy`), resolved once per connection at its open
//! ([`admit`]) into what the connection actor checks at each begin and
//! attach ([`LinkPolicy`]), and the router-wide connection counts they are
//! checked against ([`ConnectionCounts`]: per listener and per vhost, in
//! total, per user and per remote host). An admitted connection holds an
//! [`Admission`] that gives its counts back when dropped.
//!
//! A violation is answered with the AMQP error that names it and touches
//! nothing else: the connection's open is answered with a close
//! (`amqp:resource-limit-exceeded` for counts and rate,
//! `amqp:unauthorized-access` for a user or hostname the policy does not
//! admit), a begin over the session limit with an end, an attach over the
//! link limits or to a forbidden address with a refusal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bote_amqp::{AmqpError, condition};

use crate::config::ListenerConfig;
use crate::config::policy::{DEFAULT_VHOST, Patterns, VhostConfig};

/// Concurrent connections per scope (a listener, a vhost).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    scopes: Mutex<HashMap<String, Scope>>,
}

#[derive(Debug, Default)]
struct Scope {
    total: u32,
    per_user: HashMap<String, u32>,
    per_host: HashMap<String, u32>,
}

/// Connection limits of one scope; 0 = unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionLimits {
    pub total: u32,
    pub per_user: u32,
    pub per_host: u32,
}

/// The counts one connection holds; given back on drop.
#[derive(Debug)]
pub struct Admission {
    counts: Arc<ConnectionCounts>,
    held: Vec<(String, String, String)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut scopes = self.counts.scopes.lock().unwrap_or_else(|e| e.into_inner());
        for (scope, user, host) in self.held.drain(..) {
            if let Some(s) = scopes.get_mut(&scope) {
                s.total = s.total.saturating_sub(1);
                decrement(&mut s.per_user, &user);
                decrement(&mut s.per_host, &host);
                if s.total == 0 {
                    scopes.remove(&scope);
                }
            }
        }
    }
}

fn decrement(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn over(limit: u32, current: u32) -> bool {
    limit > 0 && current >= limit
}

impl ConnectionCounts {
    /// Counts one connection of `user` from `host` in every scope, or
    /// none if any scope is full (the error names which).
    pub fn admit(
        self: &Arc<Self>,
        scopes: &[(String, ConnectionLimits)],
        user: &str,
        host: &str,
    ) -> Result<Admission, AmqpError> {
        let mut all = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        for (name, limits) in scopes {
            let Some(s) = all.get(name) else { continue };
            let full = if over(limits.total, s.total) {
                Some(format!("{} connections", limits.total))
            } else if over(limits.per_user, s.per_user.get(user).copied().unwrap_or(0)) {
                Some(format!(
                    "{} connections of user \"{user}\"",
                    limits.per_user
                ))
            } else if over(limits.per_host, s.per_host.get(host).copied().unwrap_or(0)) {
                Some(format!("{} connections from host {host}", limits.per_host))
            } else {
                None
            };
            if let Some(full) = full {
                return Err(AmqpError::new(
                    condition::RESOURCE_LIMIT_EXCEEDED,
                    format!("{name} allows at most {full}"),
                ));
            }
        }
        let mut held = Vec::with_capacity(scopes.len());
        for (name, _) in scopes {
            let s = all.entry(name.clone()).or_default();
            s.total += 1;
            *s.per_user.entry(user.to_owned()).or_default() += 1;
            *s.per_host.entry(host.to_owned()).or_default() += 1;
            held.push((name.clone(), user.to_owned(), host.to_owned()));
        }
        Ok(Admission {
            counts: self.clone(),
            held,
        })
    }
}

/// A listener's accept rate: a token bucket of one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Option<RateLimit> {
        (per_second > 0).then(|| RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            at: Instant::now(),
        })
    }

    /// Takes a token for one new connection at `now`; false when empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What one admitted connection may do: checked at each begin and attach.
#[derive(Debug, Default)]
pub struct LinkPolicy {
    /// Sessions; 0 = unlimited.
    pub max_sessions: u32,
    /// Client senders; None = unlimited.
    pub max_senders: Option<u32>,
    /// Client receivers; None = unlimited.
    pub max_receivers: Option<u32>,
    /// A smaller message limit than the listener's, if any.
    pub max_message_size: Option<u64>,
    pub sources: Option<Patterns>,
    pub targets: Option<Patterns>,
    pub allow_dynamic_source: bool,
    pub allow_anonymous_sender: bool,
    /// `vhost/group` for error messages.
    pub scope: String,
}

impl LinkPolicy {
    /// The listener's own limits, without a vhost.
    pub fn of_listener(l: &ListenerConfig) -> LinkPolicy {
        let some = |n: u32| (n > 0).then_some(n);
        LinkPolicy {
            max_sessions: l.max_sessions,
            max_senders: some(l.max_senders),
            max_receivers: some(l.max_receivers),
            max_message_size: None,
            sources: None,
            targets: None,
            allow_dynamic_source: true,
            allow_anonymous_sender: true,
            scope: format!("listener {}", l.socket_address()),
        }
    }

    /// Refusal of a new sender (`to` its target, None for anonymous) when
    /// the connection has `senders` already.
    pub fn check_sender(&self, senders: usize, to: Option<&str>) -> Result<(), AmqpError> {
        if let Some(max) = self.max_senders
            && senders >= max as usize
        {
            return Err(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!("{} allows at most {max} senders per connection", self.scope),
            ));
        }
        match to {
            None if !self.allow_anonymous_sender => Err(AmqpError::new(
                condition::UNAUTHORIZED_ACCESS,
                format!("{} does not allow anonymous senders", self.scope),
            )),
            Some(a) if self.targets.as_ref().is_some_and(|t| !t.allows(a)) => Err(AmqpError::new(
                condition::UNAUTHORIZED_ACCESS,
                format!("{} may not send to '{a}'", self.scope),
            )),
            _ => Ok(()),
        }
    }

    /// Refusal of a new receiver from `from` (None when dynamic).
    pub fn check_receiver(&self, receivers: usize, from: Option<&str>) -> Result<(), AmqpError> {
        if let Some(max) = self.max_receivers
            && receivers >= max as usize
        {
            return Err(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!(
                    "{} allows at most {max} receivers per connection",
                    self.scope
                ),
            ));
        }
        match from {
            None if !self.allow_dynamic_source => Err(AmqpError::new(
                condition::UNAUTHORIZED_ACCESS,
                format!("{} does not allow dynamic sources", self.scope),
            )),
            Some(a) if self.sources.as_ref().is_some_and(|s| !s.allows(a)) => Err(AmqpError::new(
                condition::UNAUTHORIZED_ACCESS,
                format!("{} may not receive from '{a}'", self.scope),
            )),
            _ => Ok(()),
        }
    }

    /// Refusal of one more session when the connection has `sessions`.
    pub fn check_session(&self, sessions: usize) -> Result<(), AmqpError> {
        if self.max_sessions > 0 && sessions > self.max_sessions as usize {
            return Err(AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!(
                    "{} allows at most {} sessions per connection",
                    self.scope, self.max_sessions
                ),
            ));
        }
        Ok(())
    }
}

/// Admits a connection whose open arrived: `hostname` from the open,
/// `user` the authenticated user (`anonymous` without SASL or with
/// ANONYMOUS), `host` the remote IP. Counts it against its listener and
/// vhost and returns what it may do, or the error to close it with.
pub fn admit(
    counts: &Arc<ConnectionCounts>,
    listener: &ListenerConfig,
    vhosts: &[VhostConfig],
    hostname: Option<&str>,
    user: &str,
    host: &str,
) -> Result<(Admission, LinkPolicy), AmqpError> {
    let mut scopes = vec![(
        format!("listener {}", listener.socket_address()),
        ConnectionLimits {
            total: listener.max_connections,
            per_user: listener.max_connections_per_user,
            per_host: listener.max_connections_per_host,
        },
    )];
    let mut policy = LinkPolicy::of_listener(listener);
    if !vhosts.is_empty() {
        let wanted = hostname.unwrap_or("");
        let vhost = vhosts
            .iter()
            .find(|v| v.hostname.eq_ignore_ascii_case(wanted))
            .or_else(|| vhosts.iter().find(|v| v.hostname == DEFAULT_VHOST))
            .ok_or_else(|| {
                AmqpError::new(
                    condition::UNAUTHORIZED_ACCESS,
                    format!("no vhost policy for hostname \"{wanted}\" (and no $default vhost)"),
                )
            })?;
        let group = vhost.group_of(user).ok_or_else(|| {
            AmqpError::new(
                condition::UNAUTHORIZED_ACCESS,
                format!(
                    "user \"{user}\" is in no group of vhost \"{}\" (allow-unknown-user is off)",
                    vhost.hostname
                ),
            )
        })?;
        let pick = |group_value: u32, vhost_value: u32| {
            if group_value > 0 {
                group_value
            } else {
                vhost_value
            }
        };
        scopes.push((
            format!("vhost \"{}\"", vhost.hostname),
            ConnectionLimits {
                total: vhost.max_connections,
                per_user: pick(
                    group.map_or(0, |(_, g)| g.max_connections_per_user),
                    vhost.max_connections_per_user,
                ),
                per_host: pick(
                    group.map_or(0, |(_, g)| g.max_connections_per_host),
                    vhost.max_connections_per_host,
                ),
            },
        ));
        if let Some((name, g)) = group {
            let bad = |e: String| AmqpError::new(condition::INTERNAL_ERROR, e);
            policy.scope = format!("vhost \"{}\" group \"{name}\"", vhost.hostname);
            if g.max_sessions > 0 {
                policy.max_sessions = g.max_sessions;
            }
            policy.max_senders = g.max_senders.or(policy.max_senders);
            policy.max_receivers = g.max_receivers.or(policy.max_receivers);
            policy.max_message_size = (g.max_message_size > 0).then_some(g.max_message_size);
            policy.sources = g
                .sources
                .as_ref()
                .map(|p| Patterns::new(p, user))
                .transpose()
                .map_err(bad)?;
            policy.targets = g
                .targets
                .as_ref()
                .map(|p| Patterns::new(p, user))
                .transpose()
                .map_err(bad)?;
            policy.allow_dynamic_source = g.allow_dynamic_source.unwrap_or(true);
            policy.allow_anonymous_sender = g.allow_anonymous_sender.unwrap_or(true);
        }
    }
    let admission = counts.admit(&scopes, user, host)?;
    Ok((admission, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhosts(text: &str) -> Vec<VhostConfig> {
        crate::config::Config::from_str_named(text, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .vhosts
    }

    #[test]
    fn counts_per_user_and_host_are_given_back_on_drop() {
        let counts = Arc::new(ConnectionCounts::default());
        let l = ListenerConfig {
            max_connections: 3,
            max_connections_per_user: 2,
            max_connections_per_host: 0,
            ..ListenerConfig::default()
        };
        let a1 = admit(&counts, &l, &[], None, "alice", "10.0.0.1").unwrap();
        let _a2 = admit(&counts, &l, &[], None, "alice", "10.0.0.2").unwrap();
        let e = admit(&counts, &l, &[], None, "alice", "10.0.0.3").unwrap_err();
        assert_eq!(e.condition.as_str(), condition::RESOURCE_LIMIT_EXCEEDED);
        assert!(
            e.description
                .unwrap()
                .contains("2 connections of user \"alice\"")
        );
        let _b = admit(&counts, &l, &[], None, "bob", "10.0.0.3").unwrap();
        let e = admit(&counts, &l, &[], None, "carol", "10.0.0.4").unwrap_err();
        assert!(e.description.unwrap().contains("at most 3 connections"));
        drop(a1);
        admit(&counts, &l, &[], None, "alice", "10.0.0.3").unwrap();
    }

    #[test]
    fn the_open_hostname_picks_the_vhost_and_the_user_its_group() {
        let v = vhosts(
            "[[vhost]]\nhostname = \"shop.example\"\nmax-connections-per-host = 1\n\
             [vhost.groups.admins]\nusers = [\"alice\"]\nmax-sessions = 2\n\
             [vhost.groups.\"$default\"]\nmax-senders = 0\nsources = [\"public.#\", \"user.${user}.*\"]\n\
             [[vhost]]\nhostname = \"$default\"\nallow-unknown-user = true\n",
        );
        let counts = Arc::new(ConnectionCounts::default());
        let l = ListenerConfig::default();
        // alice on shop.example: the admins group; a second connection from
        // the same host is over the vhost's per-host limit.
        let (_a, p) = admit(&counts, &l, &v, Some("SHOP.example"), "alice", "10.0.0.1").unwrap();
        assert_eq!(p.max_sessions, 2);
        assert!(p.check_session(2).is_ok() && p.check_session(3).is_err());
        let e = admit(&counts, &l, &v, Some("shop.example"), "alice", "10.0.0.1").unwrap_err();
        assert!(e.description.unwrap().contains("from host 10.0.0.1"));
        // bob is unknown on shop.example (allow-unknown-user off): refused.
        let e = admit(&counts, &l, &v, Some("shop.example"), "bob", "10.0.0.2").unwrap_err();
        assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
        // Another hostname falls to $default, which allows unknown users.
        let (_b, p) = admit(&counts, &l, &v, Some("other"), "bob", "10.0.0.2").unwrap();
        assert!(p.check_sender(0, Some("x")).is_ok());
        assert!(p.sources.is_none());
    }

    #[test]
    fn a_group_limits_links_and_addresses() {
        let v = vhosts(
            "[[vhost]]\nhostname = \"$default\"\nallow-unknown-user = true\n\
             [vhost.groups.\"$default\"]\nmax-senders = 1\nmax-receivers = 0\n\
             targets = [\"queue.${user}\"]\nallow-anonymous-sender = false\n",
        );
        let counts = Arc::new(ConnectionCounts::default());
        let (_a, p) = admit(&counts, &ListenerConfig::default(), &v, None, "bob", "h").unwrap();
        assert!(p.check_sender(0, Some("queue.bob")).is_ok());
        let e = p.check_sender(0, Some("queue.alice")).unwrap_err();
        assert_eq!(e.condition.as_str(), condition::UNAUTHORIZED_ACCESS);
        assert_eq!(
            p.check_sender(1, Some("queue.bob"))
                .unwrap_err()
                .condition
                .as_str(),
            condition::RESOURCE_LIMIT_EXCEEDED
        );
        assert!(p.check_sender(0, None).is_err());
        assert!(p.check_receiver(0, Some("queue.bob")).is_err());
    }

    #[test]
    fn the_rate_limit_refills_over_time() {
        let mut r = RateLimit::new(2).unwrap();
        let t = Instant::now();
        assert!(r.take(t) && r.take(t) && !r.take(t));
        assert!(r.take(t + std::time::Duration::from_millis(600)));
        assert!(RateLimit::new(0).is_none());
    }
}
