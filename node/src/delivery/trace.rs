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

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use bote_amqp::{DeliveryState, Encoded, MessageView};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of message spans: the OpenTelemetry layer takes
/// these, the log output leaves them out.
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
static ROUTER_ID: OnceLock<String> = OnceLock::new();
/// Log lines are JSON: message spans record their ids for them.
static IDS_IN_LOGS: AtomicBool = AtomicBool::new(false);

/// Turns message tracing on (the binary does, once the OTLP exporter and
/// its `tracing` layer are installed); `ids_in_logs` when log lines show
/// trace and span ids (JSON).
pub fn enable(sampling_ratio: f64, router_id: &str, ids_in_logs: bool) {
    let _ = ROUTER_ID.set(router_id.to_owned());
    IDS_IN_LOGS.store(ids_in_logs, Relaxed);
    RATIO.store(sampling_ratio.to_bits(), Relaxed);
    ENABLED.store(true, Relaxed);
}

/// Whether messages are traced at all.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

fn router_id() -> &'static str {
    ROUTER_ID.get().map_or("", String::as_str)
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
        traceparent: format!(
            "00-{}-{}-{:02x}",
            span.trace_id(),
            span.span_id(),
            span.trace_flags().to_u8()
        ),
        tracestate: span.trace_state().header(),
    }
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

fn message_id(message: &MessageView) -> Option<String> {
    use bote_amqp::MessageId;
    Some(match message.message_id().ok()?? {
        MessageId::Ulong(v) => v.to_string(),
        MessageId::String(s) => s.to_owned(),
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
        }
        MessageId::Binary(b) => b.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// `host:port` split for `network.peer.address` / `network.peer.port`.
fn split_peer(peer: &str) -> (&str, i64) {
    match peer.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (peer, 0),
    }
}

/// The spans of one traced delivery on this router.
pub struct MessageTrace {
    /// `receive {address}`: the delivery's time on this router.
    receive: tracing::Span,
    /// `send {address}` of the copy in flight, until it settles.
    send: Option<tracing::Span>,
    /// The message came with W3C keys in its message-annotations: egress
    /// writes them too.
    w3c_annotations: bool,
    /// `messaging.message.id`, if the message has one.
    message_id: Option<Box<str>>,
}

impl MessageTrace {
    /// A delivery arriving from a client on connection `peer` (`host:port`):
    /// `Some` if it is sampled (its context says so, or it has none and the
    /// sampling ratio picks it).
    pub fn at_ingress(address: &str, message: &bytes::Bytes, peer: &str) -> Option<Box<Self>> {
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
        let (host, port) = split_peer(peer);
        let view = view.or_else(|| MessageView::parse(message.clone()).ok());
        let message_id = view.as_ref().and_then(message_id);
        let span = tracing::info_span!(
            target: TARGET,
            "receive",
            otel.name = %format_args!("receive {address}"),
            otel.kind = "consumer",
            messaging.system = "amqp",
            messaging.operation.type = "receive",
            messaging.operation.name = "receive",
            messaging.destination.name = address,
            messaging.message.id = message_id.as_deref(),
            network.peer.address = host,
            network.peer.port = port,
            bote.router.id = router_id(),
            bote.hop.count = 0i64,
            bote.trace.context.source = incoming.as_ref().map_or("none", |(_, s)| source_name(*s)),
        );
        if let Some((cx, _)) = &incoming {
            let _ =
                span.set_parent(opentelemetry::Context::new().with_remote_span_context(cx.clone()));
        }
        record_ids(&span);
        Some(Box::new(MessageTrace {
            receive: span,
            send: None,
            w3c_annotations: matches!(incoming, Some((_, ContextSource::MessageAnnotations))),
            message_id: message_id.map(String::into_boxed_str),
        }))
    }

    /// A delivery arriving from neighbour `neighbour` with the context of
    /// its `send` span (`None`: not traced upstream, so not here either).
    /// `hops` is the number of routers it visited before this one.
    pub fn from_neighbour(
        address: &str,
        context: Option<(&str, &str)>,
        neighbour: &str,
        hops: usize,
        message: &bytes::Bytes,
    ) -> Option<Box<Self>> {
        let (tp, ts) = context?;
        let cx = parse_traceparent(tp, ts)?;
        if !cx.is_sampled() {
            return None;
        }
        let view = MessageView::parse(message.clone()).ok();
        let w3c_annotations = view
            .as_ref()
            .and_then(incoming_context)
            .is_some_and(|(_, s)| s == ContextSource::MessageAnnotations);
        let message_id = view.as_ref().and_then(message_id);
        let span = tracing::info_span!(
            target: TARGET,
            "receive",
            otel.name = %format_args!("receive {address}"),
            otel.kind = "consumer",
            messaging.system = "amqp",
            messaging.operation.type = "receive",
            messaging.operation.name = "receive",
            messaging.destination.name = address,
            messaging.message.id = message_id.as_deref(),
            bote.router.id = router_id(),
            bote.peer.router.id = neighbour,
            bote.hop.count = hops as i64,
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(cx));
        record_ids(&span);
        Some(Box::new(MessageTrace {
            receive: span,
            send: None,
            w3c_annotations,
            message_id: message_id.map(String::into_boxed_str),
        }))
    }

    /// The trace of a multicast copy: the same `receive` span (copies'
    /// `send` spans are siblings under it), no `send` span yet.
    pub fn copy(&self) -> Box<Self> {
        Box::new(MessageTrace {
            receive: self.receive.clone(),
            send: None,
            w3c_annotations: self.w3c_annotations,
            message_id: self.message_id.clone(),
        })
    }

    fn start_send(&mut self, address: &str, fields: SendTo<'_>, hops: usize) -> WireContext {
        // Every field is given when the span is made: a field recorded
        // later costs a registry lookup and a lock per field.
        let span = match fields {
            SendTo::Client(peer) => {
                let (host, port) = split_peer(peer);
                tracing::info_span!(
                    target: TARGET,
                    parent: &self.receive,
                    "send",
                    otel.name = %format_args!("send {address}"),
                    otel.kind = "producer",
                    messaging.system = "amqp",
                    messaging.operation.type = "send",
                    messaging.operation.name = "send",
                    messaging.destination.name = address,
                    messaging.message.id = self.message_id.as_deref(),
                    network.peer.address = host,
                    network.peer.port = port,
                    bote.router.id = router_id(),
                    bote.hop.count = hops as i64,
                )
            }
            SendTo::Neighbour(router) => tracing::info_span!(
                target: TARGET,
                parent: &self.receive,
                "send",
                otel.name = %format_args!("send {address}"),
                otel.kind = "producer",
                messaging.system = "amqp",
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                messaging.destination.name = address,
                messaging.message.id = self.message_id.as_deref(),
                bote.router.id = router_id(),
                bote.peer.router.id = router,
                bote.hop.count = hops as i64,
            ),
        };
        let wire = wire_context(span.context().span().span_context());
        record_ids(&span);
        // A copy sent again (resend released) ends the previous send span.
        self.send = Some(span);
        wire
    }

    /// Egress to a client on connection `peer`: starts the `send` span and
    /// returns the message-annotations entries (symbol key, encoded value)
    /// carrying its context: `x-opt-qpid-tracestate`, plus `traceparent`
    /// and `tracestate` when the message came with those.
    pub fn send_to_client(
        &mut self,
        address: &str,
        peer: &str,
        hops: usize,
    ) -> Vec<(&'static str, Vec<u8>)> {
        let wire = self.start_send(address, SendTo::Client(peer), hops);
        annotation_entries(&wire, self.w3c_annotations)
    }

    /// An inter-router hop to `neighbour`: starts the `send` span and
    /// returns its context for the transfer frame.
    pub fn send_to_neighbour(
        &mut self,
        address: &str,
        neighbour: &str,
        hops: usize,
    ) -> WireContext {
        self.start_send(address, SendTo::Neighbour(neighbour), hops)
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
        let span = self.send.take().unwrap_or_else(|| self.receive.clone());
        span.add_event(
            "settle",
            vec![
                opentelemetry::KeyValue::new("messaging.operation.type", "settle"),
                opentelemetry::KeyValue::new("bote.delivery.outcome", outcome),
            ],
        );
        span.set_attribute("bote.delivery.outcome", outcome);
        // Entering the span (for the log line's trace and span ids) costs
        // the layer a context activation: only when the line is written.
        if tracing::enabled!(tracing::Level::DEBUG) {
            span.in_scope(|| tracing::debug!(outcome, "delivery settled"));
        }
    }
}

/// The OpenTelemetry ids of a message span, kept in its registry
/// extensions for log lines written inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

/// Records `span`'s OpenTelemetry ids where the JSON log format finds them.
pub fn record_ids(span: &tracing::Span) {
    if !IDS_IN_LOGS.load(Relaxed) && !cfg!(test) {
        return;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return;
    }
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(span) = registry.span(id)
        {
            span.extensions_mut().insert(TraceIds {
                trace_id: sc.trace_id(),
                span_id: sc.span_id(),
            });
        }
    });
}

