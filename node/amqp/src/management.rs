//! AMQP management (draft 9) messages as qdrouterd exchanges them: a
//! request as decoded from the message a client sent, the reply as the
//! message sent back to its `reply-to`, and the client's side of both
//! ([`encode_request`], [`DecodedReply`]) for tools and tests.
//!
//! Requests carry the operation and its arguments in application-properties
//! (`operation`, `type` — QUERY sends `entityType` — `name`, `identity`,
//! `offset`, `count`), the `reply-to` address and a `correlation-id` in
//! properties, and a body (`{attributeNames: [...]}` for QUERY, the
//! attributes for CREATE and UPDATE). Replies copy the correlation id, set
//! `statusCode` and `statusDescription` in application-properties, and
//! carry the result as an amqp-value body.
//!
//! Management messages are small and rare next to the data plane, so the
//! whole message is decoded into values here (the forwarding path never
//! decodes a message body).

use bytes::{Bytes, BytesMut};

use crate::codec::{self, Descriptor, Value};

const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const AMQP_VALUE: u64 = 0x77;

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub operation: Option<String>,
    /// `type`: the entity's type (`org.amqp.management` for node-level
    /// operations, which qdstat's QUERY is).
    pub type_name: Option<String>,
    /// `entityType`: the type QUERY and the GET- operations are about.
    pub entity_type: Option<String>,
    pub name: Option<String>,
    pub identity: Option<String>,
    pub offset: Option<i64>,
    pub count: Option<i64>,
    pub reply_to: Option<String>,
    /// Copied into the reply as it came (string, ulong, uuid or binary).
    pub correlation_id: Value,
    /// The amqp-value body (`Null` without one).
    pub body: Value,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            operation: None,
            type_name: None,
            entity_type: None,
            name: None,
            identity: None,
            offset: None,
            count: None,
            reply_to: None,
            correlation_id: Value::Null,
            body: Value::Null,
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("management request: cannot decode the message: {0}")]
    Decode(String),
    #[error("management request: application property {key:?} must be {expected}, not {found}")]
    Property {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
}

impl Request {
    /// Decodes the message as a client sent it.
    pub fn decode(message: &Bytes) -> Result<Request, RequestError> {
        let mut request = Request::default();
        let mut rest = message.clone();
        while !rest.is_empty() {
            let (value, used) =
                codec::decode_bytes(&rest).map_err(|e| RequestError::Decode(e.to_string()))?;
            rest = rest.slice(used..);
            let Some((Descriptor::Code(code), section)) = value.as_described() else {
                return Err(RequestError::Decode(
                    "a section is not described by a code".into(),
                ));
            };
            match *code {
                PROPERTIES => {
                    let fields = section.as_list().unwrap_or(&[]);
                    request.reply_to = fields.get(4).and_then(Value::as_str).map(str::to_owned);
                    request.correlation_id = fields.get(5).cloned().unwrap_or(Value::Null);
                }
                APPLICATION_PROPERTIES => {
                    for (key, value) in section.as_map().unwrap_or(&[]) {
                        let Some(key) = key.as_str() else { continue };
                        match key {
                            "operation" => request.operation = text(value, "operation")?,
                            "type" => request.type_name = text(value, "type")?,
                            "entityType" => request.entity_type = text(value, "entityType")?,
                            "name" => request.name = text(value, "name")?,
                            "identity" => request.identity = text(value, "identity")?,
                            "offset" => request.offset = integer(value, "offset")?,
                            "count" => request.count = integer(value, "count")?,
                            _ => {}
                        }
                    }
                }
                AMQP_VALUE => request.body = section.clone(),
                _ => {}
            }
        }
        Ok(request)
    }
}

fn text(value: &Value, key: &'static str) -> Result<Option<String>, RequestError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Symbol(s) => Ok(Some(s.as_str().to_owned())),
        other => Err(RequestError::Property {
            key,
            expected: "a string",
            found: other.type_name(),
        }),
    }
}

fn integer(value: &Value, key: &'static str) -> Result<Option<i64>, RequestError> {
    match value {
        Value::Null => Ok(None),
        other => other.as_i64().map(Some).ok_or(RequestError::Property {
            key,
            expected: "an integer",
            found: other.type_name(),
        }),
    }
}

/// A reply: status, description and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub description: String,
    pub body: Value,
}

impl Reply {
    pub fn ok(status: u16, body: Value) -> Reply {
        let description = match status {
            201 => "Created",
            204 => "No Content",
            _ => "OK",
        };
        Reply {
            status,
            description: description.to_owned(),
            body,
        }
    }

    pub fn error(status: u16, description: impl Into<String>) -> Reply {
        Reply {
            status,
            description: description.into(),
            body: Value::Map(Vec::new()),
        }
    }

    /// The reply message for a request with `correlation_id`, sent to `to`.
    pub fn encode(&self, to: &str, correlation_id: &Value) -> Bytes {
        let properties = Value::List(vec![
            Value::Null,
            Value::Null,
            Value::String(to.to_owned()),
            Value::Null,
            Value::Null,
            correlation_id.clone(),
        ]);
        let application_properties = Value::Map(vec![
            (
                Value::from("statusCode"),
                Value::Int(i32::from(self.status)),
            ),
            (
                Value::from("statusDescription"),
                Value::String(self.description.clone()),
            ),
        ]);
        let mut out = BytesMut::new();
        for (code, value) in [
            (PROPERTIES, properties),
            (APPLICATION_PROPERTIES, application_properties),
        ] {
            codec::encode(&Value::described(Descriptor::Code(code), value), &mut out);
        }
        // The body (a QUERY's rows: megabytes for 10,000 connections) is
        // encoded where it is, not copied into a described value first:
        // the section's constructor (0x00, smallulong descriptor), then it.
        out.extend_from_slice(&[0x00, 0x53, AMQP_VALUE as u8]);
        codec::encode(&self.body, &mut out);
        out.freeze()
    }
}

