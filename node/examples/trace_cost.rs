//! The router's CPU cost of one traced message, measured in-process with
//! the subscriber and exporter `boted` installs: `at_ingress`, a
//! `send_to_client` (the egress annotation entries), the settlement and the
//! end of both spans, then the export of those spans to a live OTLP
//! receiver (`examples/otlp_sink`).
//!
//! `cargo run --release -p bote-node --example trace_cost -- [ENDPOINT] [MESSAGES] [sdk]`
//! prints the CPU time per traced message spent making the spans (on the
//! calling thread) and exporting them (the whole process while the batch
//! processor exports; the receiver is another process). Spans are made in
//! batches of 200 messages, each flushed before the next, so that none is
//! dropped by a full queue.
//!
//! With `transit` it measures a router in the middle of a chain instead:
//! `from_neighbour` (the context from the transfer frame), a
//! `send_to_neighbour` (the context for the next frame), the settlement.
//! Both modes also print the allocations per traced message made on the
//! calling thread (a counting global allocator).
//!
//! With `sdk` it measures the OpenTelemetry SDK's pipeline instead of the
//! router's span records (`bote_node::otlp`): the same two spans (names,
//! kinds, attributes, the settle event, the egress annotation entries)
//! made with the SDK's tracer and exported through its
//! `BatchSpanProcessor` and `opentelemetry-otlp`, as the router did before.

use std::cell::Cell;
use std::time::Duration;

use std::sync::Arc;

use bote_amqp::{DeliveryState, MessageBuilder, MessageId, MessageView};
use bote_node::config::{LogFormat, TelemetryConfig};
use bote_node::delivery::MessageTrace;
use bote_node::delivery::trace::{annotation_entries, wire_context};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

/// The spans of one message made with the SDK's tracer (the `sdk` mode).
fn sdk_message(
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    address: &str,
    message: &bytes::Bytes,
    router: &StringValue,
) {
    let view = MessageView::parse(message.clone()).ok();
    let id = view.as_ref().and_then(|v| match v.message_id().ok()?? {
        MessageId::String(s) => Some(s.to_owned()),
        _ => None,
    });
    let destination: StringValue = Arc::<str>::from(address).into();
    let common = |op: &'static str| {
        let mut attrs = vec![
            KeyValue::new("messaging.system", "amqp"),
            KeyValue::new("messaging.operation.type", op),
            KeyValue::new("messaging.operation.name", op),
            KeyValue::new(
                "messaging.destination.name",
                Value::String(destination.clone()),
            ),
            KeyValue::new("bote.router.id", Value::String(router.clone())),
            KeyValue::new("bote.hop.count", 0i64),
        ];
        if let Some(id) = &id {
            attrs.push(KeyValue::new("messaging.message.id", id.clone()));
        }
        attrs
    };
    let mut attrs = common("receive");
    attrs.push(KeyValue::new("network.peer.address", "127.0.0.1"));
    attrs.push(KeyValue::new("network.peer.port", 40000i64));
    attrs.push(KeyValue::new("bote.trace.context.source", "none"));
    let receive = tracer
        .span_builder(format!("receive {address}"))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attrs)
        .start(tracer);
    let cx = Context::new().with_span(receive);
    let mut attrs = common("send");
    attrs.push(KeyValue::new("network.peer.address", "127.0.0.1"));
    attrs.push(KeyValue::new("network.peer.port", 40001i64));
    let mut send = tracer
        .span_builder(format!("send {address}"))
        .with_kind(SpanKind::Producer)
        .with_attributes(attrs)
        .start_with_context(tracer, &cx);
    let entries = annotation_entries(&wire_context(send.span_context()), false);
    std::hint::black_box(&entries.entries());
    send.add_event(
        "settle",
        vec![
            KeyValue::new("messaging.operation.type", "settle"),
            KeyValue::new("bote.delivery.outcome", "accepted"),
        ],
    );
    send.set_attribute(KeyValue::new("bote.delivery.outcome", "accepted"));
    send.end();
    cx.span().end();
}

/// The system allocator, counting the allocations each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn cpu(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(clock, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4317".into());
    let messages: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("MESSAGES is a number"))
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mode = std::env::args().nth(3);
    let sdk = mode.as_deref() == Some("sdk");
    let transit = mode.as_deref() == Some("transit");
    let config = TelemetryConfig {
        otlp_endpoint: Some(endpoint.clone()),
        sampling_ratio: 1.0,
        ..TelemetryConfig::default()
    };
    let (telemetry, provider) = rt.block_on(async {
        if sdk {
            // As telemetry::init builds it, without the tracing layer.
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint)
                .build()
                .expect("exporter");
            let batch = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(Duration::from_millis(500))
                        .build(),
                )
                .build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(batch)
                .build();
            (None, Some(provider))
        } else {
            let t = bote_node::telemetry::init("info", LogFormat::Text, &config, "Router.cost")
                .expect("telemetry");
            (Some(t), None)
        }
    });
    let tracer = provider.as_ref().map(|p| p.tracer("bote"));
    let router: StringValue = Arc::<str>::from("Router.cost").into();
    let message = MessageBuilder::new()
        .message_id(MessageId::String("m-1"))
        .data(&[b'x'; 100])
        .build();
    let address: Arc<str> = "bench".into();
    let (client_in, client_out): (Arc<str>, Arc<str>) =
        ("127.0.0.1:40000".into(), "127.0.0.1:40001".into());
    let (upstream, downstream): (Arc<str>, Arc<str>) = ("Router.A".into(), "Router.C".into());
    let upstream_context = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (mut make, mut export) = (Duration::ZERO, Duration::ZERO);
    let mut allocated = 0;
    let (mut done, mut round) = (0, 0);
    while done < messages {
        let n = 200.min(messages - done);
        let a0 = allocations();
        let t0 = cpu(libc::CLOCK_THREAD_CPUTIME_ID);
        for _ in 0..n {
            if let Some(tracer) = &tracer {
                sdk_message(tracer, &address, &message, &router);
                continue;
            }
            let mut trace = if transit {
                let mut trace = MessageTrace::from_neighbour(
                    &address,
                    Some((upstream_context, "")),
                    &upstream,
                    1,
                    &message,
                )
                .expect("a sampled context");
                let wire = trace.send_to_neighbour(&address, &downstream, 1);
                std::hint::black_box(&wire);
                trace
            } else {
                let mut trace = MessageTrace::at_ingress(&address, &message, &client_in)
                    .expect("sampled at ratio 1");
                let entries = trace.send_to_client(&client_out, 0);
                std::hint::black_box(&entries);
                trace
            };
            trace.settled(Some(&DeliveryState::Accepted));
            drop(trace);
        }
        let made = cpu(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
        let made_allocations = allocations() - a0;
        let t1 = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
        match (&telemetry, &provider) {
            (Some(t), _) => t.flush(),
            (None, Some(p)) => p.force_flush().expect("flush"),
            (None, None) => {}
        }
        let exported = cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - t1;
        // The first rounds warm up (the connection, the allocator).
        if round >= 5 {
            make += made;
            export += exported;
            allocated += made_allocations;
            done += n;
        }
        round += 1;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "{}{messages} traced messages: making spans {:.2} us ({:.1} allocations), exporting {:.2} us, total {:.2} us CPU per message",
        mode.as_deref().map_or(String::new(), |m| format!("{m}: ")),
        per(make),
        allocated as f64 / messages as f64,
        per(export),
        per(make + export)
    );
    if let Some(t) = telemetry {
        t.shutdown();
    }
    if let Some(p) = provider {
        let _ = p.shutdown();
    }
}
