//! A management client over the `bote-amqp` engine, sending what qdstat
//! sends: a sender to the management node, a receiver with a dynamic source
//! and credit 1 for the replies, string correlation ids, QUERY with
//! `entityType` and `offset`/`count` as longs, paged by 500.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use bote_amqp::codec::Value;
use bote_amqp::management::{DecodedReply, encode_request};
use bote_amqp::{
    Connection, ConnectionConfig, DeliveryTag, Event, LinkConfig, LinkId, SaslConfig, SendDelivery,
    Side, Source,
};
use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

/// The prefix of qdrouterd's entity type names.
pub const PREFIX: &str = "org.apache.qpid.dispatch.";
/// QUERY page size (as qdstat).
pub const PAGE: i64 = 500;

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error(
        "router {router:?} is unreachable from {address}: no route to its management node \
         (_topo/0/{router}/$management) within {secs}s; `botectl stat -n` lists the routers of the mesh"
    )]
    Unreachable {
        router: String,
        address: String,
        secs: u64,
    },
    #[error("no reply from {node} at {address} within {secs}s")]
    Timeout {
        node: String,
        address: String,
        secs: u64,
    },
    /// The node answered with an error status.
    #[error("{status}: {description}")]
    Status { status: i64, description: String },
}

/// One connection to a router's management node.
pub struct Client {
    stream: TcpStream,
    conn: Connection,
    rbuf: BytesMut,
    wbuf: BytesMut,
    sender: LinkId,
    receiver: LinkId,
    reply_to: String,
    next_id: u64,
    timeout: Duration,
    address: String,
    node: String,
    /// A reply still arriving frame by frame.
    partial: BytesMut,
    replies: Vec<Bytes>,
}

impl Client {
    /// Connects to `address` (`host:port`) and attaches to `$management`,
    /// or to `router`'s management node through the mesh.
    pub async fn connect(
        address: &str,
        router: Option<&str>,
        timeout: Duration,
    ) -> Result<Client, ManageError> {
        Client::connect_with(address, router, timeout, SaslConfig::None).await
    }

    /// [`Client::connect`] with a SASL layer (e.g. PLAIN credentials for a
    /// listener that requires authentication).
    pub async fn connect_with(
        address: &str,
        router: Option<&str>,
        timeout: Duration,
        sasl: SaslConfig,
    ) -> Result<Client, ManageError> {
        let node = match router {
            Some(r) => format!("_topo/0/{r}/$management"),
            None => "$management".to_owned(),
        };
        Client::connect_node(address, node, router, timeout, sasl).await
    }

