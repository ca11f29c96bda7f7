//! The router's MQTT store on disk (`[router] data-dir`): one redb file
//! per router, `<data-dir>/<router-id>.redb`, holding what the router's
//! MQTT state needs to survive a restart:
//!
//! - the retained messages (topic -> the AMQP message, as
//!   [`super::retain::RetainStore`] holds them);
//! - the persistent sessions: per client id a [`SessionRecord`] (its
//!   subscriptions and expiry) and the QoS 1 messages queued for it while
//!   its client is away ([`QueuedMessage`]).
//!
//! redb is synchronous: [`MqttStore`] owns the database and is used from
//! one writer thread ([`StoreWriter`]) that takes [`Change`]s over a
//! channel, applies all that are waiting in one write transaction and
//! commits it (a redb commit is durable when it returns), then answers
//! those that asked to know. Nothing here decides what is kept: the bounds
//! are applied by the callers before a change is sent, and again when the
//! store is read at start ([`MqttStore::retained`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Retained messages: topic -> AMQP message.
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
/// The version of each topic's last retained change (set or clear):
/// topic -> µs since the epoch (`mqtt::retain`); a topic without a
/// retained message is a clear's tombstone.
const RETAINED_VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("retained-versions");
/// Persistent sessions: client id -> [`SessionRecord`] (encoded).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Messages queued for absent clients: (client id, sequence) ->
/// [`QueuedMessage`] (encoded).
const SESSION_QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session-queue");
/// Replicas of other routers' persistent sessions: client id -> (owner
/// router id, [`SessionRecord`]) (encoded).
const SESSION_REPLICAS: TableDefinition<&str, &[u8]> = TableDefinition::new("session-replicas");

/// A store operation failed; each names the file and what was done (the
/// cause is its `source`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store file could not be opened or created.
    #[error("cannot open the MQTT store {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write of the store failed.
    #[error("MQTT store {}: cannot {what}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: redb::Error,
    },
    /// A stored record could not be read back.
    #[error("MQTT store {}: {what} of client {client_id} is corrupt", .path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        client_id: String,
    },
}

/// A persistent session as stored: enough to restore it waiting for its
/// client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// MQTT protocol level of its last connection (4: 3.1.1, 5: 5.0).
    pub protocol_level: u8,
    /// How long the session outlives its connection, in seconds.
    pub expiry_secs: u64,
    /// When its client went away (seconds since the Unix epoch); `None`
    /// while a client was connected (then the expiry runs from the
    /// router's restart).
    pub disconnected_at: Option<u64>,
    /// Its subscriptions: filter and granted QoS.
    pub subscriptions: Vec<(String, u8)>,
    /// Its version: raised by its owner on each change, above any version
    /// it had on another router (`mqtt::mesh`: a replica or a stale copy
    /// with a lower version is superseded). 0 in records written before
    /// versions were.
    pub version: u64,
}

/// A QoS 1 message queued for an absent client: what rebuilds its PUBLISH
/// (the AMQP message holds topic, payload and properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The subscription (filter) it came for.
    pub filter: String,
    /// The address it was delivered to (the topic when `to` is unset).
    pub address: String,
    /// The AMQP message.
    pub message: Bytes,
}

/// A persistent session read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub client_id: String,
    pub record: SessionRecord,
    pub queue: Vec<QueuedMessage>,
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Change {
    /// `topic`'s retained message is `message`, or none (cleared), as
    /// the change of version `version`.
    Retain {
        topic: String,
        message: Option<Bytes>,
        version: u64,
    },
    /// The session of `client_id` (owned by the session actor `owner`) is
    /// `record`; `queue` replaces its stored queue when set.
    Session {
        client_id: String,
        owner: u64,
        record: SessionRecord,
        queue: Option<Vec<QueuedMessage>>,
    },
    /// One more message queued for `client_id`'s absent client.
    Queued {
        client_id: String,
        owner: u64,
        message: QueuedMessage,
    },
    /// The session of `client_id` ended (removed unless another owner
    /// wrote it since).
    SessionEnded { client_id: String, owner: u64 },
    /// The replica of `client_id`'s session owned by the router `owner`
    /// is `record`, or none (removed).
    Replica {
        client_id: String,
        owner: String,
        record: Option<SessionRecord>,
    },
    /// Nothing: answered once what was sent before it is committed.
    Sync,
}

/// A replica of another router's persistent session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReplica {
    pub client_id: String,
    /// The router that owns the session.
    pub owner: String,
    pub record: SessionRecord,
}

