//! Criterion benchmarks of the frame layer's hot path: decoding and encoding
//! a typical transfer (the hand-written path), against the general `Value`
//! path for comparison, and a whole transfer frame through `decode_frame`.

use std::hint::black_box;

use bote_amqp::DeliveryTag;
use bote_amqp::{
    Performative, Transfer, decode_transfer, decode_transfer_via_value, encode_transfer,
};
use bote_amqp::{decode_frame, encode_frame};
use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};

fn typical_transfer() -> Transfer {
    Transfer {
        handle: 1,
        delivery_id: Some(123_456),
        delivery_tag: Some(DeliveryTag::from(&[0, 1, 0xe2, 0x40])),
        message_format: Some(0),
        settled: Some(false),
        more: false,
        ..Transfer::default()
    }
}

fn transfer(c: &mut Criterion) {
    let t = typical_transfer();
    let mut encoded = BytesMut::new();
    encode_transfer(&t, &mut encoded);
    let encoded = encoded.freeze();

    c.bench_function("transfer/decode_hand_written", |b| {
        b.iter(|| decode_transfer(black_box(&encoded)).unwrap())
    });
    c.bench_function("transfer/decode_via_value", |b| {
        b.iter(|| decode_transfer_via_value(black_box(&encoded)).unwrap())
    });
    let mut out = BytesMut::with_capacity(4096);
    c.bench_function("transfer/encode_hand_written", |b| {
        b.iter(|| {
            out.clear();
            encode_transfer(black_box(&t), &mut out);
        })
    });

    let payload = vec![0x5a; 256];
    let mut frame = BytesMut::new();
    encode_frame(3, &Performative::Transfer(t), &payload, &mut frame);
    c.bench_function("frame/decode_transfer_frame_256b", |b| {
        b.iter(|| {
            let mut buf = frame.clone();
            decode_frame(black_box(&mut buf), u32::MAX)
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group!(benches, transfer);
criterion_main!(benches);