    /// Connects to `address` with `sasl` and attaches to the management
    /// node `node` (an edge router's is `_edge/<id>/$management`); `router`
    /// names the router for the unreachable error.
    pub async fn connect_node(
        address: &str,
        node: String,
        router: Option<&str>,
        timeout: Duration,
        sasl: SaslConfig,
    ) -> Result<Client, ManageError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ManageError::Connect {
                address: address.to_owned(),
                source: std::io::Error::new(ErrorKind::TimedOut, "timed out"),
            })?
            .map_err(|source| ManageError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let config = ConnectionConfig {
            container_id: format!("botectl-{}", std::process::id()),
            sasl,
            ..ConnectionConfig::default()
        };
        let mut conn = Connection::new(config, Side::Client, Instant::now());
        conn.open();
        let session = conn
            .begin()
            .map_err(|e| ManageError::Protocol(format!("begin: {e}")))?;
        let receiver_config = LinkConfig {
            source: Some(Source {
                dynamic: true,
                ..Source::default()
            }),
            ..LinkConfig::receiver("botectl-replies", None)
        };
        let receiver = conn
            .attach(session, receiver_config)
            .map_err(|e| ManageError::Protocol(format!("attach: {e}")))?;
        let sender = conn
            .attach(session, LinkConfig::sender("botectl-requests", Some(&node)))
            .map_err(|e| ManageError::Protocol(format!("attach: {e}")))?;
        let mut client = Client {
            stream,
            conn,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            sender,
            receiver,
            reply_to: String::new(),
            next_id: 0,
            timeout,
            address: address.to_owned(),
            node,
            partial: BytesMut::new(),
            replies: Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        // The reply address, then credit on the request link (which comes
        // only while the node is reachable).
        while client.reply_to.is_empty() || client.conn.link(sender).is_none_or(|l| l.credit() == 0)
        {
            if !client.turn(deadline).await? {
                return Err(match router {
                    Some(r) if !client.reply_to.is_empty() => ManageError::Unreachable {
                        router: r.to_owned(),
                        address: address.to_owned(),
                        secs: timeout.as_secs(),
                    },
                    _ => ManageError::Timeout {
                        node: client.node.clone(),
                        address: address.to_owned(),
                        secs: timeout.as_secs(),
                    },
                });
            }
        }
        Ok(client)
    }

    /// Sends one request and waits for its reply.
    pub async fn call(
        &mut self,
        properties: &[(&str, Value)],
        body: Value,
    ) -> Result<DecodedReply, ManageError> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let message = encode_request(properties, &self.reply_to, Value::String(id.clone()), body);
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.conn.link(self.sender).is_none_or(|l| l.credit() == 0) {
            if !self.turn(deadline).await? {
                return Err(self.timed_out());
            }
        }
        self.conn
            .send(
                self.sender,
                SendDelivery {
                    tag: DeliveryTag::from_slice(id.as_bytes()),
                    payload: message,
                    settled: false,
                    message_format: 0,
                    context: self.next_id,
                    complete: true,
                },
            )
            .map_err(|e| ManageError::Protocol(format!("send: {e}")))?;
        loop {
            while let Some(bytes) = self.replies.pop() {
                let reply = DecodedReply::decode(&bytes)
                    .map_err(|e| ManageError::Protocol(e.to_string()))?;
                if reply.correlation_id == Value::String(id.clone()) {
                    return Ok(reply);
                }
            }
            if !self.turn(deadline).await? {
                return Err(self.timed_out());
            }
        }
    }

    /// A call that must answer `expect`; any other status is an error.
    pub async fn expect(
        &mut self,
        expect: i64,
        properties: &[(&str, Value)],
        body: Value,
    ) -> Result<Value, ManageError> {
        let reply = self.call(properties, body).await?;
        if reply.status != expect {
            return Err(ManageError::Status {
                status: reply.status,
                description: reply.description,
            });
        }
        Ok(reply.body)
    }

    /// Every entity of `ty` (short or long name) with `attributes` (all
    /// when empty), paged by 500: the attribute names and the rows.
    pub async fn query(
        &mut self,
        ty: &str,
        attributes: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<Value>>), ManageError> {
        let ty = long_name(ty);
        let mut names: Vec<String> = Vec::new();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let mut offset = 0i64;
        loop {
            let body = Value::Map(vec![(
                Value::from("attributeNames"),
                Value::List(
                    attributes
                        .iter()
                        .map(|a| Value::String(a.clone()))
                        .collect(),
                ),
            )]);
            let reply = self
                .expect(
                    200,
                    &[
                        ("operation", Value::from("QUERY")),
                        ("entityType", Value::String(ty.clone())),
                        ("offset", Value::Long(offset)),
                        ("count", Value::Long(PAGE)),
                        ("name", Value::from("self")),
                        ("type", Value::from("org.amqp.management")),
                    ],
                    body,
                )
                .await?;
            let field = |key: &str| {
                reply
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
                    .map(|(_, v)| v.clone())
            };
            if names.is_empty() {
                names = field("attributeNames")
                    .and_then(|v| v.as_list().map(<[Value]>::to_vec))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
            let page: Vec<Vec<Value>> = field("results")
                .and_then(|v| v.as_list().map(<[Value]>::to_vec))
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.as_list().map(<[Value]>::to_vec).unwrap_or_default())
                .collect();
            let n = page.len() as i64;
            rows.extend(page);
            if n < PAGE {
                return Ok((names, rows));
            }
            offset += PAGE;
        }
    }

    fn timed_out(&self) -> ManageError {
        ManageError::Timeout {
            node: self.node.clone(),
            address: self.address.clone(),
            secs: self.timeout.as_secs(),
        }
    }

    /// Writes what the engine has, reads what comes (until `deadline`) and
    /// handles the events. False when the deadline passed.
    async fn turn(&mut self, deadline: tokio::time::Instant) -> Result<bool, ManageError> {
        self.handle_events()?;
        while self.conn.poll_transmit(&mut self.wbuf) > 0 {}
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = tokio::time::timeout_at(deadline, self.stream.writable()).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
                Err(e) => {
                    return Err(ManageError::Protocol(format!(
                        "writing to {}: {e}",
                        self.address
                    )));
                }
            }
        }
        match tokio::time::timeout_at(deadline, self.stream.readable()).await {
            Err(_) => return Ok(false),
            Ok(Err(e)) => {
                return Err(ManageError::Protocol(format!(
                    "reading from {}: {e}",
                    self.address
                )));
            }
            Ok(Ok(())) => {}
        }
        let mut eof = false;
        loop {
            self.rbuf.reserve(64 * 1024);
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => {
                    // What came before the end (a close with its error, a
                    // SASL outcome) is read first: it says why.
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    return Err(ManageError::Protocol(format!(
                        "reading from {}: {e}",
                        self.address
                    )));
                }
            }
        }
        if !self.rbuf.is_empty() {
            self.conn
                .handle_input_buf(self.rbuf.split(), Instant::now());
        }
        self.handle_events()?;
        if eof {
            return Err(ManageError::Protocol(format!(
                "{} closed the connection",
                self.address
            )));
        }
        while self.conn.poll_transmit(&mut self.wbuf) > 0 {}
        Ok(true)
    }

    fn handle_events(&mut self) -> Result<(), ManageError> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::LinkAttached { link, attach } if link == self.receiver => {
                    self.reply_to = attach
                        .source
                        .as_ref()
                        .and_then(|s| s.address.clone())
                        .ok_or_else(|| {
                            ManageError::Protocol(format!(
                                "{} gave the reply receiver no dynamic address",
                                self.address
                            ))
                        })?;
                    self.conn
                        .flow(link, 1, false)
                        .map_err(|e| ManageError::Protocol(format!("flow: {e}")))?;
                }
                Event::Transfer(t) if t.link == self.receiver => {
                    if t.aborted {
                        self.partial.clear();
                        continue;
                    }
                    self.partial.extend_from_slice(&t.payload);
                    if t.more {
                        continue;
                    }
                    self.replies.push(self.partial.split().freeze());
                    if !t.settled {
                        let _ = self.conn.accept(t.link, t.delivery_id);
                    }
                    let _ = self.conn.flow(t.link, 1, false);
                }
                Event::LinkDetached(d) => {
                    let why = d.error.as_ref().map_or_else(
                        || "detached".to_owned(),
                        |e| {
                            format!(
                                "{}: {}",
                                e.condition,
                                e.description.as_deref().unwrap_or("")
                            )
                        },
                    );
                    return Err(ManageError::Protocol(format!(
                        "{} refused link {:?}: {why}",
                        self.address, d.name
                    )));
                }
                Event::Closed { error } => {
                    let why = error.map_or_else(
                        || "closed".to_owned(),
                        |e| format!("{}: {}", e.condition, e.description.unwrap_or_default()),
                    );
                    return Err(ManageError::Protocol(format!(
                        "{} closed the connection: {why}",
                        self.address
                    )));
                }
                Event::ProtocolError { error, .. } => {
                    return Err(ManageError::Protocol(format!(
                        "protocol error with {}: {}: {}",
                        self.address,
                        error.condition,
                        error.description.unwrap_or_default()
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Closes the connection (best effort).
    pub async fn close(mut self) {
        self.conn.close(None);
        while self.conn.poll_transmit(&mut self.wbuf) > 0 {}
        let _ = tokio::io::AsyncWriteExt::write_all(&mut self.stream, &self.wbuf).await;
    }
}

/// `connection` -> `org.apache.qpid.dispatch.connection`; long names and
/// `org.amqp.management` stay.
pub fn long_name(ty: &str) -> String {
    if ty.contains('.') && (ty.starts_with(PREFIX) || ty.starts_with("org.")) {
        ty.to_owned()
    } else {
        format!("{PREFIX}{ty}")
    }
}
