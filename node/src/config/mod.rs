//! The typed configuration of `boted`, parsed once from TOML and validated
//! before the router starts; nothing downstream reads raw TOML.
//!
//! Sections: `[router]`, `[telemetry]`, `[[listener]]`, `[[connector]]`,
//! `[[address]]`, `[[link-route]]`, `[[auto-link]]` and `[[vhost]]`
//! (connection and link policy, [`policy`]).
//! Keys are kebab-case; the camelCase spellings qdrouterd users know
//! (`linkCapacity`, `maxFrameSize`, `idleTimeoutSeconds`, `workerThreads`, ...)
//! are accepted as aliases. Every key has a default except a connector's
//! `name`, `host` and `port`. A file replaces the embedded default wholesale,
//! as `qdrouterd.conf` does: a file without `[[address]]` entries has no
//! address prefixes, one without `[[listener]]` listens nowhere.
//!
//! Unknown keys and bad values are errors that name the file, the line, the
//! column and the key ([`Diagnostic`]); see `node/examples/bote.toml` for a
//! commented example of every setting.

pub mod address;
pub mod auto_link;
mod diagnostic;
pub mod link_route;
pub mod policy;
pub mod reload;
pub mod tls;

use std::path::{Path as FsPath, PathBuf};

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::de::DeTable;

pub use address::{
    AddressEntry, AddressKey, AddressMatch, AddressTable, AddressTableError, Distribution,
    PatternError,
};
pub use auto_link::AutoLinkConfig;
pub use diagnostic::Diagnostic;
use diagnostic::{PathSeg, Problem, key};
pub use link_route::{LinkDirection, LinkRouteConfig, LinkRouteTable, RouteDestination};

/// The embedded default configuration (`default.toml`).
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// The name diagnostics use for the embedded default.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// AMQP 1.0's smallest permitted max-frame-size (`MIN-MAX-FRAME-SIZE`).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", .path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// Why reading failed (in the message, so not also a `source`:
        /// an error chain would print it twice).
        error: std::io::Error,
    },
    /// The file is not valid TOML or not a valid Bote configuration.
    #[error(transparent)]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// The located problem, unless the file could not be read at all.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            ConfigError::Read { .. } => None,
        }
    }
}

/// The whole configuration of one router.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[router]`: identity, threads, logging, timers.
    pub router: RouterConfig,
    /// `[telemetry]`: OpenTelemetry trace export (off unless an endpoint is set).
    pub telemetry: TelemetryConfig,
    /// `[[listener]]`: where clients (and later peer routers) connect.
    pub listeners: Vec<ListenerConfig>,
    /// `[[connector]]`: outgoing connections to peer routers.
    pub connectors: Vec<ConnectorConfig>,
    /// `[[address]]`: the distribution of each address.
    pub addresses: AddressTable,
    /// `[[vhost]]`: per-hostname connection and user-group policy; none =
    /// no vhost policy (the listeners' limits still apply).
    pub vhosts: Vec<policy::VhostConfig>,
    /// `[[link-route]]`: addresses whose links go to a broker, link for link.
    pub link_routes: LinkRouteTable,
    /// `[[auto-link]]`: router-owned links to brokers' queues.
    pub auto_links: Vec<AutoLinkConfig>,
}

/// `[router]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RouterConfig {
    /// The router's id in the mesh (qdrouterd `id`). Default `Router.<hostname>`.
    pub id: String,
    /// Worker threads (arbiters) connections are spread over; 0 = one per
    /// core. Default 0. Alias `workerThreads`.
    #[serde(alias = "workerThreads")]
    pub workers: usize,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing `EnvFilter`
    /// directive list such as `"info,bote_node::mesh=debug"`. Default `info`.
    /// `RUST_LOG`, when set, is for the binary to weigh against this.
    #[serde(alias = "logLevel")]
    pub log_level: String,
    /// `text` (default) or `json`: one JSON object per log line, with the
    /// OpenTelemetry `trace_id` and `span_id` on lines written inside a
    /// traced delivery.
    #[serde(alias = "logFormat")]
    pub log_format: LogFormat,
    /// Interval between hellos to neighbour routers, in ms. Default 1000.
    #[serde(alias = "helloIntervalMs")]
    pub hello_interval_ms: u64,
    /// A neighbour silent for this long is lost, in ms. Default 3000.
    #[serde(alias = "helloTimeoutMs")]
    pub hello_timeout_ms: u64,
    /// The distribution of addresses no `[[address]]` entry matches
    /// (qdrouterd `defaultDistribution`). Default `balanced`.
    #[serde(alias = "defaultDistribution")]
    pub default_distribution: Distribution,
    /// Where the HTTP API (`/healthz`, `/readyz`, `/api/v1/...`) listens:
    /// `host:port` (port 0 picks one), or `"off"`. Default
    /// `127.0.0.1:8672`. A port in use is logged and the router runs
    /// without HTTP.
    pub http: String,
    /// The most series `/metrics` gives each per-address and per-link
    /// family; the least busy beyond it are summed under the label
    /// `other`. Default 100.
    #[serde(alias = "metricsMaxSeries")]
    pub metrics_max_series: usize,
    /// The users file PLAIN and SCRAM-SHA-256 check clients against (salted
    /// SCRAM-SHA-256 keys, written by `botectl user add`); relative paths
    /// are from the router's working directory. Read at start and on
    /// SIGHUP. Default none.
    #[serde(alias = "saslUsersFile", alias = "users")]
    pub users_file: Option<PathBuf>,
    /// `interior` (default: a node of the mesh's link state) or `edge` (a
    /// leaf that keeps one uplink to an interior router through its
    /// `role = "edge"` connectors and takes no part in link state),
    /// qdrouterd's `mode`.
    pub mode: RouterMode,
    /// The directory of the router's store on disk: MQTT retained messages
    /// and persistent sessions, in `<data-dir>/<id>.redb` (created if
    /// missing; relative paths are from the router's working directory).
    /// Default none: they are kept in memory only and lost on restart.
    #[serde(alias = "dataDir")]
    pub data_dir: Option<PathBuf>,
}

/// `[router] mode`: what part the router plays (qdrouterd's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterMode {
    /// A node of the mesh: link state, routes, inter-router links, and
    /// `role = "edge"` listeners for edge routers.
    #[default]
    Interior,
    /// A leaf: one active uplink (`role = "edge"` connectors, alternates
    /// tried in turn) to an interior router, which proxies its addresses
    /// into the mesh.
    Edge,
}

