//! Malformed input to the AMQP engine: each case feeds a server `Connection`
//! hand-made bytes, decodes what the engine writes back, and asserts the
//! spec's error condition in the close (or end, or detach) it sent. Nothing
//! panics, whatever arrives.

use std::time::Instant;

use bote_amqp::DeliveryTag;
use bote_amqp::{
    Attach, Begin, ErrorScope, Event, FrameBody, Open, Performative, ProtocolHeader,
    ReceiverSettleMode, Role, SenderSettleMode, Transfer, condition, decode_frame, encode_frame,
    encode_protocol_header,
};
use bote_amqp::{Connection, ConnectionConfig, Side};
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

/// A server engine and everything it wrote so far, decoded.
struct Harness {
    conn: Connection,
    now: Instant,
    written: BytesMut,
}

impl Harness {
    fn server() -> Self {
        Harness::server_with_margin(0)
    }

    /// A server whose receiving links take `margin` transfers beyond credit.
    fn server_with_margin(margin: u32) -> Self {
        let now = Instant::now();
        let config = ConnectionConfig {
            container_id: "server".into(),
            max_frame_size: 512,
            session: bote_amqp::SessionConfig {
                credit_margin: margin,
                ..bote_amqp::SessionConfig::default()
            },
            ..ConnectionConfig::default()
        };
        let mut conn = Connection::new(config, Side::Server, now);
        conn.open();
        Harness {
            conn,
            now,
            written: BytesMut::new(),
        }
    }

    /// A server that has exchanged headers and opens with the test's client.
    fn opened() -> Self {
        Harness::opened_with_margin(0)
    }

    fn opened_with_margin(margin: u32) -> Self {
        let mut h = Harness::server_with_margin(margin);
        let mut input = BytesMut::new();
        encode_protocol_header(ProtocolHeader::Amqp, &mut input);
        encode_frame(0, &Performative::Open(Box::new(open())), &[], &mut input);
        h.feed(&input);
        h
    }

    /// Opened and with a session the client began on channel 0.
    fn with_session() -> Self {
        Harness::with_session_and_margin(0)
    }

    fn with_session_and_margin(margin: u32) -> Self {
        let mut h = Harness::opened_with_margin(margin);
        let mut input = BytesMut::new();
        encode_frame(0, &Performative::Begin(begin()), &[], &mut input);
        h.feed(&input);
        h
    }

    fn feed(&mut self, data: &[u8]) {
        self.conn.handle_input(data, self.now);
        while self.conn.poll_transmit(&mut self.written) > 0 {}
    }

    fn frame(&mut self, channel: u16, p: Performative) {
        let mut input = BytesMut::new();
        encode_frame(channel, &p, &[], &mut input);
        self.feed(&input);
    }

    /// The performatives the engine wrote (after its protocol header).
    fn performatives(&self) -> Vec<Performative> {
        let mut buf = self.written.clone();
        assert_eq!(
            &buf[..8],
            b"AMQP\x00\x01\x00\x00",
            "the engine answers with the AMQP header"
        );
        let _ = buf.split_to(8);
        let mut out = Vec::new();
        while let Some(frame) =
            decode_frame(&mut buf, u32::MAX).expect("the engine writes well-formed frames")
        {
            if let FrameBody::Amqp(p) = frame.body {
                out.push(p);
            }
        }
        assert!(buf.is_empty(), "no partial frame left");
        out
    }

