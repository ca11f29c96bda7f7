//! The inter-router listener: a tonic server for `InterRouter.Exchange` on
//! each `[[listener]]` with `role = "inter-router"`. Each accepted call is
//! handed to the control actor, which starts a peer actor on it; the
//! response stream is fed by that actor through a tokio mpsc channel.
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

/// Binds `listener` and serves the inter-router service on it (on the
/// current actix arbiter). Logs `inter-router listening on HOST:PORT`.
pub async fn serve(
    listener: &ListenerConfig,
    control: Addr<ControlActor>,
) -> anyhow::Result<SocketAddr> {
    let addr = listener.socket_address();
    let tcp = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("inter-router listener {addr}: cannot bind: {e}"))?;
    let local = tcp.local_addr()?;
    tracing::info!("inter-router listening on {local}");
    let incoming = TcpListenerStream::new(tcp).map(|conn| {
        conn.inspect(|stream| {
            // Control frames are small: never let Nagle hold them back.
            let _ = stream.set_nodelay(true);
        })
    });
    let edge = listener.role == crate::config::Role::Edge;
    let service = InterRouterServer::new(ExchangeService { control, edge })
        .max_decoding_message_size(super::MAX_BATCH_MESSAGE)
        .max_encoding_message_size(super::MAX_BATCH_MESSAGE);
    actix_rt::spawn(async move {
        let mut server = tonic::transport::Server::builder();
        if edge {
            // No hellos on edge streams: HTTP/2 pings find a silent edge.
            server = server
                .http2_keepalive_interval(Some(super::EDGE_KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(super::EDGE_KEEPALIVE_TIMEOUT));
        }
        if let Err(e) = server
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!("inter-router listener {local} failed: {e}");
        }
    });
    Ok(local)
}

/// The `InterRouter` service.
struct ExchangeService {
    control: Addr<ControlActor>,
    /// A `role = "edge"` listener: edge routers' uplinks, outside link state.
    edge: bool,
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
        let (out, rx) = mpsc::channel(OUTBOUND_BATCHES);
        self.control.do_send(NewStream {
            stream: PeerStream {
                inbound: request.into_inner(),
                out,
                cost,
                description: format!("inbound from {remote}"),
                closed: None,
            },
            connector: None,
            edge: self.edge.then(|| remote.clone()),
        });
        let stream: BatchStream = Box::pin(ReceiverStream::new(rx).map(Ok));
        Ok(Response::new(stream))
    }
}
