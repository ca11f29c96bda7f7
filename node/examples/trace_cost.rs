//! The router's CPU cost of one traced message, measured in-process with
//! the subscriber and exporter `boted` installs: `at_ingress`, a
//! `send_to_client` (the egress annotation entries), the settlement and the
//! end of both spans, then the export of those spans to a live OTLP
//! receiver (`examples/otlp_sink`).
//!
//! `cargo run --release -p bote-node --example trace_cost -- [ENDPOINT] [MESSAGES]`
//! prints the CPU time per traced message spent making the spans (on the
//! calling thread) and exporting them (the whole process while the batch
//! processor exports; the receiver is another process). Spans are made in
//! batches of 200 messages, each flushed before the next, so that none is
//! dropped by a full queue.

use std::time::Duration;

use bote_amqp::{DeliveryState, MessageBuilder, MessageId};
use bote_node::config::{LogFormat, TelemetryConfig};
use bote_node::delivery::MessageTrace;

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
    let config = TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        sampling_ratio: 1.0,
        ..TelemetryConfig::default()
    };
    let telemetry = rt.block_on(async {
        bote_node::telemetry::init("info", LogFormat::Text, &config, "Router.cost")
            .expect("telemetry")
    });
    let message = MessageBuilder::new()
        .message_id(MessageId::String("m-1"))
        .data(&[b'x'; 100])
        .build();
    let address = "bench";
    let (mut make, mut export) = (Duration::ZERO, Duration::ZERO);
    let (mut done, mut round) = (0, 0);
    while done < messages {
        let n = 200.min(messages - done);
        let t0 = cpu(libc::CLOCK_THREAD_CPUTIME_ID);
        for _ in 0..n {
            let mut trace = MessageTrace::at_ingress(address, &message, "127.0.0.1:40000")
                .expect("sampled at ratio 1");
            let entries = trace.send_to_client(address, "127.0.0.1:40001", 0);
            std::hint::black_box(&entries);
            trace.settled(Some(&DeliveryState::Accepted));
            drop(trace);
        }
        let made = cpu(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
        let t1 = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
        telemetry.flush();
        let exported = cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - t1;
        // The first rounds warm up (the connection, the allocator).
        if round >= 5 {
            make += made;
            export += exported;
            done += n;
        }
        round += 1;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "{messages} traced messages: making spans {:.2} us, exporting {:.2} us, total {:.2} us CPU per message",
        per(make),
        per(export),
        per(make + export)
    );
    telemetry.shutdown();
}
