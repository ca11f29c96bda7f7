//! MQTT application messages as AMQP messages, and back.
//!
//! In (PUBLISH -> AMQP), the message is built once at ingress and never
//! re-encoded afterwards (an AMQP consumer gets these bytes as they are):
//! - the payload is one `data` section (binary, as MQTT sent it);
//! - `properties.to` is the topic (so a consumer of a wildcard filter
//!   knows where a message was published), `content-type`,
//!   `correlation-id` (binary) from the correlation data, `reply-to` from
//!   the response topic;
//! - user properties are `application-properties` (string values; for a
//!   key given twice the last one is kept);
//! - the message expiry interval is `header.ttl` (milliseconds); QoS 1 sets
//!   `header.durable`.
//!
//! Out (AMQP -> PUBLISH): the topic is `properties.to` when it is set,
//! else the address the delivery came to; the payload is the `data`
//! sections (concatenated), an `amqp-value` string (UTF-8) or binary, or
//! else the encoded body section as it is; `content-type`, `correlation-id`
//! (binary or string as bytes, other types as their text), `reply-to`,
//! string-valued application-properties and `ttl` map back to the 5.0
//! properties (3.1.1 has no properties: only topic and payload go).

use bytes::Bytes;

use super::codec::{Properties, Publish};
use bote_amqp::{MessageBuilder, MessageId, MessageView, SectionKind};

/// The AMQP message for an MQTT PUBLISH (or will) to `publish.topic`.
pub fn to_amqp(publish: &Publish) -> Bytes {
    let p = &publish.properties;
    let mut b = MessageBuilder::new();
    if publish.qos > 0 {
        b = b.durable(true);
    }
    if let Some(ttl) = p.message_expiry_interval {
        b = b.ttl(ttl.saturating_mul(1000));
    }
    b = b.to(&publish.topic);
    if let Some(rt) = &p.response_topic {
        b = b.reply_to(rt);
    }
    if let Some(cd) = &p.correlation_data {
        b = b.correlation_id(MessageId::Binary(cd));
    }
    if let Some(ct) = &p.content_type {
        b = b.content_type(ct);
    }
    let mut props: Vec<(&str, &str)> = Vec::new();
    for (k, v) in &p.user_properties {
        match props.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = v,
            None => props.push((k, v)),
        }
    }
    for (k, v) in props {
        b = b.application_property_str(k, v);
    }
    b.data(&publish.payload).build()
}

/// The topic, payload and 5.0 properties of an AMQP message delivered to
/// MQTT subscribers through `address`. An undecodable message goes out
/// whole as the payload, to `address`.
pub fn from_amqp(message: &Bytes, address: &str) -> (String, Bytes, Properties) {
    let view = match MessageView::parse(message.clone()) {
        Ok(v) => v,
        Err(_) => return (address.to_owned(), message.clone(), Properties::default()),
    };
    let topic = view
        .to()
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
        .unwrap_or(address)
        .to_owned();
    let payload = payload(&view, message);
    let correlation_data = match view.correlation_id().ok().flatten() {
        Some(MessageId::Binary(b)) => Some(Bytes::copy_from_slice(b)),
        Some(MessageId::String(s)) => Some(Bytes::copy_from_slice(s.as_bytes())),
        Some(MessageId::Ulong(n)) => Some(Bytes::from(n.to_string())),
        Some(MessageId::Uuid(u)) => Some(Bytes::copy_from_slice(&u)),
        None => None,
    };
    let mut user_properties = Vec::new();
    for (k, v) in view.application_properties().flatten() {
        if let (Ok(k), Ok(v)) = (k.as_text(), v.as_text()) {
            user_properties.push((k.to_owned(), v.to_owned()));
        }
    }
    let properties = Properties {
        content_type: view.content_type().ok().flatten().map(str::to_owned),
        response_topic: view.reply_to().ok().flatten().map(str::to_owned),
        correlation_data,
        user_properties,
        payload_format_indicator: None,
        message_expiry_interval: view.ttl().ok().flatten().map(|ms| ms.div_ceil(1000)),
    };
    (topic, payload, properties)
}