impl RouterMode {
    /// The configuration spelling (and qdrouterd's management value).
    pub fn as_str(self) -> &'static str {
        match self {
            RouterMode::Interior => "interior",
            RouterMode::Edge => "edge",
        }
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            id: default_router_id(),
            workers: 0,
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            hello_interval_ms: 1000,
            hello_timeout_ms: 3000,
            default_distribution: Distribution::Balanced,
            http: DEFAULT_HTTP.to_owned(),
            metrics_max_series: 100,
            users_file: None,
            mode: RouterMode::Interior,
            data_dir: None,
        }
    }
}

/// The HTTP API's default address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8672";

impl RouterConfig {
    /// The HTTP API's address, or `None` when it is off.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        match self.http.trim() {
            "off" | "" => None,
            text => text.parse().ok(),
        }
    }

    /// The number of worker threads to start: `workers`, or the number of
    /// cores when it is 0.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// How log lines are written (`[router] log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`: distributed tracing of messages (OpenTelemetry, exported
/// over OTLP/gRPC, e.g. to Jaeger on port 4317). Off unless `otlp-endpoint`
/// is set; off, it costs the data path one branch per delivery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Default none:
    /// tracing off.
    pub otlp_endpoint: Option<String>,
    /// The fraction of messages arriving without a trace context that start
    /// a trace, 0.0 to 1.0. A message with a context follows its sampled
    /// flag. Default 1.0.
    pub sampling_ratio: f64,
    /// The OpenTelemetry `service.name`. Default `bote`.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            service_name: "bote".to_owned(),
        }
    }
}

/// `Router.<hostname>`, or `Router.bote` when the host has no usable name.
/// Characters that are not letters, digits, `-`, `_` or `.` become `-`.
pub fn default_router_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if host.is_empty() {
        "Router.bote".to_owned()
    } else {
        format!("Router.{host}")
    }
}

/// What a connection is for (qdrouterd `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Clients: senders and receivers of messages.
    Normal,
    /// A peer router of the mesh.
    InterRouter,
    /// A broker (or any AMQP container) the router connects to for link
    /// routes (`[[link-route]]`); connectors only.
    RouteContainer,
    /// The uplink between an edge router and an interior router: an
    /// interior's listener for edges, an edge's connector to an interior.
    Edge,
}

impl Role {
    /// qdrouterd's name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Normal => "normal",
            Role::InterRouter => "inter-router",
            Role::RouteContainer => "route-container",
            Role::Edge => "edge",
        }
    }
}

/// Which way a listener strips the router's message annotations
/// (`x-opt-qd.ingress`, the ingress router, and `x-opt-qd.trace`, the routers
/// a message went through), qdrouterd's `stripAnnotations`.
///
/// Outbound: unless stripped (`out`, `both`), a message delivered to a
/// client of the listener carries both annotations, router ids in
/// qdrouterd's `0/<router-id>` form, the trace ending with this router.
/// Inbound: Bote never takes a client's `x-opt-qd.ingress`/`x-opt-qd.trace`
/// for its own (the trace it routes on travels beside the message), and an
/// annotating listener replaces them; `in` is therefore what every listener
/// does and `no` behaves as `in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StripAnnotations {
    /// Strip on ingress only: outgoing messages are annotated.
    In,
    /// Strip on egress only: outgoing messages are not annotated.
    Out,
    /// Strip both ways (the default): outgoing messages are not annotated.
    #[default]
    Both,
    /// Strip nothing: outgoing messages are annotated.
    No,
}

impl StripAnnotations {
    /// True if messages going out to this listener's clients carry
    /// `x-opt-qd.ingress` and `x-opt-qd.trace` (`in` and `no`).
    pub fn annotates_outbound(self) -> bool {
        matches!(self, StripAnnotations::In | StripAnnotations::No)
    }

    /// The configuration spelling: `in`, `out`, `both` or `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            StripAnnotations::In => "in",
            StripAnnotations::Out => "out",
            StripAnnotations::Both => "both",
            StripAnnotations::No => "no",
        }
    }
}

/// A SASL mechanism a listener offers or a connector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SaslMechanism {
    /// No credentials (RFC 4505).
    #[serde(rename = "ANONYMOUS")]
    Anonymous,
    /// User name and password in clear (RFC 4616), checked against the
    /// users file; offered only on encrypted connections unless the
    /// listener sets `allow-insecure-plain`.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge and response (RFC 5802, RFC 7677), checked against
    /// the users file; the password never crosses the wire.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// The identity the transport authenticated (the TLS client
    /// certificate); offered only on connections that have one.
    #[serde(rename = "EXTERNAL")]
    External,
}

impl SaslMechanism {
    /// The names the configuration accepts.
    pub const NAMES: &'static [&'static str] = &["ANONYMOUS", "PLAIN", "SCRAM-SHA-256", "EXTERNAL"];

    /// The mechanism with this registered name (case-sensitive, as SASL names are).
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "ANONYMOUS" => Some(SaslMechanism::Anonymous),
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "EXTERNAL" => Some(SaslMechanism::External),
            _ => None,
        }
    }

    /// The mechanism's registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Anonymous => "ANONYMOUS",
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::External => "EXTERNAL",
        }
    }

    /// True for the mechanisms checked against the users file.
    pub fn needs_users(self) -> bool {
        matches!(self, SaslMechanism::Plain | SaslMechanism::ScramSha256)
    }
}

