//! Fuzzes the management request path: arbitrary bytes as a request
//! message to `Request::decode`, then, for what decodes, the management
//! agent (`agent::handle`) over a small fixed set of entities, and the
//! reply's encoding. It must never panic; every request gets either a
//! change of the kind its operation asks for or a reply with one of the
//! agent's status codes, and the
//! encoded reply decodes back to the same status, description and
//! correlation id.
#![no_main]

use bote_amqp::codec::Value;
use bote_amqp::management::{DecodedReply, Request};
use bote_node::management::agent::{self, ChangeOp, Entity, Managed, Step};
use bote_node::management::schema::EntityType;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Three entities of every type, each attribute a value derived from its
/// name (`name` and `identity` are `e0`, `e1`, `e2`).
struct Fixed;

struct Item(usize);

impl Entity for Item {
    fn get(&self, attribute: &str) -> Value {
        match attribute {
            "name" | "identity" => Value::String(format!("e{}", self.0)),
            "type" => Value::Null,
            other if other.len() % 2 == 0 => Value::Long(self.0 as i64),
            other => Value::String(other.to_owned()),
        }
    }
}

impl Managed for Fixed {
    fn entities(&self, _ty: &'static EntityType) -> Vec<Box<dyn Entity>> {
        (0..3).map(|i| Box::new(Item(i)) as Box<dyn Entity>).collect()
    }

    fn mgmt_nodes(&self) -> Vec<String> {
        vec!["amqp:/_topo/0/Router.A/$management".to_owned()]
    }
}

fuzz_target!(|data: &[u8]| {
    let message = Bytes::copy_from_slice(data);
    let Ok(request) = Request::decode(&message) else {
        return;
    };
    match agent::handle(&Fixed, &request) {
        Step::Change(change) => {
            // A change only comes from the operation that asks for it.
            let asked = match change.operation {
                ChangeOp::Create => "CREATE",
                ChangeOp::Update => "UPDATE",
                ChangeOp::Delete => "DELETE",
            };
            assert_eq!(request.operation.as_deref(), Some(asked));
        }
        Step::Reply(reply) => {
            assert!(
                matches!(reply.status, 200 | 201 | 204 | 400 | 404 | 405 | 501),
                "status {} for {request:?}",
                reply.status
            );
            let encoded = reply.encode("reply-to", &request.correlation_id);
            let decoded = DecodedReply::decode(&encoded).expect("a reply we encoded decodes");
            assert_eq!(decoded.status, i64::from(reply.status));
            assert_eq!(decoded.description, reply.description);
            // The same id back. Compared as printed: a float inside it may
            // be NaN, which equals nothing, itself included.
            assert_eq!(
                format!("{:?}", decoded.correlation_id),
                format!("{:?}", request.correlation_id)
            );
        }
    }
});
