//! The server side of SASL with a mechanism the application decides
//! (a challenge and response, as SCRAM needs), and SASL input a client
//! must not send: frames out of order, garbage, AMQP frames mid-SASL.
//! A raw client (bytes written by hand) drives one server `Connection`.

use std::time::Instant;

use bote_amqp::{
    Connection, ConnectionConfig, ErrorScope, Event, FrameBody, ProtocolHeader, SaslCode,
    SaslConfig, SaslFrame, SaslInit, SaslResponse, Side, condition, decode_frame,
    decode_protocol_header, encode_protocol_header, encode_sasl_frame,
};
use bytes::{Bytes, BytesMut};

fn server(mechanisms: &[&str]) -> Connection {
    let config = ConnectionConfig {
        container_id: "server".into(),
        sasl: SaslConfig::Server {
            mechanisms: mechanisms.iter().map(|m| (*m).to_owned()).collect(),
            required: true,
        },
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::new(config, Side::Server, Instant::now());
    conn.open();
    conn
}

fn feed(conn: &mut Connection, frames: &[SaslFrame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        encode_sasl_frame(f, &mut buf);
    }
    conn.handle_input(&buf, Instant::now());
}

fn sasl_header(conn: &mut Connection) {
    let mut buf = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Sasl, &mut buf);
    conn.handle_input(&buf, Instant::now());
}

/// The SASL frames the server wrote since the last call (after its header).
fn written(conn: &mut Connection, out: &mut BytesMut) -> Vec<SaslFrame> {
    conn.poll_transmit(out);
    let mut frames = Vec::new();
    loop {
        if out.len() >= 8
            && let Ok(Some(_)) = decode_protocol_header(&out[..8])
        {
            let _ = out.split_to(8);
            continue;
        }
        match decode_frame(out, 65536) {
            Ok(Some(f)) => match f.body {
                FrameBody::Sasl(s) => frames.push(s),
                other => panic!("not a SASL frame: {other:?}"),
            },
            _ => break,
        }
    }
    frames
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn init(mechanism: &str, response: &'static [u8]) -> SaslFrame {
    SaslFrame::Init(SaslInit {
        mechanism: mechanism.into(),
        initial_response: Some(Bytes::from_static(response)),
        hostname: None,
    })
}

fn response(bytes: &'static [u8]) -> SaslFrame {
    SaslFrame::Response(SaslResponse {
        response: Bytes::from_static(bytes),
    })
}

fn connection_error(events: &[Event]) -> Option<(String, String)> {
    events.iter().find_map(|e| match e {
        Event::ProtocolError {
            scope: ErrorScope::Connection,
            error,
        } => Some((
            error.condition.as_str().to_owned(),
            error.description.clone().unwrap_or_default(),
        )),
        _ => None,
    })
}

#[test]
fn a_challenge_and_its_response_reach_the_application_and_the_outcome_carries_data() {
    let mut conn = server(&["SCRAM-SHA-256"]);
    let mut out = BytesMut::new();
    sasl_header(&mut conn);
    let offered = written(&mut conn, &mut out);
    assert!(matches!(&offered[..], [SaslFrame::Mechanisms(m)]
        if m.sasl_server_mechanisms.iter().map(|s| s.as_str()).collect::<Vec<_>>() == ["SCRAM-SHA-256"]));

    feed(&mut conn, &[init("SCRAM-SHA-256", b"n,,n=user,r=abc")]);
    assert!(
        matches!(&events(&mut conn)[..], [Event::SaslInit { mechanism, initial_response: Some(r), .. }]
        if mechanism == "SCRAM-SHA-256" && &r[..] == b"n,,n=user,r=abc")
    );
    conn.sasl_challenge(Bytes::from_static(b"r=abcdef,s=c2FsdA==,i=4096"))
        .expect("decision pending");
    assert!(
        matches!(&written(&mut conn, &mut out)[..], [SaslFrame::Challenge(c)]
        if &c.challenge[..] == b"r=abcdef,s=c2FsdA==,i=4096")
    );
    assert!(
        conn.sasl_outcome(true).is_err(),
        "no decision is pending while the response is awaited"
    );

    feed(&mut conn, &[response(b"c=biws,r=abcdef,p=proof")]);
    assert!(
        matches!(&events(&mut conn)[..], [Event::SaslResponse { response }]
        if &response[..] == b"c=biws,r=abcdef,p=proof")
    );
    conn.sasl_outcome_with(true, Some(Bytes::from_static(b"v=signature")))
        .expect("decision pending");
    match &written(&mut conn, &mut out)[..] {
        [SaslFrame::Outcome(o)] => {
            assert_eq!(o.code, SaslCode::Ok);
            assert_eq!(o.additional_data.as_deref(), Some(&b"v=signature"[..]));
        }
        other => panic!("expected the outcome, got {other:?}"),
    }
    assert!(
        matches!(&events(&mut conn)[..], [Event::SaslAuthenticated { mechanism }] if mechanism == "SCRAM-SHA-256")
    );
    assert_eq!(conn.sasl_mechanism(), Some("SCRAM-SHA-256"));
}

#[test]
fn a_refused_response_gets_the_auth_outcome_and_ends_the_connection() {
    let mut conn = server(&["SCRAM-SHA-256"]);
    let mut out = BytesMut::new();
    sasl_header(&mut conn);
    feed(&mut conn, &[init("SCRAM-SHA-256", b"n,,n=user,r=abc")]);
    events(&mut conn);
    conn.sasl_challenge(Bytes::from_static(b"r=abcdef,s=c2FsdA==,i=4096"))
        .unwrap();
    feed(&mut conn, &[response(b"c=biws,r=abcdef,p=wrong")]);
    events(&mut conn);
    conn.sasl_outcome(false).unwrap();
    let frames = written(&mut conn, &mut out);
    assert!(
        matches!(frames.last(), Some(SaslFrame::Outcome(o)) if o.code == SaslCode::Auth),
        "{frames:?}"
    );
    let (cond, _) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::UNAUTHORIZED_ACCESS);
    assert!(conn.is_closed());
}

