//! Distributed tracing of one message through the router: the spans a
//! traced delivery carries ([`MessageTrace`]), the trace context read from
//! the message as clients write it, and the context written back on the way
//! out (message-annotations to a client, the `Transfer` frame to a
//! neighbour).
//!
//! Spans (OpenTelemetry messaging conventions, name `{operation}
//! {destination}`):
//! - `receive {address}` (kind consumer) when the delivery enters this
//!   router, from a client (parent: the client's context, if it sent one) or
//!   from a neighbour (parent: the neighbour's `send` span, from the
//!   transfer frame); it lasts until the delivery is settled here;
//! - `send {address}` (kind producer), a child of `receive`, for each copy
//!   that leaves: to a consumer (egress) or to a neighbour (one per
//!   inter-router hop). Multicast copies are siblings under one `receive`.
//! - the settlement is a `settle` event on the `send` span (on `receive`
//!   when the delivery never left) carrying the outcome.
//!
//! Context read, in this order: message-annotations `traceparent` /
//! `tracestate` (W3C "Trace Context: AMQP" draft), the message annotation
//! `x-opt-qpid-tracestate` (a map holding `traceparent`/`tracestate`, as
//! Qpid JMS and Qpid Proton C++ write it), application-properties
//! `traceparent`/`tracestate`, application-property `Diagnostic-Id` (Azure
//! SDKs). A sampled-out context is honoured (no spans); without one a
//! delivery starts a trace with the configured sampling ratio. A delivery
//! from a neighbour is traced only when the neighbour sent a context: the
//! ingress router made the sampling decision.
//!
//! Cost: off (no `[telemetry] otlp-endpoint`), a delivery pays one relaxed
//! atomic load at ingress and carries `None`; sampled out, it also pays the
//! context lookup in the message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use bote_amqp::{DeliveryState, Encoded, MessageView};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracing_subscriber::registry::LookupSpan;

use crate::otlp::{self, MessageSpans, Peer, Settle, SpanRecord};

/// The `tracing` target of the span a settle log line is written in (JSON
/// logs show its trace and span ids); text logs leave it out.
pub const TARGET: &str = "bote::message";

/// The message annotation Qpid JMS and Qpid Proton C++ carry the context in.
pub const QPID_TRACESTATE: &str = "x-opt-qpid-tracestate";
/// W3C `traceparent` key (message-annotations or application-properties).
pub const TRACEPARENT: &str = "traceparent";
/// W3C `tracestate` key.
pub const TRACESTATE: &str = "tracestate";
/// The Azure SDKs' application property (a `traceparent` value).
pub const DIAGNOSTIC_ID: &str = "Diagnostic-Id";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Byte searches for the keys every context carrier has, built once.
static CARRIER_KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 2]> =
    std::sync::LazyLock::new(|| {
        [
            memchr::memmem::Finder::new(TRACEPARENT.as_bytes()),
            memchr::memmem::Finder::new(DIAGNOSTIC_ID.as_bytes()),
        ]
    });
/// The sampling ratio as `f64` bits.
static RATIO: AtomicU64 = AtomicU64::new(0);
/// Log lines are JSON: the settle line carries the span's ids.
static IDS_IN_LOGS: AtomicBool = AtomicBool::new(false);

/// Turns message tracing on (the binary does, once the span exporter,
/// `crate::otlp`, runs); `ids_in_logs` when log lines show trace and span
/// ids (JSON).
pub fn enable(sampling_ratio: f64, ids_in_logs: bool) {
    IDS_IN_LOGS.store(ids_in_logs, Relaxed);
    RATIO.store(sampling_ratio.to_bits(), Relaxed);
    ENABLED.store(true, Relaxed);
}

/// Whether messages are traced at all.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Where an incoming context was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSource {
    /// message-annotations `traceparent`/`tracestate` (W3C AMQP draft).
    MessageAnnotations,
    /// message annotation `x-opt-qpid-tracestate`.
    QpidTracestate,
    /// application-properties `traceparent`/`tracestate`.
    ApplicationProperties,
    /// application-property `Diagnostic-Id`.
    DiagnosticId,
}

