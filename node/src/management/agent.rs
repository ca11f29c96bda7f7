//! The management operations, over what a router exposes through
//! [`Managed`]. Reading operations (QUERY, READ and the node-level GET-
//! operations) are answered at once from the router's read model;
//! changes (CREATE, UPDATE, DELETE) are checked here and handed to the
//! router as a [`Change`], and the reply is made from the entity as it is
//! afterwards ([`after_change`]).
//!
//! Status codes as qdrouterd's agent uses them: 200 OK, 201 Created, 204 No
//! Content (DELETE), 400 for a malformed request or an unknown attribute,
//! 404 for an unknown type or entity, 501 for an operation the node does not
//! implement. Every request gets a reply; none is left unanswered.

use bote_amqp::codec::Value;

use super::message::{Reply, Request};
use super::schema::{self, ENTITY_TYPES, EntityType, MANAGEMENT_NODE_TYPE};

/// One entity, read attribute by attribute.
pub trait Entity {
    /// The value of `attribute`, one of its type's attributes (`Null` where
    /// it does not apply).
    fn get(&self, attribute: &str) -> Value;
}

/// What a router exposes to management.
pub trait Managed {
    /// Every entity of type `ty`, in a stable order (QUERY pages through
    /// it with `offset` and `count`).
    fn entities(&self, ty: &'static EntityType) -> Vec<Box<dyn Entity>>;
    /// The `count` entities of type `ty` from `offset` in the order of
    /// [`Managed::entities`] (a QUERY's page). Types with many entities
    /// override it so that a page costs its size, not the whole listing.
    fn page(&self, ty: &'static EntityType, offset: usize, count: usize) -> Vec<Box<dyn Entity>> {
        self.entities(ty)
            .into_iter()
            .skip(offset)
            .take(count)
            .collect()
    }
    /// The addresses of every management node of the mesh
    /// (`amqp:/_topo/0/<id>/$management`), this router's included.
    fn mgmt_nodes(&self) -> Vec<String>;
}

/// A change to make to the router.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub operation: ChangeOp,
    pub ty: &'static EntityType,
    /// The entity's name.
    pub name: String,
    /// The attributes given (CREATE, UPDATE), without name, identity, type.
    pub attributes: Vec<(String, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Create,
    Update,
    Delete,
}

/// What to do with a request: reply at once, or make a change first.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Reply(Reply),
    Change(Change),
}

/// Handles a request (its `reply-to` is the caller's business).
pub fn handle(managed: &dyn Managed, request: &Request) -> Step {
    match step(managed, request) {
        Ok(step) => step,
        Err(reply) => Step::Reply(reply),
    }
}

fn step(managed: &dyn Managed, request: &Request) -> Result<Step, Reply> {
    let operation = request
        .operation
        .as_deref()
        .ok_or_else(|| Reply::error(400, "the request has no 'operation' application property"))?;
    let reply = match operation {
        "QUERY" => query(managed, request)?,
        "READ" => {
            let ty = entity_type(request.type_name.as_deref(), "READ")?;
            let entity = find(managed, ty, request)?;
            Reply::ok(200, attributes(ty, entity.as_ref()))
        }
        "CREATE" | "UPDATE" | "DELETE" => {
            return change(managed, operation, request).map(Step::Change);
        }
        "GET-TYPES" => Reply::ok(200, per_type(request, |t| strings(t.extends))?),
        "GET-ATTRIBUTES" => Reply::ok(200, per_type(request, |t| strings(t.attributes))?),
        "GET-OPERATIONS" => Reply::ok(200, per_type(request, |t| strings(t.operations))?),
        "GET-MGMT-NODES" => Reply::ok(
            200,
            Value::List(
                managed
                    .mgmt_nodes()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        ),
        other => {
            return Err(Reply::error(
                501,
                format!("management operation '{other}' is not implemented"),
            ));
        }
    };
    Ok(Step::Reply(reply))
}

/// The type a request names (long or short name).
fn entity_type(name: Option<&str>, operation: &str) -> Result<&'static EntityType, Reply> {
    let name =
        name.ok_or_else(|| Reply::error(400, format!("{operation} needs the entity's 'type'")))?;
    schema::lookup(name).ok_or_else(|| Reply::error(404, format!("unknown entity type '{name}'")))
}

fn strings(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| Value::from(*s)).collect())
}

/// `{type: f(type)}` for the request's `entityType`, or for every type.
fn per_type(request: &Request, f: impl Fn(&EntityType) -> Value) -> Result<Value, Reply> {
    let types: Vec<&EntityType> = match request.entity_type.as_deref() {
        Some(name) => vec![entity_type(Some(name), "GET")?],
        None => ENTITY_TYPES.to_vec(),
    };
    Ok(Value::Map(
        types
            .into_iter()
            .map(|t| (Value::from(t.name), f(t)))
            .collect(),
    ))
}

