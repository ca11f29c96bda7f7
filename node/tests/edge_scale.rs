//! Many edge uplinks on one interior router (issue 17, item 4, scale): one
//! test process holds `n` uplinks to the interior's `role = "edge"`
//! listener, each its own HTTP/2 connection and `InterRouter.Exchange`
//! stream speaking what an edge router speaks (a hello, then its address
//! set as an `AddressUpdate`; every transfer it gets is accepted), so the
//! interior's part is measured without `n` boted processes. The interior
//! (a real boted) is in a 2-router mesh; a fe2o3 client on the other
//! router sends one unsettled message to each edge's address, and every
//! one must come back accepted from its edge.
//!
//! `fifty_edge_uplinks_are_each_reachable_from_the_mesh` runs with the
//! suite; the 1,000-uplink run is a measurement (BENCHMARKS.md):
//!
//! ```sh
//! cargo test --release -p bote-node --test edge_scale -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bote_proto::v1 as pb;
use bote_proto::v1::inter_router_client::InterRouterClient;
use fe2o3_amqp::types::messaging::{Body, Message, Properties};
use fe2o3_amqp::types::primitives::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;

use boted::{RouterSpec, WAIT};
use client::*;

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One fake edge: dials `port` as an edge's uplink, says hello as `id`,
/// reports `address`, and accepts every transfer (counted in `got`).
async fn edge(port: u16, id: String, address: String, got: Arc<AtomicUsize>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{id}: dial: {e}"));
    let mut client = InterRouterClient::new(channel);
    let (out, rx) = mpsc::channel::<pb::Batch>(16);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("bote-role", "edge".parse().expect("metadata"));
    let frame = |kind| pb::Frame { kind: Some(kind) };
    out.send(pb::Batch::new(vec![
        frame(pb::frame::Kind::Hello(pb::Hello {
            router_id: id.clone(),
            instance: 1,
            ..pb::Hello::default()
        })),
        frame(pb::frame::Kind::AddressUpdate(pb::AddressUpdate {
            origin: id.clone(),
            instance: 1,
            sequence: 1,
            added: vec![address],
            removed: Vec::new(),
        })),
    ]))
    .await
    .expect("first batch");
    let mut inbound = client
        .exchange(request)
        .await
        .unwrap_or_else(|e| panic!("{id}: exchange: {e}"))
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(batch)) = inbound.message().await {
            let mut answers = Vec::new();
            for f in batch.into_frames() {
                if let Some(pb::frame::Kind::Transfer(t)) = f.kind
                    && !t.more
                {
                    got.fetch_add(1, Ordering::Relaxed);
                    if !t.settled {
                        answers.push(frame(pb::frame::Kind::Disposition(pb::Disposition {
                            delivery_id: t.delivery_id,
                            outcome: Some(pb::Outcome {
                                kind: Some(pb::outcome::Kind::Accepted(pb::Accepted {})),
                            }),
                            settled: true,
                            last_delivery_id: 0,
                        })));
                    }
                }
            }
            if !answers.is_empty() && out.send(pb::Batch::new(answers)).await.is_err() {
                break;
            }
        }
    });
}

async fn edges_on_one_interior(n: usize) {
    let interior = RouterSpec::new("Router.I")
        .inter_router(0)
        .extra("[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"edge\"\n")
        .start();
    let state = std::fs::read_to_string(interior.state_path()).expect("state file");
    let edge_port = botectl::spawn::RouterState::parse(&state)
        .expect("state")
        .port("edge")
        .expect("an edge listener");
    let far = RouterSpec::new("Router.M")
        .connect("to-i", interior.inter_router_port, 1)
        .start();
    wait_until("the mesh to converge", || far.routes().len() == 1).await;
    let pid = interior.pid().expect("interior pid");
    let rss_before = rss_kib(pid);

    let got = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut dials = Vec::new();
    for i in 0..n {
        dials.push(tokio::spawn(edge(
            edge_port,
            format!("Edge.{i}"),
            format!("edge.{i}"),
            got.clone(),
        )));
    }
    for d in dials {
        timeout(WAIT, d)
            .await
            .expect("dial timed out")
            .expect("dial");
    }
    let dialled = began.elapsed();
    // Attached: the far router routes each edge's address to the interior.
    let last = format!("edge.{}", n - 1);
    wait_until("the far router to know every edge's address", || {
        let state = far.state();
        (0..n).all(|i| {
            state
                .addresses
                .get(&format!("edge.{i}"))
                .is_some_and(|r| r == &["Router.I".to_owned()])
        })
    })
    .await;
    let attached = began.elapsed();
    assert_eq!(far.consumers_of(&last), ["Router.I"]);
    // Let the interior settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib(pid);

    // Each edge is reachable from the mesh: one unsettled message each.
    let mut c = Client::connect(&far, "tx").await;
    let mut sender = c.anonymous_sender("tx").await;
    let mut futs = Vec::with_capacity(n);
    let sent = Instant::now();
    for i in 0..n {
        let m = Message::builder()
            .properties(Properties::builder().to(format!("edge.{i}")).build())
            .body(Body::Value(fe2o3_amqp::types::messaging::AmqpValue(
                Value::Ulong(i as u64),
            )))
            .build();
        futs.push(
            timeout(WAIT, sender.send_batchable(m))
                .await
                .expect("send timed out")
                .expect("send"),
        );
    }
    let outcomes = outcomes_of(futs).await;
    let round = sent.elapsed();
    assert_eq!(counts(&outcomes), all_accepted(n));
    assert_eq!(got.load(Ordering::Relaxed), n, "each edge got its message");
    println!(
        "edges={n} dialled_in={:.3}s attached_in={:.3}s (far router routes all) \
         interior_rss_before={rss_before}KiB after={rss_after}KiB per_edge={:.1}KiB \
         one_message_to_each={:.3}s",
        dialled.as_secs_f64(),
        attached.as_secs_f64(),
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        round.as_secs_f64(),
    );
    let _ = timeout(WAIT, sender.close()).await;
    c.close().await;
    far.stop_cleanly();
    interior.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_edge_uplinks_are_each_reachable_from_the_mesh() {
    edges_on_one_interior(50).await;
}

/// The measurement in BENCHMARKS.md ("Edge routers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 1,000 uplinks (see the module doc)"]
async fn a_thousand_edge_uplinks_on_one_interior() {
    let n = std::env::var("BOTE_EDGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    edges_on_one_interior(n).await;
}
