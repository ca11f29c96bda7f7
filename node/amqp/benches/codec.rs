//! Criterion benchmarks of the AMQP hot path: decoding a transfer frame's
//! performative and scanning its 113-byte message, encoding a transfer frame,
//! and the zero-copy message view and splice (`amqp::message`), each against
//! the same work done by fe2o3-amqp-types (a full decode and re-encode) as the
//! baseline in the same run.

use std::hint::black_box;

use bote_amqp::DeliveryTag;
use bote_amqp::encode_frame;
use bote_amqp::{
    DeliveryAnnotations, MessageAnnotations, MessageBuilder, MessageView, Performative, Transfer,
    decode_transfer, primitive,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp_types::messaging::{Data, Message, MessageAnnotations as FeAnnotations};
use fe2o3_amqp_types::primitives::{Symbol, Value};

/// A 113-byte message like the ones Qpid Proton's examples send: a header
/// (durable), properties with `to`, and an 83-byte data body.
fn message_113() -> Bytes {
    let bytes = MessageBuilder::new()
        .durable(true)
        .to("examples")
        .data(&[b'x'; 83])
        .build();
    assert_eq!(bytes.len(), 113);
    bytes
}

fn message(c: &mut Criterion) {
    let bytes = message_113();
    let ingress = primitive::to_vec(|o| primitive::string(o, "0/router-A"));
    let entries = [("x-opt-qd.ingress", &ingress[..])];

    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("scan_113B", |b| {
        b.iter(|| {
            let view = MessageView::parse(black_box(bytes.clone())).unwrap();
            black_box(view.to().unwrap().map(str::len));
        })
    });
    group.bench_function("splice_113B", |b| {
        b.iter(|| {
            let view = MessageView::parse(black_box(bytes.clone())).unwrap();
            let out = view
                .splice(
                    DeliveryAnnotations::Drop,
                    &MessageAnnotations::Merge(black_box(&entries)),
                )
                .unwrap();
            black_box(out);
        })
    });
    let mut out = bytes::BytesMut::with_capacity(4096);
    group.bench_function("splice_into_reused_buffer_113B", |b| {
        b.iter(|| {
            out.clear();
            let view = MessageView::parse(black_box(bytes.clone())).unwrap();
            view.splice_into(
                DeliveryAnnotations::Drop,
                &MessageAnnotations::Merge(black_box(&entries)),
                &mut out,
            )
            .unwrap();
            black_box(&out);
        })
    });
    group.bench_function("splice_chunks_113B", |b| {
        b.iter(|| {
            let view = MessageView::parse(black_box(bytes.clone())).unwrap();
            let out = view
                .splice_chunks(
                    DeliveryAnnotations::Drop,
                    &MessageAnnotations::Merge(black_box(&entries)),
                )
                .unwrap();
            black_box(out);
        })
    });
    group.finish();
}

fn fe2o3(c: &mut Criterion) {
    let bytes = message_113();
    let mut group = c.benchmark_group("fe2o3");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_message_113B", |b| {
        b.iter(|| {
            let msg: Deserializable<Message<Data>> =
                serde_amqp::from_slice(black_box(&bytes)).unwrap();
            let to = msg.0.properties.as_ref().and_then(|p| p.to.as_ref());
            black_box(to.map(String::len));
        })
    });
    group.bench_function("reencode_with_annotation_113B", |b| {
        b.iter(|| {
            let msg: Deserializable<Message<Data>> =
                serde_amqp::from_slice(black_box(&bytes)).unwrap();
            let mut msg = msg.0;
            msg.delivery_annotations = None;
            msg.message_annotations
                .get_or_insert_with(FeAnnotations::default)
                .insert(
                    Symbol::from("x-opt-qd.ingress").into(),
                    Value::from("0/router-A"),
                );
            black_box(serde_amqp::to_vec(&Serializable(msg)).unwrap());
        })
    });
    group.finish();
}

/// The body of a transfer frame (performative then message), as a router
/// reads it after the 8-byte frame header, and where the message starts.
fn transfer_body_113() -> (Bytes, usize) {
    let t = Transfer {
        handle: 1,
        delivery_id: Some(123_456),
        delivery_tag: Some(DeliveryTag::from(&[0, 1, 0xe2, 0x40])),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    };
    let mut frame = BytesMut::new();
    encode_frame(0, &Performative::Transfer(t), &message_113(), &mut frame);
    let body = frame.freeze().slice(8..);
    let (_, performative_len) = decode_transfer(&body).unwrap();
    (body, performative_len)
}

fn hot_path(c: &mut Criterion) {
    let (body, split) = transfer_body_113();
    let message = message_113();
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_transfer_and_scan_113B", |b| {
        b.iter(|| {
            let body = black_box(&body);
            let (t, used) = decode_transfer(body).unwrap();
            let view = MessageView::parse(body.slice(used..)).unwrap();
            black_box((t.delivery_id, view.to().unwrap().map(str::len)));
        })
    });
    group.bench_function("fe2o3_decode_transfer_and_message_113B", |b| {
        b.iter(|| {
            let body = black_box(&body);
            // fe2o3 is handed the split point (a head start ours does not get).
            let t: fe2o3_amqp_types::performatives::Transfer =
                serde_amqp::from_slice(&body[..split]).unwrap();
            let msg: Deserializable<Message<Data>> =
                serde_amqp::from_slice(&body[split..]).unwrap();
            let to = msg.0.properties.as_ref().and_then(|p| p.to.as_ref());
            black_box((t.delivery_id, to.map(String::len)));
        })
    });
    let t = Transfer {
        handle: 1,
        delivery_id: Some(123_456),
        delivery_tag: Some(DeliveryTag::from(&[0, 1, 0xe2, 0x40])),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    };
    let performative = Performative::Transfer(t);
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode_transfer_frame_113B", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(0, black_box(&performative), black_box(&message), &mut out);
            black_box(&out);
        })
    });
    let fe_transfer = fe2o3_amqp_types::performatives::Transfer {
        handle: fe2o3_amqp_types::definitions::Handle(1),
        delivery_id: Some(123_456),
        delivery_tag: Some(serde_amqp::primitives::Binary::from(vec![0, 1, 0xe2, 0x40])),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    };
    let fe_message: Deserializable<Message<Data>> = serde_amqp::from_slice(&message).unwrap();
    let fe_message = fe_message.0;
    group.bench_function("fe2o3_encode_transfer_frame_113B", |b| {
        b.iter(|| {
            out.clear();
            let perf = serde_amqp::to_vec(black_box(&fe_transfer)).unwrap();
            let msg = serde_amqp::to_vec(&Serializable(black_box(&fe_message))).unwrap();
            out.extend_from_slice(&((8 + perf.len() + msg.len()) as u32).to_be_bytes());
            out.extend_from_slice(&[2, 0, 0, 0]);
            out.extend_from_slice(&perf);
            out.extend_from_slice(&msg);
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path, message, fe2o3);
criterion_main!(benches);
