//! Retained messages: the last retained message of each topic, on every
//! router with an MQTT listener, given to a new subscription before
//! anything else.
//!
//! A retained PUBLISH goes to its topic as usual and, as a presettled copy
//! of the same AMQP message (`to` = the topic), to the multicast address
//! [`RETAIN_ADDRESS`] (`_mqtt/retain`). Every router with an MQTT listener
//! has one consumer on that address, [`RetainConsumer`], which keeps the
//! message in its router's [`RetainStore`] (replacing the topic's previous
//! one; an empty payload clears the topic). So each router answers a new
//! subscription from its own store, whichever router the message was
//! published on. An AMQP client retains a message the same way: send it to
//! `_mqtt/retain` with `to` set to the topic (the body as MQTT subscribers
//! would get it, `mqtt::message`; an empty one clears).
//!
//! Held in memory and, with `[router] data-dir`, in the router's store on
//! disk ([`super::store`]): each change is committed there before it is
//! applied in memory (so a message a subscriber was given is on disk), and
//! the store is read back at start. A router that starts (or restarts)
//! after a message was retained gets it from another MQTT router of the
//! mesh (anti-entropy, [`super::mesh`]): each topic's last change (set
//! or clear, a clear kept as a tombstone) has a version, the time this
//! router took it; a synced change newer than the router's own applies,
//! and a live change that arrives meanwhile wins ([`RetainStore::fill`]).
//! The store takes at most [`MAX_TOPICS`]
//! topics and [`MAX_BYTES`] bytes, past which a new topic is not retained
//! (logged; replacing or clearing a topic already retained still works).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use bytes::Bytes;

use super::store::{Change, MqttStore, StoreWriter};
use crate::config::Config;
use crate::delivery::{ConnId, OutcomeBatch};
use crate::router::Shared;
use crate::router::address::{AttachConsumer, Deliver};
pub use crate::router::filter::RETAIN_ADDRESS;
use crate::router::link::LinkCounters;
use bote_amqp::{LinkId, MessageView, SessionId};

/// Topics a router retains at most.
pub const MAX_TOPICS: usize = 100_000;
/// Bytes of retained messages a router keeps at most.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// A router's retained messages: topic -> the AMQP message.
#[derive(Default)]
pub struct RetainStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_topic: BTreeMap<String, Bytes>,
    bytes: usize,
    /// The version of each topic's last change (set or clear: a cleared
    /// topic keeps its version as a tombstone, at most [`MAX_TOPICS`]
    /// of them): when this router took it (µs since the epoch), or the
    /// version of the synced copy it filled; 0 if unknown.
    versions: HashMap<String, u64>,
    /// While this router has not finished its anti-entropy sync
    /// ([`super::mesh`]): the topics with a live change (set or clear)
    /// since it started, whose synced copies are ignored.
    touched: Option<HashSet<String>>,
}

impl RetainStore {
    /// Keeps `message` as `topic`'s retained message, or clears the topic
    /// when `clear`, as the change of version `version`. False if it was
    /// not kept (the store is full).
    pub fn set(&self, topic: &str, message: Bytes, clear: bool, version: u64) -> bool {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        i.versions.insert(topic.to_owned(), version);
        if let Some(old) = i.by_topic.remove(topic) {
            i.bytes -= old.len();
        }
        if clear {
            i.bound_tombstones();
            return true;
        }
        if i.by_topic.len() >= MAX_TOPICS || i.bytes + message.len() > MAX_BYTES {
            return false;
        }
        i.bytes += message.len();
        i.by_topic.insert(topic.to_owned(), message);
        true
    }

