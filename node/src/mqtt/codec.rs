//! MQTT packets in and out, for MQTT 3.1.1 and 5.0, over the packet codecs
//! of `rumqttc` (its public `mqttbytes::v4` and `v5::mqttbytes::v5`
//! modules: both directions of every packet, over `bytes`, no I/O). The
//! connection knows only the few packets a server reads and writes, as the
//! version-neutral types here.
//!
//! Why rumqttc: it is the maintained Rust MQTT client (bytebeam), its codec
//! covers both versions with `Bytes` payloads (no copy of a PUBLISH's
//! payload), and with `default-features = false` it adds no TLS stack;
//! `mqttbytes` 0.6 is the same code left unmaintained, and `ntex-mqtt`
//! would bring the ntex runtime beside actix/tokio. Two gaps of its
//! server-side use are filled here: a 5.0 DISCONNECT with no reason code
//! (remaining length 0, which the 5.0 spec allows) and telling the version
//! from the CONNECT before decoding it.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as m4b, QoS, v4};
use rumqttc::v5::mqttbytes::{self as m5b, v5};

/// The protocol level a client connected with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5.0",
        }
    }
}

/// MQTT 5 publish properties that map to AMQP (see `mqtt::message`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
}

/// An application message: a PUBLISH, or a will.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    pub properties: Properties,
}

#[derive(Debug)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Publish>,
    /// 5.0: the session expiry interval in seconds (0 when absent).
    pub session_expiry: u32,
    /// 5.0: how many QoS 1 publishes the client takes unacknowledged.
    pub receive_maximum: Option<u16>,
}

/// What a client may send a server.
#[derive(Debug)]
pub enum Inbound {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck {
        pkid: u16,
        reason: u8,
    },
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect {
        reason: u8,
    },
    /// A packet a server never receives (CONNACK, SUBACK, ...), or QoS 2
    /// flow packets (PUBREC/PUBREL/PUBCOMP), by name.
    Unexpected(&'static str),
}

/// Why no packet could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The packet's remaining length is over the limit.
    #[error("packet of {0} bytes is larger than this listener accepts")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("the first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported protocol level {0} (3.1.1 and 5.0 are)")]
    UnsupportedLevel(u8),
}

/// Reads the next whole packet from `buf` (consuming it), `Ok(None)` if
/// more bytes are needed. `version` is `None` until CONNECT has been read
/// (the first packet must be CONNECT; its protocol level picks the codec).
pub fn read(
    buf: &mut BytesMut,
    version: Option<Version>,
    max_size: usize,
) -> Result<Option<Inbound>, ReadError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let version = match version {
        Some(v) => v,
        None => {
            if buf[0] >> 4 != 1 {
                return Err(ReadError::NotConnect);
            }
            match connect_level(buf)? {
                None => return Ok(None),
                Some(4) => Version::V311,
                Some(5) => Version::V5,
                Some(l) => return Err(ReadError::UnsupportedLevel(l)),
            }
        }
    };
    // A 5.0 DISCONNECT may carry nothing (reason 0).
    if version == Version::V5 && buf[0] == 0xE0 && buf[1] == 0 {
        let _ = buf.split_to(2);
        return Ok(Some(Inbound::Disconnect { reason: 0 }));
    }
    match version {
        Version::V311 => match v4::Packet::read(buf, max_size) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(m4b::Error::InsufficientBytes(_)) => Ok(None),
            Err(m4b::Error::PayloadSizeLimitExceeded(n)) => Err(ReadError::TooLarge(n)),
            Err(e) => Err(ReadError::Malformed(e.to_string())),
        },
        Version::V5 => match v5::Packet::read(buf, Some(max_size as u32)) {
            Ok(p) => Ok(Some(from_v5(p))),
            Err(m5b::Error::InsufficientBytes(_)) => Ok(None),
            Err(m5b::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
                Err(ReadError::TooLarge(pkt_size))
            }
            Err(e) => Err(ReadError::Malformed(e.to_string())),
        },
    }
}