/// A W3C trace context in its text form, as it crosses a hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireContext {
    pub traceparent: String,
    pub tracestate: String,
}

/// A `traceparent` (`00-<trace-id>-<parent-id>-<flags>`) with its
/// `tracestate`, as a remote span context; `None` if malformed.
pub fn parse_traceparent(traceparent: &str, tracestate: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version == "ff"
        || (version == "00" && parts.next().is_some())
        || trace_id.len() != 32
        || span_id.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let state = tracestate.parse::<TraceState>().unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        state,
    ))
}

/// `span`'s `traceparent` and `tracestate`.
pub fn wire_context(span: &SpanContext) -> WireContext {
    WireContext {
        traceparent: traceparent(
            u128::from_be_bytes(span.trace_id().to_bytes()),
            u64::from_be_bytes(span.span_id().to_bytes()),
            span.trace_flags().to_u8(),
        ),
        tracestate: span.trace_state().header(),
    }
}

fn traceparent(trace_id: u128, span_id: u64, flags: u8) -> String {
    // Safe to unwrap: the buffer is ASCII hex digits and dashes.
    std::str::from_utf8(&traceparent_bytes(trace_id, span_id, flags))
        .expect("traceparent is ASCII")
        .to_owned()
}

/// The length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// `00-<trace-id>-<span-id>-<flags>` in lowercase hex, on the stack.
fn traceparent_bytes(trace_id: u128, span_id: u64, flags: u8) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn hex(out: &mut [u8], v: u128) {
        let n = out.len();
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
        }
    }
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    hex(&mut out[3..35], trace_id);
    hex(&mut out[36..52], u128::from(span_id));
    hex(&mut out[53..55], u128::from(flags));
    out
}

/// A version-00 `traceparent`'s ids and flags, without building a
/// [`SpanContext`] (a neighbour's context, as this router's upstream
/// wrote it); `None` if malformed or zero ids. Other versions go through
/// [`parse_traceparent`].
fn traceparent_ids(traceparent: &str) -> Option<(u128, u64, u8)> {
    let b = traceparent.as_bytes();
    if b.len() != TRACEPARENT_LEN || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| -> Option<u128> {
        s.iter().try_fold(0u128, |acc, &c| {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            Some(acc << 4 | u128::from(d))
        })
    };
    let trace_id = hex(&b[3..35])?;
    let span_id = hex(&b[36..52])? as u64;
    let flags = hex(&b[53..55])? as u8;
    (trace_id != 0 && span_id != 0).then_some((trace_id, span_id, flags))
}

fn text<'a>(v: Option<Encoded<'a>>) -> Option<&'a str> {
    let v = v?;
    v.as_text()
        .ok()
        .or_else(|| v.as_binary().ok().and_then(|b| std::str::from_utf8(b).ok()))
}

/// The trace context `message` carries, looked up in the documented order.
pub fn incoming_context(message: &MessageView) -> Option<(SpanContext, ContextSource)> {
    let annotation = |key| text(message.message_annotation(key).ok().flatten());
    if let Some(tp) = annotation(TRACEPARENT)
        && let Some(cx) = parse_traceparent(tp, annotation(TRACESTATE).unwrap_or(""))
    {
        return Some((cx, ContextSource::MessageAnnotations));
    }
    if let Ok(Some(map)) = message.message_annotation(QPID_TRACESTATE)
        && let Ok(entries) = map.as_map()
    {
        let tp = text(entries.clone().find(TRACEPARENT).ok().flatten());
        let ts = text(entries.find(TRACESTATE).ok().flatten());
        if let Some(cx) = tp.and_then(|tp| parse_traceparent(tp, ts.unwrap_or(""))) {
            return Some((cx, ContextSource::QpidTracestate));
        }
    }
    let property = |key| text(message.application_property(key).ok().flatten());
    if let Some(tp) = property(TRACEPARENT)
        && let Some(cx) = parse_traceparent(tp, property(TRACESTATE).unwrap_or(""))
    {
        return Some((cx, ContextSource::ApplicationProperties));
    }
    if let Some(id) = property(DIAGNOSTIC_ID)
        && let Some(cx) = parse_traceparent(id, "")
    {
        return Some((cx, ContextSource::DiagnosticId));
    }
    None
}