/// Accepts an array, `["ANONYMOUS", "PLAIN"]`, or qdrouterd's
/// space-separated string, `"ANONYMOUS PLAIN"`.
fn sasl_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SaslMechanism>, D::Error> {
    struct Mechanisms;
    impl<'de> Visitor<'de> for Mechanisms {
        type Value = Vec<SaslMechanism>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of SASL mechanism names")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|name| !name.is_empty())
                .map(|name| {
                    SaslMechanism::from_name(name)
                        .ok_or_else(|| E::unknown_variant(name, SaslMechanism::NAMES))
                })
                .collect()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(m) = seq.next_element()? {
                out.push(m);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Mechanisms)
}

/// `[[listener]]`: a socket the router accepts connections on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ListenerConfig {
    /// Optional name for logs and management; unique when given.
    pub name: Option<String>,
    /// Address to bind. Default `0.0.0.0`.
    pub host: String,
    /// Port to bind; 0 picks an ephemeral port. Default 5672.
    pub port: u16,
    /// `normal` (clients) or `inter-router`. Default `normal`.
    pub role: Role,
    /// Mechanisms offered to clients that open with SASL: `ANONYMOUS`,
    /// `PLAIN`, `SCRAM-SHA-256`, `EXTERNAL`. Default `["ANONYMOUS"]`; a
    /// qdrouterd-style string (`"PLAIN SCRAM-SHA-256"`) also parses. PLAIN
    /// and SCRAM-SHA-256 need `[router] users-file`. A list without
    /// ANONYMOUS requires SASL: a client that sends the plain AMQP header
    /// is refused. PLAIN is offered only on encrypted connections unless
    /// `allow-insecure-plain`; EXTERNAL only on connections whose transport
    /// authenticated the peer (a TLS client certificate).
    #[serde(alias = "saslMechanisms", deserialize_with = "sasl_list")]
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Require every client to authenticate (qdrouterd `authenticatePeer`):
    /// SASL is required and ANONYMOUS may not be offered. Default false.
    #[serde(alias = "authenticatePeer")]
    pub authenticate_peer: bool,
    /// Offer PLAIN on connections that are not encrypted (the password then
    /// crosses the network in clear). Default false: PLAIN only over TLS.
    #[serde(alias = "allowInsecurePlain")]
    pub allow_insecure_plain: bool,
    /// Idle timeout announced in open, in seconds; 0 disables it.
    /// Default 16 (qdrouterd `idleTimeoutSeconds`).
    #[serde(alias = "idleTimeoutSecs", alias = "idleTimeoutSeconds")]
    pub idle_timeout_secs: u32,
    /// Largest frame accepted, announced in open; at least 512. Default 16384.
    #[serde(alias = "maxFrameSize")]
    pub max_frame_size: u32,
    /// Credit granted to each sender link (deliveries it may have in this
    /// router that have not moved on yet), the window the router holds for
    /// each consumer link, and the margin of transfers taken beyond credit.
    /// At least 1. Default 250.
    #[serde(alias = "linkCapacity")]
    pub link_capacity: u32,
    /// Largest message accepted, in bytes; 0 = no limit. Default 10485760 (10 MiB).
    #[serde(alias = "maxMessageSize")]
    pub max_message_size: u64,
    /// When true, clients that send the plain AMQP header (no SASL layer) are
    /// refused. Default false: both kinds of client are accepted, unless
    /// `authenticate-peer` is set or `sasl-mechanisms` lacks ANONYMOUS
    /// ([`ListenerConfig::sasl_required`]).
    #[serde(alias = "requireSasl")]
    pub require_sasl: bool,
    /// `in`, `out`, `both` or `no`: whether messages delivered to this
    /// listener's clients carry the router annotations `x-opt-qd.ingress` and
    /// `x-opt-qd.trace` (`in`, `no`) or not (`out`, `both`). Default `both`
    /// (qdrouterd `stripAnnotations`); see [`StripAnnotations`].
    #[serde(alias = "stripAnnotations")]
    pub strip_annotations: StripAnnotations,
    /// A connection must finish the protocol header, SASL and `open` within
    /// this many milliseconds or it is closed; 0 = no deadline. Default 5000.
    #[serde(alias = "handshakeTimeoutMs")]
    pub handshake_timeout_ms: u64,
    /// The listen backlog: connections the kernel completes and queues
    /// before the router accepts them (capped by the kernel's
    /// `net.core.somaxconn`). At least 1. Default 4096, sized for bursts of
    /// thousands of connects.
    pub backlog: u32,
    /// Concurrent connections on this listener; 0 = unlimited (qdrouterd's
    /// policy `maxConnections`, per listener). Over it, the client's open
    /// is answered with a close, `amqp:resource-limit-exceeded`.
    #[serde(alias = "maxConnections")]
    pub max_connections: u32,
    /// Concurrent connections per authenticated user; 0 = unlimited.
    #[serde(alias = "maxConnectionsPerUser")]
    pub max_connections_per_user: u32,
    /// Concurrent connections per remote host (IP address); 0 = unlimited.
    #[serde(alias = "maxConnectionsPerHost")]
    pub max_connections_per_host: u32,
    /// New connections per second (a token bucket holding one second's
    /// worth); 0 = unlimited. Beyond it a connection is answered with a
    /// close, `amqp:resource-limit-exceeded`.
    #[serde(alias = "maxConnectionsPerSecond")]
    pub max_connections_per_second: u32,
    /// Sessions per connection; 0 = unlimited (qdrouterd `maxSessions`).
    #[serde(alias = "maxSessions")]
    pub max_sessions: u32,
    /// Client senders per connection; 0 = unlimited.
    #[serde(alias = "maxSenders")]
    pub max_senders: u32,
    /// Client receivers per connection; 0 = unlimited.
    #[serde(alias = "maxReceivers")]
    pub max_receivers: u32,
    /// TLS: the listener's certificate chain (PEM, leaf first). Setting it
    /// (with `tls-key-file`) makes the listener TLS-only: `amqps` for
    /// `normal` listeners (port 5671 by convention), gRPC over TLS for
    /// `inter-router` ones. Paths are as given (relative to boted's working
    /// directory). The files are re-read on `SIGHUP`. Default none.
    #[serde(alias = "certFile")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the private key of `tls-cert-file` (PEM: PKCS#8, PKCS#1 or
    /// SEC1). Default none.
    #[serde(alias = "privateKeyFile")]
    pub tls_key_file: Option<PathBuf>,
    /// TLS: the CA certificates (PEM) client certificates are verified
    /// against. Without `require-client-cert`, a client may present none,
    /// but one it presents must verify. Default none: no client
    /// certificates are asked for.
    #[serde(alias = "caCertFile")]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS: refuse clients that present no certificate signed by
    /// `tls-ca-file` (mutual TLS). Default false.
    #[serde(alias = "requireClientCert")]
    pub require_client_cert: bool,
    /// `amqp` (default) or `mqtt`: the protocol its clients speak. An MQTT
    /// listener (port 1883 in the examples) serves MQTT 3.1.1 and 5.0
    /// clients through the same addresses and mesh (`mqtt` module); of the
    /// keys above it uses `max-message-size` (largest packet),
    /// `link-capacity` (QoS 1 messages in flight each way) and
    /// `handshake-timeout-ms` (CONNECT deadline).
    pub protocol: Protocol,
    /// MQTT: how long a persistent session (3.1.1 clean-session 0; 5.0 a
    /// session expiry interval, capped by this) outlives its connection, in
    /// seconds. Default 3600.
    pub mqtt_session_expiry_secs: u32,
    /// MQTT: QoS 1 messages a session queues while its client is away (or
    /// waiting for the client's receive maximum); past it (or past
    /// `mqtt-session-max-bytes`) a message is given back `released`.
    /// Default 1000.
    pub mqtt_session_max_messages: u32,
    /// MQTT: bytes of queued messages per session. Default 4194304 (4 MiB).
    pub mqtt_session_max_bytes: u64,
    /// MQTT, on a router in a mesh: run this listener's plain-TCP
    /// connections on the mesh's thread, beside the address and peer
    /// actors, so a delivery and its outcome cross no thread (the QoS 1
    /// round trip, which bounds QoS 1 throughput, is shorter). `false`
    /// spreads them over the worker threads like AMQP connections: for
    /// many busy devices, whose protocol work one thread would then carry.
    /// Default true.
    pub mqtt_on_mesh_thread: bool,
    /// AMQP, on a router in a mesh: run this listener's plain-TCP
    /// connections on the mesh's thread, beside the address and peer
    /// actors, so a delivery entering or leaving the mesh here crosses no
    /// thread. Lower latency and less CPU per message (request/reply
    /// through a chain of three: p50 −14 %, CPU per round trip −22 %;
    /// BENCHMARKS.md), on a single core: the mesh's thread then also
    /// decodes and encodes these clients' frames. For small hosts and
    /// latency-bound traffic; the default (false) spreads AMQP connections
    /// over the worker threads.
    pub amqp_on_mesh_thread: bool,
}

