//! The nine AMQP 1.0 transport performatives (§2.7) as Rust structs, and their
//! descriptor codes. Field names and defaults follow the spec; an `Option`
//! is a field the spec allows to be absent with no default.

use super::codec::{Symbol, Value};
use super::definitions::{
    AmqpError, DeliveryState, DeliveryTag, Fields, ReceiverSettleMode, Role, SenderSettleMode,
    Source, Target,
};

/// Descriptor codes (`amqp:open:list` = 0x10 ... `amqp:close:list` = 0x18).
pub mod code {
    pub const OPEN: u64 = 0x10;
    pub const BEGIN: u64 = 0x11;
    pub const ATTACH: u64 = 0x12;
    pub const FLOW: u64 = 0x13;
    pub const TRANSFER: u64 = 0x14;
    pub const DISPOSITION: u64 = 0x15;
    pub const DETACH: u64 = 0x16;
    pub const END: u64 = 0x17;
    pub const CLOSE: u64 = 0x18;
}

/// `open` (§2.7.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub container_id: String,
    pub hostname: Option<String>,
    /// Default 4294967295.
    pub max_frame_size: u32,
    /// Default 65535.
    pub channel_max: u16,
    /// Milliseconds.
    pub idle_time_out: Option<u32>,
    pub outgoing_locales: Option<Vec<Symbol>>,
    pub incoming_locales: Option<Vec<Symbol>>,
    pub offered_capabilities: Option<Vec<Symbol>>,
    pub desired_capabilities: Option<Vec<Symbol>>,
    pub properties: Option<Fields>,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            container_id: String::new(),
            hostname: None,
            max_frame_size: u32::MAX,
            channel_max: u16::MAX,
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }
}

/// `begin` (§2.7.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Begin {
    pub remote_channel: Option<u16>,
    pub next_outgoing_id: u32,
    pub incoming_window: u32,
    pub outgoing_window: u32,
    /// Default 4294967295.
    pub handle_max: u32,
    pub offered_capabilities: Option<Vec<Symbol>>,
    pub desired_capabilities: Option<Vec<Symbol>>,
    pub properties: Option<Fields>,
}

/// `attach` (§2.7.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Attach {
    pub name: String,
    pub handle: u32,
    pub role: Role,
    pub snd_settle_mode: SenderSettleMode,
    pub rcv_settle_mode: ReceiverSettleMode,
    pub source: Option<Source>,
    pub target: Option<Target>,
    pub unsettled: Option<Vec<(Value, Value)>>,
    pub incomplete_unsettled: bool,
    pub initial_delivery_count: Option<u32>,
    pub max_message_size: Option<u64>,
    pub offered_capabilities: Option<Vec<Symbol>>,
    pub desired_capabilities: Option<Vec<Symbol>>,
    pub properties: Option<Fields>,
}

/// `flow` (§2.7.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flow {
    pub next_incoming_id: Option<u32>,
    pub incoming_window: u32,
    pub next_outgoing_id: u32,
    pub outgoing_window: u32,
    pub handle: Option<u32>,
    pub delivery_count: Option<u32>,
    pub link_credit: Option<u32>,
    pub available: Option<u32>,
    pub drain: bool,
    pub echo: bool,
    pub properties: Option<Fields>,
}

/// `transfer` (§2.7.5). The payload (message bytes of this frame) travels
/// beside it in the frame, as a `Bytes` slice of the received buffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transfer {
    pub handle: u32,
    pub delivery_id: Option<u32>,
    pub delivery_tag: Option<DeliveryTag>,
    pub message_format: Option<u32>,
    pub settled: Option<bool>,
    pub more: bool,
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    pub state: Option<DeliveryState>,
    pub resume: bool,
    pub aborted: bool,
    pub batchable: bool,
}

/// `disposition` (§2.7.6).
#[derive(Debug, Clone, PartialEq)]
pub struct Disposition {
    pub role: Role,
    pub first: u32,
    pub last: Option<u32>,
    pub settled: bool,
    pub state: Option<DeliveryState>,
    pub batchable: bool,
}

/// `detach` (§2.7.7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detach {
    pub handle: u32,
    pub closed: bool,
    pub error: Option<AmqpError>,
}

/// `end` (§2.7.8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct End {
    pub error: Option<AmqpError>,
}