fn message_id(message: &MessageView) -> Option<Box<str>> {
    use bote_amqp::MessageId;
    Some(match message.message_id().ok()?? {
        MessageId::Ulong(v) => v.to_string().into(),
        MessageId::String(s) => s.into(),
        MessageId::Uuid(u) => {
            let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
            .into()
        }
        MessageId::Binary(b) => b
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
    })
}

/// A random non-zero id.
fn random_id<T: PartialEq + Default>() -> T
where
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    loop {
        let id = rand::random::<T>();
        if id != T::default() {
            return id;
        }
    }
}

/// A `traceparent`'s ids and its `tracestate`: the parent of a `receive`.
struct Parent<'a> {
    trace_id: u128,
    span_id: u64,
    trace_state: std::borrow::Cow<'a, str>,
}

/// `tracestate` as this router passes it on (validated and normalised by
/// [`TraceState`]; empty, the common case, without building one).
fn tracestate_header(ts: &str) -> std::borrow::Cow<'_, str> {
    if ts.trim().is_empty() {
        std::borrow::Cow::Borrowed("")
    } else {
        std::borrow::Cow::Owned(ts.parse::<TraceState>().unwrap_or_default().header())
    }
}

/// `receive {address}` while the delivery (or one of its multicast
/// copies) is on this router; queued for export when the last copy goes.
#[derive(Debug)]
struct ReceiveSpan(Mutex<Option<ReceiveOpen>>);

#[derive(Debug)]
struct ReceiveOpen {
    message: Arc<MessageSpans>,
    start: u64,
    from: Peer,
    hops: i64,
    source: Option<&'static str>,
    settles: Vec<Settle>,
}

impl Drop for ReceiveSpan {
    fn drop(&mut self) {
        let open = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = open.take() {
            otlp::submit(SpanRecord::Receive {
                message: r.message,
                start: r.start,
                end: otlp::now(),
                from: r.from,
                hops: r.hops,
                source: r.source,
                settles: r.settles,
            });
        }
    }
}

/// `send {address}` of the copy in flight; queued for export when it ends.
#[derive(Debug)]
struct SendSpan {
    message: Arc<MessageSpans>,
    span_id: u64,
    start: u64,
    to: Option<Peer>,
    hops: i64,
    settle: Option<Settle>,
}

impl Drop for SendSpan {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            otlp::submit(SpanRecord::Send {
                message: self.message.clone(),
                span_id: self.span_id,
                start: self.start,
                end: otlp::now(),
                to,
                hops: self.hops,
                settle: self.settle,
            });
        }
    }
}

/// The spans of one traced delivery on this router.
///
/// They are compact records (ids, timestamps, the address, the peer, the
/// outcome), not SDK spans: they become OTLP spans on the export thread
/// (`crate::otlp`), which is what keeps a sampled message cheap.
#[derive(Debug)]
pub struct MessageTrace {
    /// `receive {address}`: shared by multicast copies.
    receive: Arc<ReceiveSpan>,
    /// The fields all this message's spans share.
    message: Arc<MessageSpans>,
    /// `send {address}` of the copy in flight, until it settles.
    send: Option<SendSpan>,
    /// The message came with W3C keys in its message-annotations: egress
    /// writes them too.
    w3c_annotations: bool,
}

impl MessageTrace {
    fn start(
        address: &Arc<str>,
        parent: Option<Parent<'_>>,
        message_id: Option<Box<str>>,
        from: Peer,
        hops: i64,
        source: Option<&'static str>,
        w3c_annotations: bool,
    ) -> Box<Self> {
        let message = Arc::new(MessageSpans {
            trace_id: parent
                .as_ref()
                .map_or_else(random_id::<u128>, |p| p.trace_id),
            receive_id: random_id::<u64>(),
            parent: parent.as_ref().map(|p| p.span_id),
            // A sampled-out context never gets here.
            trace_flags: 1,
            trace_state: parent
                .as_ref()
                .map_or_else(Default::default, |p| Box::from(&*p.trace_state)),
            address: address.clone(),
            message_id,
        });
        let receive = Arc::new(ReceiveSpan(Mutex::new(Some(ReceiveOpen {
            message: message.clone(),
            start: otlp::now(),
            from,
            hops,
            source,
            settles: Vec::new(),
        }))));
        Box::new(MessageTrace {
            receive,
            message,
            send: None,
            w3c_annotations,
        })
    }

