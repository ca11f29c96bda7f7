//! Specification of the zero-copy message view (`bote_amqp::message`):
//! where sections are found, what the readers return, what a splice keeps
//! byte for byte, and how malformed input fails.

use bote_amqp::{
    DeliveryAnnotations, MessageAnnotations, MessageBuilder, MessageId, MessageView, Problem,
    SectionKind, encode_message_annotations, primitive,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn string(s: &str) -> Vec<u8> {
    primitive::to_vec(|o| primitive::string(o, s))
}

fn view(bytes: Bytes) -> MessageView {
    MessageView::parse(bytes).expect("message parses")
}

fn full_message() -> MessageBuilder {
    MessageBuilder::new()
        .durable(true)
        .priority(7)
        .ttl(30_000)
        .first_acquirer(true)
        .delivery_count(2)
        .delivery_annotation("x-opt-da", string("da"))
        .message_annotation("x-opt-qd.ingress", string("0/router-A"))
        .message_annotation(
            "x-opt-custom",
            primitive::to_vec(|o| primitive::ulong(o, 99)),
        )
        .message_id(MessageId::String("id-1"))
        .user_id(b"alice")
        .to("queue/orders")
        .subject("new-order")
        .reply_to("replies/alice")
        .correlation_id(MessageId::Ulong(42))
        .content_type("application/json")
        .absolute_expiry_time(1_800_000_000_000)
        .creation_time(1_700_000_000_000)
        .group_id("group-1")
        .application_property_str("traceparent", "00-abc-def-01")
        .data(b"{\"order\":1}")
        .footer(
            "x-opt-sig",
            primitive::to_vec(|o| primitive::binary(o, b"sig")),
        )
}

/// The 113-byte message of the benchmarks: header, properties with `to`, data.
fn small_message() -> Bytes {
    MessageBuilder::new()
        .durable(true)
        .to("examples")
        .data(&[b'x'; 83])
        .build()
}

#[test]
fn every_section_is_located_in_spec_order_and_the_ranges_tile_the_message() {
    let bytes = full_message().build();
    let v = view(bytes.clone());
    let kinds = [
        SectionKind::Header,
        SectionKind::DeliveryAnnotations,
        SectionKind::MessageAnnotations,
        SectionKind::Properties,
        SectionKind::ApplicationProperties,
        SectionKind::Data,
        SectionKind::Footer,
    ];
    let mut pos = 0;
    for kind in kinds {
        let range = v.section(kind).unwrap_or_else(|| panic!("{kind:?} found"));
        assert_eq!(range.start, pos, "{kind:?} starts where the previous ended");
        assert_eq!(
            &bytes[range.start..range.start + 3],
            &[0x00, 0x53, kind.code() as u8]
        );
        pos = range.end;
    }
    assert_eq!(pos, bytes.len());
    assert_eq!(v.section(SectionKind::AmqpValue), None);
    let body = v.body().expect("body");
    assert_eq!(body.kind(), SectionKind::Data);
    assert_eq!(body.section_count(), 1);
    assert_eq!(
        v.bare_message_start(),
        v.section(SectionKind::Properties).unwrap().start
    );
}

#[test]
fn a_message_with_only_a_body_is_all_bare_message() {
    let bytes = MessageBuilder::new().amqp_value_str("hello").build();
    let v = view(bytes.clone());
    for kind in [
        SectionKind::Header,
        SectionKind::DeliveryAnnotations,
        SectionKind::MessageAnnotations,
        SectionKind::Properties,
        SectionKind::ApplicationProperties,
        SectionKind::Footer,
    ] {
        assert_eq!(v.section(kind), None, "{kind:?} absent");
    }
    assert_eq!(v.bare_message_start(), 0);
    assert_eq!(v.amqp_value().unwrap().as_string().unwrap(), "hello");
    assert_eq!(v.to().unwrap(), None);
    assert_eq!(v.priority().unwrap(), 4);
    assert!(!v.durable().unwrap());
}

#[test]
fn several_data_sections_form_one_body_read_in_order() {
    let bytes = MessageBuilder::new()
        .to("q")
        .data(b"one")
        .data(b"")
        .data(&[7u8; 300])
        .build();
    let v = view(bytes);
    let body = v.body().unwrap();
    assert_eq!(body.kind(), SectionKind::Data);
    assert_eq!(body.section_count(), 3);
    let parts: Vec<Bytes> = v.data_sections().collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(&parts[0][..], b"one");
    assert_eq!(&parts[1][..], b"");
    assert_eq!(&parts[2][..], &[7u8; 300][..]);
}

#[test]
fn several_amqp_sequence_sections_form_one_body() {
    let one = primitive::to_vec(|o| primitive::uint(o, 1));
    let bytes = MessageBuilder::new()
        .amqp_sequence(&[&one])
        .amqp_sequence(&[&one, &one])
        .build();
    let body = view(bytes).body().unwrap();
    assert_eq!(body.kind(), SectionKind::AmqpSequence);
    assert_eq!(body.section_count(), 2);
}

#[test]
fn symbolic_and_ulong_descriptors_are_recognised() {
    let mut m = Vec::new();
    // header with a sym8 descriptor: [durable=true, priority=9]
    m.push(0x00);
    primitive::symbol(&mut m, "amqp:header:list");
    m.extend_from_slice(&[0xc0, 0x04, 0x02, 0x41, 0x50, 0x09]);
    // properties with an 8-byte ulong descriptor: [null, null, to="dest"]
    m.extend_from_slice(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x73]);
    m.extend_from_slice(&[0xc0, 0x09, 0x03, 0x40, 0x40, 0xa1, 0x04]);
    m.extend_from_slice(b"dest");
    // data with a sym32 descriptor
    m.push(0x00);
    m.push(0xb3);
    m.extend_from_slice(&16u32.to_be_bytes());
    m.extend_from_slice(b"amqp:data:binary");
    m.extend_from_slice(&[0xa0, 0x02, b'h', b'i']);
    // amqp:amqp-value:* is not allowed after data, but a footer by symbol is
    m.push(0x00);
    primitive::symbol(&mut m, "amqp:footer:map");
    m.extend_from_slice(&[0xc1, 0x01, 0x00]);

    let v = view(Bytes::from(m));
    assert!(v.durable().unwrap());
    assert_eq!(v.priority().unwrap(), 9);
    assert_eq!(v.to().unwrap(), Some("dest"));
    assert_eq!(v.data_sections().next().unwrap(), Bytes::from_static(b"hi"));
    assert!(v.section(SectionKind::Footer).is_some());
}

