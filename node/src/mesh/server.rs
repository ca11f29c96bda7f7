//! The inter-router listener: a tonic server for `InterRouter.Exchange` on
//! each `[[listener]]` with `role = "inter-router"`. Each accepted call is
//! handed to the control actor, which starts a peer actor on it; the
//! response stream is fed by that actor through a tokio mpsc channel.
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

use super::LINK_COST_METADATA;
use super::control::{ControlActor, NewStream};
use super::peer::{OUTBOUND_BATCHES, PeerStream};
use crate::config::ListenerConfig;

/// Binds `listener` and serves the inter-router service on it (on the
/// current actix arbiter). Logs `inter-router listening on HOST:PORT`.
pub async fn serve(
    listener: &ListenerConfig,
    control: Addr<ControlActor>,
    users: std::sync::Arc<bote_auth::SharedUsers>,
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
    let authenticate = super::auth::required(listener).then(|| (listener.clone(), users));
    let service = InterRouterServer::new(ExchangeService {
        control,
        authenticate,
    })
    .max_decoding_message_size(super::MAX_BATCH_MESSAGE)
    .max_encoding_message_size(super::MAX_BATCH_MESSAGE);
    actix_rt::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
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
    /// Set when the listener authenticates its peers (`super::auth`).
    authenticate: Option<(ListenerConfig, std::sync::Arc<bote_auth::SharedUsers>)>,
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
        let mut description = format!("inbound from {remote}");
        if let Some((listener, users)) = &self.authenticate {
            match super::auth::check(listener, &users.get(), request.metadata()) {
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
        });
        let stream: BatchStream = Box::pin(ReceiverStream::new(rx).map(Ok));
        Ok(Response::new(stream))
    }
}
