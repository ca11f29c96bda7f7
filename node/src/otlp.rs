//! OTLP/gRPC export of message spans: the compact span records a traced
//! delivery leaves behind ([`SpanRecord`], made by `delivery::trace`), the
//! bounded queue they wait in, their encoding straight to OTLP protobuf (an
//! `ExportTraceServiceRequest`), and the export thread that sends them to
//! `[telemetry] otlp-endpoint` (`TraceService/Export` over tonic).
//!
//! Why not the OpenTelemetry SDK's span pipeline (`BatchSpanProcessor` +
//! `opentelemetry-otlp`): measured in-process (`examples/trace_cost`), it
//! cost ~5 µs of CPU to export the two spans of a traced message (an owned
//! `SpanData` per span, the batch cloned whole for retries, every key and
//! value copied again into protobuf structs; malloc and free were 37 % of
//! the profile), against a budget of ~4.5 µs per traced message *all in*
//! for 1 % sampling to cost ≤ 5 % of throughput. A record here is one
//! allocation-light struct; the encoder writes protobuf from it into a
//! reused buffer; the wire format is the same OTLP.
//!
//! Nothing is lost silently: a record that finds the queue full is counted
//! and the count logged at the next export; a failed export is logged with
//! the number of spans it carried.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};

/// How often queued spans are exported (sooner when [`WAKE_AT`] are queued).
const EXPORT_INTERVAL: Duration = Duration::from_millis(500);
/// Queued spans that wake the export thread before its interval.
const WAKE_AT: usize = 2_048;
/// The most spans in one export request (~1.5 MB, under the 4 MB gRPC
/// default receivers accept).
const MAX_BATCH: usize = 4_096;
/// The most spans queued; beyond, spans are counted as dropped.
const QUEUE_CAPACITY: usize = 65_536;
/// The gRPC method of the OTLP trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The fields every span of one message on this router shares.
#[derive(Debug)]
pub(crate) struct MessageSpans {
    pub(crate) trace_id: u128,
    /// The `receive` span's id (the parent of every `send`).
    pub(crate) receive_id: u64,
    /// The `receive` span's parent: the client's or the upstream router's
    /// span (always remote).
    pub(crate) parent: Option<u64>,
    pub(crate) trace_flags: u8,
    pub(crate) trace_state: Box<str>,
    pub(crate) address: Arc<str>,
    pub(crate) message_id: Option<Box<str>>,
}

/// Who is on the other side of a span.
#[derive(Debug)]
pub(crate) enum Peer {
    /// A client connection, `host:port`.
    Client(Arc<str>),
    /// A neighbour router, by id.
    Neighbour(Arc<str>),
}

