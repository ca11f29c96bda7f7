//! The inter-router listener: a tonic server for `InterRouter.Exchange` on
//! each `[[listener]]` with `role = "inter-router"`. Each accepted call is
//! handed to the control actor, which starts a peer actor on it; the
//! response stream is fed by that actor through a tokio mpsc channel.
//!
//! On a listener with `tls-cert-file` the server speaks gRPC over TLS: each
//! accepted socket gets a TLS handshake (with the configuration in force,
//! so a `SIGHUP` reload applies to the next one; bounded by the listener's
//! `handshake-timeout-ms`), and only completed sessions reach tonic. With
//! `require-client-cert` a peer router must present a certificate signed
//! by `tls-ca-file`: mutual TLS.
//!
//! A `role = "edge"` listener serves the same service to edge routers'
//! uplinks (their calls carry `bote-role: edge`; each side refuses the
//! other's), which the control actor keeps outside link state.
//!
//! The listening end does not decide the link's cost: it starts from the
//! cost the dialler sent in the call's `bote-link-cost` metadata and then
//! follows the cost stated in the dialler's hellos.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bote_proto::v1::Batch;
use bote_proto::v1::inter_router_server::{InterRouter, InterRouterServer};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::control::{ControlActor, NewStream};
use super::peer::{OUTBOUND_BATCHES, PeerStream};
use super::{LINK_COST_METADATA, ROLE_METADATA};
use crate::config::ListenerConfig;
use crate::tls::ServerTls;

/// Binds `listener` and serves the inter-router service on it (on the
/// current actix arbiter). Logs `inter-router listening on HOST:PORT`.
pub async fn serve(
    listener: &ListenerConfig,
    control: Addr<ControlActor>,
    users: Arc<bote_auth::SharedUsers>,
    tls: Option<Arc<ServerTls>>,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.socket_address();
    let tcp = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("inter-router listener {addr}: cannot bind: {e}"))?;
    let local = tcp.local_addr()?;
    tracing::info!(
        "inter-router listening on {local}{}",
        if tls.is_some() { " (TLS)" } else { "" }
    );
    let authenticate = super::auth::required(listener).then(|| Authenticate {
        listener: listener.clone(),
        users,
        encrypted: tls.is_some(),
    });
    let edge = listener.role == crate::config::Role::Edge;
    let service = InterRouterServer::new(ExchangeService {
        control,
        authenticate,
        edge,
    })
    .max_decoding_message_size(super::MAX_BATCH_MESSAGE)
    .max_encoding_message_size(super::MAX_BATCH_MESSAGE);
    let mut server = tonic::transport::Server::builder().max_frame_size(super::H2_MAX_FRAME_SIZE);
    if edge {
        // No hellos on edge streams: HTTP/2 pings find a silent edge.
        server = server
            .http2_keepalive_interval(Some(super::EDGE_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(super::EDGE_KEEPALIVE_TIMEOUT));
    }
    let router = server.add_service(service);
    match tls {
        None => {
            let incoming = TcpListenerStream::new(tcp).map(|conn| {
                conn.inspect(|stream| {
                    // Control frames are small: never let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                })
            });
            actix_rt::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::error!("inter-router listener {local} failed: {e}");
                }
            });
        }
        Some(tls) => {
            let incoming =
                ReceiverStream::new(tls_handshakes(tcp, tls, listener.handshake_timeout()))
                    .map(Ok::<_, std::io::Error>);
            actix_rt::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::error!("inter-router listener {local} failed: {e}");
                }
            });
        }
    }
    Ok(local)
}

/// Accepts on `tcp` and hands over the sockets whose TLS handshake
/// completed (each handshake runs in a task of its own, so a slow or
/// hostile peer holds up no other).
fn tls_handshakes(
    tcp: tokio::net::TcpListener,
    tls: Arc<ServerTls>,
    deadline: Option<Duration>,
) -> mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let (tx, rx) = mpsc::channel(16);
    let deadline = deadline.unwrap_or(Duration::from_secs(30));
    actix_rt::spawn(async move {
        loop {
            let (stream, peer) = match tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("inter-router accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(session)) => {
                        let info = crate::tls::session_info(session.get_ref().1);
                        tracing::debug!(
                            %peer,
                            protocol = %info.protocol,
                            cipher = %info.cipher,
                            subject = info.peer_subject.as_deref().unwrap_or("-"),
                            "inter-router TLS session"
                        );
                        let _ = tx.send(session).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "inter-router TLS handshake failed: {e}")
                    }
                    Err(_) => tracing::warn!(
                        %peer,
                        "inter-router TLS handshake not done within {deadline:?}: closed"
                    ),
                }
            });
        }
    });
    rx
}

/// The `InterRouter` service.
struct ExchangeService {
    control: Addr<ControlActor>,
    /// A `role = "edge"` listener: edge routers' uplinks, outside link state.
    edge: bool,
    /// Set when the listener authenticates its peers (`super::auth`).
    authenticate: Option<Authenticate>,
}

/// What an inter-router listener that authenticates its peers checks
/// credentials with.
struct Authenticate {
    listener: ListenerConfig,
    users: Arc<bote_auth::SharedUsers>,
    /// The listener speaks TLS (PLAIN needs no `allow-insecure-plain`).
    encrypted: bool,
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<Batch, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl InterRouter for ExchangeService {
    type ExchangeStream = BatchStream;

    async fn exchange(
        &self,
        request: Request<Streaming<Batch>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let remote = request
            .remote_addr()
            .map_or_else(|| "unknown address".to_owned(), |a| a.to_string());
        let cost = request
            .metadata()
            .get(LINK_COST_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        let from_edge = request
            .metadata()
            .get(ROLE_METADATA)
            .is_some_and(|v| v.as_bytes() == b"edge");
        if from_edge != self.edge {
            return Err(Status::failed_precondition(if self.edge {
                "this is an edge listener: only edge routers' uplinks (role = \"edge\" connectors) attach here"
            } else {
                "this is an inter-router listener: an edge router's uplink needs a listener with role = \"edge\""
            }));
        }
        let mut description = format!("inbound from {remote}");
        if let Some(auth) = &self.authenticate {
            match super::auth::check(
                &auth.listener,
                &auth.users.get(),
                auth.encrypted,
                request.metadata(),
            ) {
                Ok(user) => {
                    tracing::info!(peer = %remote, %user, "inter-router peer authenticated");
                    description = format!("inbound from {remote} (user {user})");
                }
                Err(reason) => {
                    tracing::warn!(peer = %remote, "inter-router authentication failed: {reason}");
                    tokio::time::sleep(bote_auth::mechanism::FAILURE_DELAY).await;
                    return Err(Status::unauthenticated(
                        "authentication failed (SASL PLAIN credentials in bote-sasl-plain-bin)",
                    ));
                }
            }
        }
        let (out, rx) = mpsc::channel(OUTBOUND_BATCHES);
        self.control.do_send(NewStream {
            stream: PeerStream {
                inbound: request.into_inner(),
                out,
                cost,
                description,
                closed: None,
            },
            connector: None,
            edge: self.edge.then(|| remote.clone()),
        });
        let stream: BatchStream = Box::pin(ReceiverStream::new(rx).map(Ok));
        Ok(Response::new(stream))
    }
}