/// The protocol a listener's clients speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Amqp,
    Mqtt,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Amqp => "amqp",
            Protocol::Mqtt => "mqtt",
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            name: None,
            host: "0.0.0.0".to_owned(),
            port: 5672,
            role: Role::Normal,
            sasl_mechanisms: vec![SaslMechanism::Anonymous],
            authenticate_peer: false,
            allow_insecure_plain: false,
            idle_timeout_secs: 16,
            max_frame_size: 16384,
            link_capacity: 250,
            max_message_size: 10 * 1024 * 1024,
            require_sasl: false,
            strip_annotations: StripAnnotations::Both,
            handshake_timeout_ms: 5000,
            backlog: 4096,
            max_connections: 0,
            max_connections_per_user: 0,
            max_connections_per_host: 0,
            max_connections_per_second: 0,
            max_sessions: 0,
            max_senders: 0,
            max_receivers: 0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            require_client_cert: false,
            protocol: Protocol::Amqp,
            mqtt_session_expiry_secs: 3600,
            mqtt_session_max_messages: 1000,
            mqtt_session_max_bytes: 4 * 1024 * 1024,
            mqtt_on_mesh_thread: true,
            amqp_on_mesh_thread: false,
        }
    }
}

impl ListenerConfig {
    /// A client must go through SASL (the plain AMQP header is refused):
    /// `require-sasl`, `authenticate-peer`, or no ANONYMOUS on offer.
    pub fn sasl_required(&self) -> bool {
        self.require_sasl
            || self.authenticate_peer
            || !self.sasl_mechanisms.contains(&SaslMechanism::Anonymous)
    }

    /// The message size limit, `None` when unlimited.
    pub fn max_message_size_limit(&self) -> Option<u64> {
        (self.max_message_size > 0).then_some(self.max_message_size)
    }

    /// `host:port` (IPv6 hosts in brackets), for binding and for logs.
    pub fn socket_address(&self) -> String {
        socket_address(&self.host, self.port)
    }

    /// The files of the listener's TLS server, `None` when it is not a TLS
    /// listener. Inter-router and edge listeners offer ALPN `h2` (gRPC).
    pub fn tls_files(&self) -> Option<tls::ServerFiles> {
        Some(tls::ServerFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            ca: self.tls_ca_file.clone(),
            require_client_cert: self.require_client_cert,
            alpn: match self.role {
                Role::InterRouter | Role::Edge => vec![b"h2".to_vec()],
                Role::Normal | Role::RouteContainer => Vec::new(),
            },
        })
    }

    /// The handshake deadline, `None` when disabled.
    pub fn handshake_timeout(&self) -> Option<std::time::Duration> {
        (self.handshake_timeout_ms > 0)
            .then(|| std::time::Duration::from_millis(self.handshake_timeout_ms))
    }
}

fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `[[connector]]`: an outgoing connection to a peer router.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectorConfig {
    /// Unique name (required).
    pub name: String,
    /// Host to connect to (required).
    pub host: String,
    /// Port to connect to (required, not 0).
    pub port: u16,
    /// Default `inter-router`.
    #[serde(default = "inter_router")]
    pub role: Role,
    /// Cost of the link to this peer in route computation; at least 1. Default 1.
    #[serde(default = "one")]
    pub cost: u32,
    /// Mechanisms to try, in order. Default `["ANONYMOUS"]`.
    #[serde(
        default = "anonymous",
        alias = "saslMechanisms",
        deserialize_with = "sasl_list"
    )]
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Idle timeout announced in open, in seconds; 0 disables it. Default 16.
    #[serde(
        default = "sixteen",
        alias = "idleTimeoutSecs",
        alias = "idleTimeoutSeconds"
    )]
    pub idle_timeout_secs: u32,
    /// Largest frame accepted; at least 512. Default 16384.
    #[serde(default = "frame_size", alias = "maxFrameSize")]
    pub max_frame_size: u32,
    /// The user this router logs in to the peer as (qdrouterd
    /// `saslUsername`): sent as SASL PLAIN credentials, checked against the
    /// peer's users file when its listener authenticates peers.
    #[serde(default, alias = "saslUsername")]
    pub sasl_username: Option<String>,
    /// The password of `sasl-username` (qdrouterd `saslPassword`); prefer
    /// `sasl-password-file`, which keeps it out of the configuration.
    #[serde(default, alias = "saslPassword")]
    pub sasl_password: Option<String>,
    /// A file whose first line is the password of `sasl-username`, read at
    /// each dial.
    #[serde(default, alias = "saslPasswordFile")]
    pub sasl_password_file: Option<PathBuf>,
    /// TLS: the CA certificates (PEM) the peer's certificate is verified
    /// against. Setting it makes the connector dial with TLS. Default none.
    #[serde(default, alias = "caCertFile")]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS: the certificate chain (PEM) to present to the peer (mutual
    /// TLS); needs `tls-key-file` and `tls-ca-file`. Default none.
    #[serde(default, alias = "certFile")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: the private key of `tls-cert-file` (PEM). Default none.
    #[serde(default, alias = "privateKeyFile")]
    pub tls_key_file: Option<PathBuf>,
    /// TLS: the name sent in SNI and that the peer's certificate must
    /// carry (a DNS name or an IP address). Default: `host`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

impl ConnectorConfig {
    /// The files of the connector's TLS client, `None` when it dials
    /// without TLS. Inter-router and edge connectors offer ALPN `h2` (gRPC).
    pub fn tls_files(&self) -> Option<tls::ClientFiles> {
        Some(tls::ClientFiles {
            ca: self.tls_ca_file.clone()?,
            identity: self.tls_cert_file.clone().zip(self.tls_key_file.clone()),
            alpn: match self.role {
                Role::InterRouter | Role::Edge => vec![b"h2".to_vec()],
                Role::Normal | Role::RouteContainer => Vec::new(),
            },
        })
    }

