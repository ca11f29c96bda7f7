//! The `stat`, `manage` and `topology` subcommands: their options and what
//! each does with a [`Client`].

use std::path::PathBuf;
use std::time::Duration;

use bote_amqp::SaslConfig;
use bote_amqp::codec::Value;
use clap::{Args, Subcommand, ValueEnum};

use super::client::{Client, ManageError, long_name};
use super::render::{View, rows_json, to_json};
use super::topology::MeshTopology;

/// Where to connect.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The router to connect to, host:port of an AMQP listener.
    #[arg(short = 'b', long = "bus", default_value = "127.0.0.1:5672")]
    pub bus: String,
    /// Address another router of the mesh (its id) through the one connected to.
    #[arg(short = 'r', long = "router")]
    pub router: Option<String>,
    /// Address an edge router (its id) through the mesh, at its
    /// `_edge/<id>/$management` (qdstat's `-d`).
    #[arg(short = 'd', long = "edge-router", conflicts_with = "router")]
    pub edge: Option<String>,
    /// Seconds to wait for the router (and each reply).
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Log in with SASL PLAIN as this user (qdstat's --sasl-username), for
    /// listeners that require authentication.
    #[arg(long)]
    pub sasl_username: Option<String>,
    /// The password of --sasl-username.
    #[arg(long, requires = "sasl_username")]
    pub sasl_password: Option<String>,
}

/// `botectl stat`.
#[derive(Debug, Clone, Args)]
pub struct StatOptions {
    #[command(flatten)]
    pub target: Target,
    /// The router's general statistics.
    #[arg(short = 'g', long, group = "view")]
    pub general: bool,
    /// Connections.
    #[arg(short = 'c', long, group = "view")]
    pub connections: bool,
    /// Links.
    #[arg(short = 'l', long, group = "view")]
    pub links: bool,
    /// Addresses.
    #[arg(short = 'a', long, group = "view")]
    pub addresses: bool,
    /// Routers of the mesh (next hop, cost, neighbours).
    #[arg(short = 'n', long, group = "view")]
    pub nodes: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `botectl manage`.
#[derive(Debug, Clone, Args)]
pub struct ManageOptions {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub operation: Operation,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Operation {
    /// Every entity of a type, with the attributes named (all if none).
    Query {
        #[arg(long = "type")]
        ty: String,
        attributes: Vec<String>,
    },
    /// One entity by name or identity.
    Read {
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        identity: Option<String>,
    },
    /// Create an entity (listener, connector, router.config.address):
    /// attributes as name=value.
    Create {
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        name: String,
        attributes: Vec<String>,
    },
    /// Change attributes of an entity (a connector's cost).
    Update {
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        name: String,
        attributes: Vec<String>,
    },
    /// Delete an entity.
    Delete {
        #[arg(long = "type")]
        ty: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Dot,
    Json,
}

/// `botectl topology`.
#[derive(Debug, Clone, Args)]
pub struct TopologyOptions {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Render the mesh a bote-sim scenario file generates (with its seed)
    /// instead of asking a router.
    #[arg(long, value_name = "SCENARIO")]
    pub sim: Option<PathBuf>,
    /// With --sim: the router whose routes are shown (default: the first).
    #[arg(long, requires = "sim")]
    pub from: Option<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime, ManageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ManageError::Protocol(format!("cannot start a runtime: {e}")))
}

async fn connect(t: &Target) -> Result<Client, ManageError> {
    let sasl = match &t.sasl_username {
        Some(user) => {
            let password = t.sasl_password.as_deref().unwrap_or("");
            SaslConfig::Client {
                mechanism: "PLAIN".into(),
                initial_response: Some(bytes::Bytes::from(format!("\0{user}\0{password}"))),
                hostname: None,
            }
        }
        None => SaslConfig::None,
    };
    if let Some(edge) = &t.edge {
        return Client::connect_node(
            &t.bus,
            format!("_edge/{edge}/$management"),
            None,
            Duration::from_secs(t.timeout.max(1)),
            sasl,
        )
        .await;
    }
    Client::connect_with(
        &t.bus,
        t.router.as_deref(),
        Duration::from_secs(t.timeout.max(1)),
        sasl,
    )
    .await
}

/// `botectl stat`: what it prints.
pub fn stat(options: &StatOptions) -> Result<String, ManageError> {
    let view = if options.connections {
        View::Connections
    } else if options.links {
        View::Links
    } else if options.addresses {
        View::Addresses
    } else if options.nodes {
        View::Nodes
    } else {
        View::General
    };
    let (ty, columns) = view.query();
    let attributes: Vec<String> = columns.iter().map(|(a, _)| (*a).to_owned()).collect();
    runtime()?.block_on(async {
        let mut client = connect(&options.target).await?;
        let (names, rows) = client.query(ty, &attributes).await?;
        client.close().await;
        Ok(if options.json {
            let json = rows_json(&names, &rows);
            let json = match view {
                View::General => json
                    .as_array()
                    .and_then(|a| a.first().cloned())
                    .unwrap_or_default(),
                _ => json,
            };
            format!(
                "{}\n",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            )
        } else {
            view.render(&rows)
        })
    })
}

/// A `name=value` attribute: numbers and booleans as such, the rest text.
fn attribute(text: &str) -> Result<(Value, Value), ManageError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| ManageError::Protocol(format!("attribute {text:?} is not name=value")))?;
    let value = if let Ok(n) = value.parse::<i64>() {
        Value::Long(n)
    } else if let Ok(b) = value.parse::<bool>() {
        Value::Bool(b)
    } else {
        Value::String(value.to_owned())
    };
    Ok((Value::String(name.to_owned()), value))
}

