//! Who may connect to a Bote router: the users file ([`users`]) with one
//! salted SCRAM-SHA-256 credential per user (never a password), and the
//! server side of the SASL mechanisms that check a client against it
//! ([`mechanism`]: PLAIN, SCRAM-SHA-256, and EXTERNAL from the identity the
//! transport established).
//!
//! Sans-I/O like the engine: a mechanism is stepped with the client's bytes
//! and answers with the next challenge, success (the user, and data for the
//! outcome) or failure; the router's connection actor carries those bytes
//! in the engine's SASL frames (`bote_amqp::Event::SaslInit`,
//! `Event::SaslResponse`). Both `boted` (verifying) and `botectl user add`
//! (writing the file) use this crate, so the file's format is written once.

pub mod mechanism;
pub mod scram;
pub mod users;

pub use mechanism::{Mechanism, MechanismName, Step};
pub use scram::Credential;
pub use users::{SharedUsers, UserStore, UsersError};
