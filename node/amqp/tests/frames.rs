//! Frames: every performative and SASL frame round-trips through
//! `encode_frame`/`decode_frame` (all optional fields set, and none), and
//! malformed input fails with the spec's error condition, never a panic.

use bote_amqp::DeliveryTag;
use bote_amqp::codec::{self, Descriptor, Symbol, Value};
use bote_amqp::{
    AMQP_HEADER, AmqpError, Attach, Begin, Close, DeliveryState, Detach, Disposition, End, Flow,
    Frame, FrameBody, Open, Performative, ProtocolHeader, ReceiverSettleMode, Role, SASL_HEADER,
    SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
    SenderSettleMode, Source, TLS_HEADER, Target, TerminusDurability, TerminusExpiryPolicy,
    Transfer, condition, decode_frame, decode_protocol_header, decode_transfer,
    decode_transfer_via_value, encode_empty_frame, encode_frame, encode_protocol_header,
    encode_sasl_frame, encode_transfer, max_transfer_payload, transfer_frame_overhead,
    transfer_payload_lower_bound,
};
use bytes::{BufMut, Bytes, BytesMut};

const MAX: u32 = 1 << 20;

fn sym(s: &str) -> Symbol {
    Symbol::from(s)
}

fn syms(v: &[&str]) -> Option<Vec<Symbol>> {
    Some(v.iter().map(|s| sym(s)).collect())
}

fn props() -> Option<Vec<(Symbol, Value)>> {
    Some(vec![
        (sym("product"), Value::String("bote".into())),
        (sym("version"), Value::Uint(7)),
    ])
}

fn error() -> AmqpError {
    AmqpError {
        condition: sym(condition::RESOURCE_LIMIT_EXCEEDED),
        description: Some("too many links".into()),
        info: props(),
    }
}

fn full_source() -> Source {
    Source {
        address: Some("queue/a".into()),
        durable: TerminusDurability::UnsettledState,
        expiry_policy: TerminusExpiryPolicy::Never,
        timeout: 30,
        dynamic: true,
        dynamic_node_properties: props(),
        distribution_mode: Some(sym("copy")),
        filter: Some(vec![(
            sym("apache.org:selector-filter:string"),
            Value::described(
                Descriptor::Symbol(sym("apache.org:selector-filter:string")),
                Value::String("color = 'red'".into()),
            ),
        )]),
        default_outcome: Some(DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: false,
            message_annotations: None,
        }),
        outcomes: syms(&["amqp:accepted:list", "amqp:rejected:list"]),
        capabilities: syms(&["queue"]),
    }
}

fn full_target() -> Target {
    Target {
        coordinator: false,
        address: Some("topic/b".into()),
        durable: TerminusDurability::Configuration,
        expiry_policy: TerminusExpiryPolicy::LinkDetach,
        timeout: 5,
        dynamic: true,
        dynamic_node_properties: props(),
        capabilities: syms(&["topic", "shared"]),
    }
}

fn all_states() -> Vec<DeliveryState> {
    vec![
        DeliveryState::Received {
            section_number: 2,
            section_offset: 1 << 40,
        },
        DeliveryState::Accepted,
        DeliveryState::Rejected {
            error: Some(error()),
        },
        DeliveryState::Rejected { error: None },
        DeliveryState::Released,
        DeliveryState::Modified {
            delivery_failed: true,
            undeliverable_here: true,
            message_annotations: props(),
        },
        DeliveryState::Modified {
            delivery_failed: false,
            undeliverable_here: false,
            message_annotations: None,
        },
    ]
}

