//! An OTLP/gRPC trace receiver for benchmarks: accepts spans, counts them
//! and throws them away, so that `botectl bench --tracing ...` measures a
//! router exporting to a live collector while the collector itself costs
//! the shared cores as little as possible (the exporter's side of the
//! bargain — encoding, gRPC, HTTP/2 — is the router's cost and is
//! measured).
//!
//! It decodes each request (tonic + prost, as any collector must) and
//! adds up its spans; nothing is converted, copied or queued. (It was
//! built on `fake-opentelemetry-collector`, behind a TCP proxy, until
//! 2026-12-06: that converted every span to strings and maps and was drained
//! every millisecond, which took CPU from the router on a 2-core machine.)
//!
//! `cargo run --release -p bote-node --example otlp_sink -- [PORT]`
//! (default 4317) prints `listening http://127.0.0.1:PORT`, then the span
//! count every 5 s when it changed; it runs until killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Counts the spans and requests it is sent.
#[derive(Default)]
struct Sink {
    spans: AtomicU64,
    requests: AtomicU64,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("PORT is a number"))
        .unwrap_or(4317);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
    println!("listening http://127.0.0.1:{port}");
    let sink = Arc::new(Sink::default());
    let counts = sink.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let total = counts.spans.load(Relaxed);
            if total != last {
                println!(
                    "{total} spans received in {} requests",
                    counts.requests.load(Relaxed)
                );
                last = total;
            }
        }
    });
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::from_arc(sink))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .expect("OTLP receiver serves");
}