fn attributes(list: &[String]) -> Result<Value, ManageError> {
    Ok(Value::Map(
        list.iter()
            .map(|a| attribute(a))
            .collect::<Result<_, _>>()?,
    ))
}

/// `botectl manage`: the JSON it prints.
pub fn manage(options: &ManageOptions) -> Result<String, ManageError> {
    runtime()?.block_on(async {
        let mut client = connect(&options.target).await?;
        let out = match &options.operation {
            Operation::Query { ty, attributes } => {
                let (names, rows) = client.query(ty, attributes).await?;
                rows_json(&names, &rows)
            }
            Operation::Read { ty, name, identity } => {
                let mut props = vec![
                    ("operation", Value::from("READ")),
                    ("type", Value::String(long_name(ty))),
                ];
                match (name, identity) {
                    (_, Some(i)) => props.push(("identity", Value::String(i.clone()))),
                    (Some(n), None) => props.push(("name", Value::String(n.clone()))),
                    (None, None) => {
                        return Err(ManageError::Protocol(
                            "read needs --name or --identity".into(),
                        ));
                    }
                }
                to_json(&client.expect(200, &props, Value::Map(Vec::new())).await?)
            }
            Operation::Create {
                ty,
                name,
                attributes: attrs,
            } => to_json(
                &client
                    .expect(
                        201,
                        &[
                            ("operation", Value::from("CREATE")),
                            ("type", Value::String(long_name(ty))),
                            ("name", Value::String(name.clone())),
                        ],
                        attributes(attrs)?,
                    )
                    .await?,
            ),
            Operation::Update {
                ty,
                name,
                attributes: attrs,
            } => to_json(
                &client
                    .expect(
                        200,
                        &[
                            ("operation", Value::from("UPDATE")),
                            ("type", Value::String(long_name(ty))),
                            ("name", Value::String(name.clone())),
                        ],
                        attributes(attrs)?,
                    )
                    .await?,
            ),
            Operation::Delete { ty, name } => {
                client
                    .expect(
                        204,
                        &[
                            ("operation", Value::from("DELETE")),
                            ("type", Value::String(long_name(ty))),
                            ("name", Value::String(name.clone())),
                        ],
                        Value::Map(Vec::new()),
                    )
                    .await?;
                serde_json::json!({"deleted": name})
            }
        };
        client.close().await;
        Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        ))
    })
}

/// `botectl topology`: what it prints.
pub fn topology(options: &TopologyOptions) -> Result<String, ManageError> {
    let mesh = match &options.sim {
        Some(path) => {
            MeshTopology::from_sim(path, options.from.as_deref()).map_err(ManageError::Protocol)?
        }
        None => runtime()?.block_on(async {
            let mut client = connect(&options.target).await?;
            let attributes: Vec<String> = ["id", "nextHop", "cost", "linkCosts"]
                .map(String::from)
                .to_vec();
            let (names, rows) = client.query("router.node", &attributes).await?;
            client.close().await;
            Ok::<_, ManageError>(MeshTopology::from_nodes(&names, &rows))
        })?,
    };
    Ok(match options.format {
        Format::Table => mesh.table(),
        Format::Dot => mesh.dot(),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&mesh.json()).unwrap_or_default()
        ),
    })
}
