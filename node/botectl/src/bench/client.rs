//! The bench's AMQP clients: a small tokio driver that moves bytes between a
//! `TcpStream` (or a TLS session on one, `bench --tls`) and the sans-I/O
//! [`Connection`] (batched reads and writes,
//! reused buffers), and the roles it drives: a throughput sender and
//! receiver, a request/reply requester and responder. The receiving roles
//! also work as the acceptor side of `--direct` (`Side::Server`).
//!
//! Messages are encoded once ([`Template`]); each send copies the template
//! into a shared arena and stamps the send time (nanoseconds since
//! [`base_nanos`](super::base_nanos)'s base) into the first 8 body bytes.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use bote_amqp::{
    AmqpError, DeliveryState, Event, LinkConfig, LinkId, MessageBuilder, MessageId, MessageView,
    Role as LinkRole, SenderSettleMode, SessionId,
};
use bote_amqp::{Connection, ConnectionConfig, DeliveryTag, SendDelivery, Side};

use super::base_nanos;

/// How long receivers wait for more messages once every sender finished
/// (presettled messages that never come were dropped).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Counters all clients of one run share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Messages (requests) the run moves.
    pub total: u64,
    /// Number of sending clients (requesters in rr mode).
    pub senders: usize,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub released: AtomicU64,
    pub modified: AtomicU64,
    pub rejected: AtomicU64,
    pub senders_done: AtomicUsize,
    /// Nanoseconds since the base: the first send, the last receive or
    /// sender-side settlement.
    pub first_send_ns: AtomicU64,
    pub last_ns: AtomicU64,
    pub samples: Mutex<Vec<u64>>,
    /// Woken when `received` reaches `total` or a sender finishes.
    pub progress: Notify,
}

impl Shared {
    pub fn new(total: u64, senders: usize) -> Self {
        Shared {
            total,
            senders,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            released: AtomicU64::new(0),
            modified: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            senders_done: AtomicUsize::new(0),
            first_send_ns: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            progress: Notify::new(),
        }
    }