    /// The versions of the topics read back from the store at start
    /// (topics without a message are tombstones of clears).
    pub fn restore_versions(&self, versions: HashMap<String, u64>) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        i.versions = versions;
        i.bound_tombstones();
    }

    /// A live change (set or clear) of `topic` arrived: while a sync is
    /// under way, the topic's synced copy is ignored from now on.
    pub fn touch(&self, topic: &str) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &mut i.touched {
            t.insert(topic.to_owned());
        }
    }

    /// Starts tracking live changes for a sync (see [`Self::fill`]).
    pub fn begin_sync(&self) {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        i.touched.get_or_insert_with(HashSet::new);
    }

    /// The sync is over: live changes are no longer tracked.
    pub fn end_sync(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).touched = None;
    }

    /// Another router's last change of `topic` (anti-entropy): its
    /// message, or `None` for a clear, at `version`. Applied only if it
    /// is newer than this router's last change of the topic and the
    /// topic had no live change since the sync began (a live set or
    /// clear wins over any synced copy), within the bounds. True if it
    /// was applied.
    pub fn fill(&self, topic: &str, message: Option<Bytes>, version: u64) -> bool {
        let mut i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if i.touched.as_ref().is_some_and(|t| t.contains(topic))
            || i.versions.get(topic).is_some_and(|&v| v >= version)
        {
            return false;
        }
        let old = i.by_topic.get(topic).map_or(0, Bytes::len);
        let Some(message) = message else {
            i.by_topic.remove(topic);
            i.bytes -= old;
            i.versions.insert(topic.to_owned(), version);
            i.bound_tombstones();
            return true;
        };
        let topics = i.by_topic.len() - usize::from(i.by_topic.contains_key(topic));
        if topics >= MAX_TOPICS || i.bytes - old + message.len() > MAX_BYTES {
            return false;
        }
        i.bytes = i.bytes - old + message.len();
        i.by_topic.insert(topic.to_owned(), message);
        i.versions.insert(topic.to_owned(), version);
        true
    }

    /// Every topic's last change (for a peer's sync): the retained
    /// messages and the clears remembered, with their versions.
    pub fn all(&self) -> Vec<(String, Option<Bytes>, u64)> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = i
            .by_topic
            .iter()
            .map(|(t, m)| {
                (
                    t.clone(),
                    Some(m.clone()),
                    i.versions.get(t).copied().unwrap_or(0),
                )
            })
            .collect();
        for (t, v) in &i.versions {
            if !i.by_topic.contains_key(t) {
                out.push((t.clone(), None, *v));
            }
        }
        out
    }

    /// Whether [`Self::set`] would keep a `len`-byte message for `topic`.
    pub fn admits(&self, topic: &str, len: usize) -> bool {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (topics, bytes) = match i.by_topic.get(topic) {
            Some(old) => (i.by_topic.len() - 1, i.bytes - old.len()),
            None => (i.by_topic.len(), i.bytes),
        };
        topics < MAX_TOPICS && bytes + len <= MAX_BYTES
    }

    /// The retained messages whose topic `filter` matches, by topic.
    pub fn matching(&self, filter: &str) -> Vec<Bytes> {
        let i = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !crate::router::filter::is_filter(filter) {
            return i.by_topic.get(filter).cloned().into_iter().collect();
        }
        i.by_topic
            .iter()
            .filter(|(t, _)| crate::router::filter::matches(filter, t))
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_topic
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Keeps at most [`MAX_TOPICS`] tombstones: past that, all of them
    /// go (a sync may then bring back a topic cleared before).
    fn bound_tombstones(&mut self) {
        if self.versions.len() > self.by_topic.len() + MAX_TOPICS {
            let by_topic = &self.by_topic;
            self.versions.retain(|t, _| by_topic.contains_key(t));
        }
    }
}

/// The router's MQTT state, in `Shared::protocol_state`.
#[derive(Default)]
pub struct MqttState {
    pub retained: RetainStore,
    /// The store on disk (`[router] data-dir`), if any.
    pub store: Option<StoreWriter>,
    /// The router's MQTT node ([`super::mesh`]), once started.
    pub node: std::sync::OnceLock<Addr<super::mesh::MqttNode>>,
}

/// The router's MQTT state (set when the router started with an MQTT
/// listener; a new empty one otherwise, for a router without).
pub fn state(shared: &Shared) -> Arc<MqttState> {
    let any = shared
        .protocol_state
        .get_or_init(|| Arc::new(MqttState::default()))
        .clone();
    any.downcast::<MqttState>()
        .unwrap_or_else(|_| Arc::new(MqttState::default()))
}

