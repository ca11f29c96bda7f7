//! The published schema keeps its promises: every message, field and rpc is
//! documented, and batches of frames survive an encode/decode round trip with
//! the message bytes untouched.

use bote_proto::v1::{Batch, Credit, Disposition, Frame, Hello, Transfer, frame::Kind};
use prost::Message;

const SCHEMA: &str = include_str!("../bote/v1/inter_router.proto");

/// Lines that declare something a reader needs explained: fields, oneof
/// members, messages, services and rpcs.
fn declarations(schema: &str) -> Vec<(usize, &str)> {
    schema
        .lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| {
            l.starts_with("message ")
                || l.starts_with("service ")
                || l.starts_with("rpc ")
                || (l.ends_with(';') && l.contains(" = ") && !l.starts_with("option"))
        })
        .collect()
}

#[test]
fn every_field_message_and_rpc_has_a_comment() {
    let lines: Vec<&str> = SCHEMA.lines().collect();
    let decls = declarations(SCHEMA);
    assert!(
        decls.len() > 50,
        "schema parse found only {} declarations",
        decls.len()
    );
    let undocumented: Vec<String> = decls
        .iter()
        .filter(|(i, _)| *i == 0 || !lines[i - 1].trim().starts_with("//"))
        .map(|(i, l)| format!("line {}: {}", i + 1, l))
        .collect();
    assert!(
        undocumented.is_empty(),
        "undocumented declarations:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn a_batch_of_control_and_data_frames_round_trips_with_message_bytes_intact() {
    let message = bytes::Bytes::from_static(b"\x00\x53\x70\xc0\x02\x01\x41\x00\x53\x75\xa0\x03abc");
    let batch = Batch::new(vec![
        Frame {
            kind: Some(Kind::Hello(Hello {
                router_id: "Router.A".into(),
                instance: 7,
                neighbours_seen: vec!["Router.B".into()],
                link_cost: 10,
                accepts_same_route: true,
                accepts_disposition_ranges: true,
                accepts_credit_acks: true,
            })),
        },
        Frame {
            kind: Some(Kind::Transfer(Transfer {
                delivery_id: 42,
                address: "queue.a".into(),
                message: message.clone(),
                settled: false,
                priority: 4,
                ingress_router: "Router.A".into(),
                trace: vec!["Router.A".into()],
                trace_context: None,
                more: false,
                aborted: false,
                hops_left: 32,
                ingress_sequence: 7_000_001,
                resend: true,
                same_route: false,
                destinations: Vec::new(),
            })),
        },
        Frame {
            kind: Some(Kind::Disposition(Disposition {
                delivery_id: 40,
                outcome: None,
                settled: true,
                last_delivery_id: 41,
            })),
        },
        Frame {
            kind: Some(Kind::Credit(Credit {
                address: "queue.a".into(),
                credit: 250,
                drain: false,
            })),
        },
    ]);
    let wire = batch.encode_to_vec();
    let back = Batch::decode(bytes::Bytes::from(wire)).expect("decode Batch");
    assert_eq!(back, batch);
    match &back.frames()[1].kind {
        Some(Kind::Transfer(t)) => assert_eq!(t.message, message),
        other => panic!("frame 1 is not a transfer: {other:?}"),
    }
}