fn full_performatives() -> Vec<Performative> {
    let mut v = vec![
        Performative::Open(Box::new(Open {
            container_id: "router-a".into(),
            hostname: Some("example.org".into()),
            max_frame_size: 65536,
            channel_max: 255,
            idle_time_out: Some(30_000),
            outgoing_locales: syms(&["en-US"]),
            incoming_locales: syms(&["en-US", "de-DE"]),
            offered_capabilities: syms(&["ANONYMOUS-RELAY"]),
            desired_capabilities: syms(&["qd.streaming-links"]),
            properties: props(),
        })),
        Performative::Begin(Begin {
            remote_channel: Some(3),
            next_outgoing_id: 1,
            incoming_window: 5000,
            outgoing_window: 6000,
            handle_max: 1023,
            offered_capabilities: syms(&["a"]),
            desired_capabilities: syms(&["b"]),
            properties: props(),
        }),
        Performative::Attach(Box::new(Attach {
            name: "link-1".into(),
            handle: 7,
            role: Role::Receiver,
            snd_settle_mode: SenderSettleMode::Unsettled,
            rcv_settle_mode: ReceiverSettleMode::Second,
            source: Some(full_source()),
            target: Some(full_target()),
            unsettled: Some(vec![(
                Value::Binary(Bytes::from_static(b"tag1")),
                DeliveryState::Accepted.to_value(),
            )]),
            incomplete_unsettled: true,
            initial_delivery_count: Some(42),
            max_message_size: Some(1 << 33),
            offered_capabilities: syms(&["x"]),
            desired_capabilities: syms(&["y"]),
            properties: props(),
        })),
        // A transaction controller's link: the target is a coordinator.
        Performative::Attach(Box::new(Attach {
            name: "txn-ctrl".into(),
            handle: 8,
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(full_source()),
            target: Some(Target {
                coordinator: true,
                capabilities: syms(&["amqp:local-transactions"]),
                ..Target::default()
            }),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        })),
        Performative::Flow(Flow {
            next_incoming_id: Some(10),
            incoming_window: 100,
            next_outgoing_id: 11,
            outgoing_window: 200,
            handle: Some(7),
            delivery_count: Some(300),
            link_credit: Some(250),
            available: Some(4),
            drain: true,
            echo: true,
            properties: props(),
        }),
        Performative::Detach(Detach {
            handle: 7,
            closed: true,
            error: Some(error()),
        }),
        Performative::End(End {
            error: Some(error()),
        }),
        Performative::Close(Close {
            error: Some(error()),
        }),
    ];
    for state in all_states() {
        v.push(Performative::Transfer(Transfer {
            handle: 70_000,
            delivery_id: Some(123_456),
            delivery_tag: Some(DeliveryTag::from(b"\x00\x01\x02\x03")),
            message_format: Some(0),
            settled: Some(false),
            more: true,
            rcv_settle_mode: Some(ReceiverSettleMode::Second),
            state: Some(state.clone()),
            resume: true,
            aborted: true,
            batchable: true,
        }));
        v.push(Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 5,
            last: Some(9),
            settled: true,
            state: Some(state),
            batchable: true,
        }));
    }
    v
}

fn minimal_performatives() -> Vec<Performative> {
    vec![
        Performative::Open(Box::new(Open {
            container_id: "c".into(),
            ..Open::default()
        })),
        Performative::Begin(Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 0,
            outgoing_window: 0,
            handle_max: u32::MAX,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }),
        Performative::Attach(Box::new(Attach {
            name: String::new(),
            handle: 0,
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: None,
            target: None,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        })),
        Performative::Attach(Box::new(Attach {
            name: "defaults".into(),
            handle: 1,
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Settled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Source::default()),
            target: Some(Target::default()),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: Some(vec![]),
            desired_capabilities: None,
            properties: Some(vec![]),
        })),
        Performative::Flow(Flow::default()),
        Performative::Transfer(Transfer::default()),
        Performative::Disposition(Disposition {
            role: Role::Sender,
            first: 0,
            last: None,
            settled: false,
            state: None,
            batchable: false,
        }),
        Performative::Detach(Detach::default()),
        Performative::End(End::default()),
        Performative::Close(Close::default()),
    ]
}