/// Sets up the router's MQTT state: opens its store on disk if `[router]
/// data-dir` is set and reads the retained messages back, restores the
/// persistent sessions ([`super::connection::restore`]), and starts the
/// router's MQTT node ([`super::mesh`]) and the retained-message consumer
/// on [`RETAIN_ADDRESS`].
pub fn start(shared: &Arc<Shared>, config: &Config) -> anyhow::Result<()> {
    let mut state = MqttState::default();
    let mut sessions = Vec::new();
    let mut replicas = Vec::new();
    match &config.router.data_dir {
        None => tracing::info!(
            "MQTT retained messages and sessions are kept in memory only ([router] data-dir is not set)"
        ),
        Some(dir) => {
            let mut store = MqttStore::open(dir, &shared.router_id)?;
            for (topic, message) in store.retained(MAX_TOPICS, MAX_BYTES)? {
                state.retained.set(&topic, message, false, 0);
            }
            state.retained.restore_versions(store.retained_versions()?);
            sessions = store.sessions()?;
            replicas = store.replicas()?;
            tracing::info!(
                "MQTT store {}: {} retained message(s), {} persistent session(s) read, and {} replica(s) of other routers' sessions",
                store.path().display(),
                state.retained.len(),
                sessions.len(),
                replicas.len()
            );
            state.store = Some(StoreWriter::start(store));
        }
    }
    let state = Arc::new(state);
    if shared.protocol_state.set(state.clone()).is_err() {
        anyhow::bail!("the router's MQTT state was set up twice");
    }
    // The node first: restored sessions announce themselves to it.
    let (sh, st) = (shared.clone(), state.clone());
    let node = super::mesh::MqttNode::start_in_arbiter(&shared.next_worker(), move |_| {
        super::mesh::MqttNode::new(sh, st, replicas)
    });
    let _ = state.node.set(node);
    super::connection::restore(shared, config, &state, sessions);
    let worker = shared.next_worker();
    let shared = shared.clone();
    RetainConsumer::start_in_arbiter(&worker, move |_| RetainConsumer {
        conn: shared.next_conn_id(),
        shared,
        state,
        counters: Arc::new(LinkCounters::default()),
        last_version: 0,
    });
    Ok(())
}

/// The router's consumer of [`RETAIN_ADDRESS`]: keeps what arrives in the
/// store.
pub struct RetainConsumer {
    conn: ConnId,
    shared: Arc<Shared>,
    state: Arc<MqttState>,
    counters: Arc<LinkCounters>,
    /// The version of the last live change taken.
    last_version: u64,
}

const LINK: LinkId = LinkId {
    session: SessionId(0),
    handle: 0,
};

impl Actor for RetainConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .addresses
            .get(RETAIN_ADDRESS)
            .do_send(AttachConsumer {
                conn: self.conn,
                link: LINK,
                deliver: ctx.address().recipient(),
                counters: self.counters.clone(),
                capacity: u32::MAX,
            });
    }
}

impl Handler<Deliver> for RetainConsumer {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        let mut returns = OutcomeBatch::default();
        let mut changes = Vec::new();
        for mut d in msg.deliveries {
            self.counters
                .undelivered
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            returns.credit(&mut d);
            let kept = MessageView::parse(d.message.clone())
                .ok()
                .and_then(|v| v.to().ok().flatten().map(str::to_owned))
                .map(|topic| {
                    let (_, payload, _) = super::message::from_amqp(&d.message, &topic);
                    (topic, payload.is_empty())
                });
            let state = match kept {
                Some((topic, empty)) => {
                    // Newer than any copy a sync under way brings.
                    self.state.retained.touch(&topic);
                    if empty || self.state.retained.admits(&topic, d.message.len()) {
                        let version = self.next_version();
                        changes.push((topic, (!empty).then(|| d.message.clone()), version));
                    } else {
                        tracing::warn!(%topic, "retained message not kept: the store is full ({MAX_TOPICS} topics, {MAX_BYTES} bytes)");
                    }
                    bote_amqp::DeliveryState::Accepted
                }
                None => bote_amqp::DeliveryState::Rejected {
                    error: Some(bote_amqp::AmqpError::new(
                        bote_amqp::condition::INVALID_FIELD,
                        "a retained message needs properties.to (its topic)",
                    )),
                },
            };
            returns.push(d, Some(state));
        }
        returns.send();
        let Some(store) = &self.state.store else {
            self.keep(changes);
            return;
        };
        // On disk first, then in memory: this actor waits for the commit
        // (it is the only writer of retained messages, so they stay in
        // order).
        let committed: Vec<_> = changes
            .iter()
            .map(|(topic, message, version)| {
                store.send_committed(Change::Retain {
                    topic: topic.clone(),
                    message: message.clone(),
                    version: *version,
                })
            })
            .collect();
        ctx.wait(
            async move {
                for c in committed {
                    let _ = c.await;
                }
            }
            .into_actor(self)
            .map(move |(), act, _| act.keep(changes)),
        );
    }
}