#[test]
fn header_readers_return_the_fields_or_the_spec_defaults() {
    let v = view(full_message().build());
    assert!(v.durable().unwrap());
    assert_eq!(v.priority().unwrap(), 7);
    assert_eq!(v.ttl().unwrap(), Some(30_000));
    assert!(v.first_acquirer().unwrap());
    assert_eq!(v.delivery_count().unwrap(), 2);

    // an empty header list and a header with only durable
    for bytes in [
        MessageBuilder::new().data(b"x").build(),
        MessageBuilder::new().durable(false).data(b"x").build(),
    ] {
        let v = view(bytes);
        assert!(!v.durable().unwrap());
        assert_eq!(v.priority().unwrap(), 4);
        assert_eq!(v.ttl().unwrap(), None);
        assert!(!v.first_acquirer().unwrap());
        assert_eq!(v.delivery_count().unwrap(), 0);
    }
}

#[test]
fn property_readers_return_each_field_borrowed_from_the_buffer() {
    let bytes = full_message().build();
    let v = view(bytes.clone());
    assert_eq!(v.message_id().unwrap(), Some(MessageId::String("id-1")));
    assert_eq!(v.user_id().unwrap(), Some(&b"alice"[..]));
    let to = v.to().unwrap().unwrap();
    assert_eq!(to, "queue/orders");
    let range = bytes.as_ptr_range();
    assert!(
        range.contains(&to.as_ptr()),
        "`to` borrows the message bytes"
    );
    assert_eq!(v.subject().unwrap(), Some("new-order"));
    assert_eq!(v.reply_to().unwrap(), Some("replies/alice"));
    assert_eq!(v.correlation_id().unwrap(), Some(MessageId::Ulong(42)));
    assert_eq!(v.content_type().unwrap(), Some("application/json"));
    assert_eq!(v.content_encoding().unwrap(), None);
    assert_eq!(v.absolute_expiry_time().unwrap(), Some(1_800_000_000_000));
    assert_eq!(v.creation_time().unwrap(), Some(1_700_000_000_000));
    assert_eq!(v.group_id().unwrap(), Some("group-1"));
    assert_eq!(v.group_sequence().unwrap(), None);
    assert_eq!(v.reply_to_group_id().unwrap(), None);
}

