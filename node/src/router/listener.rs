//! The listener actor: accepts TCP connections on one configured listener and
//! starts a connection actor for each on the next worker arbiter, so that
//! connections spread over all cores.

use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

use super::Shared;
use super::connection::ConnectionActor;
use crate::config::ListenerConfig;

pub struct ListenerActor {
    config: Arc<ListenerConfig>,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
}

impl ListenerActor {
    pub fn new(config: ListenerConfig, listener: TcpListener, shared: Arc<Shared>) -> Self {
        ListenerActor {
            config: Arc::new(config),
            shared,
            listener: Some(listener),
        }
    }
}

/// Stop accepting (graceful shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

impl Actor for ListenerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(l) = self.listener.take() {
            ctx.add_stream(TcpListenerStream::new(l));
        }
    }
}

impl StreamHandler<std::io::Result<TcpStream>> for ListenerActor {
    fn handle(&mut self, item: std::io::Result<TcpStream>, _ctx: &mut Context<Self>) {
        let stream = match item {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(listener = %self.config.socket_address(), "accept failed: {e}");
                return;
            }
        };
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
        let worker = self.shared.next_worker();
        let conn = self.shared.next_conn_id();
        let config = self.config.clone();
        let shared = self.shared.clone();
        ConnectionActor::start_in_arbiter(&worker, move |_ctx| {
            ConnectionActor::accepted(conn, std_stream, peer, config, shared)
        });
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<StopAccepting> for ListenerActor {
    type Result = ();
    fn handle(&mut self, _: StopAccepting, ctx: &mut Context<Self>) {
        tracing::info!(listener = %self.config.socket_address(), "listener closed");
        ctx.stop();
    }
}
