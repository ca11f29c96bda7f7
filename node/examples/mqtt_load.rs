//! An MQTT 3.1.1 load client for the MQTT benchmark (`scripts/bench_mqtt.py`):
//! one subscriber connection on `--sub` and one publisher on `--pub`, both
//! over raw TCP with rumqttc's packet codec, one topic, `--messages`
//! messages of `--size` bytes at `--qos` (0 or 1; QoS 1 keeps `--window`
//! PUBLISHes unacknowledged, the subscriber acknowledges each). Prints one
//! line: messages received, seconds from the first PUBLISH to the last one
//! received, messages per second. Bounded in count and in time
//! (`--timeout`, default 60 s).
//!
//! `cargo run --release -p bote-node --example mqtt_load -- --pub 127.0.0.1:1883 --sub 127.0.0.1:1883 --qos 1`

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{self, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    publisher: String,
    subscriber: String,
    qos: u8,
    messages: usize,
    size: usize,
    window: usize,
    timeout: Duration,
    topic: String,
}

fn args() -> Args {
    let mut a = Args {
        publisher: "127.0.0.1:1883".into(),
        subscriber: "127.0.0.1:1883".into(),
        qos: 0,
        messages: 100_000,
        size: 100,
        window: 100,
        timeout: Duration::from_secs(60),
        topic: "bench/load".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--pub" => a.publisher = v,
            "--sub" => a.subscriber = v,
            "--qos" => a.qos = v.parse().expect("--qos 0|1"),
            "--messages" => a.messages = v.parse().expect("--messages N"),
            "--size" => a.size = v.parse().expect("--size BYTES"),
            "--window" => a.window = v.parse().expect("--window N"),
            "--timeout" => a.timeout = Duration::from_secs(v.parse().expect("--timeout SECS")),
            "--topic" => a.topic = v,
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn qos(q: u8) -> QoS {
    if q == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

async fn connect(addr: &str, id: &str) -> (TcpStream, BytesMut) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut c = v4::Connect::new(id);
    c.keep_alive = 60;
    let mut out = BytesMut::new();
    Packet::Connect(c)
        .write(&mut out, usize::MAX)
        .expect("encode");
    s.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    loop {
        match Packet::read(&mut buf, 1 << 20) {
            Ok(Packet::ConnAck(_)) => return (s, buf),
            Ok(p) => panic!("expected CONNACK, got {p:?}"),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                if s.read_buf(&mut buf).await.expect("read") == 0 {
                    panic!("closed before CONNACK");
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn subscriber(a: &Args, ready: tokio::sync::oneshot::Sender<()>) -> (usize, Instant) {
    let (mut s, mut buf) = connect(&a.subscriber, "bench-sub").await;
    let mut out = BytesMut::new();
    let mut subscribe = v4::Subscribe::new(a.topic.clone(), qos(a.qos));
    subscribe.pkid = 1;
    Packet::Subscribe(subscribe)
        .write(&mut out, usize::MAX)
        .expect("encode");
    s.write_all(&out).await.expect("write");
    out.clear();
    let mut got = 0;
    let mut last = Instant::now();
    let mut ready = Some(ready);
    while got < a.messages {
        loop {
            match Packet::read(&mut buf, 1 << 20) {
                Ok(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Packet::Publish(p)) => {
                    got += 1;
                    if p.qos == QoS::AtLeastOnce {
                        Packet::PubAck(v4::PubAck::new(p.pkid))
                            .write(&mut out, usize::MAX)
                            .expect("encode");
                    }
                }
                Ok(_) => {}
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => panic!("subscriber: {e}"),
            }
        }
        last = Instant::now();
        if !out.is_empty() {
            s.write_all(&out).await.expect("write");
            out.clear();
        }
        if got >= a.messages {
            break;
        }
        if s.read_buf(&mut buf).await.expect("read") == 0 {
            break;
        }
    }
    (got, last)
}

async fn publisher(a: &Args) -> Instant {
    let (s, mut buf) = connect(&a.publisher, "bench-pub").await;
    let (mut r, mut w) = s.into_split();
    let payload = Bytes::from(vec![b'x'; a.size]);
    let start = Instant::now();
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<usize>();
    if a.qos == 1 {
        tokio::spawn(async move {
            loop {
                let mut n = 0;
                while let Ok(p) = Packet::read(&mut buf, 1 << 20) {
                    if matches!(p, Packet::PubAck(_)) {
                        n += 1;
                    }
                }
                if n > 0 && acks_tx.send(n).is_err() {
                    return;
                }
                if r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
    }
    let mut sent = 0;
    let mut in_flight = 0;
    let mut out = BytesMut::new();
    let mut pkid: u16 = 0;
    while sent < a.messages {
        while sent < a.messages && (a.qos == 0 || in_flight < a.window) && out.len() < 64 * 1024 {
            let mut p = v4::Publish::new(a.topic.clone(), qos(a.qos), Vec::new());
            p.payload = payload.clone();
            if a.qos == 1 {
                pkid = pkid % 65_000 + 1;
                p.pkid = pkid;
                in_flight += 1;
            }
            Packet::Publish(p)
                .write(&mut out, usize::MAX)
                .expect("encode");
            sent += 1;
        }
        w.write_all(&out).await.expect("write");
        out.clear();
        if a.qos == 1 && in_flight >= a.window {
            match acks.recv().await {
                Some(n) => in_flight -= n.min(in_flight),
                None => break,
            }
            while let Ok(n) = acks.try_recv() {
                in_flight -= n.min(in_flight);
            }
        }
    }
    start
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = std::sync::Arc::new(args());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sa = a.clone();
    let sub = tokio::spawn(async move { subscriber(&sa, ready_tx).await });
    ready_rx.await.expect("SUBACK");
    // Give the subscription time to reach the publisher's router.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pa = a.clone();
    let publish = tokio::spawn(async move { publisher(&pa).await });
    let result = tokio::time::timeout(a.timeout, async {
        let start = publish.await.expect("publisher");
        let (got, last) = sub.await.expect("subscriber");
        (start, got, last)
    })
    .await;
    match result {
        Ok((start, got, last)) => {
            let secs = last.duration_since(start).as_secs_f64();
            println!(
                "qos {} messages {} received {} seconds {:.3} msg/s {:.0}",
                a.qos,
                a.messages,
                got,
                secs,
                got as f64 / secs
            );
        }
        Err(_) => println!("qos {} messages {} timeout", a.qos, a.messages),
    }
}