    /// The name the peer's certificate is checked against:
    /// `tls-server-name`, else `host`.
    pub fn tls_server_name(&self) -> &str {
        self.tls_server_name.as_deref().unwrap_or(&self.host)
    }

    /// `host:port` (IPv6 hosts in brackets).
    pub fn socket_address(&self) -> String {
        socket_address(&self.host, self.port)
    }
}

fn inter_router() -> Role {
    Role::InterRouter
}
fn one() -> u32 {
    1
}
fn anonymous() -> Vec<SaslMechanism> {
    vec![SaslMechanism::Anonymous]
}
fn sixteen() -> u32 {
    16
}
fn frame_size() -> u32 {
    16384
}

/// `[[address]]` as written; becomes an [`AddressEntry`] once validated.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAddress {
    name: Option<String>,
    prefix: Option<String>,
    pattern: Option<String>,
    #[serde(default)]
    distribution: Distribution,
    /// 0–9, or -1 (the default): each message keeps its own.
    priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    router: RouterConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    listener: Vec<ListenerConfig>,
    #[serde(default)]
    connector: Vec<ConnectorConfig>,
    #[serde(default)]
    address: Vec<RawAddress>,
    #[serde(default)]
    vhost: Vec<policy::VhostConfig>,
    #[serde(default, rename = "link-route", alias = "linkRoute")]
    link_route: Vec<link_route::RawLinkRoute>,
    #[serde(default, rename = "auto-link", alias = "autoLink")]
    auto_link: Vec<auto_link::RawAutoLink>,
}

impl Config {
    /// Reads and validates a configuration file; diagnostics name the path
    /// as given.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_str_named(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `name` is the file name used
    /// in diagnostics.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        let invalid = |d: Diagnostic| ConfigError::Invalid(Box::new(d));
        let doc = DeTable::parse(text)
            .map_err(|e| invalid(diagnostic::from_toml_error(name, text, None, &e)))?;
        let doc = doc.get_ref();
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| invalid(diagnostic::from_toml_error(name, text, Some(doc), &e)))?;
        raw.validate()
            .map_err(|p| invalid(diagnostic::from_problem(name, text, doc, p)))
    }

    /// The embedded default configuration: one listener on `0.0.0.0:5672`
    /// with ANONYMOUS, and qdrouterd's default address prefixes.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_str_named(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME)
    }
}

fn at(section: &str, index: usize, field: &str) -> Vec<PathSeg> {
    vec![key(section), PathSeg::Index(index), key(field)]
}

fn check_sasl(
    mechanisms: &[SaslMechanism],
    path: impl Fn() -> Vec<PathSeg>,
) -> Result<(), Problem> {
    if mechanisms.is_empty() {
        return Err(Problem::new(
            path(),
            "needs at least one mechanism (e.g. [\"ANONYMOUS\"])",
        ));
    }
    for (i, m) in mechanisms.iter().enumerate() {
        if mechanisms[..i].contains(m) {
            let mut p = path();
            p.push(PathSeg::Index(i));
            return Err(Problem::new(p, format!("{} is listed twice", m.as_str())));
        }
    }
    Ok(())
}

fn check_frame_size(size: u32, path: Vec<PathSeg>) -> Result<(), Problem> {
    if size < MIN_MAX_FRAME_SIZE {
        return Err(Problem::new(
            path,
            format!("{size} is below AMQP's minimum of {MIN_MAX_FRAME_SIZE}"),
        ));
    }
    Ok(())
}

fn check_host(host: &str, path: Vec<PathSeg>) -> Result<(), Problem> {
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(Problem::new(
            path,
            format!("\"{host}\" is not a host name or IP address"),
        ));
    }
    Ok(())
}

/// A listener's TLS keys go together, and the files they name are read
/// and checked now (the certificate matches the key, the CA parses).
fn check_listener_tls(
    l: &ListenerConfig,
    p: &impl Fn(&str) -> Vec<PathSeg>,
) -> Result<(), Problem> {
    match (&l.tls_cert_file, &l.tls_key_file) {
        (Some(_), None) => {
            return Err(Problem::new(
                p("tls-cert-file"),
                "needs tls-key-file (the certificate's private key)",
            ));
        }
        (None, Some(_)) => {
            return Err(Problem::new(
                p("tls-key-file"),
                "needs tls-cert-file (the certificate it is the key of)",
            ));
        }
        (None, None) => {
            let stray = if l.tls_ca_file.is_some() {
                Some("tls-ca-file")
            } else if l.require_client_cert {
                Some("require-client-cert")
            } else {
                None
            };
            if let Some(k) = stray {
                return Err(Problem::new(
                    p(k),
                    "applies to TLS listeners only: set tls-cert-file and tls-key-file",
                ));
            }
            return Ok(());
        }
        (Some(_), Some(_)) => {}
    }
    if l.require_client_cert && l.tls_ca_file.is_none() {
        return Err(Problem::new(
            p("require-client-cert"),
            "needs tls-ca-file (the CAs client certificates are verified against)",
        ));
    }
    if let Some(files) = l.tls_files() {
        tls::server_config(&files).map_err(|e| Problem::new(p(e.key()), e.to_string()))?;
    }
    Ok(())
}

/// Where a `[[link-route]]` or `[[auto-link]]` (`section` entry `i`, "a
/// link route" or "an auto-link" in messages) goes: the route-container
/// connector named by `connection`, or any broker with `container_id`.
fn route_destination(
    connectors: &[ConnectorConfig],
    connection: Option<String>,
    container_id: Option<String>,
    (section, i, what): (&str, usize, &str),
) -> Result<RouteDestination, Problem> {
    let p = |field: &str| at(section, i, field);
    match (connection, container_id) {
        (Some(name), None) => match connectors.iter().find(|c| c.name == name) {
            Some(c) if c.role == Role::RouteContainer => Ok(RouteDestination::Connection(name)),
            Some(c) => Err(Problem::new(
                p("connection"),
                format!(
                    "[[connector]] \"{name}\" has role {}; {what} needs role = \"route-container\"",
                    c.role.as_str()
                ),
            )),
            None => Err(Problem::new(
                p("connection"),
                format!("no [[connector]] is named \"{name}\""),
            )),
        },
        (None, Some(id)) if !id.is_empty() => Ok(RouteDestination::ContainerId(id)),
        (None, Some(_)) => Err(Problem::new(p("container-id"), "must not be empty")),
        (Some(_), Some(_)) => Err(Problem::new(
            p("container-id"),
            format!("{what} takes a connection or a container-id, not both"),
        )),
        (None, None) => Err(Problem::new(
            vec![key(section), PathSeg::Index(i)],
            "needs a connection (a route-container connector's name) or a container-id",
        )),
    }
}