/// A settlement: when (Unix ns) and its outcome.
pub(crate) type Settle = (u64, &'static str);

/// One finished span, as the export thread encodes it.
#[derive(Debug)]
pub(crate) enum SpanRecord {
    /// `receive {address}` (consumer).
    Receive {
        message: Arc<MessageSpans>,
        start: u64,
        end: u64,
        from: Peer,
        hops: i64,
        /// Where the incoming context was found (client ingress only).
        source: Option<&'static str>,
        settles: Vec<Settle>,
    },
    /// `send {address}` (producer), a child of `receive`.
    Send {
        message: Arc<MessageSpans>,
        span_id: u64,
        start: u64,
        end: u64,
        to: Peer,
        hops: i64,
        settle: Option<Settle>,
    },
}

/// Now as Unix nanoseconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Queue {
    spans: Mutex<Vec<SpanRecord>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// Queues a finished span for export (nothing without an exporter).
pub(crate) fn submit(record: SpanRecord) {
    let Some(queue) = QUEUE.get() else {
        return;
    };
    let mut spans = queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
    if spans.len() >= QUEUE_CAPACITY {
        drop(spans);
        queue.dropped.fetch_add(1, Relaxed);
        return;
    }
    spans.push(record);
    let wake = spans.len() == WAKE_AT;
    drop(spans);
    if wake {
        queue.wake.notify_one();
    }
}

/// Why the span exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("OTLP endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the span exporter is already running")]
    AlreadyRunning,
    #[error("starting the span export thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("starting the span export thread's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The sending side: the gRPC client and the buffers it reuses.
struct Sender {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    /// The exporter's own runtime: the gRPC connection's tasks (writing a
    /// request of up to ~1.5 MB through HTTP/2, its flow control, the
    /// answer) run where an export blocks on it, on the export thread (or
    /// the thread flushing), never on the router's data-plane thread.
    /// `None` only while being dropped.
    runtime: Option<tokio::runtime::Runtime>,
    endpoint: String,
    /// The encoded `Resource` message (body only).
    resource: Vec<u8>,
    router_id: Arc<str>,
    /// Records taken from the queue (swapped with it, keeping capacity).
    batch: Vec<SpanRecord>,
    encoder: Encoder,
}

struct Shared {
    queue: Arc<Queue>,
    sender: Mutex<Sender>,
}

impl Shared {
    /// Exports everything queued, in requests of at most [`MAX_BATCH`].
    fn export_pending(&self) {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = &mut *sender;
        loop {
            {
                let mut spans = self
                    .queue
                    .spans
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if spans.is_empty() {
                    break;
                }
                if spans.len() <= MAX_BATCH {
                    std::mem::swap(&mut *spans, &mut sender.batch);
                } else {
                    sender.batch.extend(spans.drain(..MAX_BATCH));
                }
            }
            sender.send_batch();
            // The records (and their messages' shared fields) are freed
            // here, on the export thread.
            sender.batch.clear();
        }
        let dropped = self.queue.dropped.swap(0, Relaxed);
        if dropped > 0 {
            tracing::warn!(
                endpoint = sender.endpoint.as_str(),
                dropped,
                capacity = QUEUE_CAPACITY,
                "message spans dropped: the span export queue was full"
            );
        }
    }
}

impl Sender {
    /// Sends one encoded `ExportTraceServiceRequest` and waits for the
    /// receiver's answer (the count of spans it rejected).
    fn export(&mut self, request: Bytes) -> Result<tonic::Response<i64>, tonic::Status> {
        let grpc = &mut self.grpc;
        let Some(runtime) = &self.runtime else {
            return Err(tonic::Status::unavailable("the span exporter stopped"));
        };
        runtime.block_on(async {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            grpc.unary(
                tonic::Request::new(request),
                tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH),
                RawCodec,
            )
            .await
        })
    }

    /// Opens the gRPC connection with an empty export request (valid OTLP:
    /// no resource spans); a receiver not up yet is retried at the first
    /// export.
    fn connect(&mut self) {
        if let Err(status) = self.export(Bytes::new()) {
            tracing::warn!(
                endpoint = self.endpoint.as_str(),
                "connecting to the OTLP receiver: {status}"
            );
        }
    }

    fn send_batch(&mut self) {
        let request = Bytes::from(self.encoder.request(
            &self.batch,
            &self.resource,
            &self.router_id,
        ));
        match self.export(request) {
            Ok(response) => {
                let rejected = response.into_inner();
                if rejected > 0 {
                    tracing::warn!(
                        endpoint = self.endpoint.as_str(),
                        rejected,
                        "the OTLP receiver rejected message spans"
                    );
                }
            }
            Err(status) => tracing::warn!(
                endpoint = self.endpoint.as_str(),
                spans = self.batch.len(),
                "exporting message spans failed: {status}"
            ),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Without blocking: the last owner may be a task of another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The running exporter: its thread, and the handle to flush and stop it.
pub struct SpanExporter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SpanExporter {
    /// Starts exporting to `endpoint` (an `http://host:port` URL) with
    /// `service.name` = `service_name` and `bote.router.id` = `router_id`
    /// as resource attributes. The gRPC connection runs on a runtime of its
    /// own, driven by the export thread (see `Sender::runtime`).
    pub fn start(
        endpoint: &str,
        service_name: &str,
        router_id: &str,
    ) -> Result<SpanExporter, ExporterError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ExporterError::Runtime)?;
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| ExporterError::Endpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        // The channel's tasks are spawned on the runtime entered here.
        let channel = {
            let _entered = runtime.enter();
            channel.connect_lazy()
        };
        let queue = Arc::new(Queue {
            spans: Mutex::new(Vec::with_capacity(WAKE_AT * 2)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        QUEUE
            .set(queue.clone())
            .map_err(|_| ExporterError::AlreadyRunning)?;
        let mut resource = Vec::new();
        for (key, value) in [
            ("service.name", service_name),
            ("bote.router.id", router_id),
            ("telemetry.sdk.language", "rust"),
            ("telemetry.sdk.name", "bote"),
        ] {
            kv_str(&mut resource, 1, key, value);
        }
        let shared = Arc::new(Shared {
            queue,
            sender: Mutex::new(Sender {
                grpc: tonic::client::Grpc::new(channel),
                runtime: Some(runtime),
                endpoint: endpoint.to_owned(),
                resource,
                router_id: router_id.into(),
                batch: Vec::with_capacity(WAKE_AT * 2),
                encoder: Encoder::default(),
            }),
        });
        let thread = std::thread::Builder::new()
            .name("otlp-span-export".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    // Connect now rather than at the first export, in the
                    // middle of traffic.
                    shared
                        .sender
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .connect();
                    loop {
                        let queue = &shared.queue;
                        let spans = queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
                        let (spans, _) = queue
                            .wake
                            .wait_timeout_while(spans, EXPORT_INTERVAL, |s| {
                                s.len() < WAKE_AT && !queue.stop.load(Relaxed)
                            })
                            .unwrap_or_else(PoisonError::into_inner);
                        drop(spans);
                        shared.export_pending();
                        if queue.stop.load(Relaxed) {
                            break;
                        }
                    }
                }
            })?;
        Ok(SpanExporter {
            shared,
            thread: Some(thread),
        })
    }

    /// Exports every span queued so far and waits for the export. Not from
    /// a task of any tokio runtime (it blocks).
    pub fn flush(&self) {
        self.shared.export_pending();
    }

    /// Exports the spans still queued and stops the export thread.
    pub fn shutdown(mut self) {
        self.shared.queue.stop.store(true, Relaxed);
        self.shared.queue.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.export_pending();
    }
}

/// Sends the encoded request as is; reads `rejected_spans` of the
/// response's `partial_success`.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = i64;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = i64;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<i64>, Self::Error> {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
        use prost::Message as _;
        let bytes = src.copy_to_bytes(src.remaining());
        let response = ExportTraceServiceResponse::decode(bytes).map_err(|e| {
            tonic::Status::internal(format!("decoding the OTLP export response: {e}"))
        })?;
        Ok(Some(
            response.partial_success.map_or(0, |p| p.rejected_spans),
        ))
    }
}

