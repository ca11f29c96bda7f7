//! How a client listener authenticates one connection: what the transport
//! established before AMQP ([`TransportSecurity`]: encrypted or not, the peer
//! identity a TLS client certificate proved), which SASL mechanisms are
//! offered on it ([`offered_mechanisms`]), and running a `bote_auth`
//! mechanism's step off the connection's worker thread ([`run_step`]: PLAIN
//! derives a PBKDF2 key per attempt). The connection actor carries the
//! bytes between the engine's SASL events and these steps, and delays a
//! refusal by [`AUTH_FAILURE_DELAY`] (a timer on that connection only).

use std::sync::Arc;
use std::time::Duration;

use bote_auth::{Mechanism, MechanismName, Step, UserStore};
use bytes::Bytes;

use crate::config::{ListenerConfig, SaslMechanism};

/// How long a failed authentication waits before its `auth` outcome goes
/// out and the connection closes (`bote_auth::mechanism::FAILURE_DELAY`).
pub const AUTH_FAILURE_DELAY: Duration = bote_auth::mechanism::FAILURE_DELAY;

/// What the transport under AMQP established for a connection, given to it
/// at accept time. Plain TCP: not encrypted, no identity. A TLS listener
/// sets `encrypted` and, with a verified client certificate,
/// `peer_identity` (its subject), which SASL EXTERNAL authenticates as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportSecurity {
    pub encrypted: bool,
    pub peer_identity: Option<String>,
}

/// The mechanisms `listener` offers on a connection over `transport`:
/// PLAIN only when encrypted or `allow-insecure-plain`, EXTERNAL only
/// with a peer identity, the others as configured, in configured order.
pub fn offered_mechanisms(listener: &ListenerConfig, transport: &TransportSecurity) -> Vec<String> {
    listener
        .sasl_mechanisms
        .iter()
        .filter(|m| match m {
            SaslMechanism::Plain => transport.encrypted || listener.allow_insecure_plain,
            SaslMechanism::External => transport.peer_identity.is_some(),
            SaslMechanism::Anonymous | SaslMechanism::ScramSha256 => true,
        })
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// One step of a SASL exchange to run: the client's init (with the
/// mechanism it chose) or its response to our challenge.
pub enum Input {
    Init {
        mechanism: MechanismName,
        initial_response: Option<Bytes>,
        peer_identity: Option<String>,
    },
    Response {
        state: Mechanism,
        response: Bytes,
    },
}

/// Runs `input` against `users` on tokio's blocking pool (PLAIN's PBKDF2
/// must not hold a worker arbiter that serves other connections); returns
/// the mechanism's state for the next response, and the step.
pub async fn run_step(users: Arc<UserStore>, input: Input) -> (Mechanism, Step) {
    let work = move || match input {
        Input::Init {
            mechanism,
            initial_response,
            peer_identity,
        } => Mechanism::start(
            mechanism,
            initial_response.as_deref(),
            &users,
            peer_identity.as_deref(),
        ),
        Input::Response {
            mut state,
            response,
        } => {
            let step = state.respond(&response);
            (state, step)
        }
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => (
            Mechanism::Done,
            Step::Failure(format!("authentication task failed: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_needs_encryption_or_the_insecure_switch_and_external_an_identity() {
        let mut l = ListenerConfig {
            sasl_mechanisms: vec![
                SaslMechanism::ScramSha256,
                SaslMechanism::Plain,
                SaslMechanism::External,
            ],
            ..ListenerConfig::default()
        };
        let tcp = TransportSecurity::default();
        assert_eq!(offered_mechanisms(&l, &tcp), ["SCRAM-SHA-256"]);
        let tls = TransportSecurity {
            encrypted: true,
            peer_identity: Some("CN=client".into()),
        };
        assert_eq!(
            offered_mechanisms(&l, &tls),
            ["SCRAM-SHA-256", "PLAIN", "EXTERNAL"]
        );
        l.allow_insecure_plain = true;
        assert_eq!(offered_mechanisms(&l, &tcp), ["SCRAM-SHA-256", "PLAIN"]);
    }
}
