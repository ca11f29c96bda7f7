//! Connectors: for each `[[connector]]` with `role = "inter-router"`, a task
//! that dials the peer's inter-router listener, opens the `Exchange` stream,
//! hands it to the control actor, waits until it closes and dials again —
//! forever, with exponential backoff and jitter between failed attempts
//! (first retry after ~100 ms, at most ~5 s). A stream that was up for at
//! least [`STABLE_STREAM`] resets the backoff; one refused at once (a
//! duplicate router id) keeps backing off.
//!
//! An edge router's `role = "edge"` connectors are alternates served by
//! one task ([`start_uplink`]): it dials them in turn until one answers,
//! keeps that uplink while it is up, and when it drops dials the next one
//! at once (backing off only after a whole round failed). Edge dials go
//! through the same [`dial`] as inter-router ones, and say so in the
//! call's `bote-role: edge` metadata, so an interior refuses an edge on an
//! inter-router listener and the other way round.
//!
//! A connector with `tls-ca-file` dials with TLS (rustls through a tower
//! connector handed to tonic): the peer's certificate must be signed by
//! that CA and name `tls-server-name` (default `host`); with
//! `tls-cert-file` it presents its own certificate (mutual TLS). Each dial
//! takes the TLS configuration in force, so a `SIGHUP` reload applies at
//! the next one.
//!
//! The connector's end decides the link's cost: each dial announces the
//! cost in force (its [`ConnectorCost`], which a reload may change) in the
//! call's `bote-link-cost` metadata, and the control plane states it in
//! every hello on the stream.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bote_proto::v1::Batch;
use bote_proto::v1::inter_router_client::InterRouterClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Endpoint;

use super::control::{ConnectorCost, ControlActor, NewStream};
use super::peer::{OUTBOUND_BATCHES, PeerStream};
use super::{LINK_COST_METADATA, ROLE_METADATA};
use crate::config::ConnectorConfig;
use crate::tls::ClientTls;

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A stream open at least this long resets the backoff when it closes.
pub const STABLE_STREAM: Duration = Duration::from_secs(1);

/// Exponential backoff with "equal jitter": the n-th consecutive failure
/// waits between half and all of `min(BACKOFF_MIN × 2^n, BACKOFF_MAX)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            current: min,
        }
    }

    /// The delay before the next attempt; doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = ceiling / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// After a success: the next failure waits ~`min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// Starts the connector's task on the current actix arbiter; it dials with
/// the cost in `cost` at each attempt (`config.cost` is only its first value).
/// Notifying the returned handle stops it (management's DELETE): it dials
/// no more; the control actor closes the stream it had open.
pub fn start(
    config: ConnectorConfig,
    cost: ConnectorCost,
    control: Addr<ControlActor>,
    tls: Option<std::sync::Arc<ClientTls>>,
) -> std::sync::Arc<tokio::sync::Notify> {
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    actix_rt::spawn(async move {
        let name = config.name.clone();
        tokio::select! {
            () = run(config, cost, control, tls) => {}
            () = stopped.notified() => tracing::info!("connector {name}: stopped"),
        }
    });
    stop
}