#[test]
fn message_ids_of_every_allowed_type_are_read() {
    let uuid = [0x11u8; 16];
    let ids = [
        MessageId::Ulong(0),
        MessageId::Ulong(200),
        MessageId::Ulong(u64::MAX),
        MessageId::Uuid(uuid),
        MessageId::Binary(b"\x00\x01"),
        MessageId::String("abc"),
    ];
    for id in ids {
        let v = view(
            MessageBuilder::new()
                .message_id(id)
                .correlation_id(id)
                .data(b"")
                .build(),
        );
        assert_eq!(v.message_id().unwrap(), Some(id));
        assert_eq!(v.correlation_id().unwrap(), Some(id));
    }
}

#[test]
fn annotations_and_application_properties_are_looked_up_by_key() {
    let v = view(full_message().build());
    let ingress = v.message_annotation("x-opt-qd.ingress").unwrap().unwrap();
    assert_eq!(ingress.as_bytes(), &string("0/router-A")[..]);
    assert_eq!(ingress.as_string().unwrap(), "0/router-A");
    let custom = v.message_annotation("x-opt-custom").unwrap().unwrap();
    assert_eq!(custom.as_ulong().unwrap(), 99);
    assert_eq!(v.message_annotation("x-opt-qd.to").unwrap(), None);
    assert_eq!(v.message_annotations().count(), 2);
    assert_eq!(
        v.application_property("traceparent")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        "00-abc-def-01"
    );
    let (k, val) = v.delivery_annotations().next().unwrap().unwrap();
    assert_eq!(k.as_symbol().unwrap(), "x-opt-da");
    assert_eq!(val.as_string().unwrap(), "da");
    let (k, val) = v.footer().next().unwrap().unwrap();
    assert_eq!(k.as_symbol().unwrap(), "x-opt-sig");
    assert_eq!(val.as_binary().unwrap(), b"sig");
}

#[test]
fn an_annotation_holding_a_list_of_strings_is_read_item_by_item() {
    let trace = primitive::to_vec(|o| primitive::string_list(o, &["0/A", "0/B"]));
    let v = view(
        MessageBuilder::new()
            .message_annotation("x-opt-qd.trace", trace)
            .data(b"")
            .build(),
    );
    let list = v.message_annotation("x-opt-qd.trace").unwrap().unwrap();
    let hops: Vec<&str> = list
        .as_list()
        .unwrap()
        .map(|i| i.unwrap().as_string().unwrap())
        .collect();
    assert_eq!(hops, ["0/A", "0/B"]);
}

/// A message whose properties are a list32 (non-canonical for 3 short fields)
/// with a str32 `to`, and whose application-properties are a map32.
fn non_canonical_message() -> Bytes {
    let mut m = Vec::new();
    m.extend_from_slice(&[0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41]);
    // properties: list32 [null, null, str32 "q1"]
    let fields: &[u8] = &[0x40, 0x40, 0xb1, 0, 0, 0, 2, b'q', b'1'];
    m.extend_from_slice(&[0x00, 0x53, 0x73, 0xd0]);
    m.extend_from_slice(&(4 + fields.len() as u32).to_be_bytes());
    m.extend_from_slice(&3u32.to_be_bytes());
    m.extend_from_slice(fields);
    // application-properties: map32 {str8 "k": smallint 5}
    let entries: &[u8] = &[0xa1, 0x01, b'k', 0x54, 0x05];
    m.extend_from_slice(&[0x00, 0x53, 0x74, 0xd1]);
    m.extend_from_slice(&(4 + entries.len() as u32).to_be_bytes());
    m.extend_from_slice(&2u32.to_be_bytes());
    m.extend_from_slice(entries);
    // body: amqp-value as vbin32
    m.extend_from_slice(&[0x00, 0x53, 0x75, 0xb0, 0, 0, 0, 3, 1, 2, 3]);
    Bytes::from(m)
}

