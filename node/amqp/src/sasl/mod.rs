//! The SASL security layer (§5.3): its frames ([`frames`]).

mod frames;

pub use frames::{
    SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
