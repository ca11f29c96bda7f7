//! The SASL frames of AMQP 1.0 security layer (§5.3): mechanisms, init,
//! challenge, response and outcome.

use bytes::Bytes;

use super::codec::Symbol;

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
