//! One trace per message across the mesh: three real `boted` processes in a
//! chain A - B - C, tracing at 100 % to an OTLP receiver in this process
//! (`fake-opentelemetry-collector`, standing in for Jaeger), and Qpid Proton
//! for Python (`tests/interop/trace_client.py`, run from the worktree's
//! `.venv`, which `./scripts/test` creates) sending on A and receiving on C.
//!
//! Three messages: one without a trace context (a new trace), one with the
//! caller's context in `x-opt-qpid-tracestate`, one with it in
//! application-property `traceparent`. Each must arrive as one trace of six
//! spans (receive and send on each router) parented hop by hop, with the
//! messaging attributes and the settlement outcome; the received message
//! carries the egress span's context in `x-opt-qpid-tracestate`, and its
//! bare message (properties, application-properties, body) is byte for
//! byte what Proton sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bote_amqp::MessageView;
use bytes::Bytes;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

#[path = "support/boted.rs"]
mod boted;
#[path = "support/mesh.rs"]
mod mesh_support;
#[path = "support/proxy.rs"]
mod proxy;

use boted::{Router, wait_for};
use mesh_support::mesh;

const ADDRESS: &str = "trace.q";
/// The callers' contexts `trace_client.py` sends.
const QPID_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const QPID_PARENT: &str = "00f067aa0ba902b7";
const APP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const APP_PARENT: &str = "b7ad6b7169203331";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python(args: &[&str]) -> Child {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: create it with `python3 -m venv .venv && .venv/bin/pip install \
         python-qpid-proton==0.40.0 pytest==8.3.4` (./scripts/test does)",
        python.display()
    );
    Command::new(python)
        .arg(root().join("tests/interop/trace_client.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("trace_client.py starts")
}

/// The JSON lines a client printed, read until it exits.
fn lines_of(child: Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().expect("client runs");
    assert!(
        out.status.success(),
        "trace_client.py failed: {:?}",
        out.status
    );
    parse_lines(&out.stdout)
}

fn parse_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = bytes
        .lines()
        .map(|l| serde_json::from_str(&l.expect("utf-8")).expect("a JSON line"))
        .collect();
    assert!(
        !lines.iter().any(|l| l.get("timeout").is_some()),
        "a client timed out: {lines:?}"
    );
    lines
}

fn attr<'a>(span: &'a ExportedSpan, key: &str) -> &'a str {
    span.attributes
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("span {} has no {key}: {:?}", span.name, span.attributes))
}

fn is_str(value: &str, want: &str) -> bool {
    value.contains(&format!("StringValue({want:?})"))
}

fn is_int(value: &str, want: i64) -> bool {
    value.contains(&format!("IntValue({want})"))
}

fn hex(s: &str) -> Bytes {
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect::<Vec<u8>>(),
    )
}

/// What the receiver got once `messages` spans of messages to `address`
/// are in, or 20 s have passed: those spans, and the others (the routers'
/// operation spans, the spans of the management request's messages).
async fn split_spans(
    collector: &mut FakeCollectorServer,
    address: &str,
    messages: usize,
) -> (Vec<ExportedSpan>, Vec<ExportedSpan>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut wanted, mut others) = (Vec::new(), Vec::new());
    while wanted.len() < messages && std::time::Instant::now() < deadline {
        for s in collector
            .exported_spans(1, Duration::from_millis(500))
            .await
        {
            if s.attributes
                .get("messaging.destination.name")
                .is_some_and(|v| is_str(v, address))
            {
                wanted.push(s);
            } else {
                others.push(s);
            }
        }
    }
    // The operation spans flushed in the same exports are in by now.
    others.extend(collector.exported_spans(0, Duration::ZERO).await);
    (wanted, others)
}