#[test]
fn splice_keeps_a_non_canonical_bare_message_byte_identical() {
    let bytes = non_canonical_message();
    let v = view(bytes.clone());
    assert_eq!(v.to().unwrap(), Some("q1"));
    let bare = bytes.slice(v.bare_message_start()..);
    let ingress = string("0/router-A");
    let entries = [("x-opt-qd.ingress", &ingress[..])];
    let out = v
        .splice(
            DeliveryAnnotations::Keep,
            &MessageAnnotations::Merge(&entries),
        )
        .unwrap();
    assert!(out.ends_with(&bare), "bare message forwarded byte for byte");
    let out_view = view(out.clone());
    assert_eq!(out_view.bare_message(), bare);
    assert_eq!(out_view.to().unwrap(), Some("q1"));
    assert_eq!(
        out_view
            .message_annotation("x-opt-qd.ingress")
            .unwrap()
            .unwrap()
            .as_string()
            .unwrap(),
        "0/router-A"
    );
    // header as received at the front
    assert_eq!(&out[..7], &bytes[..7]);
}

#[test]
fn splice_chunks_slice_a_one_mebibyte_body_without_copying() {
    let body = vec![0x5au8; 1 << 20];
    let bytes = MessageBuilder::new()
        .durable(true)
        .to("big")
        .data(&body)
        .build();
    let v = view(bytes.clone());
    let annotation = string("0/A");
    let entries = [("x-opt-qd.ingress", &annotation[..])];
    let chunks = v
        .splice_chunks(
            DeliveryAnnotations::Drop,
            &MessageAnnotations::Merge(&entries),
        )
        .unwrap();
    let start = v.bare_message_start();
    assert_eq!(
        chunks.bare.as_ptr(),
        bytes[start..].as_ptr(),
        "bare not copied"
    );
    assert_eq!(chunks.bare.len(), bytes.len() - start);
    assert_eq!(chunks.head, bytes.slice(..start));
    let joined = chunks.to_bytes();
    assert_eq!(
        joined,
        v.splice(
            DeliveryAnnotations::Drop,
            &MessageAnnotations::Merge(&entries)
        )
        .unwrap()
    );
    let out = view(joined);
    assert_eq!(out.data_sections().next().unwrap().len(), 1 << 20);
    assert_eq!(out.bare_message(), v.bare_message());
}

#[test]
fn splice_merge_overrides_a_received_key_and_keeps_the_others_in_order() {
    let v = view(
        MessageBuilder::new()
            .message_annotation("a", string("1"))
            .message_annotation("x-opt-qd.to", string("old"))
            .message_annotation("b", string("2"))
            .to("q")
            .data(b"x")
            .build(),
    );
    let new_to = string("new");
    let trace = primitive::to_vec(|o| primitive::string_list(o, &["0/A"]));
    let entries = [("x-opt-qd.to", &new_to[..]), ("x-opt-qd.trace", &trace[..])];
    let out = view(
        v.splice(
            DeliveryAnnotations::Keep,
            &MessageAnnotations::Merge(&entries),
        )
        .unwrap(),
    );
    let got: Vec<(String, Vec<u8>)> = out
        .message_annotations()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.as_symbol().unwrap().to_owned(), v.as_bytes().to_vec())
        })
        .collect();
    let expected = vec![
        ("a".to_owned(), string("1")),
        ("b".to_owned(), string("2")),
        ("x-opt-qd.to".to_owned(), new_to.clone()),
        ("x-opt-qd.trace".to_owned(), trace.clone()),
    ];
    assert_eq!(got, expected);
    assert_eq!(out.bare_message(), v.bare_message());
}

