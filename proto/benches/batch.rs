//! A batch of 250 transfers of 113-byte messages, as a busy inter-router
//! stream carries them (the route sent once, `same_route` after), encoded
//! and decoded by `Batch` against the generated code's way (`repeated Frame
//! frames = 1` through `prost::encoding::message`), in the same run:
//! `cargo bench -p bote-proto --bench batch`.

use bote_proto::v1::{Batch, Frame, Transfer, frame::Kind};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use prost::encoding::{DecodeContext, decode_key, message};

fn frames() -> Vec<Frame> {
    let body = Bytes::from(vec![0x53; 113]);
    (0..250u64)
        .map(|id| {
            let first = id == 0;
            Frame {
                kind: Some(Kind::Transfer(Transfer {
                    delivery_id: 10_000 + id,
                    address: if first { "bench".into() } else { Bytes::new() },
                    message: body.clone(),
                    priority: 4,
                    ingress_router: if first {
                        "Router.A".into()
                    } else {
                        Bytes::new()
                    },
                    trace: if first {
                        vec!["Router.A".into()]
                    } else {
                        Vec::new()
                    },
                    hops_left: if first { 31 } else { 0 },
                    ingress_sequence: (1 << 40) + id,
                    same_route: !first,
                    ..Transfer::default()
                })),
            }
        })
        .collect()
}

/// The generated code's decoding of `repeated Frame frames = 1`.
fn generated_decode(mut buf: Bytes) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).expect("key");
        assert_eq!(tag, 1);
        message::merge_repeated(wire_type, &mut frames, &mut buf, DecodeContext::default())
            .expect("frame");
    }
    frames
}

fn batch(c: &mut Criterion) {
    let frames = frames();
    let wire = Bytes::from(Batch::new(frames.clone()).encode_to_vec());
    let mut g = c.benchmark_group("batch of 250 transfers");
    g.throughput(Throughput::Elements(250));
    g.bench_function("encode: generated (sized as the router did, twice)", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let mut out = Vec::with_capacity(wire.len());
                // The router counted bytes with `encoded_len`, then the
                // codec's `encode` checked room with it before writing.
                let counted = message::encoded_len_repeated(1, &frames);
                let room = message::encoded_len_repeated(1, &frames);
                message::encode_repeated(1, &frames, &mut out);
                // The frames are dropped outside the timing, as below.
                (counted + room, out, frames)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("encode: Batch (sized once)", |b| {
        b.iter_batched(
            || frames.clone(),
            |frames| {
                let batch = Batch::new(frames);
                let mut out = Vec::with_capacity(batch.wire_len());
                batch.encode(&mut out).expect("room");
                (out, batch)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("decode: generated", |b| {
        b.iter(|| generated_decode(wire.clone()))
    });
    g.bench_function("decode: Batch", |b| {
        b.iter(|| Batch::decode(wire.clone()).expect("batch"))
    });
    g.finish();
    assert_eq!(generated_decode(wire.clone()), frames);
}

criterion_group!(benches, batch);
criterion_main!(benches);