    /// The condition of the close the engine sent (asserting there is one).
    fn close_condition(&self) -> String {
        let ps = self.performatives();
        assert!(
            matches!(ps.first(), Some(Performative::Open(_))),
            "open precedes everything: {ps:?}"
        );
        ps.iter()
            .find_map(|p| match p {
                Performative::Close(c) => Some(
                    c.error
                        .as_ref()
                        .expect("close carries an error")
                        .condition
                        .0
                        .clone(),
                ),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no close in {ps:?}"))
    }

    fn end_condition(&self) -> Option<String> {
        self.performatives().iter().find_map(|p| match p {
            Performative::End(e) => e.error.as_ref().map(|e| e.condition.0.clone()),
            _ => None,
        })
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }
}

fn open() -> Open {
    Open {
        container_id: "client".into(),
        ..Open::default()
    }
}

fn begin() -> Begin {
    Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 1000,
        outgoing_window: 1000,
        handle_max: 100,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

fn attach(handle: u32) -> Attach {
    Attach {
        name: format!("link-{handle}"),
        handle,
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
    }
}

fn connection_error(events: &[Event]) -> Option<String> {
    events.iter().find_map(|e| match e {
        Event::ProtocolError {
            scope: ErrorScope::Connection,
            error,
        } => Some(error.condition.0.clone()),
        _ => None,
    })
}

#[test]
fn a_wrong_protocol_header_is_answered_with_ours_and_a_close() {
    let mut h = Harness::server();
    h.feed(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(h.close_condition(), condition::FRAMING_ERROR);
    assert!(h.conn.is_closed());
    assert_eq!(
        connection_error(&h.events()).as_deref(),
        Some(condition::FRAMING_ERROR)
    );
}

#[test]
fn a_sasl_header_to_a_server_without_sasl_is_not_allowed() {
    let mut h = Harness::server();
    h.feed(b"AMQP\x03\x01\x00\x00");
    assert_eq!(h.close_condition(), condition::NOT_ALLOWED);
    assert!(h.conn.is_closed());
}

#[test]
fn an_unsupported_version_is_a_framing_error() {
    let mut h = Harness::server();
    h.feed(b"AMQP\x00\x00\x09\x01");
    assert_eq!(h.close_condition(), condition::FRAMING_ERROR);
}

#[test]
fn a_frame_before_open_is_not_allowed() {
    let mut h = Harness::server();
    let mut input = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Amqp, &mut input);
    encode_frame(0, &Performative::Begin(begin()), &[], &mut input);
    h.feed(&input);
    assert_eq!(h.close_condition(), condition::NOT_ALLOWED);
}

#[test]
fn a_truncated_performative_is_a_decode_error() {
    let mut h = Harness::opened();
    let mut good = BytesMut::new();
    encode_frame(0, &Performative::Begin(begin()), &[], &mut good);
    // Cut the performative short and fix up the frame size to match.
    let cut = good.len() - 4;
    let mut bad = BytesMut::from(&good[..cut]);
    bad[..4].copy_from_slice(&(cut as u32).to_be_bytes());
    h.feed(&bad);
    assert_eq!(h.close_condition(), condition::DECODE_ERROR);
    assert!(h.conn.is_closed());
}

#[test]
fn a_partial_frame_waits_for_the_rest() {
    let mut h = Harness::opened();
    let mut frame = BytesMut::new();
    encode_frame(0, &Performative::Begin(begin()), &[], &mut frame);
    let before = h.performatives().len();
    h.feed(&frame[..5]);
    assert_eq!(
        h.performatives().len(),
        before,
        "nothing happens on half a frame"
    );
    h.feed(&frame[5..]);
    assert!(
        matches!(h.performatives().last(), Some(Performative::Begin(b)) if b.remote_channel == Some(0))
    );
}

#[test]
fn a_frame_over_max_frame_size_is_a_framing_error() {
    let mut h = Harness::opened();
    let mut bad = BytesMut::new();
    bad.put_u32(1000);
    bad.put_u8(2);
    bad.put_u8(0);
    bad.put_u16(0);
    h.feed(&bad);
    assert_eq!(h.close_condition(), condition::FRAMING_ERROR);
}

#[test]
fn an_unknown_descriptor_is_a_decode_error() {
    let mut h = Harness::opened();
    // A frame whose body is a described list with descriptor 0x77.
    let body = [0x00u8, 0x53, 0x77, 0x45];
    let mut bad = BytesMut::new();
    bad.put_u32(8 + body.len() as u32);
    bad.put_u8(2);
    bad.put_u8(0);
    bad.put_u16(0);
    bad.put_slice(&body);
    h.feed(&bad);
    assert_eq!(h.close_condition(), condition::DECODE_ERROR);
}

#[test]
fn a_performative_on_an_unknown_channel_is_not_allowed() {
    let mut h = Harness::opened();
    h.frame(5, Performative::Attach(Box::new(attach(0))));
    assert_eq!(h.close_condition(), condition::NOT_ALLOWED);
}

#[test]
fn a_begin_beyond_channel_max_is_a_framing_error() {
    let mut h = Harness::opened();
    h.frame(60000, Performative::Begin(begin()));
    assert_eq!(h.close_condition(), condition::FRAMING_ERROR);
}

#[test]
fn a_transfer_on_an_unattached_handle_ends_the_session() {
    let mut h = Harness::with_session();
    let transfer = Transfer {
        handle: 7,
        delivery_id: Some(0),
        delivery_tag: Some(DeliveryTag::from(b"t")),
        ..Transfer::default()
    };
    let mut input = BytesMut::new();
    encode_frame(0, &Performative::Transfer(transfer), b"payload", &mut input);
    h.feed(&input);
    assert_eq!(
        h.end_condition().as_deref(),
        Some(condition::UNATTACHED_HANDLE)
    );
    assert!(
        !h.performatives()
            .iter()
            .any(|p| matches!(p, Performative::Close(_))),
        "the connection stays open"
    );
    let events = h.events();
    assert!(events.iter().any(|e| matches!(e, Event::ProtocolError { scope: ErrorScope::Session(_), error } if error.condition.as_str() == condition::UNATTACHED_HANDLE)));
}

#[test]
fn a_flow_on_an_unattached_handle_ends_the_session() {
    let mut h = Harness::with_session();
    let flow = bote_amqp::Flow {
        next_incoming_id: Some(0),
        incoming_window: 10,
        next_outgoing_id: 0,
        outgoing_window: 10,
        handle: Some(3),
        link_credit: Some(5),
        ..Default::default()
    };
    h.frame(0, Performative::Flow(flow));
    assert_eq!(
        h.end_condition().as_deref(),
        Some(condition::UNATTACHED_HANDLE)
    );
}

#[test]
fn attaching_a_handle_already_in_use_ends_the_session_with_handle_in_use() {
    let mut h = Harness::with_session();
    h.frame(0, Performative::Attach(Box::new(attach(1))));
    let mut second = attach(1);
    second.name = "other".into();
    h.frame(0, Performative::Attach(Box::new(second)));
    assert_eq!(h.end_condition().as_deref(), Some(condition::HANDLE_IN_USE));
}

/// A session with the peer's sending link 0 attached and accepted: this
/// side receives on it (no credit granted yet).
fn receiving_link() -> (Harness, bote_amqp::LinkId) {
    receiving_link_with(0)
}

/// [`receiving_link`] taking up to `margin` transfers beyond its credit.
fn receiving_link_with(margin: u32) -> (Harness, bote_amqp::LinkId) {
    let mut h = Harness::with_session_and_margin(margin);
    h.frame(0, Performative::Attach(Box::new(attach(0))));
    let link = h
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, .. } => Some(link),
            _ => None,
        })
        .expect("attach requested");
    h.conn
        .accept_attach(link, bote_amqp::LinkConfig::receiver("link-0", None))
        .unwrap();
    (h, link)
}

