//! The SASL frames of AMQP 1.0 security layer (§5.3): mechanisms, init,
//! challenge, response and outcome.

use bytes::Bytes;

use crate::codec::Symbol;

/// Descriptor codes of the SASL frames (`amqp:sasl-mechanisms:list` = 0x40 ...).
pub mod code {
    pub const MECHANISMS: u64 = 0x40;
    pub const INIT: u64 = 0x41;
    pub const CHALLENGE: u64 = 0x42;
    pub const RESPONSE: u64 = 0x43;
    pub const OUTCOME: u64 = 0x44;
}

/// `sasl-code` (§5.3.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslCode {
    Ok = 0,
    Auth = 1,
    Sys = 2,
    SysPerm = 3,
    SysTemp = 4,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaslMechanisms {
    pub sasl_server_mechanisms: Vec<Symbol>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaslInit {
    pub mechanism: Symbol,
    pub initial_response: Option<Bytes>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaslChallenge {
    pub challenge: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaslResponse {
    pub response: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SaslOutcome {
    pub code: SaslCode,
    pub additional_data: Option<Bytes>,
}

/// Any SASL frame body.
#[derive(Debug, Clone, PartialEq)]
pub enum SaslFrame {
    Mechanisms(SaslMechanisms),
    Init(SaslInit),
    Challenge(SaslChallenge),
    Response(SaslResponse),
    Outcome(SaslOutcome),
}

// ---- Encoding and decoding (as `Value`s) ----

use crate::codec::Value;
use crate::composite::{ListReader, ListWriter, split_described, symbols_value};
use crate::error::{FrameError, decode_error};

impl SaslCode {
    pub fn from_u8(v: u8) -> Result<Self, FrameError> {
        match v {
            0 => Ok(SaslCode::Ok),
            1 => Ok(SaslCode::Auth),
            2 => Ok(SaslCode::Sys),
            3 => Ok(SaslCode::SysPerm),
            4 => Ok(SaslCode::SysTemp),
            _ => Err(decode_error(format!(
                "sasl-outcome.code: invalid value {v}"
            ))),
        }
    }
}

impl SaslFrame {
    /// The frame's name in the spec (`"sasl-init"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SaslFrame::Mechanisms(_) => "sasl-mechanisms",
            SaslFrame::Init(_) => "sasl-init",
            SaslFrame::Challenge(_) => "sasl-challenge",
            SaslFrame::Response(_) => "sasl-response",
            SaslFrame::Outcome(_) => "sasl-outcome",
        }
    }

    pub fn to_value(&self) -> Value {
        let mut w = ListWriter::new();
        let c = match self {
            SaslFrame::Mechanisms(m) => {
                w.push(symbols_value(m.sasl_server_mechanisms.clone()));
                code::MECHANISMS
            }
            SaslFrame::Init(i) => {
                w.push(Value::Symbol(i.mechanism.clone()));
                w.opt(i.initial_response.clone(), Value::Binary);
                w.opt(i.hostname.clone(), Value::String);
                code::INIT
            }
            SaslFrame::Challenge(c) => {
                w.push(Value::Binary(c.challenge.clone()));
                code::CHALLENGE
            }
            SaslFrame::Response(r) => {
                w.push(Value::Binary(r.response.clone()));
                code::RESPONSE
            }
            SaslFrame::Outcome(o) => {
                w.push(Value::Ubyte(o.code as u8));
                w.opt(o.additional_data.clone(), Value::Binary);
                code::OUTCOME
            }
        };
        w.finish(c)
    }

    /// Decodes a SASL frame body; a missing mandatory field is an
    /// `amqp:decode-error` naming the frame and the field.
    pub fn from_value(v: Value) -> Result<Self, FrameError> {
        let (c, body) = split_described(v, "sasl frame")?;
        Ok(match c {
            code::MECHANISMS => {
                let mut r = ListReader::new("sasl-mechanisms", body)?;
                SaslFrame::Mechanisms(SaslMechanisms {
                    sasl_server_mechanisms: r
                        .symbols(0, "sasl-server-mechanisms")?
                        .ok_or_else(|| r.missing("sasl-server-mechanisms"))?,
                })
            }
            code::INIT => {
                let mut r = ListReader::new("sasl-init", body)?;
                SaslFrame::Init(SaslInit {
                    mechanism: r
                        .symbol(0, "mechanism")?
                        .ok_or_else(|| r.missing("mechanism"))?,
                    initial_response: r.binary(1, "initial-response")?,
                    hostname: r.string(2, "hostname")?,
                })
            }
            code::CHALLENGE => {
                let mut r = ListReader::new("sasl-challenge", body)?;
                SaslFrame::Challenge(SaslChallenge {
                    challenge: r
                        .binary(0, "challenge")?
                        .ok_or_else(|| r.missing("challenge"))?,
                })
            }
            code::RESPONSE => {
                let mut r = ListReader::new("sasl-response", body)?;
                SaslFrame::Response(SaslResponse {
                    response: r
                        .binary(0, "response")?
                        .ok_or_else(|| r.missing("response"))?,
                })
            }
            code::OUTCOME => {
                let mut r = ListReader::new("sasl-outcome", body)?;
                SaslFrame::Outcome(SaslOutcome {
                    code: r
                        .ubyte(0, "code")?
                        .map(SaslCode::from_u8)
                        .transpose()?
                        .ok_or_else(|| r.missing("code"))?,
                    additional_data: r.binary(1, "additional-data")?,
                })
            }
            other => {
                return Err(decode_error(format!(
                    "sasl frame: unknown descriptor {other:#x}"
                )));
            }
        })
    }
}