/// The span of `operation` on `router` among one message's spans.
fn span<'a>(spans: &'a [ExportedSpan], operation: &str, router: &str) -> &'a ExportedSpan {
    spans
        .iter()
        .find(|s| {
            is_str(attr(s, "messaging.operation.type"), operation)
                && is_str(attr(s, "bote.router.id"), router)
        })
        .unwrap_or_else(|| panic!("no {operation} span on {router} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_across_three_routers_is_one_trace_and_continues_the_callers_context() {
    let mut collector = FakeCollectorServer::start().await.expect("OTLP receiver");
    let telemetry = format!(
        "\n[telemetry]\notlp-endpoint = \"{}\"\nsampling-ratio = 1.0\n",
        collector.endpoint()
    );
    let (routers, _) = mesh(
        &["Router.A", "Router.B", "Router.C"],
        &[(0, 1, 1), (1, 2, 1)],
        &[],
        |s| s.extra(&telemetry),
    );
    let [a, b, c]: [Router; 3] = routers.try_into().unwrap_or_else(|_| unreachable!());

    // The receiver on C, then the sender on A once A knows of it.
    let mut receiver = python(&["recv", &c.url(), ADDRESS, "3"]);
    let mut first = String::new();
    BufReader::new(receiver.stdout.as_mut().expect("piped"))
        .read_line(&mut first)
        .expect("receiver speaks");
    assert!(first.contains("attached"), "receiver: {first}");
    tokio::task::block_in_place(|| {
        wait_for("A to learn of the consumer on C", || {
            a.consumers_of(ADDRESS) == ["Router.C"]
        })
    });
    let sender = python(&["send", &a.url(), ADDRESS]);
    let (sent, received) =
        tokio::task::spawn_blocking(move || (lines_of(sender), lines_of(receiver)))
            .await
            .expect("clients joined");
    assert_eq!(sent.len(), 3, "sender: {sent:?}");
    assert_eq!(received.len(), 3, "receiver: {received:?}");
    for s in &sent {
        assert_eq!(s["outcome"], "accepted", "{s}");
    }

    // A management request from A to C through the mesh: an operation span
    // on C.
    let a_url = a.url();
    let managed =
        tokio::task::spawn_blocking(move || lines_of(python(&["manage", &a_url, "Router.C"])))
            .await
            .expect("management client joined");
    assert_eq!(managed, [serde_json::json!({"id": "Router.C"})]);

    // Stopping flushes every router's spans.
    tokio::task::block_in_place(|| {
        for r in [a, b, c] {
            r.stop_cleanly();
        }
    });
    let (spans, operations) = split_spans(&mut collector, ADDRESS, 18).await;
    // The routers' operation spans (tracing-opentelemetry): each computed
    // routes reaching the other two, and C answered the management request.
    for router in ["Router.A", "Router.B", "Router.C"] {
        assert!(
            operations.iter().any(|s| s.name == "route recompute"
                && s.kind == "SPAN_KIND_INTERNAL"
                && is_str(attr(s, "bote.router.id"), router)
                && s.attributes
                    .get("bote.routers.reachable")
                    .is_some_and(|v| is_int(v, 2))),
            "a route recompute span of {router} reaching the 2 others: {operations:#?}"
        );
    }
    let query = operations
        .iter()
        .find(|s| s.name == "management QUERY")
        .unwrap_or_else(|| panic!("no management QUERY span: {operations:#?}"));
    assert_eq!(query.kind, "SPAN_KIND_SERVER");
    assert!(is_str(attr(query, "bote.router.id"), "Router.C"));
    assert!(is_str(
        attr(query, "bote.management.entity_type"),
        "org.apache.qpid.dispatch.router"
    ));
    assert!(is_int(attr(query, "bote.management.status"), 200));
    let mut by_message: BTreeMap<String, Vec<ExportedSpan>> = BTreeMap::new();
    for s in spans {
        let id = attr(&s, "messaging.message.id").to_owned();
        by_message.entry(id).or_default().push(s);
    }
    let ids = |id: &str| {
        by_message
            .iter()
            .find(|(k, _)| is_str(k, id))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no spans for message {id}: {by_message:#?}"))
    };

    for (id, caller) in [
        ("plain", None),
        ("qpid", Some((QPID_TRACE, QPID_PARENT))),
        ("app-props", Some((APP_TRACE, APP_PARENT))),
    ] {
        let spans = ids(id);
        assert_eq!(
            spans.len(),
            6,
            "{id}: receive and send on each router: {spans:#?}"
        );
        let trace_id = &spans[0].trace_id;
        assert!(
            spans.iter().all(|s| &s.trace_id == trace_id),
            "{id}: one trace: {spans:#?}"
        );
        let hops = ["Router.A", "Router.B", "Router.C"];
        let mut parent = caller.map_or(String::new(), |(t, p)| {
            assert_eq!(trace_id, t, "{id}: the caller's trace continues");
            p.to_owned()
        });
        for (hop, router) in hops.iter().enumerate() {
            let receive = span(&spans, "receive", router);
            let send = span(&spans, "send", router);
            assert_eq!(receive.name, format!("receive {ADDRESS}"));
            assert_eq!(send.name, format!("send {ADDRESS}"));
            assert_eq!(receive.kind, "SPAN_KIND_CONSUMER");
            assert_eq!(send.kind, "SPAN_KIND_PRODUCER");
            assert_eq!(receive.parent_span_id, parent, "{id}: receive on {router}");
            assert_eq!(
                send.parent_span_id, receive.span_id,
                "{id}: send on {router}"
            );
            for s in [receive, send] {
                assert!(is_str(attr(s, "messaging.system"), "amqp"));
                assert!(is_str(attr(s, "messaging.destination.name"), ADDRESS));
                assert!(is_int(attr(s, "bote.hop.count"), hop as i64), "{s:#?}");
            }
            // The settlement: an event with the outcome on each send span.
            let settle = send
                .events
                .iter()
                .find(|e| e.name == "settle")
                .unwrap_or_else(|| panic!("{id}: no settle event on {router}: {send:#?}"));
            assert!(is_str(
                &settle.attributes["bote.delivery.outcome"],
                "accepted"
            ));
            parent = send.span_id.clone();
        }
        let ingress = span(&spans, "receive", "Router.A");
        assert!(is_str(attr(ingress, "network.peer.address"), "127.0.0.1"));
        let egress = span(&spans, "send", "Router.C");
        assert!(is_str(attr(egress, "network.peer.address"), "127.0.0.1"));

        // What the consumer got: the egress span's context in
        // x-opt-qpid-tracestate, the bare message untouched.
        let got = received
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not received"));
        let sent = sent.iter().find(|s| s["id"] == id).expect("sent");
        let raw = hex(got["raw"].as_str().expect("raw"));
        let bare = hex(sent["bare"].as_str().expect("bare"));
        assert!(
            raw.ends_with(&bare),
            "{id}: properties, application-properties and body arrive byte for byte"
        );
        let view = MessageView::parse(raw).expect("the delivered message parses");
        assert_eq!(view.bare_message(), bare);
        let map = view
            .message_annotation("x-opt-qpid-tracestate")
            .expect("annotations decode")
            .expect("x-opt-qpid-tracestate written on egress");
        let traceparent = map
            .as_map()
            .expect("a map")
            .find("traceparent")
            .expect("decodes")
            .expect("traceparent in the map");
        assert_eq!(
            traceparent.as_text().expect("text"),
            format!("00-{trace_id}-{}-01", egress.span_id),
            "{id}: the consumer continues from the egress span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_copies_are_sibling_send_spans_under_one_receive() {
    let address = "multicast.trace";
    let mut collector = FakeCollectorServer::start().await.expect("OTLP receiver");
    let telemetry = format!(
        "\n[telemetry]\notlp-endpoint = \"{}\"\n",
        collector.endpoint()
    );
    let router = tokio::task::block_in_place(|| {
        boted::RouterSpec::new("Router.M").extra(&telemetry).start()
    });
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let mut r = python(&["recv", &router.url(), address, "3"]);
        let mut first = String::new();
        BufReader::new(r.stdout.as_mut().expect("piped"))
            .read_line(&mut first)
            .expect("receiver speaks");
        assert!(first.contains("attached"), "receiver: {first}");
        receivers.push(r);
    }
    let sender = python(&["send", &router.url(), address]);
    let (sent, got) = tokio::task::spawn_blocking(move || {
        let sent = lines_of(sender);
        let got: Vec<_> = receivers.into_iter().map(lines_of).collect();
        (sent, got)
    })
    .await
    .expect("clients joined");
    assert!(sent.iter().all(|s| s["outcome"] == "accepted"), "{sent:?}");
    assert!(
        got.iter().all(|g| g.len() == 3),
        "each receiver got all: {got:?}"
    );
    tokio::task::block_in_place(|| router.stop_cleanly());

    let (spans, _) = split_spans(&mut collector, address, 9).await;
    let plain: Vec<ExportedSpan> = spans
        .into_iter()
        .filter(|s| is_str(attr(s, "messaging.message.id"), "plain"))
        .collect();
    assert_eq!(plain.len(), 3, "one receive and two sends: {plain:#?}");
    let receive = span(&plain, "receive", "Router.M");
    let sends: Vec<&ExportedSpan> = plain
        .iter()
        .filter(|s| is_str(attr(s, "messaging.operation.type"), "send"))
        .collect();
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[0].span_id, sends[1].span_id);
    for s in &sends {
        assert_eq!(s.parent_span_id, receive.span_id, "siblings under receive");
        assert_eq!(s.trace_id, receive.trace_id);
        assert_eq!(s.name, format!("send {address}"));
    }
}
