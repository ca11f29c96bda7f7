//! Hostile peers against a server `Connection`: the handshake deadline
//! (a peer trickling its protocol header, SASL or open a byte at a time
//! cannot hold a connection) and the causal order of frames on a session
//! (an attach reply never follows the end of its session).

use std::time::{Duration, Instant};

use bote_amqp::DeliveryTag;
use bote_amqp::{
    Attach, Begin, ErrorScope, Event, FrameBody, LinkConfig, Open, Performative, ProtocolHeader,
    ReceiverSettleMode, Role, SaslConfig, SenderSettleMode, Transfer, condition, decode_frame,
    encode_frame, encode_protocol_header,
};
use bote_amqp::{Connection, ConnectionConfig, Side};
use bytes::BytesMut;

const DEADLINE: Duration = Duration::from_secs(2);

struct Server {
    conn: Connection,
    start: Instant,
    written: BytesMut,
}

impl Server {
    fn new(sasl: SaslConfig) -> Self {
        let start = Instant::now();
        let config = ConnectionConfig {
            container_id: "server".into(),
            max_frame_size: 512,
            idle_timeout: Some(Duration::from_secs(60)),
            handshake_timeout: Some(DEADLINE),
            sasl,
            ..ConnectionConfig::default()
        };
        let mut conn = Connection::new(config, Side::Server, start);
        conn.open();
        Server {
            conn,
            start,
            written: BytesMut::new(),
        }
    }

    fn feed_at(&mut self, data: &[u8], at: Duration) {
        self.conn.handle_input(data, self.start + at);
        self.drain();
    }

    fn drain(&mut self) {
        while self.conn.poll_transmit(&mut self.written) > 0 {}
    }

    /// Advances time to `at` as a driver would: fire the timer if it is due.
    fn time(&mut self, at: Duration) {
        let now = self.start + at;
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        self.drain();
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// The (channel, performative) pairs written after the AMQP header.
    fn performatives(&self) -> Vec<(u16, Performative)> {
        let mut buf = self.written.clone();
        assert_eq!(&buf[..8], b"AMQP\x00\x01\x00\x00");
        let _ = buf.split_to(8);
        let mut out = Vec::new();
        while let Some(frame) = decode_frame(&mut buf, u32::MAX).expect("well-formed output") {
            if let FrameBody::Amqp(p) = frame.body {
                out.push((frame.channel, p));
            }
        }
        out
    }

    fn close_error(&self) -> Option<(String, String)> {
        self.performatives().into_iter().find_map(|(_, p)| match p {
            Performative::Close(c) => c.error.map(|e| {
                (
                    e.condition.0.clone(),
                    e.description.clone().unwrap_or_default(),
                )
            }),
            _ => None,
        })
    }
}

fn header_and_open() -> BytesMut {
    let mut input = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Amqp, &mut input);
    let open = Open {
        container_id: "client".into(),
        ..Open::default()
    };
    encode_frame(0, &Performative::Open(Box::new(open)), &[], &mut input);
    input
}

#[test]
fn a_header_trickled_a_byte_at_a_time_is_closed_at_the_handshake_deadline() {
    let mut s = Server::new(SaslConfig::None);
    // One byte every 300 ms: each would reset an idle timer, not this one.
    for (i, b) in b"AMQP\x00\x01".iter().enumerate() {
        s.feed_at(&[*b], Duration::from_millis(300 * i as u64));
        s.time(Duration::from_millis(300 * i as u64));
        assert!(!s.conn.is_closed(), "closed early, after byte {i}");
    }
    assert_eq!(s.conn.poll_timeout(), Some(s.start + DEADLINE));
    s.time(DEADLINE);
    assert!(s.conn.is_closed());
    let (cond, description) = s.close_error().expect("a close with an error");
    assert_eq!(cond, condition::RESOURCE_LIMIT_EXCEEDED);
    assert!(
        description.contains("handshake not finished within 2000 ms")
            && description.contains("protocol header"),
        "{description}"
    );
    assert!(s.events().iter().any(|e| matches!(
        e,
        Event::ProtocolError { scope: ErrorScope::Connection, error }
            if error.condition.0 == condition::RESOURCE_LIMIT_EXCEEDED
    )));
}

#[test]
fn a_missing_open_after_the_header_is_closed_at_the_deadline_naming_open() {
    let mut s = Server::new(SaslConfig::None);
    let mut header = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Amqp, &mut header);
    s.feed_at(&header, Duration::ZERO);
    s.time(DEADLINE - Duration::from_millis(1));
    assert!(!s.conn.is_closed());
    s.time(DEADLINE);
    assert!(s.conn.is_closed());
    let (cond, description) = s.close_error().expect("a close with an error");
    assert_eq!(cond, condition::RESOURCE_LIMIT_EXCEEDED);
    assert!(description.contains("waiting for open"), "{description}");
}

#[test]
fn a_peer_stuck_in_sasl_is_dropped_at_the_deadline() {
    let mut s = Server::new(SaslConfig::Server {
        mechanisms: vec!["ANONYMOUS".into()],
        required: true,
    });
    s.feed_at(b"AMQP\x03\x01\x00\x00", Duration::ZERO);
    s.time(DEADLINE);
    assert!(s.conn.is_closed(), "no sasl-init: closed at the deadline");
    assert!(s.events().iter().any(|e| matches!(
        e,
        Event::ProtocolError { scope: ErrorScope::Connection, error }
            if error.description.as_deref().is_some_and(|d| d.contains("waiting for SASL"))
    )));
}

#[test]
fn an_open_in_time_disarms_the_deadline() {
    let mut s = Server::new(SaslConfig::None);
    s.feed_at(&header_and_open(), Duration::from_millis(1900));
    s.time(DEADLINE + Duration::from_secs(10));
    assert!(!s.conn.is_closed());
    assert!(
        s.conn
            .poll_timeout()
            .is_some_and(|t| t > s.start + DEADLINE),
        "only the idle timeout remains"
    );
    assert!(s.close_error().is_none());
}

#[test]
fn an_attach_and_a_session_error_in_one_read_answer_the_attach_before_the_end() {
    let mut s = Server::new(SaslConfig::None);
    let mut input = header_and_open();
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 1000,
        outgoing_window: 1000,
        handle_max: 100,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    encode_frame(0, &Performative::Begin(begin), &[], &mut input);
    let attach = Attach {
        name: "l".into(),
        handle: 0,
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Mixed,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: None,
        target: None,
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    encode_frame(0, &Performative::Attach(Box::new(attach)), &[], &mut input);
    // A transfer on handle 7, never attached: a session error.
    let transfer = Transfer {
        handle: 7,
        delivery_id: Some(0),
        delivery_tag: Some(DeliveryTag::from(b"t")),
        ..Transfer::default()
    };
    encode_frame(0, &Performative::Transfer(transfer), b"x", &mut input);
    s.feed_at(&input, Duration::ZERO);
    // The application answers the attach it was told of, as a router does
    // after the read: the engine must not write it after the end.
    for e in s.events() {
        if let Event::AttachRequested { link, attach } = e {
            let _ = s
                .conn
                .accept_attach(link, LinkConfig::receiver(attach.name, None));
        }
    }
    s.drain();
    let on_session: Vec<&'static str> = s
        .performatives()
        .into_iter()
        .filter(|(channel, _)| *channel == 0)
        .filter_map(|(_, p)| match p {
            Performative::Attach(_) => Some("attach"),
            Performative::End(_) => Some("end"),
            Performative::Begin(_) => Some("begin"),
            _ => None,
        })
        .collect();
    assert_eq!(on_session, ["begin", "attach", "end"]);
}