fn sasl_frames() -> Vec<SaslFrame> {
    vec![
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: vec![sym("PLAIN"), sym("ANONYMOUS"), sym("EXTERNAL")],
        }),
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: vec![sym("ANONYMOUS")],
        }),
        SaslFrame::Init(SaslInit {
            mechanism: sym("PLAIN"),
            initial_response: Some(Bytes::from_static(b"\0user\0secret")),
            hostname: Some("example.org".into()),
        }),
        SaslFrame::Init(SaslInit {
            mechanism: sym("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        }),
        SaslFrame::Challenge(SaslChallenge {
            challenge: Bytes::from_static(b"r=abc,s=salt,i=4096"),
        }),
        SaslFrame::Response(SaslResponse {
            response: Bytes::from_static(b"c=biws,r=abc,p=proof"),
        }),
        SaslFrame::Outcome(SaslOutcome {
            code: SaslCode::Ok,
            additional_data: Some(Bytes::from_static(b"v=sig")),
        }),
        SaslFrame::Outcome(SaslOutcome {
            code: SaslCode::SysTemp,
            additional_data: None,
        }),
    ]
}

fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = decode_frame(&mut buf, MAX)
        .expect("frame decodes")
        .expect("frame is complete");
    assert!(buf.is_empty(), "decode_frame consumed the whole frame");
    frame
}

/// A frame around a hand-made body.
fn raw_frame(frame_type: u8, channel: u16, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(8 + body.len() as u32);
    out.put_u8(2);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_slice(body);
    out
}

fn expect_error(bytes: &[u8], max: u32, want: &str) -> String {
    let mut buf = BytesMut::from(bytes);
    match decode_frame(&mut buf, max) {
        Err(e) => {
            assert_eq!(e.condition, want, "condition of {e}");
            e.description
        }
        Ok(other) => panic!("expected {want}, got {other:?}"),
    }
}

#[test]
fn every_performative_with_all_fields_set_round_trips() {
    for p in full_performatives() {
        let payload: &[u8] = if matches!(p, Performative::Transfer(_)) {
            b"message bytes"
        } else {
            b""
        };
        let mut out = BytesMut::new();
        encode_frame(9, &p, payload, &mut out);
        let frame = decode_one(&out);
        assert_eq!(frame.channel, 9);
        assert_eq!(frame.body, FrameBody::Amqp(p.clone()), "{}", p.name());
        assert_eq!(frame.payload, payload);
    }
}

#[test]
fn every_performative_with_no_optional_fields_round_trips() {
    for p in minimal_performatives() {
        let mut out = BytesMut::new();
        encode_frame(0, &p, b"", &mut out);
        let frame = decode_one(&out);
        assert_eq!(frame.body, FrameBody::Amqp(p.clone()), "{}", p.name());
        assert!(frame.payload.is_empty());
    }
}

#[test]
fn every_sasl_frame_round_trips_as_frame_type_one() {
    for s in sasl_frames() {
        let mut out = BytesMut::new();
        encode_sasl_frame(&s, &mut out);
        assert_eq!(out[5], 1, "frame type of {}", s.name());
        let frame = decode_one(&out);
        assert_eq!(frame.body, FrameBody::Sasl(s.clone()), "{}", s.name());
    }
}

#[test]
fn encoding_leaves_off_trailing_nulls_and_defaults() {
    // close with no error: descriptor 0x18 and list0.
    let mut out = BytesMut::new();
    encode_frame(0, &Performative::Close(Close::default()), b"", &mut out);
    assert_eq!(&out[..], &[0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x18, 0x45]);
    // flow with only the mandatory fields: 4 fields, the first null.
    let flow = Performative::Flow(Flow {
        incoming_window: 1,
        next_outgoing_id: 2,
        outgoing_window: 3,
        ..Flow::default()
    });
    let mut out = BytesMut::new();
    encode_frame(0, &flow, b"", &mut out);
    assert_eq!(
        &out[8..],
        &[
            0x00, 0x53, 0x13, 0xc0, 0x08, 0x04, 0x40, 0x52, 1, 0x52, 2, 0x52, 3
        ]
    );
}