    /// A delivery arriving from a client on connection `peer` (`host:port`):
    /// `Some` if it is sampled (its context says so, or it has none and the
    /// sampling ratio picks it).
    pub fn at_ingress(
        address: &Arc<str>,
        message: &bytes::Bytes,
        peer: &Arc<str>,
    ) -> Option<Box<Self>> {
        let ratio = f64::from_bits(RATIO.load(Relaxed));
        // Every carrier of a context has a `traceparent` key or a
        // `Diagnostic-Id` property: a message with neither has none, and
        // needs no section scan (the cost at sampling ratio 0).
        let may_carry = CARRIER_KEYS.iter().any(|f| f.find(message).is_some());
        if !may_carry && ratio <= 0.0 {
            return None;
        }
        let view = may_carry
            .then(|| MessageView::parse(message.clone()).ok())
            .flatten();
        let incoming = view.as_ref().and_then(incoming_context);
        match &incoming {
            Some((cx, _)) if !cx.is_sampled() => return None,
            Some(_) => {}
            None => {
                if ratio < 1.0 && rand::random::<f64>() >= ratio {
                    return None;
                }
            }
        }
        let view = view.or_else(|| MessageView::parse(message.clone()).ok());
        Some(Self::start(
            address,
            incoming.as_ref().map(|(cx, _)| Parent {
                trace_id: u128::from_be_bytes(cx.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(cx.span_id().to_bytes()),
                trace_state: std::borrow::Cow::Owned(cx.trace_state().header()),
            }),
            view.as_ref().and_then(message_id),
            Peer::Client(peer.clone()),
            0,
            Some(incoming.as_ref().map_or("none", |(_, s)| source_name(*s))),
            matches!(incoming, Some((_, ContextSource::MessageAnnotations))),
        ))
    }

    /// A delivery arriving from neighbour `neighbour` with the context of
    /// its `send` span (`None`: not traced upstream, so not here either).
    /// `hops` is the number of routers it visited before this one.
    pub fn from_neighbour(
        address: &Arc<str>,
        context: Option<(&str, &str)>,
        neighbour: &Arc<str>,
        hops: usize,
        message: &bytes::Bytes,
    ) -> Option<Box<Self>> {
        let (tp, ts) = context?;
        // The neighbour writes version 00; anything else is parsed in full.
        let (trace_id, span_id, flags) = traceparent_ids(tp).or_else(|| {
            let cx = parse_traceparent(tp, ts)?;
            Some((
                u128::from_be_bytes(cx.trace_id().to_bytes()),
                u64::from_be_bytes(cx.span_id().to_bytes()),
                cx.trace_flags().to_u8(),
            ))
        })?;
        if flags & 1 == 0 {
            return None;
        }
        let view = MessageView::parse(message.clone()).ok();
        // Egress writes the W3C keys too when the client sent them in
        // message-annotations; a message without a `traceparent` key
        // has none (no section lookup).
        let w3c_annotations = CARRIER_KEYS[0].find(message).is_some()
            && view
                .as_ref()
                .and_then(incoming_context)
                .is_some_and(|(_, s)| s == ContextSource::MessageAnnotations);
        Some(Self::start(
            address,
            Some(Parent {
                trace_id,
                span_id,
                trace_state: tracestate_header(ts),
            }),
            view.as_ref().and_then(message_id),
            Peer::Neighbour(neighbour.clone()),
            hops as i64,
            None,
            w3c_annotations,
        ))
    }

    /// The trace of a multicast copy: the same `receive` span (copies'
    /// `send` spans are siblings under it), no `send` span yet.
    pub fn copy(&self) -> Box<Self> {
        Box::new(MessageTrace {
            receive: self.receive.clone(),
            message: self.message.clone(),
            send: None,
            w3c_annotations: self.w3c_annotations,
        })
    }

    /// Starts the `send` span of the copy leaving to `to`; its id.
    fn start_send(&mut self, to: Peer, hops: usize) -> u64 {
        let span_id = random_id::<u64>();
        // A copy sent again (resend released) ends the previous send span.
        self.send = Some(SendSpan {
            message: self.message.clone(),
            span_id,
            start: otlp::now(),
            to: Some(to),
            hops: hops as i64,
            settle: None,
        });
        span_id
    }

    /// Egress to a client on connection `peer`: starts the `send` span and
    /// returns the message-annotations entries (symbol key, encoded value)
    /// carrying its context: `x-opt-qpid-tracestate`, plus `traceparent`
    /// and `tracestate` when the message came with those.
    pub fn send_to_client(&mut self, peer: &Arc<str>, hops: usize) -> EgressAnnotations {
        let span_id = self.start_send(Peer::Client(peer.clone()), hops);
        let tp = traceparent_bytes(self.message.trace_id, span_id, self.message.trace_flags);
        EgressAnnotations::new(
            std::str::from_utf8(&tp).expect("traceparent is ASCII"),
            &self.message.trace_state,
            self.w3c_annotations,
        )
    }

    /// An inter-router hop to `neighbour`: starts the `send` span and
    /// returns its context for the transfer frame.
    pub fn send_to_neighbour(
        &mut self,
        _address: &str,
        neighbour: &Arc<str>,
        hops: usize,
    ) -> WireContext {
        let span_id = self.start_send(Peer::Neighbour(neighbour.clone()), hops);
        WireContext {
            traceparent: traceparent(self.message.trace_id, span_id, self.message.trace_flags),
            tracestate: self.message.trace_state.to_string(),
        }
    }

    /// The delivery settled here with `state` (`None`: no outcome, e.g.
    /// presettled): a `settle` event on the span of the copy in flight (or
    /// on `receive`), which then ends.
    pub fn settled(&mut self, state: Option<&DeliveryState>) {
        let outcome = match state {
            None => "settled",
            Some(DeliveryState::Accepted) => "accepted",
            Some(DeliveryState::Rejected { .. }) => "rejected",
            Some(DeliveryState::Released) => "released",
            Some(DeliveryState::Modified { .. }) => "modified",
            Some(_) => "other",
        };
        let settle = (otlp::now(), outcome);
        let span_id = match self.send.take() {
            Some(mut send) => {
                send.settle = Some(settle);
                send.span_id
            }
            None => {
                let mut open = self
                    .receive
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some(open) = open.as_mut() {
                    open.settles.push(settle);
                }
                self.message.receive_id
            }
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            if IDS_IN_LOGS.load(Relaxed) {
                // A span to write the line in, holding the ids the JSON
                // format adds to it.
                let span = tracing::debug_span!(target: TARGET, "delivery");
                record_ids(
                    &span,
                    TraceId::from_bytes(self.message.trace_id.to_be_bytes()),
                    SpanId::from_bytes(span_id.to_be_bytes()),
                );
                span.in_scope(|| tracing::debug!(outcome, "delivery settled"));
            } else {
                tracing::debug!(outcome, "delivery settled");
            }
        }
    }
}

/// The OpenTelemetry ids of a message span, kept in the registry
/// extensions of a `tracing` span for log lines written inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

/// Records the OpenTelemetry ids `trace_id`/`span_id` on `span`, where the
/// JSON log format finds them.
pub fn record_ids(span: &tracing::Span, trace_id: TraceId, span_id: SpanId) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(span) = registry.span(id)
        {
            span.extensions_mut().insert(TraceIds { trace_id, span_id });
        }
    });
}

