//! The listener actor: accepts TCP connections on one configured listener and
//! starts a connection actor for each on the next worker arbiter, so that
//! connections spread over all cores.
//!
//! On a TLS listener (amqps) the TLS handshake runs on the worker before
//! the connection actor starts, bounded by the listener's handshake
//! deadline; a peer that sends anything but a TLS client hello (random
//! bytes, a plain AMQP header) or fails verification is logged and its
//! socket closed, and nobody else notices. The deadline the engine applies
//! to the AMQP handshake counts from the accept, so TLS, SASL and `open`
//! together must finish within it.
//!
//! The accept loop survives running out of resources: when `accept` fails
//! because the process or system is out of file descriptors or memory
//! (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), it waits before trying again
//! (from 10 ms, doubling to 1 s, back to nothing after a success) instead of
//! spinning, and it logs once per [`ACCEPT_REPORT_INTERVAL`] with the number
//! of failures since the last line, not once per attempt. Connects meanwhile
//! wait in the kernel's backlog ([`bind`] sizes it from the listener's
//! `backlog`) and are taken as soon as descriptors free up; existing
//! connections are served throughout, since only this loop waits.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::Shared;
use super::connection::{ConnectionActor, Transport};
use super::policy::RateLimit;
use crate::config::ListenerConfig;
use crate::tls::ServerTls;
use bote_amqp::{AmqpError, condition};

/// The first wait after an accept failed for want of resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait between accept attempts while resources are short.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line about failing accepts per this interval.
pub const ACCEPT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Binds `config`'s address with its listen backlog (`SO_REUSEADDR` set, as
/// servers do, so a restarted router can bind at once).
pub fn bind(config: &ListenerConfig) -> io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let address = config.socket_address();
    let addr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(config.backlog)
}

/// Whether an accept error means the process or system is short of
/// resources (waiting helps), rather than one failed connection.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == libc::EMFILE
            || code == libc::ENFILE
            || code == libc::ENOBUFS
            || code == libc::ENOMEM
    )
}

/// The accept loop's state between attempts: how long to wait next, and
/// what to report at the next log line.
struct AcceptLoop {
    listener: TcpListener,
    label: String,
    backoff: Duration,
    failures: u64,
    last_report: Option<Instant>,
}

impl AcceptLoop {
    /// Accepts the next connection, waiting out resource shortages.
    async fn next(mut self) -> Option<(TcpStream, AcceptLoop)> {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    if self.failures > 0 {
                        tracing::info!(
                            listener = %self.label,
                            "accepting again after {} failed accept(s)",
                            self.failures
                        );
                        self.failures = 0;
                        self.last_report = None;
                    }
                    self.backoff = Duration::ZERO;
                    return Some((stream, self));
                }
                Err(e) => {
                    self.failures += 1;
                    let now = Instant::now();
                    if self
                        .last_report
                        .is_none_or(|t| now.duration_since(t) >= ACCEPT_REPORT_INTERVAL)
                    {
                        tracing::warn!(
                            listener = %self.label,
                            "accept failed: {e} ({} failure(s) since the last report; \
                             retrying with back-off, existing connections are served)",
                            self.failures
                        );
                        self.last_report = Some(now);
                    }
                    if out_of_resources(&e) {
                        self.backoff =
                            (self.backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                        tokio::time::sleep(self.backoff).await;
                    }
                }
            }
        }
    }
}

pub struct ListenerActor {
    config: Arc<ListenerConfig>,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    /// `max-connections-per-second`.
    rate: Option<RateLimit>,
    /// Set on a TLS (amqps) listener.
    tls: Option<Arc<ServerTls>>,
    /// Starts the connection actor of another protocol (MQTT); `None`:
    /// AMQP connection actors.
    accept: Option<super::Accept>,
}

impl ListenerActor {
    pub fn new(
        config: ListenerConfig,
        listener: TcpListener,
        shared: Arc<Shared>,
        tls: Option<Arc<ServerTls>>,
    ) -> Self {
        ListenerActor {
            rate: RateLimit::new(config.max_connections_per_second),
            config: Arc::new(config),
            shared,
            listener: Some(listener),
            tls,
            accept: None,
        }
    }

    /// Hands accepted sockets to `accept` instead of AMQP connection actors.
    pub fn with_accept(mut self, accept: Option<super::Accept>) -> Self {
        self.accept = accept;
        self
    }
}

/// Stop accepting (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Actor for ListenerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(listener) = self.listener.take() {
            let state = AcceptLoop {
                listener,
                label: self.config.socket_address(),
                backoff: Duration::ZERO,
                failures: 0,
                last_report: None,
            };
            ctx.add_stream(futures::stream::unfold(state, AcceptLoop::next));
        }
    }
}