#[test]
fn a_response_nobody_asked_for_is_refused() {
    let mut conn = server(&["PLAIN"]);
    sasl_header(&mut conn);
    feed(&mut conn, &[response(b"\0user\0pw")]);
    let (cond, description) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::NOT_ALLOWED);
    assert!(description.contains("sasl-response"), "{description}");
    assert!(conn.is_closed());
}

#[test]
fn a_second_init_is_refused() {
    let mut conn = server(&["PLAIN"]);
    sasl_header(&mut conn);
    feed(&mut conn, &[init("PLAIN", b"\0a\0b")]);
    events(&mut conn);
    conn.sasl_challenge(Bytes::new()).unwrap();
    feed(&mut conn, &[init("PLAIN", b"\0a\0b")]);
    let (cond, description) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::NOT_ALLOWED);
    assert!(description.contains("sasl-init"), "{description}");
}

#[test]
fn a_mechanism_not_offered_gets_the_auth_outcome_at_once() {
    let mut conn = server(&["PLAIN"]);
    let mut out = BytesMut::new();
    sasl_header(&mut conn);
    feed(&mut conn, &[init("CRAM-MD5", b"x")]);
    let frames = written(&mut conn, &mut out);
    assert!(matches!(frames.last(), Some(SaslFrame::Outcome(o)) if o.code == SaslCode::Auth));
    let (cond, description) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::UNAUTHORIZED_ACCESS);
    assert!(description.contains("CRAM-MD5"), "{description}");
}

#[test]
fn garbage_during_sasl_is_a_decode_or_framing_error() {
    // A SASL frame header (type 1) whose body is not a described list.
    let mut conn = server(&["PLAIN"]);
    sasl_header(&mut conn);
    conn.handle_input(
        &[0, 0, 0, 12, 2, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef],
        Instant::now(),
    );
    let (cond, _) = connection_error(&events(&mut conn)).expect("reported");
    assert!(
        [condition::DECODE_ERROR, condition::FRAMING_ERROR].contains(&cond.as_str()),
        "{cond}"
    );
    assert!(conn.is_closed());

    // An AMQP frame (type 0) where SASL frames belong.
    let mut conn = server(&["PLAIN"]);
    sasl_header(&mut conn);
    conn.handle_input(&[0, 0, 0, 8, 2, 0, 0, 0], Instant::now());
    let (cond, description) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::NOT_ALLOWED);
    assert!(description.contains("during SASL"), "{description}");
}

#[test]
fn a_plain_amqp_header_is_refused_when_sasl_is_required() {
    let mut conn = server(&["PLAIN"]);
    let mut buf = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Amqp, &mut buf);
    conn.handle_input(&buf, Instant::now());
    let (cond, _) = connection_error(&events(&mut conn)).expect("reported");
    assert_eq!(cond, condition::NOT_ALLOWED);
    assert!(conn.remote_open().is_none());
}