/// The protocol level of a CONNECT at the start of `buf`, once its bytes
/// are in: fixed header, remaining length, protocol name, level. A
/// remaining length whose fourth byte still has its continuation bit set
/// is malformed (MQTT 3.1.1 §2.2.3, 5.0 §1.5.5): it can never complete, so
/// it is refused at once rather than waited on until the handshake deadline.
fn connect_level(buf: &[u8]) -> Result<Option<u8>, ReadError> {
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(ReadError::Malformed(
                "CONNECT remaining length runs past four bytes".into(),
            ));
        }
    }
    let (Some(&hi), Some(&lo)) = (buf.get(i), buf.get(i + 1)) else {
        return Ok(None);
    };
    let name_len = u16::from_be_bytes([hi, lo]) as usize;
    Ok(buf.get(i + 2 + name_len).copied())
}

fn qos(q: QoS) -> u8 {
    q as u8
}

fn qos4(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> m5b::QoS {
    match q {
        0 => m5b::QoS::AtMostOnce,
        1 => m5b::QoS::AtLeastOnce,
        _ => m5b::QoS::ExactlyOnce,
    }
}

fn from_v4(p: v4::Packet) -> Inbound {
    match p {
        v4::Packet::Connect(c) => Inbound::Connect(Box::new(Connect {
            version: Version::V311,
            client_id: c.client_id,
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            will: c.last_will.map(|w| Publish {
                topic: w.topic,
                payload: w.message,
                qos: qos(w.qos),
                retain: w.retain,
                dup: false,
                pkid: 0,
                properties: Properties::default(),
            }),
            session_expiry: 0,
            receive_maximum: None,
        })),
        v4::Packet::Publish(p) => Inbound::Publish(Publish {
            topic: p.topic,
            payload: p.payload,
            qos: qos(p.qos),
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            properties: Properties::default(),
        }),
        v4::Packet::PubAck(a) => Inbound::PubAck {
            pkid: a.pkid,
            reason: 0,
        },
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect { reason: 0 },
        v4::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v4::Packet::PubRel(_) => Inbound::Unexpected("PUBREL"),
        v4::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    }
}

fn props5(p: Option<v5::PublishProperties>) -> Properties {
    let Some(p) = p else {
        return Properties::default();
    };
    Properties {
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
    }
}

fn from_v5(p: v5::Packet) -> Inbound {
    match p {
        v5::Packet::Connect(c, will, _login) => {
            let props = c.properties.unwrap_or_default();
            Inbound::Connect(Box::new(Connect {
                version: Version::V5,
                client_id: c.client_id,
                clean: c.clean_start,
                keep_alive: c.keep_alive,
                will: will.map(|w| {
                    let p = w.properties.unwrap_or(v5::LastWillProperties {
                        delay_interval: None,
                        payload_format_indicator: None,
                        message_expiry_interval: None,
                        content_type: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: Vec::new(),
                    });
                    Publish {
                        topic: String::from_utf8_lossy(&w.topic).into_owned(),
                        payload: w.message,
                        qos: w.qos as u8,
                        retain: w.retain,
                        dup: false,
                        pkid: 0,
                        properties: Properties {
                            content_type: p.content_type,
                            response_topic: p.response_topic,
                            correlation_data: p.correlation_data,
                            user_properties: p.user_properties,
                            payload_format_indicator: p.payload_format_indicator,
                            message_expiry_interval: p.message_expiry_interval,
                        },
                    }
                }),
                session_expiry: props.session_expiry_interval.unwrap_or(0),
                receive_maximum: props.receive_maximum,
            }))
        }
        v5::Packet::Publish(p) => Inbound::Publish(Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            pkid: p.pkid,
            properties: props5(p.properties),
        }),
        v5::Packet::PubAck(a) => Inbound::PubAck {
            pkid: a.pkid,
            reason: match a.reason {
                v5::PubAckReason::Success => 0,
                v5::PubAckReason::NoMatchingSubscribers => 0x10,
                _ => 0x80,
            },
        },
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, f.qos as u8))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            reason: d.reason_code as u8,
        },
        v5::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v5::Packet::PubRel(_) => Inbound::Unexpected("PUBREL"),
        v5::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
        v5::Packet::Auth(_) => Inbound::Unexpected("AUTH"),
    }
}

/// Writes packets for one connection's version into an output buffer.
pub struct Writer {
    pub version: Version,
}