enum SendTo<'a> {
    Client(&'a str),
    Neighbour(&'a str),
}

fn source_name(s: ContextSource) -> &'static str {
    match s {
        ContextSource::MessageAnnotations => "message-annotations",
        ContextSource::QpidTracestate => QPID_TRACESTATE,
        ContextSource::ApplicationProperties => "application-properties",
        ContextSource::DiagnosticId => DIAGNOSTIC_ID,
    }
}

/// The message-annotations entries that carry `wire` to a client.
pub fn annotation_entries(wire: &WireContext, w3c: bool) -> Vec<(&'static str, Vec<u8>)> {
    use bote_amqp::primitive;
    let tp = primitive::to_vec(|o| primitive::string(o, &wire.traceparent));
    let ts = primitive::to_vec(|o| primitive::string(o, &wire.tracestate));
    let tp_key = primitive::to_vec(|k| primitive::string(k, TRACEPARENT));
    let ts_key = primitive::to_vec(|k| primitive::string(k, TRACESTATE));
    let map = primitive::to_vec(|o| {
        primitive::map(
            o,
            &[
                (tp_key.as_slice(), tp.as_slice()),
                (ts_key.as_slice(), ts.as_slice()),
            ],
        )
    });
    let mut entries = vec![(QPID_TRACESTATE, map)];
    if w3c {
        entries.push((TRACEPARENT, tp));
        entries.push((TRACESTATE, ts));
    }
    entries
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
        let entries = annotation_entries(&wire, false);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, QPID_TRACESTATE);
        let both = annotation_entries(&wire, true);
        let keys: Vec<&str> = both.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [QPID_TRACESTATE, TRACEPARENT, TRACESTATE]);
        // What a reader finds in the spliced message is the context written.
        let refs: Vec<(&str, &[u8])> = both.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let message = MessageBuilder::new().data(b"x").build();
        let view = MessageView::parse(message).unwrap();
        let out = view
            .splice(
                bote_amqp::DeliveryAnnotations::Keep,
                &bote_amqp::MessageAnnotations::Merge(&refs),
            )
            .unwrap();
        let (cx, source) = incoming_context(&MessageView::parse(out).unwrap()).unwrap();
        assert_eq!(source, ContextSource::MessageAnnotations);
        assert_eq!(wire_context(&cx).traceparent, TP);
    }
}
