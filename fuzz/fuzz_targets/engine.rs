//! Fuzzes the whole receive path of the connection engine: arbitrary bytes,
//! split into arbitrary reads, fed to a server-side `Connection` (with and
//! without a SASL layer), which must never panic; every output it produces
//! is drained and time is advanced past its timers.
#![no_main]

use std::time::{Duration, Instant};

use bote_amqp::{Connection, ConnectionConfig, SaslConfig, Side};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sasl = if mode & 1 == 1 {
        SaslConfig::Server {
            mechanisms: vec!["ANONYMOUS".into(), "PLAIN".into()],
            required: mode & 2 == 2,
        }
    } else {
        SaslConfig::None
    };
    let config = ConnectionConfig {
        container_id: "fuzz".into(),
        max_frame_size: 512,
        idle_timeout: Some(Duration::from_secs(1)),
        stream_deliveries: mode & 4 == 4,
        sasl,
        ..ConnectionConfig::default()
    };
    let start = Instant::now();
    let mut conn = Connection::new(config, Side::Server, start);
    conn.open();
    let mut out = BytesMut::new();
    let chunk = usize::from(mode >> 3).max(1);
    for (i, piece) in rest.chunks(chunk).enumerate() {
        let now = start + Duration::from_millis(i as u64);
        conn.handle_input(piece, now);
        while conn.poll_event().is_some() {}
        while conn.poll_transmit(&mut out) > 0 {}
        out.clear();
    }
    if let Some(t) = conn.poll_timeout() {
        conn.handle_timeout(t + Duration::from_secs(2));
    }
    while conn.poll_event().is_some() {}
    while conn.poll_transmit(&mut out) > 0 {}
});