impl Writer {
    fn put4(&self, p: v4::Packet, out: &mut BytesMut) {
        if let Err(e) = p.write(out, usize::MAX) {
            tracing::warn!("MQTT packet not encoded: {e}");
        }
    }

    fn put5(&self, p: v5::Packet, out: &mut BytesMut) {
        if let Err(e) = p.write(out, None) {
            tracing::warn!("MQTT packet not encoded: {e}");
        }
    }

    /// CONNACK. `code` is the 5.0 reason code (0 success); for 3.1.1 it is
    /// mapped to the nearest return code. 5.0 success tells the client the
    /// server's limits: maximum QoS 1, no retain, `receive_max`.
    pub fn connack(&self, session_present: bool, code: u8, receive_max: u16, out: &mut BytesMut) {
        match self.version {
            Version::V311 => {
                let code = match code {
                    0 => v4::ConnectReturnCode::Success,
                    0x84 => v4::ConnectReturnCode::RefusedProtocolVersion,
                    0x85 => v4::ConnectReturnCode::BadClientId,
                    0x86 => v4::ConnectReturnCode::BadUserNamePassword,
                    0x87 => v4::ConnectReturnCode::NotAuthorized,
                    _ => v4::ConnectReturnCode::ServiceUnavailable,
                };
                self.put4(
                    v4::Packet::ConnAck(v4::ConnAck::new(code, session_present)),
                    out,
                )
            }
            Version::V5 => {
                let code = match code {
                    0 => v5::ConnectReturnCode::Success,
                    0x84 => v5::ConnectReturnCode::UnsupportedProtocolVersion,
                    0x85 => v5::ConnectReturnCode::ClientIdentifierNotValid,
                    0x9A => v5::ConnectReturnCode::RetainNotSupported,
                    0x9B => v5::ConnectReturnCode::QoSNotSupported,
                    0x95 => v5::ConnectReturnCode::PacketTooLarge,
                    0x88 => v5::ConnectReturnCode::ServerUnavailable,
                    _ => v5::ConnectReturnCode::UnspecifiedError,
                };
                let properties =
                    (code == v5::ConnectReturnCode::Success).then(|| v5::ConnAckProperties {
                        receive_max: Some(receive_max),
                        max_qos: Some(1),
                        retain_available: Some(0),
                        shared_subscription_available: Some(0),
                        subscription_identifiers_available: Some(0),
                        session_expiry_interval: None,
                        max_packet_size: None,
                        assigned_client_identifier: None,
                        topic_alias_max: None,
                        reason_string: None,
                        user_properties: Vec::new(),
                        wildcard_subscription_available: None,
                        server_keep_alive: None,
                        response_information: None,
                        server_reference: None,
                        authentication_method: None,
                        authentication_data: None,
                    });
                self.put5(
                    v5::Packet::ConnAck(v5::ConnAck {
                        session_present,
                        code,
                        properties,
                    }),
                    out,
                )
            }
        }
    }

    pub fn publish(&self, p: Publish, out: &mut BytesMut) {
        match self.version {
            Version::V311 => self.put4(
                v4::Packet::Publish(v4::Publish {
                    dup: p.dup,
                    qos: qos4(p.qos),
                    retain: p.retain,
                    topic: p.topic,
                    pkid: p.pkid,
                    payload: p.payload,
                }),
                out,
            ),
            Version::V5 => {
                let pr = p.properties;
                let empty = pr == Properties::default();
                let properties = (!empty).then(|| v5::PublishProperties {
                    payload_format_indicator: pr.payload_format_indicator,
                    message_expiry_interval: pr.message_expiry_interval,
                    topic_alias: None,
                    response_topic: pr.response_topic,
                    correlation_data: pr.correlation_data,
                    user_properties: pr.user_properties,
                    subscription_identifiers: Vec::new(),
                    content_type: pr.content_type,
                });
                self.put5(
                    v5::Packet::Publish(v5::Publish {
                        dup: p.dup,
                        qos: qos5(p.qos),
                        retain: p.retain,
                        topic: Bytes::from(p.topic),
                        pkid: p.pkid,
                        payload: p.payload,
                        properties,
                    }),
                    out,
                )
            }
        }
    }