#[test]
fn splice_replace_remove_and_keep_set_the_message_annotations() {
    let bytes = full_message().build();
    let v = view(bytes.clone());

    let kept = v
        .splice(DeliveryAnnotations::Keep, &MessageAnnotations::Keep)
        .unwrap();
    assert_eq!(kept, bytes, "keeping everything reproduces the message");

    let removed = view(
        v.splice(DeliveryAnnotations::Drop, &MessageAnnotations::Remove)
            .unwrap(),
    );
    assert_eq!(removed.section(SectionKind::MessageAnnotations), None);
    assert_eq!(removed.section(SectionKind::DeliveryAnnotations), None);
    assert!(removed.durable().unwrap());
    assert_eq!(removed.bare_message(), v.bare_message());

    let mut section = BytesMut::new();
    let value = string("only");
    encode_message_annotations(&[("x-opt-new", &value[..])], &mut section);
    let replaced = view(
        v.splice(
            DeliveryAnnotations::Keep,
            &MessageAnnotations::Replace(section.freeze()),
        )
        .unwrap(),
    );
    assert_eq!(replaced.message_annotations().count(), 1);
    assert!(
        replaced
            .message_annotation("x-opt-qd.ingress")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        replaced.delivery_annotations().count(),
        1,
        "delivery annotations kept"
    );
    assert_eq!(replaced.bare_message(), v.bare_message());
}