fn source_name(s: ContextSource) -> &'static str {
    match s {
        ContextSource::MessageAnnotations => "message-annotations",
        ContextSource::QpidTracestate => QPID_TRACESTATE,
        ContextSource::ApplicationProperties => "application-properties",
        ContextSource::DiagnosticId => DIAGNOSTIC_ID,
    }
}

/// The message-annotations entries that carry a context to a client:
/// `x-opt-qpid-tracestate` (a map with string keys `traceparent`,
/// `tracestate`) and, when asked, `traceparent` and `tracestate` too.
///
/// One buffer holds them all: the map, whose encoded values are also the
/// W3C entries' values (the same AMQP strings), so making them costs one
/// allocation.
#[derive(Debug, Clone, Default)]
pub struct EgressAnnotations {
    /// The encoded map; empty when there is nothing to write.
    buf: Vec<u8>,
    /// Where the encoded `traceparent` / `tracestate` values are in `buf`.
    traceparent: std::ops::Range<usize>,
    tracestate: std::ops::Range<usize>,
    w3c: bool,
}

impl EgressAnnotations {
    /// The entries for `traceparent` / `tracestate`; `w3c` adds them as
    /// message annotations of their own.
    pub fn new(traceparent: &str, tracestate: &str, w3c: bool) -> Self {
        use bote_amqp::primitive;
        /// An AMQP string's encoded length (str8 up to 255 bytes).
        fn string_len(s: &str) -> usize {
            s.len() + if s.len() <= 255 { 2 } else { 5 }
        }
        let body = string_len(TRACEPARENT)
            + string_len(traceparent)
            + string_len(TRACESTATE)
            + string_len(tracestate);
        let mut buf = Vec::with_capacity(body + 9);
        // The map header as `primitive::map` writes it: map8 (size, count
        // one byte each) while the body fits, else map32.
        if body < 255 {
            buf.extend_from_slice(&[0xc1, (body + 1) as u8, 4]);
        } else {
            buf.push(0xd1);
            buf.extend_from_slice(&((body + 4) as u32).to_be_bytes());
            buf.extend_from_slice(&4u32.to_be_bytes());
        }
        primitive::string(&mut buf, TRACEPARENT);
        let tp_at = buf.len();
        primitive::string(&mut buf, traceparent);
        let tp_end = buf.len();
        primitive::string(&mut buf, TRACESTATE);
        let ts_at = buf.len();
        primitive::string(&mut buf, tracestate);
        EgressAnnotations {
            traceparent: tp_at..tp_end,
            tracestate: ts_at..buf.len(),
            buf,
            w3c,
        }
    }