    fn count_outcome(&self, state: &Option<DeliveryState>) {
        let counter = match state {
            Some(DeliveryState::Accepted) => &self.accepted,
            Some(DeliveryState::Released) | None => &self.released,
            Some(DeliveryState::Modified { .. }) => &self.modified,
            Some(DeliveryState::Rejected { .. }) => &self.rejected,
            Some(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn senders_finished(&self) -> bool {
        self.senders_done.load(Ordering::Acquire) >= self.senders
    }

    fn sender_finished(&self) {
        self.senders_done.fetch_add(1, Ordering::AcqRel);
        self.progress.notify_waiters();
    }

    fn add_samples(&self, samples: Vec<u64>) {
        if samples.is_empty() {
            return;
        }
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(samples);
    }
}

/// A message encoded once; each send stamps its time into a copy.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    bytes: Bytes,
    /// Offset of the 8-byte send timestamp (the body's first bytes), if the
    /// body holds at least 8 bytes.
    stamp_at: Option<usize>,
}

impl Template {
    /// A message with a ulong message-id, an optional reply-to and a data
    /// body of `size` bytes (100 bytes make a 113-byte message).
    pub fn new(size: usize, reply_to: Option<&str>) -> Template {
        let body = vec![0x2a; size];
        let mut builder = MessageBuilder::new().message_id(MessageId::Ulong(1));
        if let Some(r) = reply_to {
            builder = builder.reply_to(r);
        }
        let bytes = builder.data(&body).build();
        let stamp_at = (size >= 8).then(|| bytes.len() - size);
        Template { bytes, stamp_at }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The message with `stamp` in its body, carved out of `arena`.
    fn stamped(&self, arena: &mut BytesMut, stamp: u64) -> Bytes {
        if arena.capacity() < self.bytes.len() {
            arena.reserve(self.bytes.len().max(64 * 1024));
        }
        arena.extend_from_slice(&self.bytes);
        if let Some(at) = self.stamp_at {
            arena[at..at + 8].copy_from_slice(&stamp.to_be_bytes());
        }
        arena.split().freeze()
    }
}

/// The send time stamped in a received message whose body is the last
/// `size` bytes (the router may add annotations in front, never after).
fn read_stamp(payload: &[u8], size: usize) -> Option<u64> {
    if size < 8 || payload.len() < size {
        return None;
    }
    let at = payload.len() - size;
    let mut b = &payload[at..at + 8];
    Some(b.get_u64())
}

fn describe(e: &AmqpError) -> String {
    match &e.description {
        Some(d) => format!("{}: {d}", e.condition),
        None => e.condition.to_string(),
    }
}

/// Sends message `n` of a run: the template stamped with `stamp`, tagged and
/// with context `n`.
fn send_stamped(
    conn: &mut Connection,
    link: LinkId,
    template: &Template,
    arena: &mut BytesMut,
    stamp: u64,
    n: u64,
    presettled: bool,
) -> Result<(), String> {
    let payload = template.stamped(arena, stamp);
    let tag = tag(n);
    conn.send(
        link,
        SendDelivery {
            tag,
            payload,
            settled: presettled,
            message_format: 0,
            context: n,
            complete: true,
        },
    )
    .map_err(|e| format!("send: {e}"))
}

fn tag(n: u64) -> DeliveryTag {
    DeliveryTag::from_slice(&n.to_be_bytes())
}

pub(crate) fn connection_config(container_id: String) -> ConnectionConfig {
    ConnectionConfig {
        container_id,
        ..ConnectionConfig::default()
    }
}

/// What a client does with its connection.
pub(crate) trait Role {
    /// Client side: open, begin, attach. Server side: open.
    fn start(&mut self, conn: &mut Connection) -> Result<(), String>;
    fn on_event(&mut self, conn: &mut Connection, event: Event) -> Result<(), String>;
    /// Queue sends, settle, replenish credit, publish counters.
    fn pump(&mut self, conn: &mut Connection) -> Result<(), String>;
    /// Its work is done: the driver closes the connection.
    fn finished(&self) -> bool;
    /// The peer closing the connection is the normal end (acceptor side).
    fn ends_on_peer_close(&self) -> bool {
        false
    }
    /// Called once when the driver stops, however it stops.
    fn finish(&mut self) {}
}

/// What a bench client runs over: a TCP socket, or a TLS session on one
/// (`bench --tls`).
pub(crate) enum BenchStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl BenchStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            BenchStream::Plain(s) => s,
            BenchStream::Tls(s) => s.get_ref().0,
        }
    }
}

/// What [`io_ready`] did.
enum IoStep {
    /// Read this many bytes into the read buffer (0 with `eof`).
    Read { eof: bool },
    /// The socket took (or can take) more of the write buffer.
    Wrote,
}

/// At most this much is read per wake-up before the engine gets it.
const READ_BURST: usize = 1024 * 1024;

fn reserve(rbuf: &mut BytesMut) {
    if rbuf.capacity() - rbuf.len() < 16 * 1024 {
        rbuf.reserve(256 * 1024);
    }
}