#[test]
fn splice_into_appends_to_a_reused_buffer_and_leaves_it_unchanged_on_error() {
    let v = view(small_message());
    let a = string("0/A");
    let entries = [("x-opt-qd.ingress", &a[..])];
    let mut out = BytesMut::from(&b"prefix"[..]);
    v.splice_into(
        DeliveryAnnotations::Drop,
        &MessageAnnotations::Merge(&entries),
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(
        &out[6..],
        &v.splice(
            DeliveryAnnotations::Drop,
            &MessageAnnotations::Merge(&entries)
        )
        .unwrap()[..]
    );

    // received message-annotations whose entry is malformed: merge fails
    let mut m = vec![0x00, 0x53, 0x72, 0xc1, 0x03, 0x02, 0xa3, 0x05];
    m.extend_from_slice(&[0x00, 0x53, 0x75, 0xa0, 0x00]);
    let bad = view(Bytes::from(m));
    let mut out = BytesMut::from(&b"prefix"[..]);
    let err = bad
        .splice_into(
            DeliveryAnnotations::Keep,
            &MessageAnnotations::Merge(&entries),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(err.what, "message-annotations entry");
    assert_eq!(&out[..], b"prefix");
}

#[test]
fn splice_of_many_annotations_switches_to_a_map32() {
    let v = view(small_message());
    let big = string(&"x".repeat(300));
    let entries = [("x-opt-big", &big[..])];
    let out = v
        .splice(
            DeliveryAnnotations::Keep,
            &MessageAnnotations::Merge(&entries),
        )
        .unwrap();
    let out = view(out);
    let range = out.section(SectionKind::MessageAnnotations).unwrap();
    assert_eq!(out.bytes()[range.start + 3], 0xd1);
    assert_eq!(
        out.message_annotation("x-opt-big")
            .unwrap()
            .unwrap()
            .as_bytes(),
        &big[..]
    );
}

#[test]
fn the_benchmark_message_is_113_bytes() {
    let v = view(small_message());
    assert_eq!(v.bytes().len(), 113);
    assert_eq!(v.to().unwrap(), Some("examples"));
}

fn parse_err(bytes: Vec<u8>) -> bote_amqp::MessageError {
    MessageView::parse(Bytes::from(bytes)).expect_err("malformed message rejected")
}

#[test]
fn a_truncated_section_is_a_decode_error_naming_the_section() {
    let bytes = full_message().build();
    let props = view(bytes.clone())
        .section(SectionKind::Properties)
        .unwrap();
    let err = parse_err(bytes[..props.end - 1].to_vec());
    assert_eq!(err.condition(), "amqp:decode-error");
    assert_eq!(err.what, "properties section");
    assert_eq!(err.problem, Problem::Truncated);
    assert_eq!(err.offset, props.start + 3);
    assert!(err.to_string().contains("properties section"));
    // every prefix of a valid message either parses or fails cleanly
    for len in 0..bytes.len() {
        let _ = MessageView::parse(bytes.slice(..len));
    }
}

#[test]
fn parse_head_finds_where_the_bare_message_starts_in_a_first_part() {
    let bytes = full_message().build();
    let whole = view(bytes.clone());
    let bare = whole.bare_message_start();
    // Any first part that reaches into the bare message's first descriptor
    // gives the same head as the whole message.
    for len in [bare + 3, bare + 10, bytes.len()] {
        let head = MessageView::parse_head(&bytes.slice(..len)).expect("head parses");
        assert_eq!(head.bare_message_start(), bare, "first part of {len} bytes");
        assert_eq!(head.bytes().len(), bare);
        assert!(
            head.message_annotation("x-opt-custom")
                .expect("decodes")
                .is_some()
        );
        assert!(head.body().is_none());
    }
    // A part that ends inside the annotations is an error naming the section.
    let ma = whole.section(SectionKind::MessageAnnotations).unwrap();
    let err = MessageView::parse_head(&bytes.slice(..ma.end - 1)).expect_err("truncated head");
    assert_eq!(err.what, "message-annotations section");
    assert_eq!(err.problem, Problem::Truncated);
    // A message without annotations: the head is its header alone.
    let plain = small_message();
    let head = MessageView::parse_head(&plain).expect("head parses");
    assert_eq!(
        head.bare_message_start(),
        view(plain.clone()).bare_message_start()
    );
    // Every prefix of a valid message either parses or fails cleanly.
    for len in 0..bytes.len() {
        let _ = MessageView::parse_head(&bytes.slice(..len));
    }
}

#[test]
fn sections_out_of_spec_order_are_rejected() {
    let props = MessageBuilder::new().to("q").build();
    let header = MessageBuilder::new().durable(true).build();
    let err = parse_err([&props[..], &header[..]].concat());
    assert_eq!(err.what, "header section");
    assert_eq!(
        err.problem,
        Problem::OutOfOrder {
            after: "properties section"
        }
    );
    assert_eq!(err.offset, props.len());

    // a repeated properties section
    let err = parse_err([&props[..], &props[..]].concat());
    assert!(matches!(err.problem, Problem::OutOfOrder { .. }));

    // mixed body kinds and a second amqp-value
    let data = MessageBuilder::new().data(b"a").build();
    let value = MessageBuilder::new().amqp_value_str("v").build();
    assert!(matches!(
        parse_err([&data[..], &value[..]].concat()).problem,
        Problem::OutOfOrder { .. }
    ));
    assert!(matches!(
        parse_err([&value[..], &value[..]].concat()).problem,
        Problem::OutOfOrder { .. }
    ));
}

#[test]
fn unknown_descriptors_and_non_sections_are_rejected() {
    let err = parse_err(vec![0x00, 0x53, 0x10, 0x45]);
    assert_eq!(err.problem, Problem::UnknownDescriptor);
    assert_eq!(err.what, "first section");
    let mut sym = vec![0x00];
    primitive::symbol(&mut sym, "amqp:unknown:list");
    sym.push(0x45);
    assert_eq!(parse_err(sym).problem, Problem::UnknownDescriptor);
    let err = parse_err(vec![0xa1, 0x01, b'x']);
    assert_eq!(err.problem, Problem::NotDescribed(0xa1));
    // garbage after a valid body
    let mut m = small_message().to_vec();
    m.push(0xff);
    let err = parse_err(m);
    assert_eq!(err.offset, 113);
    assert_eq!(err.what, "section after a data section");
}

#[test]
fn a_section_of_the_wrong_type_is_rejected() {
    // a header that is a map, a data section that is a string
    let err = parse_err(vec![0x00, 0x53, 0x70, 0xc1, 0x01, 0x00]);
    assert_eq!(err.what, "header section");
    assert!(matches!(
        err.problem,
        Problem::UnexpectedType { found: 0xc1, .. }
    ));
    let err = parse_err(vec![0x00, 0x53, 0x75, 0xa1, 0x00]);
    assert_eq!(err.what, "data section");
    // a list whose count cannot fit in its size
    let err = parse_err(vec![0x00, 0x53, 0x73, 0xc0, 0x01, 0x05]);
    assert_eq!(err.problem, Problem::BadCompound);
}

#[test]
fn a_field_of_the_wrong_type_is_an_error_naming_the_field() {
    // properties [null, null, to = uint 7]; header [durable = "yes"]
    let m = vec![
        0x00, 0x53, 0x70, 0xc0, 0x06, 0x01, 0xa1, 0x03, b'y', b'e', b's', //
        0x00, 0x53, 0x73, 0xc0, 0x05, 0x03, 0x40, 0x40, 0x52, 0x07,
    ];
    let v = view(Bytes::from(m));
    let err = v.to().unwrap_err();
    assert_eq!(err.what, "properties.to");
    assert_eq!(err.offset, 19);
    assert!(err.to_string().contains("properties.to"));
    assert_eq!(v.durable().unwrap_err().what, "header.durable");
    // invalid UTF-8 in `to`
    let m = vec![
        0x00, 0x53, 0x73, 0xc0, 0x06, 0x03, 0x40, 0x40, 0xa1, 0x01, 0xff,
    ];
    assert_eq!(
        view(Bytes::from(m)).to().unwrap_err().problem,
        Problem::InvalidUtf8
    );
    // a field that runs past its list
    let m = vec![
        0x00, 0x53, 0x73, 0xc0, 0x04, 0x03, 0x40, 0x40, 0xa1, 0x05, b'a', b'b',
    ];
    assert!(MessageView::parse(Bytes::from(m)).is_err());
    let m = vec![
        0x00, 0x53, 0x73, 0xc0, 0x05, 0x03, 0x40, 0x40, 0xa1, 0x05, b'a',
    ];
    assert!(MessageView::parse(Bytes::from(m)).is_err());
}

fn exercise(bytes: Bytes) {
    let Ok(v) = MessageView::parse(bytes) else {
        return;
    };
    let _ = (
        v.durable(),
        v.priority(),
        v.ttl(),
        v.first_acquirer(),
        v.delivery_count(),
    );
    let _ = (
        v.message_id(),
        v.user_id(),
        v.to(),
        v.subject(),
        v.reply_to(),
    );
    let _ = (v.correlation_id(), v.content_type(), v.content_encoding());
    let _ = (v.absolute_expiry_time(), v.creation_time(), v.group_id());
    let _ = (v.group_sequence(), v.reply_to_group_id());
    let _ = v.message_annotation("x-opt-qd.to");
    let _ = v.application_property("traceparent");
    for e in v
        .message_annotations()
        .chain(v.delivery_annotations())
        .chain(v.application_properties())
        .chain(v.footer())
        .flatten()
    {
        let _ = (e.0.as_text(), e.1.as_list().map(|l| l.count()));
    }
    let _ = v.data_sections().count();
    let _ = v.amqp_value().map(|a| a.as_map().map(|m| m.count()));
    let a = string("x");
    let entries = [("x-opt-qd.to", &a[..])];
    let _ = v.splice(
        DeliveryAnnotations::Drop,
        &MessageAnnotations::Merge(&entries),
    );
    let _ = v.splice_chunks(DeliveryAnnotations::Keep, &MessageAnnotations::Keep);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        exercise(Bytes::from(bytes));
    }

    #[test]
    fn corrupted_messages_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
    ) {
        let mut m = full_message().build().to_vec();
        let len = m.len();
        for (at, b) in flips {
            m[at % len] = b;
        }
        exercise(Bytes::from(m));
    }
}

