//! A `Pair`: a client and a server [`Connection`] wired back to back in
//! memory, stepped deterministically with a fake clock (the shape of
//! quinn-proto's test harness). Every byte that crosses is also decoded into
//! frames so that tests can assert what went over the wire.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bote_amqp::{Connection, ConnectionConfig, Side};
use bote_amqp::{Event, Frame, FrameBody, Performative, decode_frame};
use bytes::BytesMut;

/// One direction of the wire, decoded for assertions.
#[derive(Default)]
pub struct Tap {
    buf: BytesMut,
    pub frames: Vec<Frame>,
    pub bytes: usize,
}

impl Tap {
    fn push(&mut self, data: &[u8]) {
        self.bytes += data.len();
        self.buf.extend_from_slice(data);
        loop {
            if self.buf.len() >= 8 && &self.buf[..4] == b"AMQP" {
                let _ = self.buf.split_to(8);
                continue;
            }
            match decode_frame(&mut self.buf, u32::MAX) {
                Ok(Some(frame)) => self.frames.push(frame),
                _ => break,
            }
        }
    }

    /// The performatives seen so far, in order.
    pub fn performatives(&self) -> impl Iterator<Item = &Performative> {
        self.frames.iter().filter_map(|f| match &f.body {
            FrameBody::Amqp(p) => Some(p),
            _ => None,
        })
    }

    pub fn count(&self, pred: impl Fn(&Performative) -> bool) -> usize {
        self.performatives().filter(|p| pred(p)).count()
    }

    pub fn empty_frames(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| f.body == FrameBody::Empty)
            .count()
    }
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// Client to server.
    pub to_server: Tap,
    /// Server to client.
    pub to_client: Tap,
}

pub fn config(container_id: &str) -> ConnectionConfig {
    ConnectionConfig {
        container_id: container_id.into(),
        ..ConnectionConfig::default()
    }
}

impl Pair {
    /// Both ends opened (not yet driven).
    pub fn new(client: ConnectionConfig, server: ConnectionConfig) -> Self {
        let now = Instant::now();
        let mut pair = Pair {
            client: Connection::new(client, Side::Client, now),
            server: Connection::new(server, Side::Server, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            to_server: Tap::default(),
            to_client: Tap::default(),
        };
        pair.client.open();
        pair.server.open();
        pair
    }

    /// Two default ends, driven until both are open.
    pub fn connected() -> Self {
        let mut pair = Pair::new(config("client"), config("server"));
        pair.drive();
        assert!(
            pair.client.remote_open().is_some(),
            "client saw the server's open"
        );
        assert!(
            pair.server.remote_open().is_some(),
            "server saw the client's open"
        );
        pair.client_events.clear();
        pair.server_events.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let a = self.step_client_to_server();
            let b = self.step_server_to_client();
            if a == 0 && b == 0 {
                return;
            }
        }
        panic!("pair did not quiesce");
    }

    /// One transmit from the client delivered to the server.
    pub fn step_client_to_server(&mut self) -> usize {
        let mut buf = BytesMut::new();
        let n = self.client.poll_transmit(&mut buf);
        if n > 0 {
            self.to_server.push(&buf);
            // The server side takes buffers over (`handle_input_buf`), the
            // client side copies (`handle_input`): both paths are exercised.
            self.server.handle_input_buf(buf, self.now);
        }
        self.collect();
        n
    }

    /// One transmit from the server delivered to the client.
    pub fn step_server_to_client(&mut self) -> usize {
        let mut buf = BytesMut::new();
        let n = self.server.poll_transmit(&mut buf);
        if n > 0 {
            self.to_client.push(&buf);
            self.client.handle_input(&buf, self.now);
        }
        self.collect();
        n
    }

    fn collect(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// Advances the clock, gives both ends their timeouts, and drives.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        for conn in [&mut self.client, &mut self.server] {
            if conn.poll_timeout().is_some_and(|t| t <= self.now) {
                conn.handle_timeout(self.now);
            }
        }
        self.drive();
    }

    /// Advances the clock for the server only while the client is frozen
    /// (it neither runs its timers nor sends); the server's output is
    /// still delivered to the client.
    pub fn advance_server_only(&mut self, by: Duration) {
        self.now += by;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        while self.step_server_to_client() > 0 {}
    }

    pub fn take_client_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.client_events)
    }

    pub fn take_server_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.server_events)
    }
}