/// Builds a request message as qdstat sends one (for tests and clients):
/// application-properties from `properties`, reply-to, a string
/// correlation id and the body.
pub fn encode_request(
    properties: &[(&str, Value)],
    reply_to: &str,
    correlation_id: Value,
    body: Value,
) -> Bytes {
    let fields = Value::List(vec![
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
        Value::String(reply_to.to_owned()),
        correlation_id,
    ]);
    let application_properties = Value::Map(
        properties
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    );
    let mut out = BytesMut::new();
    for (code, value) in [
        (PROPERTIES, fields),
        (APPLICATION_PROPERTIES, application_properties),
        (AMQP_VALUE, body),
    ] {
        codec::encode(&Value::described(Descriptor::Code(code), value), &mut out);
    }
    out.freeze()
}

/// A decoded reply (for clients: botectl, tests).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReply {
    pub status: i64,
    pub description: String,
    pub correlation_id: Value,
    pub body: Value,
}

impl DecodedReply {
    pub fn decode(message: &Bytes) -> Result<DecodedReply, RequestError> {
        let mut reply = DecodedReply {
            status: 0,
            description: String::new(),
            correlation_id: Value::Null,
            body: Value::Null,
        };
        let mut rest = message.clone();
        while !rest.is_empty() {
            let (value, used) =
                codec::decode_bytes(&rest).map_err(|e| RequestError::Decode(e.to_string()))?;
            rest = rest.slice(used..);
            let Some((Descriptor::Code(code), section)) = value.as_described() else {
                continue;
            };
            match *code {
                PROPERTIES => {
                    let fields = section.as_list().unwrap_or(&[]);
                    reply.correlation_id = fields.get(5).cloned().unwrap_or(Value::Null);
                }
                APPLICATION_PROPERTIES => {
                    for (key, value) in section.as_map().unwrap_or(&[]) {
                        match key.as_str() {
                            Some("statusCode") => reply.status = value.as_i64().unwrap_or(0),
                            Some("statusDescription") => {
                                reply.description = value.as_str().unwrap_or("").to_owned()
                            }
                            _ => {}
                        }
                    }
                }
                AMQP_VALUE => reply.body = section.clone(),
                _ => {}
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qdstat_query_decodes_with_entity_type_offset_count_and_reply_to() {
        let body = Value::Map(vec![(
            Value::from("attributeNames"),
            Value::List(vec![Value::from("name")]),
        )]);
        let message = encode_request(
            &[
                ("operation", Value::from("QUERY")),
                (
                    "entityType",
                    Value::from("org.apache.qpid.dispatch.connection"),
                ),
                ("offset", Value::Long(0)),
                ("count", Value::Long(500)),
                ("name", Value::from("self")),
                ("type", Value::from("org.amqp.management")),
            ],
            "_topo/0/A/temp.1",
            Value::from("1"),
            body.clone(),
        );
        let r = Request::decode(&message).unwrap();
        assert_eq!(r.operation.as_deref(), Some("QUERY"));
        assert_eq!(r.type_name.as_deref(), Some("org.amqp.management"));
        assert_eq!(
            r.entity_type.as_deref(),
            Some("org.apache.qpid.dispatch.connection")
        );
        assert_eq!((r.offset, r.count), (Some(0), Some(500)));
        assert_eq!(r.reply_to.as_deref(), Some("_topo/0/A/temp.1"));
        assert_eq!(r.correlation_id, Value::from("1"));
        assert_eq!(r.body, body);
    }

    #[test]
    fn a_reply_round_trips_with_its_correlation_id_and_status() {
        let reply = Reply::error(404, "no such thing");
        let bytes = reply.encode("x", &Value::Ulong(7));
        let d = DecodedReply::decode(&bytes).unwrap();
        assert_eq!((d.status, d.description.as_str()), (404, "no such thing"));
        assert_eq!(d.correlation_id, Value::Ulong(7));
    }

    #[test]
    fn a_reply_body_is_the_amqp_value_section_it_would_be_as_a_described_value() {
        let body = Value::Map(vec![(
            Value::from("results"),
            Value::List(vec![Value::List(vec![Value::from("a"), Value::Long(1)])]),
        )]);
        let bytes = Reply::ok(200, body.clone()).encode("x", &Value::Null);
        let mut section = BytesMut::new();
        codec::encode(
            &Value::described(Descriptor::Code(AMQP_VALUE), body.clone()),
            &mut section,
        );
        assert!(bytes.ends_with(&section), "the body section differs");
        assert_eq!(DecodedReply::decode(&bytes).unwrap().body, body);
    }

    #[test]
    fn a_non_string_operation_is_a_clear_error() {
        let message = encode_request(
            &[("operation", Value::Int(3))],
            "r",
            Value::Null,
            Value::Null,
        );
        let e = Request::decode(&message).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"operation\" must be a string, not int"),
            "{e}"
        );
    }
}