mod fe2o3 {
    use super::*;
    use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
    use fe2o3_amqp_types::messaging::{
        AmqpValue, ApplicationProperties, Data, Header, Message, MessageAnnotations as FeMa,
        MessageId as FeId, Properties,
    };
    use fe2o3_amqp_types::primitives::{Binary, OrderedMap, Symbol, Value};

    fn fe_message() -> Message<Data> {
        Message::builder()
            .header(
                Header::builder()
                    .durable(true)
                    .priority(6)
                    .ttl(5000)
                    .build(),
            )
            .message_annotations(FeMa::builder().insert("x-opt-existing", "e").build())
            .properties(
                Properties::builder()
                    .message_id(FeId::from(12345u64))
                    .to("fe/queue")
                    .reply_to("fe/reply")
                    .subject("subj")
                    .correlation_id(FeId::from(String::from("corr")))
                    .creation_time(fe2o3_amqp_types::primitives::Timestamp::from_milliseconds(
                        1_700_000_000_000,
                    ))
                    .build(),
            )
            .application_properties(ApplicationProperties::builder().insert("k", "v").build())
            .data(Binary::from(vec![1u8, 2, 3, 4]))
            .build()
    }

    #[test]
    fn a_message_encoded_by_fe2o3_is_read_by_the_view() {
        let bytes = serde_amqp::to_vec(&Serializable(fe_message())).unwrap();
        let v = view(Bytes::from(bytes));
        assert!(v.durable().unwrap());
        assert_eq!(v.priority().unwrap(), 6);
        assert_eq!(v.ttl().unwrap(), Some(5000));
        assert_eq!(v.message_id().unwrap(), Some(MessageId::Ulong(12345)));
        assert_eq!(v.to().unwrap(), Some("fe/queue"));
        assert_eq!(v.reply_to().unwrap(), Some("fe/reply"));
        assert_eq!(v.subject().unwrap(), Some("subj"));
        assert_eq!(v.correlation_id().unwrap(), Some(MessageId::String("corr")));
        assert_eq!(v.creation_time().unwrap(), Some(1_700_000_000_000));
        assert_eq!(
            v.message_annotation("x-opt-existing")
                .unwrap()
                .unwrap()
                .as_string()
                .unwrap(),
            "e"
        );
        assert_eq!(
            v.application_property("k")
                .unwrap()
                .unwrap()
                .as_string()
                .unwrap(),
            "v"
        );
        assert_eq!(
            v.data_sections().next().unwrap(),
            Bytes::from_static(&[1, 2, 3, 4])
        );
    }