/// A connector's TLS keys go together (`tls-ca-file` turns TLS on), and
/// the files they name are read and checked now.
fn check_connector_tls(
    c: &ConnectorConfig,
    p: &impl Fn(&str) -> Vec<PathSeg>,
) -> Result<(), Problem> {
    if c.tls_ca_file.is_none() {
        for (k, set) in [
            ("tls-cert-file", c.tls_cert_file.is_some()),
            ("tls-key-file", c.tls_key_file.is_some()),
            ("tls-server-name", c.tls_server_name.is_some()),
        ] {
            if set {
                return Err(Problem::new(
                    p(k),
                    "needs tls-ca-file (a TLS connector verifies its peer against it)",
                ));
            }
        }
        return Ok(());
    }
    match (&c.tls_cert_file, &c.tls_key_file) {
        (Some(_), None) => {
            return Err(Problem::new(
                p("tls-cert-file"),
                "needs tls-key-file (the certificate's private key)",
            ));
        }
        (None, Some(_)) => {
            return Err(Problem::new(
                p("tls-key-file"),
                "needs tls-cert-file (the certificate it is the key of)",
            ));
        }
        _ => {}
    }
    if rustls::pki_types::ServerName::try_from(c.tls_server_name()).is_err() {
        let k = if c.tls_server_name.is_some() {
            "tls-server-name"
        } else {
            "host"
        };
        return Err(Problem::new(
            p(k),
            format!(
                "\"{}\" is not a DNS name or IP address a certificate can be checked against",
                c.tls_server_name()
            ),
        ));
    }
    if let Some(files) = c.tls_files() {
        tls::client_config(&files).map_err(|e| Problem::new(p(e.key()), e.to_string()))?;
    }
    Ok(())
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Accepts a level or an `EnvFilter`-style directive list: every directive
/// is `level`, `target` or `target=level` (span filters in `[...]` allowed).
fn check_log_level(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("is empty (expected error, warn, info, debug or trace)".to_owned());
    }
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        if let Some((target, level)) = directive.rsplit_once('=')
            && !target.contains('{')
        {
            if !LOG_LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "\"{directive}\": unknown level \"{level}\" (expected off, error, warn, info, debug or trace)"
                ));
            }
        } else if directive.chars().any(char::is_whitespace) {
            return Err(format!(
                "\"{directive}\" is neither a level (error, warn, info, debug, trace) nor a target"
            ));
        }
    }
    Ok(())
}