#[test]
fn a_transfer_without_credit_detaches_the_link_with_transfer_limit_exceeded() {
    let (mut h, _link) = receiving_link();
    h.feed(&[]);
    let transfer = Transfer {
        handle: 0,
        delivery_id: Some(0),
        delivery_tag: Some(DeliveryTag::from(b"t")),
        ..Transfer::default()
    };
    let mut input = BytesMut::new();
    encode_frame(0, &Performative::Transfer(transfer), b"payload", &mut input);
    h.feed(&input);
    let detach = h.performatives().into_iter().find_map(|p| match p {
        Performative::Detach(d) => Some(d),
        _ => None,
    });
    let detach = detach.expect("the engine detached the link");
    assert!(detach.closed);
    assert_eq!(
        detach.error.map(|e| e.condition.0).as_deref(),
        Some(condition::TRANSFER_LIMIT_EXCEEDED)
    );
}

/// A receiving link with a credit margin takes (and counts) that many
/// transfers beyond its credit since the last grant — a sender sending
/// before the first flow, or one off by one — and detaches past it.
#[test]
fn transfers_beyond_credit_are_taken_up_to_the_margin_and_counted_then_the_link_detaches() {
    let (mut h, link) = receiving_link_with(3);
    h.feed(&[]);
    let transfer = |id: u32| {
        let mut input = BytesMut::new();
        let t = Transfer {
            handle: 0,
            delivery_id: Some(id),
            delivery_tag: Some(DeliveryTag::from(vec![id as u8])),
            settled: Some(true),
            ..Transfer::default()
        };
        encode_frame(0, &Performative::Transfer(t), b"payload", &mut input);
        input
    };
    let detached = |h: &mut Harness| {
        h.performatives().into_iter().find_map(|p| match p {
            Performative::Detach(d) => Some(d),
            _ => None,
        })
    };
    // Before any credit: three are taken.
    for id in 0..3 {
        h.feed(&transfer(id));
    }
    assert!(detached(&mut h).is_none(), "within the margin");
    assert_eq!(h.conn.link(link).unwrap().transfers_beyond_credit(), 3);
    // A grant starts the margin again: two with credit, three beyond.
    h.conn.flow(link, 2, false).unwrap();
    for id in 3..8 {
        h.feed(&transfer(id));
    }
    assert!(detached(&mut h).is_none(), "credit, then the margin again");
    assert_eq!(h.conn.link(link).unwrap().transfers_beyond_credit(), 6);
    let received = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Transfer(_)))
        .count();
    assert_eq!(received, 8);
    h.feed(&transfer(8));
    let detach = detached(&mut h).expect("one past the margin");
    assert_eq!(
        detach.error.map(|e| e.condition.0).as_deref(),
        Some(condition::TRANSFER_LIMIT_EXCEEDED)
    );
}