#[test]
fn a_typical_transfer_is_encoded_compactly_and_its_payload_is_a_slice_of_the_input() {
    let t = Transfer {
        handle: 0,
        delivery_id: Some(5),
        delivery_tag: Some(DeliveryTag::from(&[0, 0, 0, 5])),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    };
    let mut out = BytesMut::new();
    encode_frame(1, &Performative::Transfer(t.clone()), b"hello", &mut out);
    assert_eq!(
        &out[8..],
        &[
            0x00, 0x53, 0x14, 0xc0, 0x0c, 0x05, 0x43, 0x52, 5, 0xa0, 4, 0, 0, 0, 5, 0x43, 0x42,
            b'h', b'e', b'l', b'l', b'o'
        ]
    );
    assert_eq!(transfer_frame_overhead(&t), out.len() - 5);
    assert_eq!(max_transfer_payload(512, &t), 512 - (out.len() - 5));
    let mut buf = out.clone();
    let base = buf.as_ptr() as usize;
    let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
    assert_eq!(frame.body, FrameBody::Amqp(Performative::Transfer(t)));
    assert_eq!(frame.payload, &b"hello"[..]);
    assert_eq!(frame.payload.as_ptr() as usize, base + out.len() - 5);
}

#[test]
fn hand_written_transfer_decode_agrees_with_the_value_path() {
    for p in full_performatives()
        .into_iter()
        .chain(minimal_performatives())
    {
        let Performative::Transfer(t) = p else {
            continue;
        };
        // Our own hand-written encoding.
        let mut fast = BytesMut::new();
        encode_transfer(&t, &mut fast);
        // The general codec's encoding of the same performative.
        let mut general = BytesMut::new();
        codec::encode(&Performative::Transfer(t.clone()).to_value(), &mut general);
        assert_eq!(fast, general, "hand-written and codec encodings agree");
        let fast = fast.freeze();
        let (decoded, n) = decode_transfer(&fast).unwrap();
        assert_eq!(n, fast.len());
        assert_eq!(decoded, t);
        assert_eq!(decode_transfer_via_value(&fast).unwrap(), t);
    }
}

#[test]
fn transfer_fields_in_non_canonical_forms_are_accepted() {
    // handle as uint (0x70), delivery-id as uint, tag as vbin32, settled as
    // 0x56 0x01, more as 0x56 0x00, rcv-settle-mode null, then an extra
    // unknown trailing field in a list32.
    let fields: &[u8] = &[
        0x70, 0, 0, 0, 1, 0x70, 0, 0, 1, 0, 0xb0, 0, 0, 0, 2, 0xab, 0xcd, 0x40, 0x56, 0x01, 0x56,
        0x00, 0x40, 0x40, 0x40, 0x40, 0x42, 0x40,
    ];
    let mut body = vec![0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x14, 0xd0];
    body.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    body.extend_from_slice(&12u32.to_be_bytes());
    body.extend_from_slice(fields);
    body.extend_from_slice(b"payload");
    let frame = decode_one(&raw_frame(0, 0, &body));
    assert_eq!(
        frame.body,
        FrameBody::Amqp(Performative::Transfer(Transfer {
            handle: 1,
            delivery_id: Some(256),
            delivery_tag: Some(DeliveryTag::from(&[0xab, 0xcd])),
            settled: Some(true),
            ..Transfer::default()
        }))
    );
    assert_eq!(frame.payload, &b"payload"[..]);
}

#[test]
fn symbolic_descriptors_are_accepted() {
    let v = Value::described(
        Descriptor::Symbol(sym("amqp:detach:list")),
        Value::List(vec![Value::Uint(4), Value::Bool(true)]),
    );
    let mut body = BytesMut::new();
    codec::encode(&v, &mut body);
    let frame = decode_one(&raw_frame(0, 0, &body));
    assert_eq!(
        frame.body,
        FrameBody::Amqp(Performative::Detach(Detach {
            handle: 4,
            closed: true,
            error: None
        }))
    );
}