// ---- OTLP protobuf, written directly (opentelemetry/proto/trace/v1) ----

const LEN: u8 = 2;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    tag(out, field, LEN);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// `field`: a `KeyValue` named `key` up to its `AnyValue`'s length
/// (`any` bytes follow).
fn kv_head(out: &mut Vec<u8>, field: u32, key: &str, any: usize) {
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    tag(out, field, LEN);
    varint(out, kv as u64);
    len_field(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, any as u64);
}

/// `field`: a `KeyValue` with a string `AnyValue`.
fn kv_str(out: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    kv_head(
        out,
        field,
        key,
        1 + varint_len(value.len() as u64) + value.len(),
    );
    len_field(out, 1, value.as_bytes());
}

/// `field`: a `KeyValue` with an int `AnyValue`.
fn kv_int(out: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    kv_head(out, field, key, 1 + varint_len(value as u64));
    tag(out, 3, VARINT);
    varint(out, value as u64);
}

/// `host:port` split for `network.peer.address` / `network.peer.port`.
pub(crate) fn split_peer(peer: &str) -> (&str, i64) {
    match peer.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (peer, 0),
    }
}

/// `Span.flags`: the W3C trace flags, and whether the parent is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
const KIND_PRODUCER: u64 = 4;
const KIND_CONSUMER: u64 = 5;

/// Reused buffers of the encoding.
#[derive(Default)]
struct Encoder {
    spans: Vec<u8>,
    span: Vec<u8>,
    event: Vec<u8>,
}