impl StreamHandler<TcpStream> for ListenerActor {
    fn handle(&mut self, stream: TcpStream, _ctx: &mut Context<Self>) {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let _ = stream.set_nodelay(true);
        // A tokio socket belongs to the runtime that registered it: hand the
        // std socket to the worker, which registers it with its own runtime.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, "cannot hand connection to a worker: {e}");
                return;
            }
        };
        // Over the accept rate the connection still gets a clean answer:
        // its open is met with a close naming the limit.
        let over_rate = self
            .rate
            .as_mut()
            .is_some_and(|rate| !rate.take(Instant::now()));
        let refusal = over_rate.then(|| {
            AmqpError::new(
                condition::RESOURCE_LIMIT_EXCEEDED,
                format!(
                    "listener {} accepts at most {} connections per second",
                    self.config.socket_address(),
                    self.config.max_connections_per_second
                ),
            )
        });
        let worker = connection_arbiter(
            &self.shared,
            wants_mesh_thread(&self.config),
            self.tls.is_some(),
        );
        let conn = self.shared.next_conn_id();
        let config = self.config.clone();
        let shared = self.shared.clone();
        if self.accept.is_some() && refusal.is_some() {
            // Another protocol has no AMQP close to carry the refusal:
            // the socket is closed at once.
            if let Some(e) = refusal {
                tracing::info!(%peer, "connection refused: {}", e.description.as_deref().unwrap_or(""));
            }
            return;
        }
        let accepted_at = Instant::now();
        let Some(tls) = &self.tls else {
            if let Some(accept) = &self.accept {
                accept(
                    conn,
                    Transport::Plain(std_stream),
                    peer,
                    config,
                    shared,
                    &worker,
                );
                return;
            }
            ConnectionActor::start_in_arbiter(&worker, move |_ctx| {
                ConnectionActor::accepted(
                    conn,
                    Transport::Plain(std_stream),
                    peer,
                    config,
                    shared,
                    accepted_at,
                )
                .refusing(refusal)
            });
            return;
        };
        let acceptor = tls.acceptor();
        let accept = self.accept.clone();
        let on_worker = worker.clone();
        worker.spawn(async move {
            let Some(transport) = tls_handshake(acceptor, std_stream, &config, &peer).await else {
                return;
            };
            match accept {
                Some(accept) => accept(conn, transport, peer, config, shared, &on_worker),
                None => {
                    ConnectionActor::create(move |_ctx| {
                        ConnectionActor::accepted(
                            conn,
                            transport,
                            peer,
                            config,
                            shared,
                            accepted_at,
                        )
                        .refusing(refusal)
                    });
                }
            }
        });
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Where an accepted connection's actor runs: a worker, in turn, except a
/// plain-TCP connection on a router in a mesh whose listener wants the
/// mesh's thread (`wants_mesh`: `mqtt-on-mesh-thread`, true by default, for
/// MQTT; `amqp-on-mesh-thread`, false by default, for AMQP), which runs on
/// the mesh's arbiter with the address and peer actors. There a delivery
/// and its outcome cross no thread; on a worker each crossed threads at the
/// ingress and the egress router, each crossing an eventfd write and a
/// wake-up. MQTT: on the MQTT chain A-B-C at QoS 1 (20 in flight) that was
/// about one wake-up per two messages each way on A and C (`strace -c -f`),
/// and the round trip, which bounds QoS 1 throughput since the PUBACK waits
/// for the outcome, paid for them (BENCHMARKS.md, MQTT chain round trip).
/// AMQP: request/reply through a chain of three, p50 −14 % and CPU per round
/// trip −22 % (BENCHMARKS.md, AMQP connections on the mesh's thread). What it
/// costs: those clients share one thread with the mesh, so their protocol
/// work uses one core; AMQP frames cost more to decode and encode than
/// MQTT's, hence the defaults. TLS connections (the handshake and the
/// record crypto) always stay on the workers.
fn connection_arbiter(
    shared: &super::Shared,
    wants_mesh: bool,
    tls: bool,
) -> actix::dev::ArbiterHandle {
    match &shared.mesh {
        Some(mesh) if on_mesh_arbiter(true, wants_mesh, tls) => mesh.arbiter.clone(),
        _ => shared.next_worker(),
    }
}

/// Whether the listener's plain-TCP connections want the mesh's thread:
/// `mqtt-on-mesh-thread` or `amqp-on-mesh-thread`, by its protocol.
pub(super) fn wants_mesh_thread(config: &ListenerConfig) -> bool {
    match config.protocol {
        crate::config::Protocol::Mqtt => config.mqtt_on_mesh_thread,
        crate::config::Protocol::Amqp => config.amqp_on_mesh_thread,
    }
}

/// The rule of [`connection_arbiter`]: whether a connection runs on the
/// mesh's arbiter rather than a worker.
pub(super) fn on_mesh_arbiter(in_mesh: bool, wants_mesh: bool, tls: bool) -> bool {
    in_mesh && wants_mesh && !tls
}

/// Runs the server side of the TLS handshake on the worker (registering
/// the socket with its runtime), bounded by the listener's handshake
/// deadline; `None` (logged, socket closed) when it fails or times out.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    socket: std::net::TcpStream,
    config: &ListenerConfig,
    peer: &str,
) -> Option<Transport> {
    let stream = match TcpStream::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, "cannot register socket: {e}");
            return None;
        }
    };
    let handshake = acceptor.accept(stream);
    let session = match config.handshake_timeout() {
        Some(limit) => match tokio::time::timeout(limit, handshake).await {
            Ok(result) => result,
            Err(_) => {
                tracing::info!(
                    %peer,
                    "TLS handshake not done within {} ms: connection closed",
                    limit.as_millis()
                );
                return None;
            }
        },
        None => handshake.await,
    };
    match session {
        Ok(session) => {
            let info = crate::tls::session_info(session.get_ref().1);
            Some(Transport::Tls(Box::new(session.into()), info))
        }
        // Dropping the half-open session closes the socket.
        Err(e) => {
            tracing::info!(%peer, "TLS handshake failed: {e}: connection closed");
            None
        }
    }
}

impl Handler<StopAccepting> for ListenerActor {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        tracing::info!(listener = %self.config.socket_address(), "listener closed");
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::on_mesh_arbiter;

    #[test]
    fn only_plain_connections_whose_listener_wants_it_run_on_the_mesh_arbiter() {
        assert!(on_mesh_arbiter(true, true, false));
        // TLS: the handshake and the record crypto stay on the workers.
        assert!(!on_mesh_arbiter(true, true, true));
        // A listener that does not want it (AMQP by default).
        assert!(!on_mesh_arbiter(true, false, false));
        // No mesh: everything on the workers.
        assert!(!on_mesh_arbiter(false, true, false));
    }
}