#[test]
fn a_multiple_field_accepts_a_single_symbol_as_well_as_an_array() {
    let v = Value::described(
        Descriptor::Code(0x10),
        Value::List(vec![
            Value::String("c".into()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Symbol(sym("ANONYMOUS-RELAY")),
        ]),
    );
    let Performative::Open(open) = Performative::from_value(v).unwrap() else {
        panic!("not an open");
    };
    assert_eq!(open.offered_capabilities, syms(&["ANONYMOUS-RELAY"]));
    assert_eq!(
        open.max_frame_size,
        u32::MAX,
        "absent field takes its default"
    );
    assert_eq!(open.channel_max, u16::MAX);
}

#[test]
fn empty_frame_is_a_heartbeat() {
    let mut out = BytesMut::new();
    encode_empty_frame(&mut out);
    assert_eq!(&out[..], &[0, 0, 0, 8, 2, 0, 0, 0]);
    let frame = decode_one(&out);
    assert_eq!(frame.body, FrameBody::Empty);
    // A larger doff with padding is still an empty frame.
    let mut padded = BytesMut::from(&[0, 0, 0, 12, 3, 0, 0, 5, 0xff, 0xff, 0xff, 0xff][..]);
    let frame = decode_frame(&mut padded, MAX).unwrap().unwrap();
    assert_eq!(frame.channel, 5);
    assert_eq!(frame.body, FrameBody::Empty);
}

#[test]
fn truncated_frames_decode_to_none_until_the_last_byte_arrives() {
    let mut whole = BytesMut::new();
    encode_frame(2, &full_performatives()[2], b"", &mut whole);
    encode_empty_frame(&mut whole);
    let first_len = whole.len() - 8;
    let mut buf = BytesMut::new();
    for (i, b) in whole.iter().enumerate() {
        let got = decode_frame(&mut buf, MAX).unwrap();
        assert!(got.is_none(), "no frame before byte {i}");
        buf.put_u8(*b);
        if i + 1 == first_len {
            let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
            assert_eq!(frame.body, FrameBody::Amqp(full_performatives()[2].clone()));
            assert!(buf.is_empty());
        }
    }
    let frame = decode_frame(&mut buf, MAX).unwrap().unwrap();
    assert_eq!(frame.body, FrameBody::Empty);
}

#[test]
fn frame_larger_than_max_frame_size_is_a_framing_error_naming_both_sizes() {
    let mut out = BytesMut::new();
    encode_frame(0, &full_performatives()[0], b"", &mut out);
    let size = out.len();
    // Only the header has arrived: the error comes at once.
    let msg = expect_error(
        &out[..8],
        512.min(size as u32 - 1),
        condition::FRAMING_ERROR,
    );
    assert!(msg.contains(&size.to_string()), "{msg}");
    assert!(msg.contains(&(512.min(size - 1)).to_string()), "{msg}");
}

#[test]
fn frame_header_violations_are_framing_errors() {
    // size below the header.
    expect_error(&[0, 0, 0, 7, 2, 0, 0, 0], MAX, condition::FRAMING_ERROR);
    // doff < 2.
    let msg = expect_error(&[0, 0, 0, 8, 1, 0, 0, 0], MAX, condition::FRAMING_ERROR);
    assert!(msg.contains("offset 1"), "{msg}");
    expect_error(&[0, 0, 0, 8, 0, 0, 0, 0], MAX, condition::FRAMING_ERROR);
    // doff beyond the frame.
    expect_error(&[0, 0, 0, 8, 3, 0, 0, 0], MAX, condition::FRAMING_ERROR);
    // unknown frame type.
    let msg = expect_error(&[0, 0, 0, 8, 2, 7, 0, 0], MAX, condition::FRAMING_ERROR);
    assert!(msg.contains("0x07"), "{msg}");
}

#[test]
fn unknown_descriptor_is_a_decode_error_naming_it() {
    let v = Value::described(Descriptor::Code(0x77), Value::List(vec![]));
    let mut body = BytesMut::new();
    codec::encode(&v, &mut body);
    let msg = expect_error(&raw_frame(0, 0, &body), MAX, condition::DECODE_ERROR);
    assert!(msg.contains("0x77"), "{msg}");
    let msg = expect_error(&raw_frame(1, 0, &body), MAX, condition::DECODE_ERROR);
    assert!(msg.contains("0x77"), "{msg}");
    let v = Value::described(
        Descriptor::Symbol(sym("bote:nonsense")),
        Value::List(vec![]),
    );
    let mut body = BytesMut::new();
    codec::encode(&v, &mut body);
    let msg = expect_error(&raw_frame(0, 0, &body), MAX, condition::DECODE_ERROR);
    assert!(msg.contains("bote:nonsense"), "{msg}");
}

#[test]
fn missing_mandatory_fields_are_decode_errors_naming_performative_and_field() {
    let cases: &[(u64, Vec<Value>, &str, &str)] = &[
        (0x10, vec![], "open", "container-id"),
        (
            0x11,
            vec![Value::Null, Value::Uint(0)],
            "begin",
            "incoming-window",
        ),
        (
            0x12,
            vec![Value::String("l".into()), Value::Uint(0)],
            "attach",
            "role",
        ),
        (0x13, vec![], "flow", "incoming-window"),
        (0x14, vec![], "transfer", "handle"),
        (0x15, vec![Value::Bool(true)], "disposition", "first"),
        (0x16, vec![], "detach", "handle"),
        (0x41, vec![], "sasl-init", "mechanism"),
        (0x44, vec![], "sasl-outcome", "code"),
    ];
    for (code, fields, name, field) in cases {
        let v = Value::described(Descriptor::Code(*code), Value::List(fields.clone()));
        let mut body = BytesMut::new();
        codec::encode(&v, &mut body);
        let frame_type = if *code >= 0x40 { 1 } else { 0 };
        let msg = expect_error(
            &raw_frame(frame_type, 0, &body),
            MAX,
            condition::DECODE_ERROR,
        );
        assert!(
            msg.contains(name) && msg.contains(field),
            "{name}.{field}: {msg}"
        );
    }
}

#[test]
fn wrongly_typed_fields_are_decode_errors() {
    // attach.handle as a string; transfer.delivery-tag as a string.
    let attach = Value::described(
        Descriptor::Code(0x12),
        Value::List(vec![
            Value::String("l".into()),
            Value::String("0".into()),
            Value::Bool(false),
        ]),
    );
    let transfer = Value::described(
        Descriptor::Code(0x14),
        Value::List(vec![
            Value::Uint(0),
            Value::Uint(0),
            Value::String("t".into()),
        ]),
    );
    let not_a_list = Value::described(Descriptor::Code(0x17), Value::Uint(3));
    for (v, needle) in [
        (attach, "handle"),
        (transfer, "delivery-tag"),
        (not_a_list, "end"),
    ] {
        let mut body = BytesMut::new();
        codec::encode(&v, &mut body);
        let msg = expect_error(&raw_frame(0, 0, &body), MAX, condition::DECODE_ERROR);
        assert!(msg.contains(needle), "{msg}");
    }
}

#[test]
fn body_garbage_is_a_decode_error() {
    for body in [
        &[0xff, 0xff, 0xff][..],
        &[0x00, 0x53][..],
        &[0x00, 0x53, 0x14][..],
        &[0x00, 0x53, 0x14, 0xc0, 0x10, 0x02, 0x43][..],
        &[0x00, 0x53, 0x14, 0xd0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1][..],
        &[0x00, 0x53, 0x14, 0xc0, 0x00, 0x01][..],
        &[0x00, 0x53, 0x14, 0xc0, 0x03, 0x02, 0x43, 0xa0][..],
        &[0x00, 0x53, 0x10, 0xc0, 0x03, 0x01, 0xa1, 0x05][..],
        &[0x40][..],
    ] {
        expect_error(&raw_frame(0, 0, body), MAX, condition::DECODE_ERROR);
    }
    expect_error(&raw_frame(1, 0, &[0x13]), MAX, condition::DECODE_ERROR);
    // An empty SASL frame has no body to act on.
    expect_error(&raw_frame(1, 0, &[]), MAX, condition::DECODE_ERROR);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic pseudo-random walk over frame-shaped inputs.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut samples: Vec<BytesMut> = Vec::new();
    for p in full_performatives() {
        let mut out = BytesMut::new();
        encode_frame(0, &p, b"xyz", &mut out);
        samples.push(out);
    }
    for _ in 0..20_000 {
        let base = &samples[(next() % samples.len() as u64) as usize];
        let mut buf = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = 8 + (next() as usize % (buf.len() - 8));
            buf[i] = next() as u8;
        }
        let _ = decode_frame(&mut buf, MAX);
    }
}

