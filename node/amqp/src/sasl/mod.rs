//! The SASL security layer (§5.3): its frames ([`frames`]) and the
//! negotiation one connection goes through ([`negotiation`]).

mod frames;
mod negotiation;

pub use frames::{
    SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
pub use negotiation::SaslConfig;
pub(crate) use negotiation::{SaslNegotiation, SaslStep};