    /// PUBACK; `reason` (5.0 only) 0 success, 0x80 unspecified error,
    /// 0x97 quota exceeded, ...
    pub fn puback(&self, pkid: u16, reason: u8, out: &mut BytesMut) {
        match self.version {
            Version::V311 => self.put4(v4::Packet::PubAck(v4::PubAck::new(pkid)), out),
            Version::V5 => {
                let reason = match reason {
                    0 => v5::PubAckReason::Success,
                    0x10 => v5::PubAckReason::NoMatchingSubscribers,
                    0x83 => v5::PubAckReason::ImplementationSpecificError,
                    0x87 => v5::PubAckReason::NotAuthorized,
                    0x90 => v5::PubAckReason::TopicNameInvalid,
                    0x97 => v5::PubAckReason::QuotaExceeded,
                    0x99 => v5::PubAckReason::PayloadFormatInvalid,
                    _ => v5::PubAckReason::UnspecifiedError,
                };
                self.put5(
                    v5::Packet::PubAck(v5::PubAck {
                        pkid,
                        reason,
                        properties: None,
                    }),
                    out,
                )
            }
        }
    }

    /// SUBACK with one code per filter: `Ok(granted qos)` or `Err(5.0
    /// reason code)` (3.1.1 says 0x80 for every failure).
    pub fn suback(&self, pkid: u16, codes: &[Result<u8, u8>], out: &mut BytesMut) {
        match self.version {
            Version::V311 => {
                let codes = codes
                    .iter()
                    .map(|c| match c {
                        Ok(q) => v4::SubscribeReasonCode::Success(qos4(*q)),
                        Err(_) => v4::SubscribeReasonCode::Failure,
                    })
                    .collect();
                self.put4(v4::Packet::SubAck(v4::SubAck::new(pkid, codes)), out)
            }
            Version::V5 => {
                let codes = codes
                    .iter()
                    .map(|c| match c {
                        Ok(q) => v5::SubscribeReasonCode::Success(qos5(*q)),
                        Err(0x8F) => v5::SubscribeReasonCode::TopicFilterInvalid,
                        Err(0x9E) => v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
                        Err(0x97) => v5::SubscribeReasonCode::QuotaExceeded,
                        Err(_) => v5::SubscribeReasonCode::Unspecified,
                    })
                    .collect();
                self.put5(
                    v5::Packet::SubAck(v5::SubAck {
                        pkid,
                        return_codes: codes,
                        properties: None,
                    }),
                    out,
                )
            }
        }
    }