#[test]
fn protocol_headers_round_trip() {
    for (h, bytes) in [
        (ProtocolHeader::Amqp, AMQP_HEADER),
        (ProtocolHeader::Sasl, SASL_HEADER),
        (ProtocolHeader::Tls, TLS_HEADER),
    ] {
        let mut out = BytesMut::new();
        encode_protocol_header(h, &mut out);
        assert_eq!(&out[..], &bytes);
        assert_eq!(decode_protocol_header(&out).unwrap(), Some(h));
        assert_eq!(decode_protocol_header(&out[..5]).unwrap(), None);
    }
    assert_eq!(decode_protocol_header(b"").unwrap(), None);
}

#[test]
fn wrong_protocol_header_is_a_framing_error_naming_what_was_received() {
    let e = decode_protocol_header(b"HTTP/1.1").unwrap_err();
    assert_eq!(e.condition, condition::FRAMING_ERROR);
    assert!(e.description.contains("HTTP/1.1"), "{e}");
    // Known early: the first bytes already do not spell AMQP.
    assert!(decode_protocol_header(b"GE").is_err());
    let e = decode_protocol_header(b"AMQP\x00\x00\x09\x01").unwrap_err();
    assert!(e.description.contains("0.9.1"), "{e}");
    let e = decode_protocol_header(b"AMQP\x01\x01\x00\x00").unwrap_err();
    assert_eq!(e.condition, condition::FRAMING_ERROR);
}