impl Encoder {
    /// An `ExportTraceServiceRequest` holding `records` under one resource
    /// and the instrumentation scope `bote`.
    fn request(&mut self, records: &[SpanRecord], resource: &[u8], router_id: &str) -> Vec<u8> {
        self.spans.clear();
        for record in records {
            self.span.clear();
            self.encode_span(record, router_id);
            len_field(&mut self.spans, 2, &self.span);
        }
        let mut scope = Vec::with_capacity(8);
        len_field(&mut scope, 1, b"bote");
        let scope_field = 1 + varint_len(scope.len() as u64) + scope.len();
        let scope_spans = scope_field + self.spans.len();
        let resource_field = 1 + varint_len(resource.len() as u64) + resource.len();
        let resource_spans = resource_field + 1 + varint_len(scope_spans as u64) + scope_spans;
        let mut out = Vec::with_capacity(resource_spans + 8);
        tag(&mut out, 1, LEN);
        varint(&mut out, resource_spans as u64);
        len_field(&mut out, 1, resource);
        tag(&mut out, 2, LEN);
        varint(&mut out, scope_spans as u64);
        len_field(&mut out, 1, &scope);
        out.extend_from_slice(&self.spans);
        out
    }

    fn encode_span(&mut self, record: &SpanRecord, router_id: &str) {
        let out = &mut self.span;
        let (message, span_id, parent, kind, start, end, operation) = match record {
            SpanRecord::Receive {
                message,
                start,
                end,
                ..
            } => (
                message,
                message.receive_id,
                message.parent,
                KIND_CONSUMER,
                *start,
                *end,
                "receive",
            ),
            SpanRecord::Send {
                message,
                span_id,
                start,
                end,
                ..
            } => (
                message,
                *span_id,
                Some(message.receive_id),
                KIND_PRODUCER,
                *start,
                *end,
                "send",
            ),
        };
        len_field(out, 1, &message.trace_id.to_be_bytes());
        len_field(out, 2, &span_id.to_be_bytes());
        if !message.trace_state.is_empty() {
            len_field(out, 3, message.trace_state.as_bytes());
        }
        if let Some(parent) = parent {
            len_field(out, 4, &parent.to_be_bytes());
        }
        tag(out, 5, LEN);
        varint(out, (operation.len() + 1 + message.address.len()) as u64);
        out.extend_from_slice(operation.as_bytes());
        out.push(b' ');
        out.extend_from_slice(message.address.as_bytes());
        tag(out, 6, VARINT);
        varint(out, kind);
        tag(out, 7, FIXED64);
        out.extend_from_slice(&start.to_le_bytes());
        tag(out, 8, FIXED64);
        out.extend_from_slice(&end.to_le_bytes());
        // Attributes (OpenTelemetry messaging conventions).
        kv_str(out, 9, "messaging.system", "amqp");
        kv_str(out, 9, "messaging.operation.type", operation);
        kv_str(out, 9, "messaging.operation.name", operation);
        kv_str(out, 9, "messaging.destination.name", &message.address);
        if let Some(id) = &message.message_id {
            kv_str(out, 9, "messaging.message.id", id);
        }
        let (peer, hops) = match record {
            SpanRecord::Receive { from, hops, .. } => (from, *hops),
            SpanRecord::Send { to, hops, .. } => (to, *hops),
        };
        match peer {
            Peer::Client(peer) => {
                let (host, port) = split_peer(peer);
                kv_str(out, 9, "network.peer.address", host);
                kv_int(out, 9, "network.peer.port", port);
                kv_str(out, 9, "bote.router.id", router_id);
            }
            Peer::Neighbour(router) => {
                kv_str(out, 9, "bote.router.id", router_id);
                kv_str(out, 9, "bote.peer.router.id", router);
            }
        }
        kv_int(out, 9, "bote.hop.count", hops);
        if let SpanRecord::Receive {
            source: Some(source),
            ..
        } = record
        {
            kv_str(out, 9, "bote.trace.context.source", source);
        }
        let settles: &[Settle] = match record {
            SpanRecord::Receive { settles, .. } => settles,
            SpanRecord::Send { settle, .. } => settle.as_slice(),
        };
        if let Some((_, outcome)) = settles.last() {
            kv_str(out, 9, "bote.delivery.outcome", outcome);
        }
        for (time, outcome) in settles {
            let event = &mut self.event;
            event.clear();
            tag(event, 1, FIXED64);
            event.extend_from_slice(&time.to_le_bytes());
            len_field(event, 2, b"settle");
            kv_str(event, 3, "messaging.operation.type", "settle");
            kv_str(event, 3, "bote.delivery.outcome", outcome);
            len_field(out, 11, event);
        }
        let remote = match record {
            SpanRecord::Receive { .. } if parent.is_some() => IS_REMOTE,
            _ => 0,
        };
        tag(out, 16, FIXED32);
        out.extend_from_slice(
            &(u32::from(message.trace_flags) | HAS_IS_REMOTE | remote).to_le_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message as _;

    fn attrs(
        kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    ) -> std::collections::BTreeMap<String, Value> {
        kvs.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.clone().and_then(|v| v.value).expect("a value"),
                )
            })
            .collect()
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn records_encode_to_an_otlp_request_the_protobuf_types_read_back() {
        let message = Arc::new(MessageSpans {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            receive_id: 0x1111,
            parent: Some(0xb7ad6b7169203331),
            trace_flags: 1,
            trace_state: "congo=t61rcWkgMzE".into(),
            address: "orders".into(),
            message_id: Some("m-1".into()),
        });
        let records = [
            SpanRecord::Receive {
                message: message.clone(),
                start: 10,
                end: 40,
                from: Peer::Client("[::1]:5672".into()),
                hops: 0,
                source: Some("application-properties"),
                settles: vec![],
            },
            SpanRecord::Send {
                message,
                span_id: 0x2222,
                start: 20,
                end: 30,
                to: Peer::Neighbour("Router.B".into()),
                hops: 1,
                settle: Some((30, "released")),
            },
        ];
        let mut resource = Vec::new();
        kv_str(&mut resource, 1, "service.name", "bote");
        let bytes = Encoder::default().request(&records, &resource, "Router.A");
        let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let rs = &request.resource_spans[0];
        let resource = attrs(&rs.resource.as_ref().expect("resource").attributes);
        assert_eq!(resource["service.name"], Value::StringValue("bote".into()));
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().expect("scope").name, "bote");
        let [receive, send] = &scope.spans[..] else {
            panic!("two spans: {:?}", scope.spans);
        };
        assert_eq!(receive.name, "receive orders");
        assert_eq!(send.name, "send orders");
        assert_eq!(receive.kind, 5);
        assert_eq!(send.kind, 4);
        assert_eq!(hex(&receive.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(send.trace_id, receive.trace_id);
        assert_eq!(hex(&receive.parent_span_id), "b7ad6b7169203331");
        assert_eq!(send.parent_span_id, receive.span_id);
        assert_eq!(receive.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(
            (receive.start_time_unix_nano, receive.end_time_unix_nano),
            (10, 40)
        );
        assert_eq!(receive.flags, 0x301);
        assert_eq!(send.flags, 0x101);
        let r = attrs(&receive.attributes);
        assert_eq!(r["messaging.system"], Value::StringValue("amqp".into()));
        assert_eq!(
            r["messaging.operation.type"],
            Value::StringValue("receive".into())
        );
        assert_eq!(r["messaging.message.id"], Value::StringValue("m-1".into()));
        assert_eq!(r["network.peer.address"], Value::StringValue("::1".into()));
        assert_eq!(r["network.peer.port"], Value::IntValue(5672));
        assert_eq!(r["bote.router.id"], Value::StringValue("Router.A".into()));
        assert_eq!(r["bote.hop.count"], Value::IntValue(0));
        assert!(!r.contains_key("bote.delivery.outcome"));
        let s = attrs(&send.attributes);
        assert_eq!(
            s["bote.peer.router.id"],
            Value::StringValue("Router.B".into())
        );
        assert_eq!(s["bote.hop.count"], Value::IntValue(1));
        assert_eq!(
            s["bote.delivery.outcome"],
            Value::StringValue("released".into())
        );
        let [settle] = &send.events[..] else {
            panic!("one event: {:?}", send.events);
        };
        assert_eq!(
            (settle.name.as_str(), settle.time_unix_nano),
            ("settle", 30)
        );
        assert_eq!(
            attrs(&settle.attributes)["bote.delivery.outcome"],
            Value::StringValue("released".into())
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }
}