    /// The entries (symbol key, encoded value) for the message-annotations
    /// splice; none for [`Default`].
    pub fn entries(&self) -> ([(&'static str, &[u8]); 3], usize) {
        let entries = [
            (QPID_TRACESTATE, &self.buf[..]),
            (TRACEPARENT, &self.buf[self.traceparent.clone()]),
            (TRACESTATE, &self.buf[self.tracestate.clone()]),
        ];
        let n = match (self.buf.is_empty(), self.w3c) {
            (true, _) => 0,
            (false, false) => 1,
            (false, true) => 3,
        };
        (entries, n)
    }
}

/// The message-annotations entries that carry `wire` to a client.
pub fn annotation_entries(wire: &WireContext, w3c: bool) -> EgressAnnotations {
    EgressAnnotations::new(&wire.traceparent, &wire.tracestate, w3c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_amqp::{MessageBuilder, primitive};

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn qpid_map(tp: &str) -> Vec<u8> {
        let v = primitive::to_vec(|o| primitive::string(o, tp));
        let k = primitive::to_vec(|o| primitive::string(o, TRACEPARENT));
        primitive::to_vec(|o| primitive::map(o, &[(k.as_slice(), v.as_slice())]))
    }

    #[test]
    fn traceparent_parses_and_formats_back() {
        let cx = parse_traceparent(TP, "congo=t61rcWkgMzE").expect("valid");
        assert!(cx.is_sampled() && cx.is_remote());
        let wire = wire_context(&cx);
        assert_eq!(wire.traceparent, TP);
        assert_eq!(wire.tracestate, "congo=t61rcWkgMzE");
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad, "").is_none(), "{bad}");
        }
        assert!(
            !parse_traceparent(&TP.replace("-01", "-00"), "")
                .unwrap()
                .is_sampled()
        );
    }