#[test]
fn frame_error_becomes_an_amqp_error_with_its_condition() {
    let e = decode_protocol_header(b"HTTP/1.1").unwrap_err();
    let a = AmqpError::from(e.clone());
    assert_eq!(a.condition.as_str(), condition::FRAMING_ERROR);
    assert_eq!(a.description.as_deref(), Some(e.description.as_str()));
}

#[test]
fn max_transfer_payload_fills_a_frame_exactly_to_max_frame_size() {
    for state in [
        None,
        Some(DeliveryState::Accepted),
        Some(all_states()[2].clone()),
    ] {
        let first = Transfer {
            handle: 300,
            delivery_id: Some(70_000),
            delivery_tag: Some(DeliveryTag::from(&[7; 32])),
            message_format: Some(0),
            settled: Some(false),
            more: true,
            state,
            ..Transfer::default()
        };
        let last = Transfer {
            more: false,
            ..first.clone()
        };
        // `more: true` is an upper bound for every frame of the delivery.
        assert!(transfer_frame_overhead(&first) >= transfer_frame_overhead(&last));
        for max in [512u32, 4096, 65536] {
            let room = max_transfer_payload(max, &first);
            let payload = vec![0xab; room];
            let mut out = BytesMut::new();
            encode_frame(
                0,
                &Performative::Transfer(first.clone()),
                &payload,
                &mut out,
            );
            assert_eq!(out.len(), max as usize);
            let frame = decode_frame(&mut out, max).unwrap().unwrap();
            assert_eq!(frame.payload.len(), room);
        }
    }
    assert_eq!(max_transfer_payload(8, &Transfer::default()), 0);
}