/// `close` (§2.7.9).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Close {
    pub error: Option<AmqpError>,
}

/// Any of the nine performatives. `open` and `attach` are boxed: they are
/// rare and the largest (184 and 456 bytes), and every frame (a transfer
/// most often) is moved a few times on its way through the engine, so the
/// enum is sized for the others (a frame was 496 bytes, now 184).
#[derive(Debug, Clone, PartialEq)]
pub enum Performative {
    Open(Box<Open>),
    Begin(Begin),
    Attach(Box<Attach>),
    Flow(Flow),
    Transfer(Transfer),
    Disposition(Disposition),
    Detach(Detach),
    End(End),
    Close(Close),
}

// ---- Encoding and decoding (as `Value`s; transfer also has a hand-written
// path over bytes in `amqp::transfer`) ----

use super::composite::{ListReader, ListWriter, fields_value, split_described, symbols_value};
use super::error::{FrameError, decode_error};

fn role_field(r: &mut ListReader, i: usize) -> Result<Role, FrameError> {
    r.boolean(i, "role")?
        .map(Role::from_bool)
        .ok_or_else(|| r.missing("role"))
}

fn error_field(r: &mut ListReader, i: usize) -> Result<Option<AmqpError>, FrameError> {
    r.value(i).map(AmqpError::from_value).transpose()
}

fn state_field(r: &mut ListReader, i: usize) -> Result<Option<DeliveryState>, FrameError> {
    r.value(i).map(DeliveryState::from_value).transpose()
}