impl RetainConsumer {
    /// The version of a live change taken now: µs since the epoch, and
    /// above the previous one.
    fn next_version(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_version = now.max(self.last_version + 1);
        self.last_version
    }

    /// Applies retained-message changes in memory (`None`: clear).
    fn keep(&self, changes: Vec<(String, Option<Bytes>, u64)>) {
        for (topic, message, version) in changes {
            let clear = message.is_none();
            if !self
                .state
                .retained
                .set(&topic, message.unwrap_or_default(), clear, version)
            {
                tracing::warn!(%topic, "retained message not kept: the store is full ({MAX_TOPICS} topics, {MAX_BYTES} bytes)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_synced_change_applies_when_newer_and_not_changed_live_during_the_sync() {
        let s = RetainStore::default();
        s.set("older", msg("mine"), false, 10);
        s.set("newer", msg("mine"), false, 30);
        s.set("cleared", Bytes::new(), true, 30);
        s.begin_sync();
        // A live set and a live clear during the sync: they win.
        s.touch("set-live");
        s.set("set-live", msg("live"), false, 5);
        s.touch("cleared-live");
        s.set("cleared-live", Bytes::new(), true, 5);
        assert!(s.fill("new", Some(msg("synced")), 20));
        assert!(s.fill("older", Some(msg("synced")), 20));
        assert!(!s.fill("newer", Some(msg("synced")), 20));
        assert!(!s.fill("cleared", Some(msg("synced")), 20));
        assert!(!s.fill("set-live", Some(msg("synced")), 99));
        assert!(!s.fill("cleared-live", Some(msg("synced")), 99));
        assert_eq!(s.matching("new"), vec![msg("synced")]);
        assert_eq!(s.matching("older"), vec![msg("synced")]);
        assert_eq!(s.matching("newer"), vec![msg("mine")]);
        assert!(s.matching("cleared").is_empty());
        assert_eq!(s.matching("set-live"), vec![msg("live")]);
        assert!(s.matching("cleared-live").is_empty());
        // A newer clear from the peer clears; an older one does not.
        assert!(s.fill("new", None, 21));
        assert!(s.matching("new").is_empty());
        assert!(!s.fill("newer", None, 29));
        assert_eq!(s.matching("newer"), vec![msg("mine")]);
        // After the sync, only versions count.
        s.end_sync();
        s.touch("set-live");
        assert!(s.fill("set-live", Some(msg("synced")), 99));
        // What a peer's sync is given: messages and clears, versioned.
        let mut all = s.all();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("cleared".into(), None, 30),
                ("cleared-live".into(), None, 5),
                ("new".into(), None, 21),
                ("newer".into(), Some(msg("mine")), 30),
                ("older".into(), Some(msg("synced")), 20),
                ("set-live".into(), Some(msg("synced")), 99),
            ]
        );
    }

    #[test]
    fn a_synced_copy_stays_within_the_bounds() {
        let s = RetainStore::default();
        let big = Bytes::from(vec![0u8; MAX_BYTES]);
        assert!(s.fill("big", Some(big), 1));
        assert!(!s.fill("one-more", Some(msg("x")), 1));
        assert_eq!(s.len(), 1);
        // Replacing the topic itself accounts for what it replaces.
        assert!(s.fill("big", Some(msg("small")), 2));
        assert!(s.fill("one-more", Some(msg("x")), 1));
        assert_eq!(s.len(), 2);
    }
}