/// The router's redb file.
pub struct MqttStore {
    db: Database,
    path: PathBuf,
    /// The owner of each session written since start (a session ended by
    /// an older owner is not removed).
    owners: HashMap<String, u64>,
    /// The next queue sequence number per session.
    next_seq: HashMap<String, u64>,
}

impl MqttStore {
    /// Opens (or creates) `<dir>/<router_id>.redb`, creating `dir` if
    /// needed.
    pub fn open(dir: &Path, router_id: &str) -> Result<MqttStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(format!("{router_id}.redb"));
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let store = MqttStore {
            db,
            path,
            owners: HashMap::new(),
            next_seq: HashMap::new(),
        };
        // The tables exist from now on (reads need them).
        store.write("create its tables", |tx| {
            tx.open_table(RETAINED)?;
            tx.open_table(SESSIONS)?;
            tx.open_table(SESSION_QUEUE)?;
            tx.open_table(SESSION_REPLICAS)?;
            tx.open_table(RETAINED_VERSIONS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &'static str) -> impl FnOnce(redb::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn write(
        &self,
        what: &'static str,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.io(what)(e.into()))?;
        f(&tx).map_err(self.io(what))?;
        tx.commit().map_err(|e| self.io(what)(e.into()))
    }

    /// The retained messages, by topic, at most `max_topics` and
    /// `max_bytes` of them (the rest is left out, as the in-memory store
    /// would have refused it).
    pub fn retained(
        &self,
        max_topics: usize,
        max_bytes: usize,
    ) -> Result<Vec<(String, Bytes)>, StoreError> {
        let read = || -> Result<Vec<(String, Bytes)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(RETAINED)?;
            let mut out = Vec::new();
            let mut bytes = 0;
            for entry in table.iter()? {
                let (topic, message) = entry?;
                let message = message.value();
                if out.len() >= max_topics || bytes + message.len() > max_bytes {
                    continue;
                }
                bytes += message.len();
                out.push((topic.value().to_owned(), Bytes::copy_from_slice(message)));
            }
            Ok(out)
        };
        read().map_err(self.io("read the retained messages"))
    }

    /// The version of each topic's last retained change (tombstones of
    /// clears included).
    pub fn retained_versions(&self) -> Result<HashMap<String, u64>, StoreError> {
        let read = || -> Result<HashMap<String, u64>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(RETAINED_VERSIONS)?;
            let mut out = HashMap::new();
            for entry in table.iter()? {
                let (topic, version) = entry?;
                out.insert(topic.value().to_owned(), version.value());
            }
            Ok(out)
        };
        read().map_err(self.io("read the retained messages' versions"))
    }