async fn run(
    config: ConnectorConfig,
    cost: ConnectorCost,
    control: Addr<ControlActor>,
    tls: Option<std::sync::Arc<ClientTls>>,
) {
    let target = config.socket_address();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut failures = 0u64;
    loop {
        let cost = cost.load(Ordering::Relaxed);
        match dial(&target, cost, &config, tls.as_deref(), false).await {
            Ok((inbound, out)) => {
                if failures > 0 {
                    tracing::info!(
                        "connector {}: connected to {target} after {failures} failed attempts",
                        config.name
                    );
                }
                failures = 0;
                let opened = Instant::now();
                let (closed, closed_rx) = oneshot::channel();
                control.do_send(NewStream {
                    stream: PeerStream {
                        inbound,
                        out,
                        cost,
                        description: format!("connector {} to {target}", config.name),
                        closed: Some(closed),
                    },
                    connector: Some(config.name.clone()),
                    edge: None,
                });
                let _ = closed_rx.await;
                // A stream refused at once (duplicate id, our own id) must
                // not be redialled ten times a second: only a stream that
                // lived resets the backoff.
                if opened.elapsed() >= STABLE_STREAM {
                    backoff.reset();
                }
                tracing::debug!(
                    "connector {}: stream to {target} closed; redialling",
                    config.name
                );
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(
                        "connector {}: cannot reach {target}: {e:#}; retrying with backoff",
                        config.name
                    );
                } else {
                    tracing::debug!(
                        "connector {}: attempt {failures} to {target} failed: {e:#}",
                        config.name
                    );
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Starts an edge router's uplink task on the current actix arbiter: its
/// `role = "edge"` connectors (`configs`, in configuration order) are
/// alternates, one uplink up at a time (module doc). Notifying the
/// returned handle stops it.
pub fn start_uplink(
    configs: Vec<(ConnectorConfig, Option<std::sync::Arc<ClientTls>>)>,
    control: Addr<ControlActor>,
) -> std::sync::Arc<tokio::sync::Notify> {
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    actix_rt::spawn(async move {
        tokio::select! {
            () = run_uplink(configs, control) => {}
            () = stopped.notified() => tracing::info!("edge uplink: stopped"),
        }
    });
    stop
}

async fn run_uplink(
    configs: Vec<(ConnectorConfig, Option<std::sync::Arc<ClientTls>>)>,
    control: Addr<ControlActor>,
) {
    if configs.is_empty() {
        return;
    }
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut next = 0usize;
    let mut failed_in_round = 0usize;
    loop {
        let (config, tls) = &configs[next % configs.len()];
        next += 1;
        let target = config.socket_address();
        match dial(&target, config.cost, config, tls.as_deref(), true).await {
            Ok((inbound, out)) => {
                failed_in_round = 0;
                tracing::info!(
                    "edge uplink: connector {} connected to {target}",
                    config.name
                );
                let opened = Instant::now();
                let (closed, closed_rx) = oneshot::channel();
                control.do_send(NewStream {
                    stream: PeerStream {
                        inbound,
                        out,
                        cost: config.cost,
                        description: format!("edge connector {} to {target}", config.name),
                        closed: Some(closed),
                    },
                    connector: Some(config.name.clone()),
                    edge: Some(target.clone()),
                });
                let _ = closed_rx.await;
                if opened.elapsed() >= STABLE_STREAM {
                    backoff.reset();
                }
                tracing::info!(
                    "edge uplink: stream via connector {} to {target} closed{}",
                    config.name,
                    if configs.len() > 1 {
                        "; failing over to the next alternate"
                    } else {
                        "; redialling"
                    }
                );
                if configs.len() > 1 && opened.elapsed() >= STABLE_STREAM {
                    continue;
                }
            }
            Err(e) => {
                failed_in_round += 1;
                tracing::warn!(
                    "edge uplink: connector {} cannot reach {target}: {e:#}",
                    config.name
                );
                if failed_in_round < configs.len() {
                    // Try the next alternate at once.
                    continue;
                }
                failed_in_round = 0;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Opens the `Exchange` stream to `target`, announcing our link `cost`,
/// with `sasl-username` our credentials (`super::auth`), and for an edge's
/// uplink that it is one; over TLS when the connector has `tls`.
async fn dial(
    target: &str,
    cost: u32,
    config: &ConnectorConfig,
    tls: Option<&ClientTls>,
    edge: bool,
) -> anyhow::Result<(Streaming<Batch>, mpsc::Sender<Batch>)> {
    let credentials = super::auth::credentials(config)?;
    let mut endpoint = Endpoint::from_shared(format!("http://{target}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .max_frame_size(super::H2_MAX_FRAME_SIZE);
    if edge {
        // No hellos on an uplink: HTTP/2 pings find a silent interior.
        endpoint = endpoint
            .http2_keep_alive_interval(super::EDGE_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(super::EDGE_KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
    }
    let channel = match tls {
        None => endpoint.connect().await?,
        Some(tls) => {
            let connector = tls.connector();
            let name = tls.server_name();
            let target = target.to_owned();
            let dial_tls = tower::service_fn(move |_: tonic::transport::Uri| {
                let (connector, name, target) = (connector.clone(), name.clone(), target.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(&target).await?;
                    tcp.set_nodelay(true)?;
                    let session =
                        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
                            .await
                            .map_err(|_| {
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "TLS handshake not done within 5 s",
                                )
                            })??;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(session))
                }
            });
            endpoint.connect_with_connector(dial_tls).await?
        }
    };
    let mut client = InterRouterClient::new(channel)
        .max_decoding_message_size(super::MAX_BATCH_MESSAGE)
        .max_encoding_message_size(super::MAX_BATCH_MESSAGE);
    let (out, rx) = mpsc::channel(OUTBOUND_BATCHES);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert(LINK_COST_METADATA, cost.max(1).to_string().parse()?);
    if let Some(message) = &credentials {
        super::auth::attach(request.metadata_mut(), message);
    }
    if edge {
        request
            .metadata_mut()
            .insert(ROLE_METADATA, "edge".parse()?);
    }
    let response = client.exchange(request).await?;
    Ok((response.into_inner(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_near_100ms_doubles_and_caps_at_5s_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let mut ceiling = BACKOFF_MIN;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(BACKOFF_MAX);
        }
        assert_eq!(ceiling, BACKOFF_MAX);
    }

    #[test]
    fn backoff_reset_returns_to_the_first_delay() {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }
}
