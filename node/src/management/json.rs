//! AMQP values as JSON (the HTTP API serves entities as JSON objects):
//! numbers stay numbers, strings and symbols become strings, lists and
//! arrays arrays, maps objects (keys as text), binary base-16 text.

use bote_amqp::codec::Value;
use serde_json::Value as Json;

use super::agent::Entity;
use super::schema::EntityType;

/// `value` as JSON.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Ubyte(v) => (*v).into(),
        Value::Ushort(v) => (*v).into(),
        Value::Uint(v) => (*v).into(),
        Value::Ulong(v) => (*v).into(),
        Value::Byte(v) => (*v).into(),
        Value::Short(v) => (*v).into(),
        Value::Int(v) => (*v).into(),
        Value::Long(v) | Value::Timestamp(v) => (*v).into(),
        Value::Float(v) => {
            serde_json::Number::from_f64(f64::from(*v)).map_or(Json::Null, Json::Number)
        }
        Value::Double(v) => serde_json::Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::Char(c) => Json::String(c.to_string()),
        Value::String(s) => Json::String(s.clone()),
        Value::Symbol(s) => Json::String(s.as_str().to_owned()),
        Value::Binary(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Array(a) => Json::Array(a.items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s.clone(),
                        Value::Symbol(s) => s.as_str().to_owned(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Value::Described(d) => to_json(&d.1),
        other => Json::String(format!("{other:?}")),
    }
}

/// An entity as a JSON object of all its type's attributes.
pub fn entity_json(ty: &EntityType, entity: &dyn Entity) -> Json {
    Json::Object(
        ty.attributes
            .iter()
            .map(|a| ((*a).to_owned(), to_json(&entity.get(a))))
            .collect(),
    )
}
