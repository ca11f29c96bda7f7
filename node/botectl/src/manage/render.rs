//! What `botectl stat` prints: tables like qdstat's (one per view:
//! `-g` router, `-c` connections, `-l` links, `-a` addresses, `-n` nodes)
//! or, with `--json`, the rows as JSON objects.

use bote_amqp::codec::Value;
use serde_json::Value as Json;

/// An AMQP value as JSON.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Symbol(s) => Json::String(s.as_str().to_owned()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Array(a) => Json::Array(a.items.iter().map(to_json).collect()),
        Value::Map(entries) => {
            Json::Object(entries.iter().map(|(k, v)| (text(k), to_json(v))).collect())
        }
        Value::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::Double(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        other => match other.as_i64() {
            Some(n) => Json::from(n),
            None => match other.as_u64() {
                Some(n) => Json::from(n),
                None => Json::String(format!("{other:?}")),
            },
        },
    }
}

/// A value as table text: strings bare, null as empty, lists comma-joined.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Symbol(s) => s.as_str().to_owned(),
        Value::List(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => match to_json(other) {
            Json::String(s) => s,
            j => j.to_string(),
        },
    }
}

/// Rows of a QUERY as JSON objects.
pub fn rows_json(names: &[String], rows: &[Vec<Value>]) -> Json {
    Json::Array(
        rows.iter()
            .map(|r| {
                Json::Object(
                    names
                        .iter()
                        .zip(r)
                        .map(|(n, v)| (n.clone(), to_json(v)))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// A table: a title, headers, rows, columns padded to their widest cell.
pub fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            s.push(' ');
            s.push_str(cell);
            s.push_str(&" ".repeat(w.saturating_sub(cell.chars().count()) + 1));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = format!("{title}\n");
    out.push_str(&line(headers.to_vec()));
    let total: usize = widths.iter().map(|w| w + 2).sum();
    out.push_str(&format!("  {}\n", "=".repeat(total.saturating_sub(1))));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Which `stat` view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    General,
    Connections,
    Links,
    Addresses,
    Nodes,
}

impl View {
    /// The entity type the view queries and the attributes it shows (as
    /// (attribute, header) pairs).
    pub fn query(self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        match self {
            View::General => (
                "router",
                &[
                    ("version", "Version"),
                    ("mode", "Mode"),
                    ("id", "Router Id"),
                    ("workerThreads", "Worker Threads"),
                    ("uptimeSeconds", "Uptime (s)"),
                    ("area", "Area"),
                    ("linkCount", "Links"),
                    ("nodeCount", "Nodes"),
                    ("addrCount", "Addresses"),
                    ("connectionCount", "Connections"),
                    ("presettledDeliveries", "Presettled Count"),
                    ("droppedPresettledDeliveries", "Dropped Presettled Count"),
                    ("acceptedDeliveries", "Accepted Count"),
                    ("rejectedDeliveries", "Rejected Count"),
                    ("releasedDeliveries", "Released Count"),
                    ("modifiedDeliveries", "Modified Count"),
                    ("deliveriesIngress", "Ingress Count"),
                    ("deliveriesEgress", "Egress Count"),
                    ("deliveriesTransit", "Transit Count"),
                ],
            ),
            View::Connections => (
                "connection",
                &[
                    ("identity", "id"),
                    ("host", "host"),
                    ("container", "container"),
                    ("role", "role"),
                    ("protocol", "proto"),
                    ("dir", "dir"),
                    ("sasl", "sasl"),
                    ("user", "user"),
                    ("sslProto", "tls"),
                    ("sslCipher", "cipher"),
                    ("lastDlvSeconds", "last dlv (s)"),
                    ("uptimeSeconds", "uptime (s)"),
                ],
            ),
            View::Links => (
                "router.link",
                &[
                    ("linkType", "type"),
                    ("linkDir", "dir"),
                    ("connectionId", "conn id"),
                    ("identity", "id"),
                    ("owningAddr", "addr"),
                    ("capacity", "cap"),
                    ("undeliveredCount", "undel"),
                    ("unsettledCount", "unsett"),
                    ("deliveryCount", "deliv"),
                    ("presettledCount", "presett"),
                    ("droppedPresettledCount", "psdrop"),
                    ("acceptedCount", "acc"),
                    ("rejectedCount", "rej"),
                    ("releasedCount", "rel"),
                    ("modifiedCount", "mod"),
                    ("creditAvailable", "cred"),
                    ("linkName", "name"),
                ],
            ),
            View::Addresses => (
                "router.address",
                &[
                    ("key", "addr"),
                    ("distribution", "distrib"),
                    ("inProcess", "in-proc"),
                    ("subscriberCount", "local"),
                    ("remoteCount", "remote"),
                    ("deliveriesIngress", "in"),
                    ("deliveriesEgress", "out"),
                    ("deliveriesTransit", "thru"),
                ],
            ),
            View::Nodes => (
                "router.node",
                &[
                    ("id", "router-id"),
                    ("nextHop", "next-hop"),
                    ("cost", "cost"),
                    ("linkState", "neighbours"),
                    ("validOrigins", "valid-origins"),
                ],
            ),
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            View::General => "Router Statistics",
            View::Connections => "Connections",
            View::Links => "Router Links",
            View::Addresses => "Router Addresses",
            View::Nodes => "Routers in the Network",
        }
    }

    /// The view's table from a QUERY of its attributes (in its order).
    pub fn render(self, rows: &[Vec<Value>]) -> String {
        let (_, columns) = self.query();
        if self == View::General {
            let Some(router) = rows.first() else {
                return format!("{}\n  (no router entity)\n", self.title());
            };
            let pairs: Vec<Vec<String>> = columns
                .iter()
                .zip(router)
                .map(|((_, header), v)| vec![(*header).to_owned(), text(v)])
                .collect();
            return table(self.title(), &["attr", "value"], &pairs);
        }
        let mut body: Vec<Vec<String>> =
            rows.iter().map(|r| r.iter().map(text).collect()).collect();
        body.sort();
        let headers: Vec<&str> = columns.iter().map(|(_, h)| *h).collect();
        table(self.title(), &headers, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_columns_to_the_widest_cell() {
        let t = table("T", &["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "T\n  a    bb\n  ========\n  xyz  1\n");
    }

    #[test]
    fn values_render_as_text_and_json() {
        let v = Value::List(vec![Value::from("a"), Value::Long(2)]);
        assert_eq!(text(&v), "a,2");
        assert_eq!(to_json(&v), serde_json::json!(["a", 2]));
        assert_eq!(text(&Value::Null), "");
    }
}
