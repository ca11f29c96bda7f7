//! The SASL negotiation of one connection (§5.3.2): what each side offers,
//! checks and answers, frame by frame. The connection hands it the SASL
//! frames it reads and does what the returned [`SaslStep`] says (write a
//! frame, switch to AMQP, ask the application, fail); it holds no I/O.
//!
//! On the server the engine decides only ANONYMOUS and mechanisms it does
//! not offer; every other mechanism's bytes are opaque here and go to the
//! application (`Event::SaslInit`, then `Event::SaslResponse` for each
//! response after a challenge it chose to send), which verifies them: the
//! credentials, the user store and the cryptography (PLAIN, SCRAM,
//! EXTERNAL) live in the router, not in this crate, which depends on
//! `bytes` and `thiserror` only.

use bytes::Bytes;

use super::frames::{SaslChallenge, SaslCode, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome};
use crate::codec::Symbol;
use crate::error::{FrameError, condition};

/// The SASL layer, per side.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SaslConfig {
    /// Client: no SASL. Server: only the plain AMQP header is accepted.
    #[default]
    None,
    /// Client: authenticate with `mechanism` (ANONYMOUS, or PLAIN with
    /// `initial_response` = `\0user\0password`).
    Client {
        mechanism: String,
        initial_response: Option<Bytes>,
        hostname: Option<String>,
    },
    /// Server: offer `mechanisms`. ANONYMOUS is accepted by the engine;
    /// any other offered mechanism is reported as `Event::SaslInit` for the
    /// application to decide. With `required == false` a client may also skip
    /// SASL and send the AMQP header directly.
    Server {
        mechanisms: Vec<String>,
        required: bool,
    },
}

/// What the connection does after a SASL frame arrived.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SaslStep {
    /// Write this frame and go on reading SASL frames.
    Send(SaslFrame),
    /// Client: the server accepted; the AMQP layer starts.
    Authenticated { mechanism: String },
    /// Server: the application decides on this init (`Event::SaslInit`),
    /// then calls back with [`SaslNegotiation::outcome`].
    Decide {
        mechanism: String,
        initial_response: Option<Bytes>,
        hostname: Option<String>,
    },
    /// Server: the application decides on this response to the challenge
    /// it sent (`Event::SaslResponse`).
    Respond { response: Bytes },
    /// Server: answer at once (unknown mechanism: no; ANONYMOUS: yes).
    Answer { ok: bool },
    /// Close the transport with this error (there is no AMQP close yet).
    Fail(FrameError),
}

/// One connection's SASL state: its configuration, whether the negotiation
/// succeeded, and the mechanism chosen.
#[derive(Debug)]
pub(crate) struct SaslNegotiation {
    config: SaslConfig,
    done: bool,
    mechanism: Option<String>,
    /// Server: a challenge went out; the client's response comes next.
    challenged: bool,
}

impl SaslNegotiation {
    pub(crate) fn new(config: SaslConfig) -> Self {
        SaslNegotiation {
            config,
            done: false,
            mechanism: None,
            challenged: false,
        }
    }

    /// The negotiation succeeded.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The mechanism chosen (by the client, or in the server's init).
    pub(crate) fn mechanism(&self) -> Option<&str> {
        self.mechanism.as_deref()
    }

    /// A client that still has to authenticate: it sends the SASL header
    /// first and reads SASL frames after the server's.
    pub(crate) fn client_pending(&self) -> bool {
        matches!(self.config, SaslConfig::Client { .. }) && !self.done
    }

    /// A server: `Some(required)`; otherwise None.
    pub(crate) fn server_required(&self) -> Option<bool> {
        match &self.config {
            SaslConfig::Server { required, .. } => Some(*required),
            _ => None,
        }
    }