fn payload(view: &MessageView, message: &Bytes) -> Bytes {
    let Some(body) = view.body() else {
        return Bytes::new();
    };
    match body.kind() {
        SectionKind::Data => {
            let mut sections = view.data_sections();
            let first = sections.next().unwrap_or_default();
            match sections.next() {
                None => first,
                Some(second) => {
                    let mut all = first.to_vec();
                    all.extend_from_slice(&second);
                    for s in sections {
                        all.extend_from_slice(&s);
                    }
                    Bytes::from(all)
                }
            }
        }
        SectionKind::AmqpValue => match view.amqp_value() {
            Some(v) => match (v.as_text(), v.as_binary()) {
                (Ok(s), _) => Bytes::copy_from_slice(s.as_bytes()),
                (_, Ok(b)) => Bytes::copy_from_slice(b),
                _ => message.slice(body.range()),
            },
            None => Bytes::new(),
        },
        _ => message.slice(body.range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_amqp::primitive;

    fn str_value(s: &str) -> Vec<u8> {
        primitive::to_vec(|o| primitive::string(o, s))
    }

    fn publish(props: Properties) -> Publish {
        Publish {
            topic: "sensors/kitchen/temp".into(),
            payload: Bytes::from_static(b"\x00\x01binary"),
            qos: 1,
            retain: false,
            dup: false,
            pkid: 7,
            properties: props,
        }
    }

    #[test]
    fn a_publish_becomes_a_data_section_with_its_properties_and_comes_back() {
        let props = Properties {
            content_type: Some("application/octet-stream".into()),
            response_topic: Some("replies/1".into()),
            correlation_data: Some(Bytes::from_static(b"c-1")),
            user_properties: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            payload_format_indicator: None,
            message_expiry_interval: Some(30),
        };
        let m = to_amqp(&publish(props.clone()));
        let view = MessageView::parse(m.clone()).unwrap();
        assert_eq!(view.to().unwrap(), Some("sensors/kitchen/temp"));
        assert_eq!(view.reply_to().unwrap(), Some("replies/1"));
        assert_eq!(
            view.content_type().unwrap(),
            Some("application/octet-stream")
        );
        assert_eq!(
            view.correlation_id().unwrap(),
            Some(MessageId::Binary(b"c-1"))
        );
        assert_eq!(view.ttl().unwrap(), Some(30_000));
        assert_eq!(
            view.data_sections().collect::<Vec<_>>(),
            vec![Bytes::from_static(b"\x00\x01binary")]
        );
        let (topic, payload, back) = from_amqp(&m, "sensors/+/temp");
        assert_eq!(topic, "sensors/kitchen/temp");
        assert_eq!(payload, Bytes::from_static(b"\x00\x01binary"));
        assert_eq!(back, props);
    }

    #[test]
    fn an_amqp_message_without_to_goes_to_its_address_with_a_string_body() {
        let m = MessageBuilder::new()
            .correlation_id(MessageId::String("id-9"))
            .application_property("k", str_value("v"))
            .application_property("n", primitive::to_vec(|o| primitive::uint(o, 3)))
            .amqp_value_str("hello")
            .build();
        let (topic, payload, props) = from_amqp(&m, "a/b");
        assert_eq!(topic, "a/b");
        assert_eq!(payload, Bytes::from_static(b"hello"));
        assert_eq!(props.correlation_data, Some(Bytes::from_static(b"id-9")));
        assert_eq!(props.user_properties, vec![("k".into(), "v".into())]);
    }

    #[test]
    fn a_user_property_given_twice_keeps_the_last() {
        let props = Properties {
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            ..Properties::default()
        };
        let m = to_amqp(&publish(props));
        let view = MessageView::parse(m).unwrap();
        let v = view.application_property("a").unwrap().unwrap();
        assert_eq!(v.as_text().unwrap(), "2");
    }
}