    /// UNSUBACK; `existed` per filter (5.0 tells "no subscription existed").
    pub fn unsuback(&self, pkid: u16, existed: &[bool], out: &mut BytesMut) {
        match self.version {
            Version::V311 => self.put4(v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)), out),
            Version::V5 => self.put5(
                v5::Packet::UnsubAck(v5::UnsubAck {
                    pkid,
                    reasons: existed
                        .iter()
                        .map(|e| {
                            if *e {
                                v5::UnsubAckReason::Success
                            } else {
                                v5::UnsubAckReason::NoSubscriptionExisted
                            }
                        })
                        .collect(),
                    properties: None,
                }),
                out,
            ),
        }
    }

    pub fn pingresp(&self, out: &mut BytesMut) {
        match self.version {
            Version::V311 => self.put4(v4::Packet::PingResp, out),
            Version::V5 => self.put5(v5::Packet::PingResp(v5::PingResp), out),
        }
    }

    /// 5.0 only: DISCONNECT from the server with a reason code and string
    /// (3.1.1 has no server DISCONNECT: the connection just closes).
    pub fn disconnect(&self, reason: u8, why: &str, out: &mut BytesMut) {
        if self.version != Version::V5 {
            return;
        }
        let code = match reason {
            0x81 => v5::DisconnectReasonCode::MalformedPacket,
            0x82 => v5::DisconnectReasonCode::ProtocolError,
            0x8B => v5::DisconnectReasonCode::ServerShuttingDown,
            0x8D => v5::DisconnectReasonCode::KeepAliveTimeout,
            0x8E => v5::DisconnectReasonCode::SessionTakenOver,
            0x93 => v5::DisconnectReasonCode::ReceiveMaximumExceeded,
            0x95 => v5::DisconnectReasonCode::PacketTooLarge,
            0x9A => v5::DisconnectReasonCode::RetainNotSupported,
            0x9B => v5::DisconnectReasonCode::QoSNotSupported,
            0x90 => v5::DisconnectReasonCode::TopicNameInvalid,
            _ => v5::DisconnectReasonCode::UnspecifiedError,
        };
        self.put5(
            v5::Packet::Disconnect(v5::Disconnect {
                reason_code: code,
                properties: Some(v5::DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(why.to_owned()),
                    user_properties: Vec::new(),
                    server_reference: None,
                }),
            }),
            out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8) -> BytesMut {
        let mut b = BytesMut::new();
        match level {
            4 => v4::Packet::Connect(v4::Connect::new("c1"))
                .write(&mut b, usize::MAX)
                .map(|_| ())
                .unwrap(),
            _ => v5::Packet::Connect(
                v5::Connect {
                    keep_alive: 30,
                    client_id: "c1".into(),
                    clean_start: false,
                    properties: Some(v5::ConnectProperties {
                        session_expiry_interval: Some(60),
                        receive_maximum: Some(5),
                        ..v5::ConnectProperties::new()
                    }),
                },
                None,
                None,
            )
            .write(&mut b, None)
            .map(|_| ())
            .unwrap(),
        }
        b
    }

    #[test]
    fn the_connect_level_picks_the_codec() {
        let mut b = connect(4);
        let Some(Inbound::Connect(c)) = read(&mut b, None, 1024).unwrap() else {
            panic!("not a connect")
        };
        assert_eq!((c.version, c.client_id.as_str()), (Version::V311, "c1"));
        let mut b = connect(5);
        let Some(Inbound::Connect(c)) = read(&mut b, None, 1024).unwrap() else {
            panic!("not a connect")
        };
        assert_eq!(c.version, Version::V5);
        assert_eq!((c.session_expiry, c.receive_maximum), (60, Some(5)));
        assert!(!c.clean);
    }

    #[test]
    fn partial_packets_wait_and_bad_ones_are_named() {
        let full = connect(4);
        let mut part = BytesMut::from(&full[..full.len() - 1]);
        assert!(read(&mut part, None, 1024).unwrap().is_none());
        let mut publish = BytesMut::from(&b"\x30\x03\x00\x01a"[..]);
        assert!(matches!(
            read(&mut publish, None, 1024),
            Err(ReadError::NotConnect)
        ));
        let mut level3 = BytesMut::from(&b"\x10\x0c\x00\x06MQIsdp\x03\x02\x00\x1e"[..]);
        assert!(matches!(
            read(&mut level3, None, 1024),
            Err(ReadError::UnsupportedLevel(3))
        ));
        // A fifth remaining-length byte can never be valid: refused now,
        // not waited on; four bytes still in flight are waited on.
        let mut endless = BytesMut::from(&b"\x10\xff\xff\xff\xff\xff"[..]);
        assert!(matches!(
            read(&mut endless, None, 1024),
            Err(ReadError::Malformed(_))
        ));
        let mut four = BytesMut::from(&b"\x10\xff\xff\xff\x7f"[..]);
        assert!(read(&mut four, None, 1024).unwrap().is_none());
        let mut big = BytesMut::from(&b"\x30\xff\xff\x03"[..]);
        assert!(matches!(
            read(&mut big, Some(Version::V311), 1024),
            Err(ReadError::TooLarge(_))
        ));
    }

    #[test]
    fn a_v5_disconnect_without_reason_code_is_read() {
        let mut b = BytesMut::from(&b"\xe0\x00"[..]);
        assert!(matches!(
            read(&mut b, Some(Version::V5), 1024).unwrap(),
            Some(Inbound::Disconnect { reason: 0 })
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn a_publish_written_for_each_version_reads_back() {
        for version in [Version::V311, Version::V5] {
            let p = Publish {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"payload"),
                qos: 1,
                retain: false,
                dup: true,
                pkid: 9,
                properties: Properties {
                    content_type: (version == Version::V5).then(|| "text/plain".into()),
                    ..Properties::default()
                },
            };
            let mut out = BytesMut::new();
            Writer { version }.publish(p.clone(), &mut out);
            let Some(Inbound::Publish(back)) = read(&mut out, Some(version), 1024).unwrap() else {
                panic!("not a publish")
            };
            assert_eq!(back, p);
        }
    }
}