fn query(managed: &dyn Managed, request: &Request) -> Result<Reply, Reply> {
    let name = request.entity_type.as_deref().or(request
        .type_name
        .as_deref()
        .filter(|t| *t != MANAGEMENT_NODE_TYPE));
    let ty = entity_type(name, "QUERY").map_err(|mut e| {
        if e.status == 400 {
            e.description = "QUERY needs an 'entityType'".into();
        }
        e
    })?;
    let requested: Vec<String> = match &request.body {
        Value::Map(entries) => match entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("attributeNames"))
            .map(|(_, v)| v)
        {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::List(names)) => names
                .iter()
                .map(|n| {
                    n.as_str().map(str::to_owned).ok_or_else(|| {
                        Reply::error(400, "attributeNames must be a list of strings")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(Reply::error(
                    400,
                    "attributeNames must be a list of strings",
                ));
            }
        },
        Value::Null => Vec::new(),
        _ => return Err(Reply::error(400, "the QUERY body must be a map")),
    };
    if let Some(bad) = requested.iter().find(|a| !ty.has(a)) {
        return Err(Reply::error(
            400,
            format!("unknown attribute '{bad}' for type '{}'", ty.name),
        ));
    }
    let columns: Vec<String> = if requested.is_empty() {
        ty.attributes.iter().map(|a| (*a).to_owned()).collect()
    } else {
        requested
    };
    let offset = request.offset.unwrap_or(0);
    let count = request.count.unwrap_or(i64::MAX);
    if offset < 0 || count < 0 {
        return Err(Reply::error(400, "offset and count must not be negative"));
    }
    let page = managed.page(
        ty,
        usize::try_from(offset).unwrap_or(usize::MAX),
        usize::try_from(count).unwrap_or(usize::MAX),
    );
    let results: Vec<Value> = page
        .iter()
        .map(|e| Value::List(columns.iter().map(|c| e.get(c)).collect()))
        .collect();
    Ok(Reply::ok(
        200,
        Value::Map(vec![
            (
                Value::from("attributeNames"),
                Value::List(columns.into_iter().map(Value::String).collect()),
            ),
            (Value::from("results"), Value::List(results)),
        ]),
    ))
}

/// Every attribute of an entity, as READ, CREATE and UPDATE reply.
pub fn attributes(ty: &EntityType, entity: &dyn Entity) -> Value {
    Value::Map(
        ty.attributes
            .iter()
            .map(|a| (Value::from(*a), entity.get(a)))
            .collect(),
    )
}

/// The entity of `ty` named by the request's `identity` (preferred) or
/// `name`.
fn find(
    managed: &dyn Managed,
    ty: &'static EntityType,
    request: &Request,
) -> Result<Box<dyn Entity>, Reply> {
    let (key, wanted) = match (&request.identity, &request.name) {
        (Some(identity), _) => ("identity", identity),
        (None, Some(name)) => ("name", name),
        (None, None) => {
            return Err(Reply::error(
                400,
                "the request names no entity (no 'name' or 'identity')",
            ));
        }
    };
    find_by(managed, ty, key, wanted)
        .ok_or_else(|| Reply::error(404, format!("no {} with {key} '{wanted}'", ty.name)))
}

fn find_by(
    managed: &dyn Managed,
    ty: &'static EntityType,
    key: &str,
    wanted: &str,
) -> Option<Box<dyn Entity>> {
    managed
        .entities(ty)
        .into_iter()
        .find(|e| e.get(key).as_str() == Some(wanted))
}

fn change(managed: &dyn Managed, operation: &str, request: &Request) -> Result<Change, Reply> {
    let ty = entity_type(request.type_name.as_deref(), operation)?;
    if !ty.allows(operation) {
        return Err(Reply::error(
            400,
            format!("{operation} is not allowed on type '{}'", ty.name),
        ));
    }
    let body: &[(Value, Value)] = match &request.body {
        Value::Map(entries) => entries,
        Value::Null => &[],
        _ => {
            return Err(Reply::error(
                400,
                format!("the {operation} body must be a map"),
            ));
        }
    };
    let mut attributes = Vec::new();
    let mut body_name = None;
    for (key, value) in body {
        let Some(key) = key.as_str() else {
            return Err(Reply::error(400, "attribute names must be strings"));
        };
        if !ty.has(key) {
            return Err(Reply::error(
                400,
                format!("unknown attribute '{key}' for type '{}'", ty.name),
            ));
        }
        match key {
            "name" => body_name = value.as_str().map(str::to_owned),
            "identity" | "type" => {}
            _ if value.is_null() => {}
            _ => attributes.push((key.to_owned(), value.clone())),
        }
    }
    let operation = match operation {
        "CREATE" => ChangeOp::Create,
        "UPDATE" => ChangeOp::Update,
        _ => ChangeOp::Delete,
    };
    let name = match operation {
        ChangeOp::Create => {
            let name = request.name.clone().or(body_name).ok_or_else(|| {
                Reply::error(400, format!("CREATE of a {} needs a 'name'", ty.short))
            })?;
            if find_by(managed, ty, "name", &name).is_some() {
                return Err(Reply::error(
                    400,
                    format!("a {} named '{name}' exists already", ty.short),
                ));
            }
            name
        }
        ChangeOp::Update | ChangeOp::Delete => {
            let entity = find(managed, ty, request)?;
            entity.get("name").as_str().unwrap_or_default().to_owned()
        }
    };
    Ok(Change {
        operation,
        ty,
        name,
        attributes,
    })
}

/// The reply once `change` was made: the entity's attributes (201 after
/// CREATE, 200 after UPDATE) or 204 after DELETE.
pub fn after_change(managed: &dyn Managed, change: &Change) -> Reply {
    match change.operation {
        ChangeOp::Delete => Reply::ok(204, Value::Map(Vec::new())),
        op => {
            let status = if op == ChangeOp::Create { 201 } else { 200 };
            match find_by(managed, change.ty, "name", &change.name) {
                Some(e) => Reply::ok(status, attributes(change.ty, e.as_ref())),
                None => Reply::error(
                    500,
                    format!(
                        "the {} '{}' is not there after the change",
                        change.ty.short, change.name
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::management::schema::{CONNECTION, CONNECTOR};

    struct Row(Vec<(&'static str, Value)>);
    impl Entity for Row {
        fn get(&self, attribute: &str) -> Value {
            self.0
                .iter()
                .find(|(a, _)| *a == attribute)
                .map_or(Value::Null, |(_, v)| v.clone())
        }
    }
    struct Fake;
    impl Managed for Fake {
        fn entities(&self, ty: &'static EntityType) -> Vec<Box<dyn Entity>> {
            if ty != &CONNECTION {
                return Vec::new();
            }
            (1..=3)
                .map(|i| {
                    Box::new(Row(vec![
                        ("name", Value::String(format!("connection/{i}"))),
                        ("identity", Value::String(i.to_string())),
                        ("host", Value::String(format!("127.0.0.1:{i}"))),
                    ])) as Box<dyn Entity>
                })
                .collect()
        }
        fn mgmt_nodes(&self) -> Vec<String> {
            vec!["amqp:/_topo/0/A/$management".into()]
        }
    }

    fn request(op: &str, props: impl FnOnce(&mut Request)) -> Request {
        let mut r = Request {
            operation: Some(op.into()),
            ..Request::default()
        };
        props(&mut r);
        r
    }

    fn reply(step: Step) -> Reply {
        match step {
            Step::Reply(r) => r,
            Step::Change(c) => panic!("unexpected change {c:?}"),
        }
    }

    fn map_get<'a>(v: &'a Value, key: &str) -> &'a Value {
        &v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .unwrap()
            .1
    }

    #[test]
    fn query_pages_with_offset_and_count_and_keeps_the_requested_column_order() {
        let r = reply(handle(
            &Fake,
            &request("QUERY", |r| {
                r.type_name = Some(MANAGEMENT_NODE_TYPE.into());
                r.entity_type = Some(CONNECTION.name.into());
                r.offset = Some(1);
                r.count = Some(1);
                r.body = Value::Map(vec![(
                    Value::from("attributeNames"),
                    Value::List(vec![Value::from("host"), Value::from("identity")]),
                )]);
            }),
        ));
        assert_eq!(r.status, 200);
        assert_eq!(
            map_get(&r.body, "results"),
            &Value::List(vec![Value::List(vec![
                Value::from("127.0.0.1:2"),
                Value::from("2")
            ])])
        );
        assert_eq!(
            map_get(&r.body, "attributeNames"),
            &Value::List(vec![Value::from("host"), Value::from("identity")])
        );
    }

    #[test]
    fn query_with_no_attribute_names_returns_every_attribute_of_the_type() {
        let r = reply(handle(
            &Fake,
            &request("QUERY", |r| r.entity_type = Some("connection".into())),
        ));
        let names = map_get(&r.body, "attributeNames").as_list().unwrap();
        assert_eq!(names.len(), CONNECTION.attributes.len());
        let results = map_get(&r.body, "results").as_list().unwrap();
        assert_eq!(results.len(), 3);
    }

    #[test]
    fn unknown_types_attributes_operations_and_entities_get_errors_with_a_description() {
        let cases: Vec<(Request, u16, &str)> = vec![
            (
                request("QUERY", |r| {
                    r.entity_type = Some("org.apache.qpid.dispatch.policy".into())
                }),
                404,
                "unknown entity type 'org.apache.qpid.dispatch.policy'",
            ),
            (
                request("QUERY", |r| {
                    r.entity_type = Some("connection".into());
                    r.body = Value::Map(vec![(
                        Value::from("attributeNames"),
                        Value::List(vec![Value::from("colour")]),
                    )]);
                }),
                400,
                "unknown attribute 'colour' for type 'org.apache.qpid.dispatch.connection'",
            ),
            (request("QUERY", |_| {}), 400, "QUERY needs an 'entityType'"),
            (
                request("FROB", |_| {}),
                501,
                "management operation 'FROB' is not implemented",
            ),
            (
                Request::default(),
                400,
                "the request has no 'operation' application property",
            ),
            (
                request("READ", |r| {
                    r.type_name = Some("connection".into());
                    r.identity = Some("9".into());
                }),
                404,
                "no org.apache.qpid.dispatch.connection with identity '9'",
            ),
            (
                request("CREATE", |r| {
                    r.type_name = Some("connection".into());
                    r.name = Some("c".into());
                }),
                400,
                "CREATE is not allowed on type 'org.apache.qpid.dispatch.connection'",
            ),
            (
                request("CREATE", |r| {
                    r.type_name = Some("connector".into());
                    r.name = Some("c".into());
                    r.body = Value::Map(vec![(Value::from("colour"), Value::from("red"))]);
                }),
                400,
                "unknown attribute 'colour' for type 'org.apache.qpid.dispatch.connector'",
            ),
        ];
        for (req, status, description) in cases {
            let r = reply(handle(&Fake, &req));
            assert_eq!(
                (r.status, r.description.as_str()),
                (status, description),
                "{req:?}"
            );
        }
    }

    #[test]
    fn read_finds_by_identity_or_name_and_create_becomes_a_change() {
        let r = reply(handle(
            &Fake,
            &request("READ", |r| {
                r.type_name = Some(CONNECTION.name.into());
                r.name = Some("connection/3".into());
            }),
        ));
        assert_eq!(map_get(&r.body, "identity"), &Value::from("3"));
        let step = handle(
            &Fake,
            &request("CREATE", |r| {
                r.type_name = Some("connector".into());
                r.body = Value::Map(vec![
                    (Value::from("name"), Value::from("toB")),
                    (Value::from("port"), Value::from("5673")),
                    (Value::from("type"), Value::from(CONNECTOR.name)),
                ]);
            }),
        );
        assert_eq!(
            step,
            Step::Change(Change {
                operation: ChangeOp::Create,
                ty: &CONNECTOR,
                name: "toB".into(),
                attributes: vec![("port".into(), Value::from("5673"))],
            })
        );
    }

    #[test]
    fn node_level_operations_list_types_attributes_operations_and_nodes() {
        let r = reply(handle(&Fake, &request("GET-TYPES", |_| {})));
        assert_eq!(r.body.as_map().unwrap().len(), ENTITY_TYPES.len());
        let r = reply(handle(
            &Fake,
            &request("GET-OPERATIONS", |r| {
                r.entity_type = Some("connector".into())
            }),
        ));
        assert_eq!(
            map_get(&r.body, CONNECTOR.name),
            &strings(CONNECTOR.operations)
        );
        let r = reply(handle(&Fake, &request("GET-MGMT-NODES", |_| {})));
        assert_eq!(
            r.body,
            Value::List(vec![Value::from("amqp:/_topo/0/A/$management")])
        );
    }

    /// The management fuzz target's seeds (Python Proton wrote them as
    /// qdstat and qdmanage send requests) decode, and reach the agent's
    /// operations rather than failing early: the fuzzer starts from
    /// requests that go deep.
    #[test]
    fn the_fuzz_seeds_are_requests_that_reach_each_operation() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/management");
        let expect: &[(&str, Option<u16>)] = &[
            ("query-connections", Some(200)),
            ("query-all-attrs", Some(200)),
            ("read-by-name", Some(404)), // the fake has no router entity
            ("get-types", Some(200)),
            ("get-mgmt-nodes", Some(200)),
            ("get-operations", Some(200)),
            ("get-attributes", Some(200)),
            ("unknown-operation", Some(501)),
            ("no-operation", Some(400)),
            ("create-listener", None), // a change for the router to make
            ("delete-connector", Some(404)), // the fake has no connectors
        ];
        for (seed, status) in expect {
            let bytes = std::fs::read(format!("{dir}/{seed}")).expect(seed);
            let request = Request::decode(&bytes::Bytes::from(bytes))
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            match (handle(&Fake, &request), status) {
                (Step::Reply(reply), Some(status)) => {
                    assert_eq!(reply.status, *status, "seed {seed}: {}", reply.description)
                }
                (Step::Change(_), None) => {}
                (step, _) => panic!("seed {seed}: {step:?}"),
            }
        }
    }
}