impl Performative {
    /// The performative's name in the spec (`"open"`, `"transfer"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End(_) => "end",
            Performative::Close(_) => "close",
        }
    }

    /// The performative as a described list, trailing nulls left off and
    /// fields equal to their spec default written as null.
    pub fn to_value(&self) -> Value {
        let mut w = ListWriter::new();
        let c = match self {
            Performative::Open(o) => {
                w.push(Value::String(o.container_id.clone()));
                w.opt(o.hostname.clone(), Value::String);
                w.defaulted(o.max_frame_size, u32::MAX, Value::Uint);
                w.defaulted(o.channel_max, u16::MAX, Value::Ushort);
                w.opt(o.idle_time_out, Value::Uint);
                w.opt(o.outgoing_locales.clone(), symbols_value);
                w.opt(o.incoming_locales.clone(), symbols_value);
                w.opt(o.offered_capabilities.clone(), symbols_value);
                w.opt(o.desired_capabilities.clone(), symbols_value);
                w.opt(o.properties.clone(), fields_value);
                code::OPEN
            }
            Performative::Begin(b) => {
                w.opt(b.remote_channel, Value::Ushort);
                w.push(Value::Uint(b.next_outgoing_id));
                w.push(Value::Uint(b.incoming_window));
                w.push(Value::Uint(b.outgoing_window));
                w.defaulted(b.handle_max, u32::MAX, Value::Uint);
                w.opt(b.offered_capabilities.clone(), symbols_value);
                w.opt(b.desired_capabilities.clone(), symbols_value);
                w.opt(b.properties.clone(), fields_value);
                code::BEGIN
            }
            Performative::Attach(a) => {
                w.push(Value::String(a.name.clone()));
                w.push(Value::Uint(a.handle));
                w.push(Value::Bool(a.role.as_bool()));
                w.defaulted(a.snd_settle_mode, SenderSettleMode::Mixed, |m| {
                    Value::Ubyte(m.as_u8())
                });
                w.defaulted(a.rcv_settle_mode, ReceiverSettleMode::First, |m| {
                    Value::Ubyte(m.as_u8())
                });
                w.opt(a.source.as_ref(), Source::to_value);
                w.opt(a.target.as_ref(), Target::to_value);
                w.opt(a.unsettled.clone(), Value::Map);
                w.defaulted(a.incomplete_unsettled, false, Value::Bool);
                w.opt(a.initial_delivery_count, Value::Uint);
                w.opt(a.max_message_size, Value::Ulong);
                w.opt(a.offered_capabilities.clone(), symbols_value);
                w.opt(a.desired_capabilities.clone(), symbols_value);
                w.opt(a.properties.clone(), fields_value);
                code::ATTACH
            }
            Performative::Flow(f) => {
                w.opt(f.next_incoming_id, Value::Uint);
                w.push(Value::Uint(f.incoming_window));
                w.push(Value::Uint(f.next_outgoing_id));
                w.push(Value::Uint(f.outgoing_window));
                w.opt(f.handle, Value::Uint);
                w.opt(f.delivery_count, Value::Uint);
                w.opt(f.link_credit, Value::Uint);
                w.opt(f.available, Value::Uint);
                w.defaulted(f.drain, false, Value::Bool);
                w.defaulted(f.echo, false, Value::Bool);
                w.opt(f.properties.clone(), fields_value);
                code::FLOW
            }
            Performative::Transfer(t) => {
                w.push(Value::Uint(t.handle));
                w.opt(t.delivery_id, Value::Uint);
                w.opt(t.delivery_tag.as_ref(), |t| Value::Binary(t.to_bytes()));
                w.opt(t.message_format, Value::Uint);
                w.opt(t.settled, Value::Bool);
                w.defaulted(t.more, false, Value::Bool);
                w.opt(t.rcv_settle_mode, |m| Value::Ubyte(m.as_u8()));
                w.opt(t.state.as_ref(), DeliveryState::to_value);
                w.defaulted(t.resume, false, Value::Bool);
                w.defaulted(t.aborted, false, Value::Bool);
                w.defaulted(t.batchable, false, Value::Bool);
                code::TRANSFER
            }
            Performative::Disposition(d) => {
                w.push(Value::Bool(d.role.as_bool()));
                w.push(Value::Uint(d.first));
                w.opt(d.last, Value::Uint);
                w.defaulted(d.settled, false, Value::Bool);
                w.opt(d.state.as_ref(), DeliveryState::to_value);
                w.defaulted(d.batchable, false, Value::Bool);
                code::DISPOSITION
            }
            Performative::Detach(d) => {
                w.push(Value::Uint(d.handle));
                w.defaulted(d.closed, false, Value::Bool);
                w.opt(d.error.as_ref(), AmqpError::to_value);
                code::DETACH
            }
            Performative::End(e) => {
                w.opt(e.error.as_ref(), AmqpError::to_value);
                code::END
            }
            Performative::Close(c) => {
                w.opt(c.error.as_ref(), AmqpError::to_value);
                code::CLOSE
            }
        };
        w.finish(c)
    }

    /// Decodes a performative from its described-list value, applying the
    /// spec's defaults; a missing mandatory field is an `amqp:decode-error`
    /// naming the performative and the field.
    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let (c, body) = split_described(v, "performative")?;
        Ok(match c {
            code::OPEN => {
                let mut r = ListReader::new("open", body)?;
                Performative::Open(Box::new(Open {
                    container_id: r
                        .string(0, "container-id")?
                        .ok_or_else(|| r.missing("container-id"))?,
                    hostname: r.string(1, "hostname")?,
                    max_frame_size: r.uint(2, "max-frame-size")?.unwrap_or(u32::MAX),
                    channel_max: r.ushort(3, "channel-max")?.unwrap_or(u16::MAX),
                    idle_time_out: r.uint(4, "idle-time-out")?,
                    outgoing_locales: r.symbols(5, "outgoing-locales")?,
                    incoming_locales: r.symbols(6, "incoming-locales")?,
                    offered_capabilities: r.symbols(7, "offered-capabilities")?,
                    desired_capabilities: r.symbols(8, "desired-capabilities")?,
                    properties: r.fields(9, "properties")?,
                }))
            }
            code::BEGIN => {
                let mut r = ListReader::new("begin", body)?;
                Performative::Begin(Begin {
                    remote_channel: r.ushort(0, "remote-channel")?,
                    next_outgoing_id: r.req_uint(1, "next-outgoing-id")?,
                    incoming_window: r.req_uint(2, "incoming-window")?,
                    outgoing_window: r.req_uint(3, "outgoing-window")?,
                    handle_max: r.uint(4, "handle-max")?.unwrap_or(u32::MAX),
                    offered_capabilities: r.symbols(5, "offered-capabilities")?,
                    desired_capabilities: r.symbols(6, "desired-capabilities")?,
                    properties: r.fields(7, "properties")?,
                })
            }
            code::ATTACH => {
                let mut r = ListReader::new("attach", body)?;
                Performative::Attach(Box::new(Attach {
                    name: r.string(0, "name")?.ok_or_else(|| r.missing("name"))?,
                    handle: r.req_uint(1, "handle")?,
                    role: role_field(&mut r, 2)?,
                    snd_settle_mode: r
                        .ubyte(3, "snd-settle-mode")?
                        .map(SenderSettleMode::from_u8)
                        .transpose()?
                        .unwrap_or_default(),
                    rcv_settle_mode: r
                        .ubyte(4, "rcv-settle-mode")?
                        .map(ReceiverSettleMode::from_u8)
                        .transpose()?
                        .unwrap_or_default(),
                    source: r.value(5).map(Source::from_value).transpose()?,
                    target: r.value(6).map(Target::from_value).transpose()?,
                    unsettled: r.map(7, "unsettled")?,
                    incomplete_unsettled: r.bool_or(8, "incomplete-unsettled", false)?,
                    initial_delivery_count: r.uint(9, "initial-delivery-count")?,
                    max_message_size: r.ulong(10, "max-message-size")?,
                    offered_capabilities: r.symbols(11, "offered-capabilities")?,
                    desired_capabilities: r.symbols(12, "desired-capabilities")?,
                    properties: r.fields(13, "properties")?,
                }))
            }
            code::FLOW => {
                let mut r = ListReader::new("flow", body)?;
                Performative::Flow(Flow {
                    next_incoming_id: r.uint(0, "next-incoming-id")?,
                    incoming_window: r.req_uint(1, "incoming-window")?,
                    next_outgoing_id: r.req_uint(2, "next-outgoing-id")?,
                    outgoing_window: r.req_uint(3, "outgoing-window")?,
                    handle: r.uint(4, "handle")?,
                    delivery_count: r.uint(5, "delivery-count")?,
                    link_credit: r.uint(6, "link-credit")?,
                    available: r.uint(7, "available")?,
                    drain: r.bool_or(8, "drain", false)?,
                    echo: r.bool_or(9, "echo", false)?,
                    properties: r.fields(10, "properties")?,
                })
            }
            code::TRANSFER => {
                let mut r = ListReader::new("transfer", body)?;
                Performative::Transfer(Transfer {
                    handle: r.req_uint(0, "handle")?,
                    delivery_id: r.uint(1, "delivery-id")?,
                    delivery_tag: r.binary(2, "delivery-tag")?.map(DeliveryTag::from),
                    message_format: r.uint(3, "message-format")?,
                    settled: r.boolean(4, "settled")?,
                    more: r.bool_or(5, "more", false)?,
                    rcv_settle_mode: r
                        .ubyte(6, "rcv-settle-mode")?
                        .map(ReceiverSettleMode::from_u8)
                        .transpose()?,
                    state: state_field(&mut r, 7)?,
                    resume: r.bool_or(8, "resume", false)?,
                    aborted: r.bool_or(9, "aborted", false)?,
                    batchable: r.bool_or(10, "batchable", false)?,
                })
            }
            code::DISPOSITION => {
                let mut r = ListReader::new("disposition", body)?;
                Performative::Disposition(Disposition {
                    role: role_field(&mut r, 0)?,
                    first: r.req_uint(1, "first")?,
                    last: r.uint(2, "last")?,
                    settled: r.bool_or(3, "settled", false)?,
                    state: state_field(&mut r, 4)?,
                    batchable: r.bool_or(5, "batchable", false)?,
                })
            }
            code::DETACH => {
                let mut r = ListReader::new("detach", body)?;
                Performative::Detach(Detach {
                    handle: r.req_uint(0, "handle")?,
                    closed: r.bool_or(1, "closed", false)?,
                    error: error_field(&mut r, 2)?,
                })
            }
            code::END => {
                let mut r = ListReader::new("end", body)?;
                Performative::End(End {
                    error: error_field(&mut r, 0)?,
                })
            }
            code::CLOSE => {
                let mut r = ListReader::new("close", body)?;
                Performative::Close(Close {
                    error: error_field(&mut r, 0)?,
                })
            }
            other => {
                return Err(decode_error(format!(
                    "performative: unknown descriptor {other:#x}"
                )));
            }
        })
    }
}

macro_rules! performative_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Performative {
            fn from(p: $t) -> Self {
                Performative::$t(p.into())
            }
        }
    )*};
}
performative_from!(
    Open,
    Begin,
    Attach,
    Flow,
    Transfer,
    Disposition,
    Detach,
    End,
    Close
);
