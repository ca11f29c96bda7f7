//! Criterion benchmarks of the AMQP engine's per-message paths: a transfer
//! frame in to a `Transfer` event out (receiver), a `send` to bytes out
//! (sender), and a whole unsettled message exchange between two engines
//! (transfer, accept, settle).

use std::hint::black_box;
use std::time::Instant;

use bote_amqp::DeliveryTag;
use bote_amqp::{Connection, ConnectionConfig, SendDelivery, Side};
use bote_amqp::{Event, LinkConfig, LinkId};
use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    buf: BytesMut,
}

impl Pair {
    fn drive(&mut self) {
        loop {
            self.buf.clear();
            let a = self.client.poll_transmit(&mut self.buf);
            if a > 0 {
                self.server.handle_input(&self.buf, self.now);
            }
            self.buf.clear();
            let b = self.server.poll_transmit(&mut self.buf);
            if b > 0 {
                self.client.handle_input(&self.buf, self.now);
            }
            if a == 0 && b == 0 {
                return;
            }
        }
    }
}

/// A connected pair with a client sender -> server receiver link with plenty
/// of credit. Returns (pair, sender, receiver).
fn linked() -> (Pair, LinkId, LinkId) {
    let now = Instant::now();
    let config = |id: &str| ConnectionConfig {
        container_id: id.into(),
        ..ConnectionConfig::default()
    };
    let mut pair = Pair {
        client: Connection::new(config("c"), Side::Client, now),
        server: Connection::new(config("s"), Side::Server, now),
        now,
        buf: BytesMut::new(),
    };
    pair.client.open();
    pair.server.open();
    pair.drive();
    let session = pair.client.begin().unwrap();
    let sender = pair
        .client
        .attach(session, LinkConfig::sender("bench", Some("q")))
        .unwrap();
    pair.drive();
    let mut receiver = None;
    while let Some(e) = pair.server.poll_event() {
        if let Event::AttachRequested { link, .. } = e {
            receiver = Some(link);
        }
    }
    let receiver = receiver.unwrap();
    pair.server
        .accept_attach(receiver, LinkConfig::receiver("bench", Some("q")))
        .unwrap();
    pair.server.flow(receiver, u32::MAX / 2, false).unwrap();
    pair.drive();
    while pair.client.poll_event().is_some() {}
    while pair.server.poll_event().is_some() {}
    (pair, sender, receiver)
}

fn delivery(i: u64, payload: &Bytes, settled: bool) -> SendDelivery {
    SendDelivery {
        tag: DeliveryTag::from_slice(&i.to_be_bytes()),
        payload: payload.clone(),
        settled,
        message_format: 0,
        context: i,
        complete: true,
    }
}

fn engine(c: &mut Criterion) {
    // A 105-byte message: the size of the measurement that chose a
    // hand-written engine over fe2o3-amqp's (ARCHITECTURE.md).
    let payload = Bytes::from(vec![0x53u8; 105]);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));

    group.bench_function("send_presettled_to_bytes", |b| {
        let (mut pair, sender, _) = linked();
        let mut out = BytesMut::with_capacity(1 << 16);
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            pair.client
                .send(sender, delivery(i, &payload, true))
                .unwrap();
            out.clear();
            black_box(pair.client.poll_transmit(&mut out));
        });
    });

    group.throughput(Throughput::Elements(256));
    group.bench_function("receive_256_transfers_to_events", |b| {
        let (mut pair, sender, _) = linked();
        b.iter_batched(
            || {
                let mut bytes = BytesMut::new();
                for i in 0..256u64 {
                    pair.client
                        .send(sender, delivery(i, &payload, true))
                        .unwrap();
                }
                pair.client.poll_transmit(&mut bytes);
                bytes
            },
            |bytes| {
                pair.server.handle_input(&bytes, pair.now);
                let mut n = 0;
                while let Some(e) = pair.server.poll_event() {
                    n += usize::from(matches!(e, Event::Transfer(_)));
                }
                assert_eq!(n, 256);
                // keep the server's output (flows) from piling up
                let mut sink = BytesMut::new();
                pair.server.poll_transmit(&mut sink);
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("unsettled_exchange_256_accept_settle", |b| {
        let (mut pair, sender, receiver) = linked();
        let mut i = 0u64;
        b.iter(|| {
            for _ in 0..256 {
                i += 1;
                pair.client
                    .send(sender, delivery(i, &payload, false))
                    .unwrap();
            }
            pair.drive();
            while let Some(e) = pair.server.poll_event() {
                if let Event::Transfer(t) = e {
                    pair.server.accept(receiver, t.delivery_id).unwrap();
                }
            }
            pair.drive();
            let mut settled = 0;
            while let Some(e) = pair.client.poll_event() {
                settled += usize::from(matches!(e, Event::Disposition { settled: true, .. }));
            }
            assert_eq!(settled, 256);
        });
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