/// Writes as much of `wbuf` as goes without waiting.
fn write_now(stream: &mut BenchStream, wbuf: &mut BytesMut) -> std::io::Result<()> {
    match stream {
        BenchStream::Plain(s) => {
            while !wbuf.is_empty() {
                match s.try_write(wbuf) {
                    Ok(n) => wbuf.advance(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        BenchStream::Tls(s) => {
            use std::pin::Pin;
            use std::task::{Context, Poll};
            use tokio::io::AsyncWrite;
            let waker = futures_noop_waker();
            let mut cx = Context::from_waker(&waker);
            while !wbuf.is_empty() {
                match Pin::new(&mut **s).poll_write(&mut cx, wbuf) {
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(n)) => wbuf.advance(n),
                    Poll::Ready(Err(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
            match Pin::new(&mut **s).poll_flush(&mut cx) {
                Poll::Ready(Err(e)) if e.kind() != ErrorKind::WouldBlock => Err(e),
                _ => Ok(()),
            }
        }
    }
}

/// A waker that does nothing: [`write_now`] polls only to make progress
/// now; the select in [`drive_inner`] waits with a real one.
fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

/// Waits until the socket has input (read into `rbuf`, up to
/// [`READ_BURST`]) or, with output pending, until more can be written.
/// Cancel-safe: all work happens within one poll.
async fn io_ready(
    stream: &mut BenchStream,
    wbuf: &mut BytesMut,
    rbuf: &mut BytesMut,
) -> std::io::Result<IoStep> {
    match stream {
        BenchStream::Plain(s) => {
            tokio::select! {
                biased;
                r = s.readable() => {
                    r?;
                    let mut got = 0;
                    loop {
                        reserve(rbuf);
                        match s.try_read_buf(rbuf) {
                            Ok(0) => return Ok(IoStep::Read { eof: true }),
                            Ok(n) => {
                                got += n;
                                if got >= READ_BURST {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(IoStep::Read { eof: false })
                }
                r = s.writable(), if !wbuf.is_empty() => {
                    r?;
                    Ok(IoStep::Wrote)
                }
            }
        }
        BenchStream::Tls(s) => {
            use std::pin::Pin;
            use std::task::Poll;
            use tokio::io::AsyncWrite;
            std::future::poll_fn(|cx| {
                // Output first (rustls may hold records from before).
                let mut wrote = false;
                while !wbuf.is_empty() {
                    match Pin::new(&mut **s).poll_write(cx, wbuf) {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            wbuf.advance(n);
                            wrote = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        _ => break,
                    }
                }
                if let Poll::Ready(Err(e)) = Pin::new(&mut **s).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                let mut got = 0;
                loop {
                    reserve(rbuf);
                    match tokio_util_poll_read_buf(Pin::new(&mut **s), cx, rbuf) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Ok(IoStep::Read { eof: true })),
                        Poll::Ready(Ok(n)) => {
                            got += n;
                            if got >= READ_BURST {
                                break;
                            }
                        }
                        // A peer gone without TLS close_notify: the end
                        // of input, as on TCP.
                        Poll::Ready(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                            return Poll::Ready(Ok(IoStep::Read { eof: true }));
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
                if got > 0 {
                    Poll::Ready(Ok(IoStep::Read { eof: false }))
                } else if wrote {
                    Poll::Ready(Ok(IoStep::Wrote))
                } else {
                    Poll::Pending
                }
            })
            .await
        }
    }
}

/// `poll_read` into the spare capacity of `buf` (tokio-util's
/// `poll_read_buf`, without the dependency).
fn tokio_util_poll_read_buf<R: tokio::io::AsyncRead>(
    read: std::pin::Pin<&mut R>,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
) -> std::task::Poll<std::io::Result<usize>> {
    use std::task::Poll;
    let spare = buf.spare_capacity_mut();
    let mut rb = tokio::io::ReadBuf::uninit(spare);
    match read.poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => {
            let n = rb.filled().len();
            // SAFETY: poll_read initialised and filled the first n bytes of
            // the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Runs `role` over `stream` until it is finished and the connection closed,
/// or the `deadline` passes.
pub(crate) async fn drive<R: Role>(
    stream: BenchStream,
    side: Side,
    container_id: String,
    role: &mut R,
    shared: &Shared,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let result = drive_inner(stream, side, container_id, role, shared, deadline).await;
    role.finish();
    result
}

/// Sends what TLS still holds and its close_notify, briefly.
async fn close_tls(stream: &mut BenchStream) {
    if let BenchStream::Tls(s) = stream {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
    }
}

async fn drive_inner<R: Role>(
    mut stream: BenchStream,
    side: Side,
    container_id: String,
    role: &mut R,
    shared: &Shared,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let peer = stream
        .tcp()
        .peer_addr()
        .map_or_else(|_| "peer".to_owned(), |a| a.to_string());
    let _ = stream.tcp().set_nodelay(true);
    let mut conn = Connection::new(connection_config(container_id), side, Instant::now());
    let mut rbuf = BytesMut::with_capacity(256 * 1024);
    let mut wbuf = BytesMut::with_capacity(256 * 1024);
    let mut closing = false;
    let mut peer_closed = false;
    role.start(&mut conn).map_err(|e| format!("{peer}: {e}"))?;
    let expire = tokio::time::sleep_until(deadline);
    tokio::pin!(expire);
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Closed { error } => {
                    if let Some(e) = error {
                        return Err(format!("{peer} closed the connection: {}", describe(&e)));
                    }
                    peer_closed = true;
                    if !closing && !role.finished() && !role.ends_on_peer_close() {
                        return Err(format!("{peer} closed the connection before the run ended"));
                    }
                }
                Event::ProtocolError { error, .. } => {
                    return Err(format!("protocol error with {peer}: {}", describe(&error)));
                }
                Event::LinkDetached(d) => {
                    // A clean detach is how the acceptor side sees its peer
                    // leave; anywhere else, or with an error, the run failed.
                    if let Some(e) = &d.error {
                        return Err(format!(
                            "{peer} detached link {:?}: {}",
                            d.name,
                            describe(e)
                        ));
                    }
                    if !closing && !peer_closed && !role.finished() && !role.ends_on_peer_close() {
                        return Err(format!(
                            "{peer} detached link {:?} before the run ended",
                            d.name
                        ));
                    }
                }
                other => role
                    .on_event(&mut conn, other)
                    .map_err(|e| format!("{peer}: {e}"))?,
            }
        }
        if !closing && !peer_closed {
            role.pump(&mut conn).map_err(|e| format!("{peer}: {e}"))?;
            if role.finished() {
                conn.close(None);
                closing = true;
            }
        }
        while conn.poll_transmit(&mut wbuf) > 0 {}
        if let Err(e) = write_now(&mut stream, &mut wbuf) {
            if peer_closed {
                return Ok(());
            }
            return Err(format!("writing to {peer}: {e}"));
        }
        if conn.is_closed() && wbuf.is_empty() {
            close_tls(&mut stream).await;
            return Ok(());
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        let progress = shared.progress.notified();
        tokio::select! {
            biased;
            r = io_ready(&mut stream, &mut wbuf, &mut rbuf) => {
                match r.map_err(|e| format!("talking to {peer}: {e}"))? {
                    IoStep::Wrote => {}
                    IoStep::Read { eof } => {
                        if !rbuf.is_empty() {
                            conn.handle_input_buf(rbuf.split(), Instant::now());
                        }
                        if eof {
                            while let Some(event) = conn.poll_event() {
                                if let Event::Closed { error: None } = event {
                                    peer_closed = true;
                                }
                            }
                            if closing || peer_closed || conn.is_closed() {
                                return Ok(());
                            }
                            return Err(format!("{peer} dropped the connection without closing it"));
                        }
                    }
                }
            }
            _ = progress => {}
            _ = tick => {}
            _ = &mut expire => {
                return Err(format!("timed out (--timeout) talking to {peer}"));
            }
        }
    }
}

/// Shared parts of the roles: the session and the credit window.
fn open_session(conn: &mut Connection) -> Result<SessionId, String> {
    conn.open();
    conn.begin().map_err(|e| format!("begin: {e}"))
}

fn replenish(conn: &mut Connection, link: LinkId, window: u32) -> Result<(), String> {
    if let Some(l) = conn.link(link)
        && l.credit() <= window / 2
    {
        conn.flow(link, window, false)
            .map_err(|e| format!("flow: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Throughput

/// Sends `count` messages as link credit allows.
pub(crate) struct Sender {
    pub shared: Arc<Shared>,
    pub name: String,
    pub address: String,
    pub count: u64,
    pub presettled: bool,
    pub template: Template,
    link: Option<LinkId>,
    attached: bool,
    queued: u64,
    settled: u64,
    arena: BytesMut,
    done: bool,
}

impl Sender {
    pub fn new(
        shared: Arc<Shared>,
        name: String,
        address: String,
        count: u64,
        presettled: bool,
        template: Template,
    ) -> Self {
        Sender {
            shared,
            name,
            address,
            count,
            presettled,
            template,
            link: None,
            attached: false,
            queued: 0,
            settled: 0,
            arena: BytesMut::with_capacity(256 * 1024),
            done: false,
        }
    }
}

impl Role for Sender {
    fn start(&mut self, conn: &mut Connection) -> Result<(), String> {
        let session = open_session(conn)?;
        let mut config = LinkConfig::sender(self.name.clone(), Some(&self.address));
        config.snd_settle_mode = if self.presettled {
            SenderSettleMode::Settled
        } else {
            SenderSettleMode::Unsettled
        };
        self.link = Some(
            conn.attach(session, config)
                .map_err(|e| format!("attach sender to {}: {e}", self.address))?,
        );
        Ok(())
    }

    fn on_event(&mut self, _conn: &mut Connection, event: Event) -> Result<(), String> {
        match event {
            Event::LinkAttached { link, attach } if Some(link) == self.link => {
                if attach.target.is_none() {
                    return Err(format!("attach of sender to {} refused", self.address));
                }
                self.attached = true;
            }
            Event::Disposition { state, settled, .. } if settled => {
                self.settled += 1;
                self.shared.count_outcome(&state);
            }
            _ => {}
        }
        Ok(())
    }

    fn pump(&mut self, conn: &mut Connection) -> Result<(), String> {
        let Some(link) = self.link.filter(|_| self.attached) else {
            return Ok(());
        };
        let (credit, undelivered) = match conn.link(link) {
            Some(l) => (l.credit() as u64, l.undelivered() as u64),
            None => return Ok(()),
        };
        let room = credit
            .saturating_sub(undelivered)
            .min(self.count - self.queued);
        if room > 0 {
            let now = base_nanos();
            if self.queued == 0 {
                self.shared.first_send_ns.fetch_min(now, Ordering::Relaxed);
            }
            for _ in 0..room {
                send_stamped(
                    conn,
                    link,
                    &self.template,
                    &mut self.arena,
                    base_nanos(),
                    self.queued,
                    self.presettled,
                )?;
                self.queued += 1;
            }
            self.shared.sent.fetch_add(room, Ordering::Relaxed);
        }
        if !self.presettled && self.settled > 0 {
            self.shared
                .last_ns
                .fetch_max(base_nanos(), Ordering::Relaxed);
        }
        if !self.done {
            self.done = if self.presettled {
                self.queued == self.count && undelivered == 0 && room == 0
            } else {
                self.settled == self.count
            };
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn finish(&mut self) {
        self.shared.sender_finished();
    }
}

/// Receives messages, settles unsettled ones, keeps the credit window open.
/// Client side it attaches to `address`; server side it answers the peer's
/// sending links.
pub(crate) struct Receiver {
    pub shared: Arc<Shared>,
    pub name: String,
    pub address: String,
    pub window: u32,
    pub body_size: usize,
    pub server: bool,
    links: Vec<LinkId>,
    pending: u64,
    samples: Vec<u64>,
    last_receive: Instant,
}

impl Receiver {
    pub fn new(
        shared: Arc<Shared>,
        name: String,
        address: String,
        window: u32,
        body_size: usize,
        server: bool,
    ) -> Self {
        Receiver {
            shared,
            name,
            address,
            window,
            body_size,
            server,
            links: Vec::new(),
            pending: 0,
            samples: Vec::new(),
            last_receive: Instant::now(),
        }
    }
}

impl Role for Receiver {
    fn start(&mut self, conn: &mut Connection) -> Result<(), String> {
        if self.server {
            conn.open();
            return Ok(());
        }
        let session = open_session(conn)?;
        conn.attach(
            session,
            LinkConfig::receiver(self.name.clone(), Some(&self.address)),
        )
        .map_err(|e| format!("attach receiver from {}: {e}", self.address))?;
        Ok(())
    }

    fn on_event(&mut self, conn: &mut Connection, event: Event) -> Result<(), String> {
        match event {
            Event::AttachRequested { link, attach } => {
                if attach.role != LinkRole::Sender {
                    return Err(format!(
                        "unexpected receiving link {:?} on the acceptor",
                        attach.name
                    ));
                }
                let address = attach.target.as_ref().and_then(|t| t.address.clone());
                conn.accept_attach(
                    link,
                    LinkConfig::receiver(attach.name.clone(), address.as_deref()),
                )
                .map_err(|e| format!("accept attach: {e}"))?;
                conn.flow(link, self.window, false)
                    .map_err(|e| format!("flow: {e}"))?;
                self.links.push(link);
            }
            Event::LinkAttached { link, attach } => {
                if attach.source.is_none() {
                    return Err(format!("attach of receiver from {} refused", self.address));
                }
                conn.flow(link, self.window, false)
                    .map_err(|e| format!("flow: {e}"))?;
                self.links.push(link);
            }
            Event::Transfer(t) => {
                if t.aborted || t.more {
                    return Ok(());
                }
                self.pending += 1;
                if let Some(stamp) = read_stamp(&t.payload, self.body_size) {
                    self.samples.push(base_nanos().saturating_sub(stamp));
                }
                if !t.settled {
                    conn.accept(t.link, t.delivery_id)
                        .map_err(|e| format!("accept: {e}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn pump(&mut self, conn: &mut Connection) -> Result<(), String> {
        if self.pending > 0 {
            self.last_receive = Instant::now();
            self.shared
                .last_ns
                .fetch_max(base_nanos(), Ordering::Relaxed);
            let before = self
                .shared
                .received
                .fetch_add(self.pending, Ordering::AcqRel);
            if before + self.pending >= self.shared.total {
                self.shared.progress.notify_waiters();
            }
            self.pending = 0;
        }
        for &link in &self.links {
            replenish(conn, link, self.window)?;
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        if self.server {
            return false;
        }
        self.shared.received.load(Ordering::Acquire) >= self.shared.total
            || (self.shared.senders_finished() && self.last_receive.elapsed() > DRAIN_GRACE)
    }

    fn ends_on_peer_close(&self) -> bool {
        self.server
    }

    fn finish(&mut self) {
        self.shared.add_samples(std::mem::take(&mut self.samples));
    }
}

// ---------------------------------------------------------------------------
// Request/reply

/// Sends `count` requests one at a time, each after the previous reply.
pub(crate) struct Requester {
    pub shared: Arc<Shared>,
    pub name: String,
    pub address: String,
    pub reply_address: String,
    pub count: u64,
    pub presettled: bool,
    pub window: u32,
    pub body_size: usize,
    pub template: Template,
    sender: Option<LinkId>,
    receiver: Option<LinkId>,
    sender_attached: bool,
    receiver_attached: bool,
    outstanding: bool,
    requests: u64,
    replies: u64,
    settled: u64,
    arena: BytesMut,
    samples: Vec<u64>,
}

impl Requester {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        name: String,
        address: String,
        reply_address: String,
        count: u64,
        presettled: bool,
        window: u32,
        body_size: usize,
    ) -> Self {
        let template = Template::new(body_size, Some(&reply_address));
        Requester {
            shared,
            name,
            address,
            reply_address,
            count,
            presettled,
            window,
            body_size,
            template,
            sender: None,
            receiver: None,
            sender_attached: false,
            receiver_attached: false,
            outstanding: false,
            requests: 0,
            replies: 0,
            settled: 0,
            arena: BytesMut::with_capacity(64 * 1024),
            samples: Vec::with_capacity(count as usize),
        }
    }
}

impl Role for Requester {
    fn start(&mut self, conn: &mut Connection) -> Result<(), String> {
        let session = open_session(conn)?;
        self.receiver = Some(
            conn.attach(
                session,
                LinkConfig::receiver(format!("{}-replies", self.name), Some(&self.reply_address)),
            )
            .map_err(|e| format!("attach receiver from {}: {e}", self.reply_address))?,
        );
        let mut config = LinkConfig::sender(self.name.clone(), Some(&self.address));
        if self.presettled {
            config.snd_settle_mode = SenderSettleMode::Settled;
        }
        self.sender = Some(
            conn.attach(session, config)
                .map_err(|e| format!("attach sender to {}: {e}", self.address))?,
        );
        Ok(())
    }

    fn on_event(&mut self, conn: &mut Connection, event: Event) -> Result<(), String> {
        match event {
            Event::LinkAttached { link, .. } if Some(link) == self.sender => {
                self.sender_attached = true;
            }
            Event::LinkAttached { link, .. } if Some(link) == self.receiver => {
                self.receiver_attached = true;
                conn.flow(link, self.window, false)
                    .map_err(|e| format!("flow: {e}"))?;
            }
            Event::Transfer(t) if Some(t.link) == self.receiver => {
                if t.aborted || t.more {
                    return Ok(());
                }
                let now = base_nanos();
                if let Some(stamp) = read_stamp(&t.payload, self.body_size) {
                    self.samples.push(now.saturating_sub(stamp));
                }
                if !t.settled {
                    conn.accept(t.link, t.delivery_id)
                        .map_err(|e| format!("accept: {e}"))?;
                }
                self.replies += 1;
                self.outstanding = false;
                self.shared.received.fetch_add(1, Ordering::AcqRel);
                self.shared.last_ns.fetch_max(now, Ordering::Relaxed);
            }
            Event::Disposition {
                state,
                settled,
                link,
                ..
            } if settled && Some(link) == self.sender => {
                self.settled += 1;
                self.shared.count_outcome(&state);
            }
            _ => {}
        }
        Ok(())
    }

    fn pump(&mut self, conn: &mut Connection) -> Result<(), String> {
        if let Some(r) = self.receiver.filter(|_| self.receiver_attached) {
            replenish(conn, r, self.window)?;
        }
        let Some(link) = self
            .sender
            .filter(|_| self.sender_attached && self.receiver_attached)
        else {
            return Ok(());
        };
        if self.outstanding || self.requests == self.count {
            return Ok(());
        }
        if conn.link(link).is_none_or(|l| l.credit() == 0) {
            return Ok(());
        }
        let now = base_nanos();
        if self.requests == 0 {
            self.shared.first_send_ns.fetch_min(now, Ordering::Relaxed);
        }
        send_stamped(
            conn,
            link,
            &self.template,
            &mut self.arena,
            now,
            self.requests,
            self.presettled,
        )?;
        self.requests += 1;
        self.outstanding = true;
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn finished(&self) -> bool {
        self.replies == self.count && (self.presettled || self.settled == self.count)
    }

    fn finish(&mut self) {
        self.shared.add_samples(std::mem::take(&mut self.samples));
        self.shared.sender_finished();
    }
}

/// Answers each request on `address` with a reply to its reply-to that
/// carries the request's timestamp. Client side it attaches a sender per
/// reply address; server side it answers the requester's receiving link.
pub(crate) struct Responder {
    pub shared: Arc<Shared>,
    pub name: String,
    pub address: String,
    pub presettled: bool,
    pub window: u32,
    pub body_size: usize,
    pub server: bool,
    template: Template,
    session: Option<SessionId>,
    receivers: Vec<LinkId>,
    reply_links: HashMap<String, LinkId>,
    queues: HashMap<LinkId, VecDeque<Bytes>>,
    arena: BytesMut,
    replies: u64,
}

impl Responder {
    pub fn new(
        shared: Arc<Shared>,
        name: String,
        address: String,
        presettled: bool,
        window: u32,
        body_size: usize,
        server: bool,
    ) -> Self {
        Responder {
            shared,
            name,
            address,
            presettled,
            window,
            body_size,
            server,
            template: Template::new(body_size, None),
            session: None,
            receivers: Vec::new(),
            reply_links: HashMap::new(),
            queues: HashMap::new(),
            arena: BytesMut::with_capacity(64 * 1024),
            replies: 0,
        }
    }

    fn reply_link(&mut self, conn: &mut Connection, address: &str) -> Result<LinkId, String> {
        if let Some(&l) = self.reply_links.get(address) {
            return Ok(l);
        }
        let Some(session) = self.session.filter(|_| !self.server) else {
            return Err(format!("no link to reply-to {address:?}"));
        };
        let mut config = LinkConfig::sender(
            format!("{}-{}", self.name, self.reply_links.len()),
            Some(address),
        );
        if self.presettled {
            config.snd_settle_mode = SenderSettleMode::Settled;
        }
        let link = conn
            .attach(session, config)
            .map_err(|e| format!("attach sender to {address}: {e}"))?;
        self.reply_links.insert(address.to_owned(), link);
        Ok(link)
    }
}

impl Role for Responder {
    fn start(&mut self, conn: &mut Connection) -> Result<(), String> {
        if self.server {
            conn.open();
            return Ok(());
        }
        let session = open_session(conn)?;
        self.session = Some(session);
        conn.attach(
            session,
            LinkConfig::receiver(self.name.clone(), Some(&self.address)),
        )
        .map_err(|e| format!("attach receiver from {}: {e}", self.address))?;
        Ok(())
    }

    fn on_event(&mut self, conn: &mut Connection, event: Event) -> Result<(), String> {
        match event {
            Event::AttachRequested { link, attach } => {
                if attach.role == LinkRole::Sender {
                    let address = attach.target.as_ref().and_then(|t| t.address.clone());
                    conn.accept_attach(
                        link,
                        LinkConfig::receiver(attach.name.clone(), address.as_deref()),
                    )
                    .map_err(|e| format!("accept attach: {e}"))?;
                    conn.flow(link, self.window, false)
                        .map_err(|e| format!("flow: {e}"))?;
                    self.receivers.push(link);
                } else {
                    let address = attach
                        .source
                        .as_ref()
                        .and_then(|s| s.address.clone())
                        .unwrap_or_default();
                    conn.accept_attach(
                        link,
                        LinkConfig::sender(attach.name.clone(), Some(&address)),
                    )
                    .map_err(|e| format!("accept attach: {e}"))?;
                    self.reply_links.insert(address, link);
                }
            }
            Event::LinkAttached { link, attach } if attach.role == LinkRole::Sender => {
                // The peer is the sender: this is our receiving link.
                conn.flow(link, self.window, false)
                    .map_err(|e| format!("flow: {e}"))?;
                self.receivers.push(link);
            }
            Event::Transfer(t) if self.receivers.contains(&t.link) => {
                if t.aborted || t.more {
                    return Ok(());
                }
                let view = MessageView::parse(t.payload.clone())
                    .map_err(|e| format!("request on {}: {e:?}", self.address))?;
                let reply_to = view
                    .reply_to()
                    .map_err(|e| format!("reply-to of a request: {e:?}"))?
                    .ok_or_else(|| "a request without reply-to".to_owned())?
                    .to_owned();
                let stamp = read_stamp(&t.payload, self.body_size).unwrap_or(0);
                let reply = self.template.stamped(&mut self.arena, stamp);
                let link = self.reply_link(conn, &reply_to)?;
                self.queues.entry(link).or_default().push_back(reply);
                if !t.settled {
                    conn.accept(t.link, t.delivery_id)
                        .map_err(|e| format!("accept: {e}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn pump(&mut self, conn: &mut Connection) -> Result<(), String> {
        for &link in &self.receivers {
            replenish(conn, link, self.window)?;
        }
        for (&link, queue) in self.queues.iter_mut() {
            let Some(l) = conn.link(link) else { continue };
            if !l.is_attached() {
                continue;
            }
            let mut room = (l.credit() as usize).saturating_sub(l.undelivered());
            while room > 0
                && let Some(payload) = queue.pop_front()
            {
                let tag = tag(self.replies);
                conn.send(
                    link,
                    SendDelivery {
                        tag,
                        payload,
                        settled: self.presettled,
                        message_format: 0,
                        context: self.replies,
                        complete: true,
                    },
                )
                .map_err(|e| format!("send reply: {e}"))?;
                self.replies += 1;
                room -= 1;
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        !self.server && self.shared.senders_finished()
    }

    fn ends_on_peer_close(&self) -> bool {
        self.server
    }
}