    /// The replicas of other routers' sessions.
    pub fn replicas(&self) -> Result<Vec<StoredReplica>, StoreError> {
        let read = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(SESSION_REPLICAS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (id, v) = entry?;
                out.push((id.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        };
        let raw = read().map_err(self.io("read the session replicas"))?;
        raw.into_iter()
            .map(|(client_id, v)| {
                decode_replica(&v)
                    .map(|(owner, record)| StoredReplica {
                        client_id: client_id.clone(),
                        owner,
                        record,
                    })
                    .ok_or_else(|| StoreError::Corrupt {
                        path: self.path.clone(),
                        what: "the session replica",
                        client_id,
                    })
            })
            .collect()
    }

    /// The persistent sessions, each with its queue in order.
    pub fn sessions(&mut self) -> Result<Vec<StoredSession>, StoreError> {
        /// Client id, encoded record, (sequence, encoded message) queued.
        type Raw = (String, Vec<u8>, Vec<(u64, Vec<u8>)>);
        let read = || -> Result<Vec<Raw>, redb::Error> {
            let tx = self.db.begin_read()?;
            let sessions = tx.open_table(SESSIONS)?;
            let queue = tx.open_table(SESSION_QUEUE)?;
            let mut out = Vec::new();
            for entry in sessions.iter()? {
                let (id, record) = entry?;
                let id = id.value().to_owned();
                let mut queued = Vec::new();
                for q in queue.range((id.as_str(), 0)..=(id.as_str(), u64::MAX))? {
                    let (k, v) = q?;
                    queued.push((k.value().1, v.value().to_vec()));
                }
                out.push((id, record.value().to_vec(), queued));
            }
            Ok(out)
        };
        let raw = read().map_err(self.io("read the sessions"))?;
        let mut out = Vec::with_capacity(raw.len());
        for (client_id, record, queued) in raw {
            let corrupt = |what| StoreError::Corrupt {
                path: self.path.clone(),
                what,
                client_id: client_id.clone(),
            };
            let record = decode_record(&record).ok_or_else(|| corrupt("the session record"))?;
            let next = queued.last().map_or(0, |(seq, _)| seq + 1);
            let queue = queued
                .iter()
                .map(|(_, v)| decode_queued(v))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("a queued message"))?;
            self.next_seq.insert(client_id.clone(), next);
            out.push(StoredSession {
                client_id,
                record,
                queue,
            });
        }
        Ok(out)
    }

    /// Applies `changes` in one transaction, committed (durable) on return.
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        // (Taken out for the transaction and put back; after a failed
        // commit they may be ahead of the file, which only matters to a
        // session that ends or is written again later.)
        let mut owners = std::mem::take(&mut self.owners);
        let mut next_seq = std::mem::take(&mut self.next_seq);
        let result = self.write("write changes", |tx| {
            let mut retained = tx.open_table(RETAINED)?;
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut queue = tx.open_table(SESSION_QUEUE)?;
            let mut replicas = tx.open_table(SESSION_REPLICAS)?;
            let mut versions = tx.open_table(RETAINED_VERSIONS)?;
            let clear_queue = |queue: &mut redb::Table<(&str, u64), &[u8]>, id: &str| {
                queue.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
            };
            for c in changes {
                match c {
                    Change::Retain {
                        topic,
                        message,
                        version,
                    } => {
                        match message {
                            Some(m) => retained.insert(topic.as_str(), m.as_ref())?,
                            None => retained.remove(topic.as_str())?,
                        };
                        versions.insert(topic.as_str(), *version)?;
                    }
                    Change::Session {
                        client_id,
                        owner,
                        record,
                        queue: replace,
                    } => {
                        owners.insert(client_id.clone(), *owner);
                        sessions.insert(client_id.as_str(), encode_record(record).as_slice())?;
                        if let Some(messages) = replace {
                            clear_queue(&mut queue, client_id)?;
                            for (seq, m) in messages.iter().enumerate() {
                                queue.insert(
                                    (client_id.as_str(), seq as u64),
                                    encode_queued(m).as_slice(),
                                )?;
                            }
                            next_seq.insert(client_id.clone(), messages.len() as u64);
                        }
                    }
                    Change::Queued {
                        client_id,
                        owner,
                        message,
                    } => {
                        if owners.get(client_id) != Some(owner) {
                            continue;
                        }
                        let seq = next_seq.entry(client_id.clone()).or_insert(0);
                        queue.insert(
                            (client_id.as_str(), *seq),
                            encode_queued(message).as_slice(),
                        )?;
                        *seq += 1;
                    }
                    Change::Sync => {}
                    Change::Replica {
                        client_id,
                        owner,
                        record: Some(record),
                    } => {
                        replicas
                            .insert(client_id.as_str(), encode_replica(owner, record).as_slice())?;
                    }
                    Change::Replica {
                        client_id,
                        record: None,
                        ..
                    } => {
                        replicas.remove(client_id.as_str())?;
                    }
                    Change::SessionEnded { client_id, owner } => {
                        if owners.get(client_id).is_some_and(|o| o != owner) {
                            continue;
                        }
                        owners.remove(client_id);
                        next_seq.remove(client_id);
                        sessions.remove(client_id.as_str())?;
                        clear_queue(&mut queue, client_id)?;
                    }
                }
            }
            Ok(())
        });
        self.owners = owners;
        self.next_seq = next_seq;
        result
    }
}

/// The thread that writes the store: changes in, committed in batches.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<(Change, Option<tokio::sync::oneshot::Sender<()>>)>,
}

impl StoreWriter {
    /// Starts the writer thread over `store`.
    pub fn start(mut store: MqttStore) -> StoreWriter {
        let (tx, rx) = mpsc::channel::<(Change, Option<tokio::sync::oneshot::Sender<()>>)>();
        std::thread::Builder::new()
            .name("bote-mqtt-store".to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 1024
                        && let Ok(more) = rx.try_recv()
                    {
                        batch.push(more);
                    }
                    let (changes, done): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    if let Err(e) = store.apply(&changes) {
                        let why = std::error::Error::source(&e)
                            .map(|s| format!(": {s}"))
                            .unwrap_or_default();
                        tracing::error!("{e}{why} ({} change(s) not stored)", changes.len());
                    }
                    for d in done.into_iter().flatten() {
                        let _ = d.send(());
                    }
                }
            })
            .expect("cannot start the MQTT store thread");
        StoreWriter { tx }
    }

    /// Queues `change` for the next commit.
    pub fn send(&self, change: Change) {
        let _ = self.tx.send((change, None));
    }

    /// Waits until every change sent before is committed (or failed).
    pub async fn sync(&self) {
        let _ = self.send_committed(Change::Sync).await;
    }

    /// Queues `change`; the receiver is answered once it is committed (or
    /// failed, logged).
    pub fn send_committed(&self, change: Change) -> tokio::sync::oneshot::Receiver<()> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send((change, Some(done)));
        rx
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    let n = u32::from_be_bytes(get(input, 4)?.try_into().ok()?) as usize;
    std::str::from_utf8(get(input, n)?).ok()
}