    #[test]
    fn an_amqp_value_body_encoded_by_fe2o3_is_read_by_the_view() {
        let msg = Message::builder()
            .properties(Properties::builder().to("t").build())
            .value("hello")
            .build();
        let bytes = serde_amqp::to_vec(&Serializable(msg)).unwrap();
        let v = view(Bytes::from(bytes));
        assert_eq!(v.to().unwrap(), Some("t"));
        assert_eq!(v.amqp_value().unwrap().as_string().unwrap(), "hello");
        let _ = AmqpValue("unused");
    }

    #[test]
    fn a_spliced_message_decodes_with_fe2o3_with_the_same_bare_message_and_the_new_annotation() {
        let original = fe_message();
        let bytes = serde_amqp::to_vec(&Serializable(original.clone())).unwrap();
        let v = view(Bytes::from(bytes));
        let ingress = string("0/router-A");
        let entries = [("x-opt-qd.ingress", &ingress[..])];
        let out = v
            .splice(
                DeliveryAnnotations::Drop,
                &MessageAnnotations::Merge(&entries),
            )
            .unwrap();
        let decoded: Deserializable<Message<Data>> = serde_amqp::from_slice(&out).unwrap();
        let decoded = decoded.0;
        assert_eq!(decoded.header, original.header);
        assert_eq!(decoded.properties, original.properties);
        assert_eq!(
            decoded.application_properties,
            original.application_properties
        );
        assert_eq!(decoded.body, original.body);
        let ma = decoded.message_annotations.expect("annotations");
        let mut expected: OrderedMap<_, Value> = OrderedMap::new();
        expected.insert(Symbol::from("x-opt-existing").into(), Value::from("e"));
        expected.insert(
            Symbol::from("x-opt-qd.ingress").into(),
            Value::from("0/router-A"),
        );
        assert_eq!(ma.0, expected);
    }
}