impl RawConfig {
    fn validate(self) -> Result<Config, Problem> {
        let router = self.router;
        let r = |field: &str| vec![key("router"), key(field)];
        let id = &router.id;
        if id.is_empty()
            || id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '*' | '#'))
        {
            return Err(Problem::new(
                r("id"),
                format!("\"{id}\" is not a router id (no spaces, '/', '*' or '#'; not empty)"),
            ));
        }
        if router.workers > 1024 {
            return Err(Problem::new(
                r("workers"),
                format!(
                    "{} worker threads is too many (at most 1024; 0 = one per core)",
                    router.workers
                ),
            ));
        }
        check_log_level(&router.log_level).map_err(|m| Problem::new(r("log-level"), m))?;
        if router.http_address().is_none() && !matches!(router.http.trim(), "off" | "") {
            return Err(Problem::new(
                r("http"),
                format!(
                    "\"{}\" is not host:port (an IP address and a port, e.g. \"127.0.0.1:8672\") or \"off\"",
                    router.http
                ),
            ));
        }
        if router
            .data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(Problem::new(
                r("data-dir"),
                "is empty (a directory path, or leave it out to keep MQTT state in memory only)",
            ));
        }
        if router.hello_interval_ms == 0 {
            return Err(Problem::new(r("hello-interval-ms"), "must be at least 1"));
        }
        if router.hello_timeout_ms <= router.hello_interval_ms {
            return Err(Problem::new(
                r("hello-timeout-ms"),
                format!(
                    "{} must be longer than hello-interval-ms ({})",
                    router.hello_timeout_ms, router.hello_interval_ms
                ),
            ));
        }

        for (i, l) in self.listener.iter().enumerate() {
            let p = |field: &str| at("listener", i, field);
            check_host(&l.host, p("host"))?;
            check_sasl(&l.sasl_mechanisms, || p("sasl-mechanisms"))?;
            if let Some(m) = l.sasl_mechanisms.iter().find(|m| m.needs_users())
                && router.users_file.is_none()
            {
                return Err(Problem::new(
                    p("sasl-mechanisms"),
                    format!(
                        "{} checks passwords against a users file: set [router] users-file \
                         (create it with `botectl user add --file FILE NAME`)",
                        m.as_str()
                    ),
                ));
            }
            if l.authenticate_peer && l.sasl_mechanisms.contains(&SaslMechanism::Anonymous) {
                return Err(Problem::new(
                    p("authenticate-peer"),
                    "authenticate-peer = true requires authentication, but sasl-mechanisms \
                     offers ANONYMOUS: remove it",
                ));
            }
            if l.role == Role::RouteContainer {
                return Err(Problem::new(
                    p("role"),
                    "route-container is a connector's role (the router connects to the broker)",
                ));
            }
            if l.backlog == 0 {
                return Err(Problem::new(p("backlog"), "must be at least 1"));
            }
            if l.protocol == Protocol::Mqtt && l.role != Role::Normal {
                return Err(Problem::new(
                    p("protocol"),
                    "an MQTT listener serves clients: its role must be \"normal\"",
                ));
            }
            if l.protocol == Protocol::Mqtt && l.sasl_required() {
                return Err(Problem::new(
                    p("protocol"),
                    "MQTT clients are not authenticated yet (CONNECT's user name and password \
                     are not checked against users-file): an MQTT listener cannot require \
                     authentication (authenticate-peer, or sasl-mechanisms without ANONYMOUS)",
                ));
            }
            if l.protocol == Protocol::Mqtt && l.amqp_on_mesh_thread {
                return Err(Problem::new(
                    p("amqp-on-mesh-thread"),
                    "this listener speaks MQTT: its connections' thread is set by \
                     mqtt-on-mesh-thread",
                ));
            }
            check_frame_size(l.max_frame_size, p("max-frame-size"))?;
            if l.link_capacity == 0 {
                return Err(Problem::new(p("link-capacity"), "must be at least 1"));
            }
            check_listener_tls(l, &p)?;
            for (j, earlier) in self.listener[..i].iter().enumerate() {
                if l.name.is_some() && l.name == earlier.name {
                    return Err(Problem::new(
                        p("name"),
                        format!(
                            "\"{}\" is already the name of [[listener]] #{}",
                            l.name.as_deref().unwrap_or_default(),
                            j + 1
                        ),
                    ));
                }
                if l.port != 0 && l.port == earlier.port && l.host == earlier.host {
                    return Err(Problem::new(
                        p("port"),
                        format!(
                            "{} is already bound by [[listener]] #{}",
                            l.socket_address(),
                            j + 1
                        ),
                    ));
                }
            }
        }

        for (i, c) in self.connector.iter().enumerate() {
            let p = |field: &str| at("connector", i, field);
            if c.name.trim().is_empty() {
                return Err(Problem::new(p("name"), "must not be empty"));
            }
            if let Some(j) = self.connector[..i].iter().position(|e| e.name == c.name) {
                return Err(Problem::new(
                    p("name"),
                    format!(
                        "\"{}\" is already the name of [[connector]] #{}",
                        c.name,
                        j + 1
                    ),
                ));
            }
            check_host(&c.host, p("host"))?;
            if c.port == 0 {
                return Err(Problem::new(
                    p("port"),
                    "0 is not a port one can connect to",
                ));
            }
            if c.cost == 0 || c.cost > i32::MAX as u32 {
                return Err(Problem::new(
                    p("cost"),
                    format!("{} is out of range (expected 1 to {})", c.cost, i32::MAX),
                ));
            }
            check_sasl(&c.sasl_mechanisms, || p("sasl-mechanisms"))?;
            check_frame_size(c.max_frame_size, p("max-frame-size"))?;
            match (&c.sasl_username, &c.sasl_password, &c.sasl_password_file) {
                (_, Some(_), Some(_)) => {
                    return Err(Problem::new(
                        p("sasl-password-file"),
                        "give sasl-password or sasl-password-file, not both",
                    ));
                }
                (None, Some(_), _) | (None, _, Some(_)) => {
                    return Err(Problem::new(
                        p("sasl-username"),
                        "a password needs sasl-username",
                    ));
                }
                (Some(u), None, None) => {
                    return Err(Problem::new(
                        p("sasl-username"),
                        format!("user \"{u}\" needs sasl-password or sasl-password-file"),
                    ));
                }
                (Some(u), _, _) if u.is_empty() || u.contains(['\0', ':']) => {
                    return Err(Problem::new(
                        p("sasl-username"),
                        format!("\"{u}\" is not a user name"),
                    ));
                }
                _ => {}
            }
            match (router.mode, c.role) {
                (RouterMode::Interior, Role::Edge) => {
                    return Err(Problem::new(
                        p("role"),
                        "an edge connector needs [router] mode = \"edge\" (an interior router \
                         takes edges on a listener with role = \"edge\")",
                    ));
                }
                (RouterMode::Edge, Role::InterRouter) => {
                    return Err(Problem::new(
                        p("role"),
                        "an edge router takes no part in the mesh: its connectors to interior \
                         routers have role = \"edge\"",
                    ));
                }
                _ => {}
            }
            check_connector_tls(c, &p)?;
        }
        if router.mode == RouterMode::Edge
            && let Some(i) = self
                .listener
                .iter()
                .position(|l| matches!(l.role, Role::InterRouter | Role::Edge))
        {
            return Err(Problem::new(
                at("listener", i, "role"),
                "an edge router takes no inter-router or edge listeners (it is a leaf: \
                     it dials its interior routers with role = \"edge\" connectors)",
            ));
        }

        let mut entries = Vec::with_capacity(self.address.len());
        for (i, a) in self.address.into_iter().enumerate() {
            let key = match (a.prefix, a.pattern) {
                (Some(prefix), None) => AddressKey::Prefix(prefix),
                (None, Some(pattern)) => AddressKey::Pattern(pattern),
                (Some(_), Some(_)) => {
                    return Err(Problem::new(
                        at("address", i, "pattern"),
                        "an address entry takes a prefix or a pattern, not both",
                    ));
                }
                (None, None) => {
                    return Err(Problem::new(
                        vec![key("address"), PathSeg::Index(i)],
                        "needs a prefix or a pattern",
                    ));
                }
            };
            let priority = match a.priority {
                None | Some(-1) => None,
                Some(p @ 0..=9) => Some(p as u8),
                Some(p) => {
                    return Err(Problem::new(
                        at("address", i, "priority"),
                        format!("{p} is out of range (expected 0 to 9, or -1 for none)"),
                    ));
                }
            };
            entries.push(AddressEntry {
                name: a.name,
                key,
                distribution: a.distribution,
                priority,
            });
        }
        let addresses =
            AddressTable::new(entries, router.default_distribution).map_err(|e| match e {
                AddressTableError::InvalidPattern { index, key, reason } => Problem::new(
                    at("address", index, key.kind()),
                    format!("\"{}\" {reason}", key.as_str()),
                ),
                AddressTableError::Duplicate {
                    index,
                    first,
                    key,
                    normalized,
                } => Problem::new(
                    at("address", index, key.kind()),
                    format!(
                        "\"{}\" duplicates [[address]] #{} (both match the pattern \"{normalized}\")",
                        key.as_str(),
                        first + 1
                    ),
                ),
            })?;

        let mut routes = Vec::with_capacity(self.link_route.len());
        for (i, r) in self.link_route.into_iter().enumerate() {
            let p = |field: &str| at("link-route", i, field);
            let route_key = match (r.prefix, r.pattern) {
                (Some(prefix), None) => AddressKey::Prefix(prefix),
                (None, Some(pattern)) => AddressKey::Pattern(pattern),
                (Some(_), Some(_)) => {
                    return Err(Problem::new(
                        p("pattern"),
                        "a link route takes a prefix or a pattern, not both",
                    ));
                }
                (None, None) => {
                    return Err(Problem::new(
                        vec![key("link-route"), PathSeg::Index(i)],
                        "needs a prefix or a pattern",
                    ));
                }
            };
            let destination = route_destination(
                &self.connector,
                r.connection,
                r.container_id,
                ("link-route", i, "a link route"),
            )?;
            routes.push(LinkRouteConfig {
                name: r.name.unwrap_or_else(|| format!("linkRoute/{i}")),
                key: route_key,
                direction: r.direction,
                destination,
                add_external_prefix: r.add_external_prefix,
                del_external_prefix: r.del_external_prefix,
            });
        }
        let link_routes = LinkRouteTable::new(routes).map_err(|(i, e)| match e {
            AddressTableError::InvalidPattern { key, reason, .. } => Problem::new(
                at("link-route", i, key.kind()),
                format!("\"{}\" {reason}", key.as_str()),
            ),
            AddressTableError::Duplicate { key, normalized, .. } => Problem::new(
                at("link-route", i, key.kind()),
                format!(
                    "\"{}\" duplicates an earlier [[link-route]] of the same direction (both match the pattern \"{normalized}\")",
                    key.as_str()
                ),
            ),
        })?;

        let mut auto_links = Vec::with_capacity(self.auto_link.len());
        for (i, a) in self.auto_link.into_iter().enumerate() {
            let p = |field: &str| at("auto-link", i, field);
            if a.address.trim().is_empty() {
                return Err(Problem::new(p("address"), "must not be empty"));
            }
            let destination = route_destination(
                &self.connector,
                a.connection,
                a.container_id,
                ("auto-link", i, "an auto-link"),
            )?;
            let name = a.name.unwrap_or_else(|| format!("autoLink/{i}"));
            if auto_links.iter().any(|l: &AutoLinkConfig| l.name == name) {
                return Err(Problem::new(
                    p("name"),
                    format!("\"{name}\" is already the name of an [[auto-link]]"),
                ));
            }
            auto_links.push(AutoLinkConfig {
                name,
                address: a.address,
                direction: a.direction,
                destination,
                external_address: a.external_address,
            });
        }

        let telemetry = self.telemetry;
        let t = |field: &str| vec![key("telemetry"), key(field)];
        if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
            return Err(Problem::new(
                t("sampling-ratio"),
                format!(
                    "{} is not a ratio between 0.0 and 1.0",
                    telemetry.sampling_ratio
                ),
            ));
        }
        if let Some(endpoint) = &telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(Problem::new(
                t("otlp-endpoint"),
                format!("\"{endpoint}\" is not an http:// or https:// URL"),
            ));
        }
        if telemetry.service_name.is_empty() {
            return Err(Problem::new(t("service-name"), "is empty"));
        }

        for (i, v) in self.vhost.iter().enumerate() {
            let p = |field: &str| at("vhost", i, field);
            if v.hostname.trim().is_empty() {
                return Err(Problem::new(p("hostname"), "is empty"));
            }
            if let Some(j) = self.vhost[..i]
                .iter()
                .position(|e| e.hostname.eq_ignore_ascii_case(&v.hostname))
            {
                return Err(Problem::new(
                    p("hostname"),
                    format!(
                        "\"{}\" is already the hostname of [[vhost]] #{}",
                        v.hostname,
                        j + 1
                    ),
                ));
            }
            v.check().map_err(|(path, message)| {
                let mut full = vec![key("vhost"), PathSeg::Index(i)];
                full.extend(path.iter().map(|k| key(k)));
                Problem::new(full, message)
            })?;
        }

        Ok(Config {
            router,
            telemetry,
            listeners: self.listener,
            connectors: self.connector,
            addresses,
            vhosts: self.vhost,
            link_routes,
            auto_links,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_is_off_by_default_and_its_values_are_checked() {
        let c = Config::from_str_named("", "t.toml").expect("empty config");
        assert_eq!(c.telemetry, TelemetryConfig::default());
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.router.log_format, LogFormat::Text);
        let ok = Config::from_str_named(
            "[router]\nlog-format = \"json\"\n[telemetry]\notlp-endpoint = \"http://127.0.0.1:4317\"\nsampling-ratio = 0.01\nservice-name = \"edge\"\n",
            "t.toml",
        )
        .expect("valid telemetry");
        assert_eq!(ok.router.log_format, LogFormat::Json);
        assert_eq!(ok.telemetry.sampling_ratio, 0.01);
        assert_eq!(ok.telemetry.service_name, "edge");
        for (text, key) in [
            ("[telemetry]\nsampling-ratio = 1.5\n", "sampling-ratio"),
            (
                "[telemetry]\notlp-endpoint = \"127.0.0.1:4317\"\n",
                "otlp-endpoint",
            ),
            ("[telemetry]\nservice-name = \"\"\n", "service-name"),
            ("[telemetry]\nendpoint = \"x\"\n", "endpoint"),
            ("[router]\nlog-format = \"xml\"\n", "log-format"),
        ] {
            let e = Config::from_str_named(text, "t.toml")
                .expect_err(text)
                .to_string();
            assert!(e.contains("t.toml:") && e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn log_level_accepts_levels_and_env_filter_directives() {
        for ok in [
            "info",
            "TRACE",
            "warn,bote_node::amqp=debug",
            "bote_node",
            "a[span{x=1}]=trace",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", "bote_node=loud", "very verbose"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mqtt_connections_run_on_the_mesh_thread_unless_a_listener_says_not() {
        let text = "[[listener]]\nport = 1883\nprotocol = \"mqtt\"\n\n\
                    [[listener]]\nport = 1884\nprotocol = \"mqtt\"\nmqtt-on-mesh-thread = false\n";
        let c = Config::from_str_named(text, "t.toml").expect("two MQTT listeners");
        assert!(c.listeners[0].mqtt_on_mesh_thread);
        assert!(!c.listeners[1].mqtt_on_mesh_thread);
    }

    #[test]
    fn amqp_connections_run_on_the_workers_unless_a_listener_asks_for_the_mesh_thread() {
        let text = "[[listener]]\nport = 5672\n\n\
                    [[listener]]\nport = 5673\namqp-on-mesh-thread = true\n";
        let c = Config::from_str_named(text, "t.toml").expect("two AMQP listeners");
        assert!(!c.listeners[0].amqp_on_mesh_thread);
        assert!(c.listeners[1].amqp_on_mesh_thread);
        let mqtt = "[[listener]]\nport = 1883\nprotocol = \"mqtt\"\namqp-on-mesh-thread = true\n";
        let e = Config::from_str_named(mqtt, "t.toml").expect_err("AMQP knob on MQTT");
        let shown = e.to_string();
        assert!(shown.contains("t.toml"), "{shown}");
        assert!(shown.contains("amqp-on-mesh-thread"), "{shown}");
        assert!(shown.contains("mqtt-on-mesh-thread"), "{shown}");
    }

    #[test]
    fn data_dir_is_unset_by_default_and_not_empty_when_set() {
        let c = Config::from_str_named("", "t.toml").expect("empty config");
        assert_eq!(c.router.data_dir, None);
        let c = Config::from_str_named("[router]\ndata-dir = \"/var/lib/bote\"\n", "t.toml")
            .expect("a data-dir");
        assert_eq!(c.router.data_dir, Some(PathBuf::from("/var/lib/bote")));
        let e = Config::from_str_named("[router]\ndata-dir = \"\"\n", "t.toml")
            .expect_err("empty data-dir")
            .to_string();
        assert!(e.contains("t.toml:2") && e.contains("data-dir"), "{e}");
    }

    #[test]
    fn default_router_id_is_router_dot_hostname() {
        let id = default_router_id();
        assert!(id.starts_with("Router."), "{id}");
        assert!(!id.contains(char::is_whitespace));
    }
}