fn get<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn get_u64(input: &mut &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(get(input, 8)?.try_into().ok()?))
}

/// Version 2: level, expiry, disconnected-at (0 = connected), the
/// session's version, then (filter, qos) per subscription (version 1 had
/// no session version).
pub(crate) fn encode_record(r: &SessionRecord) -> Vec<u8> {
    let mut out = vec![2, r.protocol_level];
    out.extend_from_slice(&r.expiry_secs.to_be_bytes());
    out.extend_from_slice(&r.disconnected_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&r.version.to_be_bytes());
    for (f, qos) in &r.subscriptions {
        put_str(&mut out, f);
        out.push(*qos);
    }
    out
}

pub(crate) fn decode_record(mut input: &[u8]) -> Option<SessionRecord> {
    let input = &mut input;
    let head = get(input, 2)?;
    if head[0] != 1 && head[0] != 2 {
        return None;
    }
    let expiry_secs = get_u64(input)?;
    let at = get_u64(input)?;
    let version = if head[0] == 2 { get_u64(input)? } else { 0 };
    let mut subscriptions = Vec::new();
    while !input.is_empty() {
        let f = get_str(input)?.to_owned();
        let qos = get(input, 1)?[0];
        subscriptions.push((f, qos));
    }
    Some(SessionRecord {
        protocol_level: head[1],
        expiry_secs,
        disconnected_at: (at != 0).then_some(at),
        subscriptions,
        version,
    })
}

fn encode_replica(owner: &str, r: &SessionRecord) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, owner);
    out.extend_from_slice(&encode_record(r));
    out
}

fn decode_replica(mut input: &[u8]) -> Option<(String, SessionRecord)> {
    let input = &mut input;
    let owner = get_str(input)?.to_owned();
    Some((owner, decode_record(input)?))
}

pub(crate) fn encode_queued(m: &QueuedMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + m.filter.len() + m.address.len() + m.message.len());
    out.push(1);
    put_str(&mut out, &m.filter);
    put_str(&mut out, &m.address);
    out.extend_from_slice(&m.message);
    out
}