    #[test]
    fn context_is_read_from_annotations_then_qpid_map_then_properties_then_diagnostic_id() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let string = |s: &str| primitive::to_vec(|o| primitive::string(o, s));
        let all = MessageBuilder::new()
            .message_annotation(TRACEPARENT, string(TP))
            .message_annotation(QPID_TRACESTATE, qpid_map(other))
            .application_property(TRACEPARENT, string(other))
            .data(b"x")
            .build();
        let (cx, source) = incoming_context(&MessageView::parse(all).unwrap()).unwrap();
        assert_eq!(source, ContextSource::MessageAnnotations);
        assert_eq!(wire_context(&cx).traceparent, TP);

        let qpid = MessageBuilder::new()
            .message_annotation(QPID_TRACESTATE, qpid_map(TP))
            .application_property(TRACEPARENT, string(other))
            .data(b"x")
            .build();
        let (cx, source) = incoming_context(&MessageView::parse(qpid).unwrap()).unwrap();
        assert_eq!(source, ContextSource::QpidTracestate);
        assert_eq!(wire_context(&cx).traceparent, TP);

        let props = MessageBuilder::new()
            .application_property(TRACEPARENT, string(TP))
            .application_property(DIAGNOSTIC_ID, string(other))
            .data(b"x")
            .build();
        let (_, source) = incoming_context(&MessageView::parse(props).unwrap()).unwrap();
        assert_eq!(source, ContextSource::ApplicationProperties);

        let azure = MessageBuilder::new()
            .application_property(DIAGNOSTIC_ID, string(TP))
            .data(b"x")
            .build();
        let (cx, source) = incoming_context(&MessageView::parse(azure).unwrap()).unwrap();
        assert_eq!(source, ContextSource::DiagnosticId);
        assert_eq!(wire_context(&cx).traceparent, TP);

        let none = MessageBuilder::new().data(b"x").build();
        assert!(incoming_context(&MessageView::parse(none).unwrap()).is_none());
    }

    #[test]
    fn egress_entries_hold_the_qpid_map_and_w3c_keys_only_when_asked() {
        let wire = WireContext {
            traceparent: TP.to_owned(),
            tracestate: String::new(),
        };
        let one = annotation_entries(&wire, false);
        let (entries, n) = one.entries();
        assert_eq!(n, 1);
        assert_eq!(entries[0].0, QPID_TRACESTATE);
        // The map is what `primitive::map` writes.
        let string = |s: &str| primitive::to_vec(|o| primitive::string(o, s));
        let (k1, v1, k2, v2) = (
            string(TRACEPARENT),
            string(TP),
            string(TRACESTATE),
            string(""),
        );
        let map = primitive::to_vec(|o| {
            primitive::map(
                o,
                &[
                    (k1.as_slice(), v1.as_slice()),
                    (k2.as_slice(), v2.as_slice()),
                ],
            )
        });
        assert_eq!(entries[0].1, map.as_slice());
        let long = "k=".to_owned() + &"v".repeat(300);
        let big = EgressAnnotations::new(TP, &long, true);
        let v2 = string(&long);
        let map = primitive::to_vec(|o| {
            primitive::map(
                o,
                &[
                    (k1.as_slice(), v1.as_slice()),
                    (k2.as_slice(), v2.as_slice()),
                ],
            )
        });
        let (entries, _) = big.entries();
        assert_eq!(entries[0].1, map.as_slice());
        assert_eq!(entries[1].1, v1.as_slice());
        assert_eq!(entries[2].1, v2.as_slice());
        let both = annotation_entries(&wire, true);
        let (entries, n) = both.entries();
        let keys: Vec<&str> = entries[..n].iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [QPID_TRACESTATE, TRACEPARENT, TRACESTATE]);
        assert_eq!(EgressAnnotations::default().entries().1, 0);
        // What a reader finds in the spliced message is the context written.
        let refs = &entries[..n];
        let message = MessageBuilder::new().data(b"x").build();
        let view = MessageView::parse(message).unwrap();
        let out = view
            .splice(
                bote_amqp::DeliveryAnnotations::Keep,
                &bote_amqp::MessageAnnotations::Merge(refs),
            )
            .unwrap();
        let (cx, source) = incoming_context(&MessageView::parse(out).unwrap()).unwrap();
        assert_eq!(source, ContextSource::MessageAnnotations);
        assert_eq!(wire_context(&cx).traceparent, TP);
    }
}