    /// Server: the mechanisms frame that answers the client's SASL header.
    pub(crate) fn offer(&self) -> SaslFrame {
        let mechanisms = match &self.config {
            SaslConfig::Server { mechanisms, .. } => mechanisms
                .iter()
                .map(|m| Symbol::from(m.as_str()))
                .collect(),
            _ => Vec::new(),
        };
        SaslFrame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: mechanisms,
        })
    }

    /// One SASL frame from the peer.
    pub(crate) fn on_frame(&mut self, frame: SaslFrame) -> SaslStep {
        match (&self.config, frame) {
            (SaslConfig::Server { mechanisms, .. }, SaslFrame::Init(init))
                if self.mechanism.is_none() =>
            {
                let offered = mechanisms.iter().any(|m| m == init.mechanism.as_str());
                self.on_init(offered, init)
            }
            (SaslConfig::Server { .. }, SaslFrame::Response(r)) if self.challenged => {
                self.challenged = false;
                SaslStep::Respond {
                    response: r.response,
                }
            }
            (
                SaslConfig::Client {
                    mechanism,
                    initial_response,
                    hostname,
                },
                SaslFrame::Mechanisms(m),
            ) => {
                if !m
                    .sasl_server_mechanisms
                    .iter()
                    .any(|s| s.as_str() == mechanism)
                {
                    return SaslStep::Fail(FrameError {
                        condition: condition::UNAUTHORIZED_ACCESS,
                        description: format!(
                            "SASL mechanism {mechanism} is not offered by the server"
                        ),
                    });
                }
                let init = SaslFrame::Init(SaslInit {
                    mechanism: Symbol::from(mechanism.as_str()),
                    initial_response: initial_response.clone(),
                    hostname: hostname.clone(),
                });
                self.mechanism = Some(mechanism.clone());
                SaslStep::Send(init)
            }
            (SaslConfig::Client { .. }, SaslFrame::Outcome(outcome)) => {
                if outcome.code != SaslCode::Ok {
                    return SaslStep::Fail(FrameError {
                        condition: condition::UNAUTHORIZED_ACCESS,
                        description: format!(
                            "SASL authentication failed with code {:?}",
                            outcome.code
                        ),
                    });
                }
                self.done = true;
                SaslStep::Authenticated {
                    mechanism: self.mechanism.clone().unwrap_or_default(),
                }
            }
            (SaslConfig::Client { .. }, SaslFrame::Challenge(_)) => SaslStep::Fail(FrameError {
                condition: condition::NOT_IMPLEMENTED,
                description: "SASL challenges are not supported by this client".into(),
            }),
            (_, other) => SaslStep::Fail(FrameError {
                condition: condition::NOT_ALLOWED,
                description: format!("unexpected SASL frame {} at this point", other.name()),
            }),
        }
    }

    /// Server: a mechanism not offered is refused, ANONYMOUS accepted, any
    /// other offered one left to the application.
    fn on_init(&mut self, offered: bool, init: SaslInit) -> SaslStep {
        let mechanism = init.mechanism.as_str().to_owned();
        self.mechanism = Some(mechanism.clone());
        if !offered {
            SaslStep::Answer { ok: false }
        } else if mechanism == "ANONYMOUS" {
            SaslStep::Answer { ok: true }
        } else {
            SaslStep::Decide {
                mechanism,
                initial_response: init.initial_response,
                hostname: init.hostname,
            }
        }
    }

    /// Server: the challenge frame the application sends; the client's
    /// response is awaited next.
    pub(crate) fn challenge(&mut self, challenge: Bytes) -> SaslFrame {
        self.challenged = true;
        SaslFrame::Challenge(SaslChallenge { challenge })
    }

    /// Server: the outcome frame answering the client's init or response
    /// (the negotiation is done when `ok`); `additional_data` carries a
    /// mechanism's last server message (SCRAM's server-final).
    pub(crate) fn outcome(&mut self, ok: bool, additional_data: Option<Bytes>) -> SaslFrame {
        self.done |= ok;
        SaslFrame::Outcome(SaslOutcome {
            code: if ok { SaslCode::Ok } else { SaslCode::Auth },
            additional_data,
        })
    }
}