mod transfer_properties {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = Option<DeliveryState>> {
        prop_oneof![
            Just(None),
            Just(Some(DeliveryState::Accepted)),
            Just(Some(DeliveryState::Released)),
            (any::<u32>(), any::<u64>()).prop_map(|(n, o)| Some(DeliveryState::Received {
                section_number: n,
                section_offset: o,
            })),
            (any::<bool>(), any::<bool>()).prop_map(|(f, u)| Some(DeliveryState::Modified {
                delivery_failed: f,
                undeliverable_here: u,
                message_annotations: None,
            })),
        ]
    }

    fn any_transfer() -> impl Strategy<Value = Transfer> {
        (
            (
                any::<u32>(),
                any::<Option<u32>>(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=32)),
                any::<Option<u32>>(),
                any::<Option<bool>>(),
                any::<bool>(),
            ),
            (
                proptest::option::of(prop_oneof![
                    Just(ReceiverSettleMode::First),
                    Just(ReceiverSettleMode::Second)
                ]),
                any_state(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (handle, delivery_id, tag, message_format, settled, more),
                    (rsm, state, resume, aborted, batchable),
                )| {
                    Transfer {
                        handle,
                        delivery_id,
                        delivery_tag: tag.map(DeliveryTag::from),
                        message_format,
                        settled,
                        more,
                        rcv_settle_mode: rsm,
                        state,
                        resume,
                        aborted,
                        batchable,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_transfer_round_trips_and_matches_the_general_codec(
            t in any_transfer(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut fast = BytesMut::new();
            encode_transfer(&t, &mut fast);
            let mut general = BytesMut::new();
            codec::encode(&Performative::Transfer(t.clone()).to_value(), &mut general);
            prop_assert_eq!(&fast, &general);

            let mut out = BytesMut::new();
            encode_frame(1, &Performative::Transfer(t.clone()), &payload, &mut out);
            prop_assert_eq!(out.len(), transfer_frame_overhead(&t) + payload.len());
            let frame = decode_frame(&mut out, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(frame.body, FrameBody::Amqp(Performative::Transfer(t)));
            prop_assert_eq!(&frame.payload[..], &payload[..]);
        }

        #[test]
        fn the_cheap_payload_bound_never_exceeds_the_exact_room(
            t in any_transfer(),
            max in 0u32..70_000,
        ) {
            let exact = max_transfer_payload(max, &t);
            match transfer_payload_lower_bound(max, &t) {
                Some(bound) => {
                    prop_assert!(t.state.is_none());
                    prop_assert!(bound <= exact, "bound {} > exact {}", bound, exact);
                    // Tight enough to take the fast path for small messages.
                    prop_assert!(exact - bound <= 48, "bound {} far below {}", bound, exact);
                }
                None => prop_assert!(t.state.is_some()),
            }
        }

        #[test]
        fn truncating_a_transfer_frame_anywhere_never_panics(
            t in any_transfer(),
            cut in any::<usize>(),
            flip in any::<u8>(),
        ) {
            let mut out = BytesMut::new();
            encode_frame(0, &Performative::Transfer(t), b"", &mut out);
            let len = out.len();
            let at = 8 + cut % (len - 8);
            out[at] ^= flip;
            let _ = decode_frame(&mut out.clone(), u32::MAX);
            // Shrink the declared size so the body ends early.
            let mut short = out.clone();
            short.truncate(at.max(8));
            let size = short.len() as u32;
            short[..4].copy_from_slice(&size.to_be_bytes());
            let _ = decode_frame(&mut short, u32::MAX);
        }
    }
}