/// fe2o3-amqp 0.18 answers a drain with a flow that advances its
/// delivery-count over all its credit before writing transfers it had
/// already taken that credit for. Those transfers are within what was
/// granted: taken, not refused — but not one more.
#[test]
fn transfers_written_after_a_drain_reply_that_counted_them_are_taken_up_to_the_credit() {
    let (mut h, link) = receiving_link();
    h.conn.flow(link, 3, true).unwrap();
    h.feed(&[]);
    h.frame(
        0,
        Performative::Flow(bote_amqp::Flow {
            next_incoming_id: Some(0),
            incoming_window: 100,
            next_outgoing_id: 0,
            outgoing_window: 100,
            handle: Some(0),
            delivery_count: Some(3),
            link_credit: Some(0),
            drain: true,
            ..Default::default()
        }),
    );
    let transfer = |id: u32| {
        let mut input = BytesMut::new();
        let t = Transfer {
            handle: 0,
            delivery_id: Some(id),
            delivery_tag: Some(DeliveryTag::from(vec![id as u8])),
            settled: Some(true),
            ..Transfer::default()
        };
        encode_frame(0, &Performative::Transfer(t), b"payload", &mut input);
        input
    };
    let detached = |h: &mut Harness| {
        h.performatives().into_iter().find_map(|p| match p {
            Performative::Detach(d) => Some(d),
            _ => None,
        })
    };
    for id in 0..3 {
        h.feed(&transfer(id));
    }
    assert!(
        detached(&mut h).is_none(),
        "the three late transfers are taken"
    );
    let received = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Transfer(_)))
        .count();
    assert_eq!(received, 3);
    h.feed(&transfer(3));
    let detach = detached(&mut h).expect("a fourth is beyond any credit granted");
    assert_eq!(
        detach.error.map(|e| e.condition.0).as_deref(),
        Some(condition::TRANSFER_LIMIT_EXCEEDED)
    );
}

#[test]
fn a_second_open_is_not_allowed() {
    let mut h = Harness::opened();
    h.frame(0, Performative::Open(Box::new(open())));
    assert_eq!(h.close_condition(), condition::NOT_ALLOWED);
}

#[test]
fn input_after_the_close_is_ignored() {
    let mut h = Harness::opened();
    h.feed(b"\x00\x00\x10\x00\x02\x00\x00\x00");
    let written = h.written.len();
    h.frame(0, Performative::Begin(begin()));
    assert_eq!(h.written.len(), written, "nothing more is written");
    assert!(h.conn.is_closed());
}

