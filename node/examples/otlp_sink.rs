//! An OTLP/gRPC trace receiver for benchmarks: accepts and discards spans
//! (counting them) so that `botectl bench --tracing ...` measures a router
//! exporting to a live collector. Built on `fake-opentelemetry-collector`
//! (a dev-dependency), drained continuously so exporters never wait.
//!
//! `cargo run --release -p bote-node --example otlp_sink -- [PORT]`
//! (default 4317) prints `listening http://127.0.0.1:PORT`, then the span
//! count every 5 s; it runs until killed.

use std::time::{Duration, Instant};

use fake_opentelemetry_collector::FakeCollectorServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("PORT is a number"))
        .unwrap_or(4317);
    // FakeCollectorServer binds an ephemeral port: forward PORT to it.
    let mut collector = FakeCollectorServer::start()
        .await
        .expect("OTLP receiver starts");
    let target = collector.address();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
    println!("listening http://127.0.0.1:{port}");
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let mut total = 0usize;
    let mut last = Instant::now();
    loop {
        // Its channel holds 64 spans and the exporter waits while it is
        // full: take whatever is there every millisecond.
        total += collector
            .exported_spans(64, Duration::from_millis(1))
            .await
            .len();
        if last.elapsed() > Duration::from_secs(5) {
            println!("{total} spans received");
            last = Instant::now();
        }
    }
}
