//! Fuzzes the SASL exchange (§5.3) on both sides. A server `Connection`
//! offering ANONYMOUS and PLAIN gets a SASL header and then arbitrary bytes,
//! its application answering each `SaslInit` yes or no as the input says
//! (for an even-length input, after a challenge and the client's response,
//! as SCRAM does); a
//! client `Connection` using PLAIN gets a SASL header and then arbitrary
//! bytes as the server's part. Neither may panic; a connection that reports
//! a connection error must be over, and a server that was not told yes must
//! never report the peer authenticated with anything but ANONYMOUS.
#![no_main]

use std::time::{Duration, Instant};

use bote_amqp::{Connection, ConnectionConfig, ErrorScope, Event, SaslConfig, Side};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let client = mode & 1 == 1;
    let answer_yes = mode & 2 == 2;
    let sasl = if client {
        SaslConfig::Client {
            mechanism: "PLAIN".into(),
            initial_response: Some(Bytes::from_static(b"\0user\0secret")),
            hostname: Some("fuzz".into()),
        }
    } else {
        SaslConfig::Server {
            mechanisms: vec!["ANONYMOUS".into(), "PLAIN".into()],
            required: mode & 4 == 4,
        }
    };
    let config = ConnectionConfig {
        container_id: "fuzz".into(),
        max_frame_size: 512,
        handshake_timeout: Some(Duration::from_secs(5)),
        sasl,
        ..ConnectionConfig::default()
    };
    let start = Instant::now();
    let side = if client { Side::Client } else { Side::Server };
    let mut conn = Connection::new(config, side, start);
    conn.open();
    let mut out = BytesMut::new();
    let mut input = b"AMQP\x03\x01\x00\x00".to_vec();
    input.extend_from_slice(rest);
    let chunk = usize::from(mode >> 3).max(1);
    let mut said_yes = false;
    let challenge_first = rest.len() % 2 == 0;
    for (i, piece) in input.chunks(chunk).enumerate() {
        conn.handle_input(piece, start + Duration::from_millis(i as u64));
        while let Some(event) = conn.poll_event() {
            match event {
                Event::SaslInit { .. } if challenge_first => {
                    let _ = conn.sasl_challenge(Bytes::from_static(b"r=nonce,s=c2FsdA==,i=4096"));
                }
                Event::SaslInit { .. } | Event::SaslResponse { .. } => {
                    said_yes |= answer_yes;
                    let _ = conn.sasl_outcome_with(
                        answer_yes,
                        answer_yes.then(|| Bytes::from_static(b"v=signature")),
                    );
                }
                Event::SaslAuthenticated { mechanism } if !client => {
                    assert!(
                        said_yes || mechanism == "ANONYMOUS",
                        "authenticated with {mechanism} though the application said no"
                    );
                }
                Event::ProtocolError {
                    scope: ErrorScope::Connection,
                    ..
                } => {}
                _ => {}
            }
        }
        while conn.poll_transmit(&mut out) > 0 {}
        out.clear();
    }
    if let Some(t) = conn.poll_timeout() {
        conn.handle_timeout(t + Duration::from_secs(6));
    }
    while conn.poll_event().is_some() {}
    while conn.poll_transmit(&mut out) > 0 {}
});