/// A valid client byte stream: header, open, begin and attach of a sender
/// link; then (once the server granted credit) three transfers, one
/// spanning several frames.
fn client_stream() -> (BytesMut, BytesMut) {
    let mut setup = BytesMut::new();
    encode_protocol_header(ProtocolHeader::Amqp, &mut setup);
    encode_frame(0, &Performative::Open(Box::new(open())), &[], &mut setup);
    encode_frame(0, &Performative::Begin(begin()), &[], &mut setup);
    encode_frame(
        0,
        &Performative::Attach(Box::new(attach(0))),
        &[],
        &mut setup,
    );
    let mut input = BytesMut::new();
    for id in 0..3u32 {
        let frames = if id == 1 { 3 } else { 1 };
        for f in 0..frames {
            let transfer = Transfer {
                handle: 0,
                delivery_id: (f == 0).then_some(id),
                delivery_tag: (f == 0).then(|| DeliveryTag::from_slice(&id.to_be_bytes())),
                settled: (f == 0).then_some(true),
                more: f + 1 < frames,
                ..Transfer::default()
            };
            encode_frame(
                0,
                &Performative::Transfer(transfer),
                &[id as u8; 40],
                &mut input,
            );
        }
    }
    (setup, input)
}

/// Feeds the client stream, cut at `cuts` into separate reads, to a server
/// that grants credit as soon as the link is requested; returns the transfer
/// payloads it reported.
fn received_payloads(cuts: &[usize]) -> Vec<Bytes> {
    let (setup, transfers) = client_stream();
    let mut h = Harness::server();
    let mut payloads = Vec::new();
    let reads = split(&setup, cuts)
        .into_iter()
        .chain(split(&transfers, cuts));
    for read in reads {
        h.feed(&read);
        for e in h.events() {
            match e {
                Event::AttachRequested { link, .. } => {
                    h.conn
                        .accept_attach(link, bote_amqp::LinkConfig::receiver("link-0", None))
                        .unwrap();
                    h.conn.flow(link, 10, false).unwrap();
                    h.feed(&[]);
                }
                Event::Transfer(t) => payloads.push(t.payload),
                _ => {}
            }
        }
    }
    payloads
}

fn split(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(stream.len());
    let mut at = 0;
    let mut reads = Vec::new();
    for end in bounds {
        reads.push(stream[at..end].to_vec());
        at = end;
    }
    reads
}

#[test]
fn a_valid_stream_yields_one_event_per_delivery() {
    let got = received_payloads(&[]);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1].len(),
        120,
        "the three frames of delivery 1 are assembled"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// However the bytes are cut into reads, the server reports the same
    /// deliveries.
    #[test]
    fn any_split_of_a_valid_stream_gives_the_same_deliveries(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let whole = received_payloads(&[]);
        let split = received_payloads(&cuts);
        prop_assert_eq!(whole, split);
    }

    /// Whatever follows a valid header and open, the engine neither panics
    /// nor writes a malformed frame.
    #[test]
    fn arbitrary_bytes_after_open_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut h = Harness::with_session();
        h.feed(&data);
        let _ = h.performatives();
        let _ = h.events();
    }

    /// The same for arbitrary bytes in place of the protocol header.
    #[test]
    fn arbitrary_bytes_instead_of_a_header_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut h = Harness::server();
        h.feed(&data);
        let _ = h.events();
    }

    /// Valid frames with a few bytes flipped.
    #[test]
    fn corrupted_frames_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..6)) {
        let mut input = BytesMut::new();
        encode_frame(0, &Performative::Attach(Box::new(attach(0))), &[], &mut input);
        let transfer = Transfer {
            handle: 0,
            delivery_id: Some(0),
            delivery_tag: Some(DeliveryTag::from(b"tag")),
            ..Transfer::default()
        };
        encode_frame(0, &Performative::Transfer(transfer), b"payload bytes", &mut input);
        let len = input.len();
        for (at, byte) in flips {
            input[at % len] = byte;
        }
        let mut h = Harness::with_session();
        h.feed(&input);
        let _ = h.events();
    }
}