pub(crate) fn decode_queued(mut input: &[u8]) -> Option<QueuedMessage> {
    let input = &mut input;
    if get(input, 1)? != [1] {
        return None;
    }
    let filter = get_str(input)?.to_owned();
    let address = get_str(input)?.to_owned();
    Some(QueuedMessage {
        filter,
        address,
        message: Bytes::copy_from_slice(input),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bote-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn retained_messages_survive_reopening_within_bounds() {
        let d = dir("retained").join("nested");
        {
            let mut s = MqttStore::open(&d, "R1").unwrap();
            assert_eq!(s.path(), d.join("R1.redb"));
            s.apply(&[
                Change::Retain {
                    topic: "a/1".into(),
                    message: Some(Bytes::from_static(b"one")),
                    version: 1,
                },
                Change::Retain {
                    topic: "a/2".into(),
                    message: Some(Bytes::from_static(b"two")),
                    version: 2,
                },
                Change::Retain {
                    topic: "a/3".into(),
                    message: Some(Bytes::from_static(b"three")),
                    version: 3,
                },
            ])
            .unwrap();
            s.apply(&[
                Change::Retain {
                    topic: "a/2".into(),
                    message: None,
                    version: 4,
                },
                Change::Retain {
                    topic: "a/1".into(),
                    message: Some(Bytes::from_static(b"uno")),
                    version: 5,
                },
            ])
            .unwrap();
        }
        let s = MqttStore::open(&d, "R1").unwrap();
        // Each topic's last change, a clear's tombstone included.
        let versions = s.retained_versions().unwrap();
        assert_eq!(
            versions,
            HashMap::from([("a/1".into(), 5), ("a/2".into(), 4), ("a/3".into(), 3)])
        );
        let all = s.retained(usize::MAX, usize::MAX).unwrap();
        assert_eq!(
            all,
            vec![
                ("a/1".to_owned(), Bytes::from_static(b"uno")),
                ("a/3".to_owned(), Bytes::from_static(b"three")),
            ]
        );
        // Bounds: one topic; or 4 bytes (the 5-byte message is left out).
        assert_eq!(s.retained(1, usize::MAX).unwrap().len(), 1);
        assert_eq!(
            s.retained(usize::MAX, 4).unwrap(),
            vec![("a/1".to_owned(), Bytes::from_static(b"uno"))]
        );
        // Another router's file in the same directory is its own.
        let other = MqttStore::open(&d, "R2").unwrap();
        assert!(other.retained(usize::MAX, usize::MAX).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(d.parent().unwrap());
    }

    #[test]
    fn session_replicas_survive_reopening_and_old_records_read_as_version_0() {
        let d = dir("replicas");
        let record = SessionRecord {
            protocol_level: 5,
            expiry_secs: 600,
            disconnected_at: None,
            subscriptions: vec![("a/#".into(), 1)],
            version: 7,
        };
        {
            let mut s = MqttStore::open(&d, "R1").unwrap();
            s.apply(&[
                Change::Replica {
                    client_id: "c1".into(),
                    owner: "R2".into(),
                    record: Some(record.clone()),
                },
                Change::Replica {
                    client_id: "c2".into(),
                    owner: "R3".into(),
                    record: Some(record.clone()),
                },
                Change::Replica {
                    client_id: "c2".into(),
                    owner: "R3".into(),
                    record: None,
                },
            ])
            .unwrap();
        }
        let s = MqttStore::open(&d, "R1").unwrap();
        assert_eq!(
            s.replicas().unwrap(),
            vec![StoredReplica {
                client_id: "c1".into(),
                owner: "R2".into(),
                record: record.clone(),
            }]
        );
        // A version 1 record (no session version) reads as version 0.
        let mut v1 = encode_record(&record);
        v1[0] = 1;
        v1.drain(18..26);
        assert_eq!(
            decode_record(&v1),
            Some(SessionRecord {
                version: 0,
                ..record
            })
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_named() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = MqttStore::open(&file.join("sub"), "R1").err().unwrap();
        assert!(e.to_string().contains(&*file.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sessions_and_their_queues_survive_reopening() {
        let d = dir("sessions");
        let record = SessionRecord {
            protocol_level: 4,
            expiry_secs: 60,
            disconnected_at: Some(1_000),
            subscriptions: vec![("s/+".into(), 1), ("t".into(), 0)],
            version: 42,
        };
        let m = |n: &str| QueuedMessage {
            filter: "s/+".into(),
            address: format!("s/{n}"),
            message: Bytes::from(n.as_bytes().to_vec()),
        };
        {
            let mut s = MqttStore::open(&d, "R1").unwrap();
            s.apply(&[
                Change::Session {
                    client_id: "c1".into(),
                    owner: 1,
                    record: record.clone(),
                    queue: Some(vec![m("a")]),
                },
                Change::Queued {
                    client_id: "c1".into(),
                    owner: 1,
                    message: m("b"),
                },
                // An older owner's end does not remove the session.
                Change::SessionEnded {
                    client_id: "c1".into(),
                    owner: 0,
                },
                Change::Session {
                    client_id: "c2".into(),
                    owner: 2,
                    record: record.clone(),
                    queue: None,
                },
                Change::SessionEnded {
                    client_id: "c2".into(),
                    owner: 2,
                },
            ])
            .unwrap();
        }
        let mut s = MqttStore::open(&d, "R1").unwrap();
        let sessions = s.sessions().unwrap();
        assert_eq!(
            sessions,
            vec![StoredSession {
                client_id: "c1".into(),
                record,
                queue: vec![m("a"), m("b")],
            }]
        );
        // Restored under a new owner, the queue goes on after its end.
        s.apply(&[
            Change::Session {
                client_id: "c1".into(),
                owner: 7,
                record: sessions[0].record.clone(),
                queue: None,
            },
            Change::Queued {
                client_id: "c1".into(),
                owner: 7,
                message: m("c"),
            },
        ])
        .unwrap();
        assert_eq!(s.sessions().unwrap()[0].queue, vec![m("a"), m("b"), m("c")]);
        s.apply(&[Change::SessionEnded {
            client_id: "c1".into(),
            owner: 7,
        }])
        .unwrap();
        assert!(s.sessions().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
