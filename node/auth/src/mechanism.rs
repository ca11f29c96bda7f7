//! The server side of the SASL mechanisms a Bote listener may offer beyond
//! ANONYMOUS (which the engine decides alone): PLAIN (RFC 4616) checked
//! against the users file, SCRAM-SHA-256 (RFC 5802, RFC 7677) without
//! channel binding, and EXTERNAL (RFC 4422 appendix A), which takes the
//! identity the transport established (the TLS client certificate's
//! subject) and checks nothing else.
//!
//! A [`Mechanism`] is stepped with the client's bytes: [`Mechanism::start`]
//! with the init's initial response, [`Mechanism::respond`] with each
//! response; each step says [`Step::Challenge`] (send this, wait for a
//! response), [`Step::Success`] (the user, and what the outcome carries) or
//! [`Step::Failure`] (the reason, for the log only: the client learns just
//! the SASL `auth` outcome). PLAIN costs one PBKDF2 of the user's iteration
//! count: callers run steps where that may block.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::scram::{Credential, DEFAULT_ITERATIONS};
use crate::users::UserStore;

/// How long a router waits before it answers a failed authentication:
/// each guess costs the guesser this much; only its own connection waits.
pub const FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// A SASL mechanism name Bote knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MechanismName {
    Anonymous,
    Plain,
    ScramSha256,
    External,
}

impl MechanismName {
    /// Every mechanism, by its registered name.
    pub const ALL: [MechanismName; 4] = [
        MechanismName::Anonymous,
        MechanismName::Plain,
        MechanismName::ScramSha256,
        MechanismName::External,
    ];

    /// The registered names, in [`MechanismName::ALL`]'s order.
    pub const NAMES: &'static [&'static str] = &["ANONYMOUS", "PLAIN", "SCRAM-SHA-256", "EXTERNAL"];

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            MechanismName::Anonymous => "ANONYMOUS",
            MechanismName::Plain => "PLAIN",
            MechanismName::ScramSha256 => "SCRAM-SHA-256",
            MechanismName::External => "EXTERNAL",
        }
    }

    /// The mechanism with this registered name (case-sensitive).
    pub fn from_name(name: &str) -> Option<MechanismName> {
        MechanismName::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// True for mechanisms that check a password from the users file.
    pub fn needs_users(self) -> bool {
        matches!(self, MechanismName::Plain | MechanismName::ScramSha256)
    }
}

/// What to do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge and wait for the client's response.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; `additional_data` goes in the `ok` outcome
    /// (SCRAM's server-final message).
    Success {
        user: String,
        additional_data: Option<Vec<u8>>,
    },
    /// Refused; the reason is for the log.
    Failure(String),
}

/// One connection's mechanism, between steps.
#[derive(Debug)]
pub enum Mechanism {
    /// Nothing more to exchange (PLAIN, EXTERNAL, or a finished SCRAM).
    Done,
    /// SCRAM-SHA-256 after the server-first message.
    Scram(Box<ScramServer>),
}

/// SCRAM-SHA-256's state between server-first and client-final.
#[derive(Debug)]
pub struct ScramServer {
    /// None for an unknown user: the exchange goes on with a made-up salt
    /// (so a client cannot tell unknown users from wrong passwords) and
    /// fails at the proof.
    user: Option<(String, Credential)>,
    name: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

fn failure(reason: impl Into<String>) -> Step {
    Step::Failure(reason.into())
}

impl Mechanism {
    /// The client's init: `mechanism` with `initial_response`.
    /// `peer_identity` is what the transport authenticated (the TLS client
    /// certificate's subject), for EXTERNAL.
    pub fn start(
        mechanism: MechanismName,
        initial_response: Option<&[u8]>,
        users: &UserStore,
        peer_identity: Option<&str>,
    ) -> (Mechanism, Step) {
        let nonce: [u8; 18] = rand::random();
        Mechanism::start_with_nonce(
            mechanism,
            initial_response,
            users,
            peer_identity,
            &B64.encode(nonce),
        )
    }

    /// [`Mechanism::start`] with the server's SCRAM nonce given (tests).
    pub fn start_with_nonce(
        mechanism: MechanismName,
        initial_response: Option<&[u8]>,
        users: &UserStore,
        peer_identity: Option<&str>,
        server_nonce: &str,
    ) -> (Mechanism, Step) {
        match mechanism {
            MechanismName::Anonymous => (
                Mechanism::Done,
                Step::Success {
                    user: "anonymous".into(),
                    additional_data: None,
                },
            ),
            MechanismName::Plain => (Mechanism::Done, plain(initial_response, users)),
            MechanismName::External => (Mechanism::Done, external(initial_response, peer_identity)),
            MechanismName::ScramSha256 => {
                match ScramServer::start(initial_response, users, server_nonce) {
                    Ok((server, challenge)) => (
                        Mechanism::Scram(Box::new(server)),
                        Step::Challenge(challenge.into_bytes()),
                    ),
                    Err(reason) => (Mechanism::Done, Step::Failure(reason)),
                }
            }
        }
    }

    /// The client's response to our challenge.
    pub fn respond(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(self, Mechanism::Done) {
            Mechanism::Done => failure("a SASL response after the mechanism finished"),
            Mechanism::Scram(server) => server.finish(response),
        }
    }
}

/// PLAIN: `authzid NUL authcid NUL password`; an authzid other than the
/// authcid (acting for another user) is refused.
fn plain(initial_response: Option<&[u8]>, users: &UserStore) -> Step {
    let Some(message) = initial_response else {
        return failure("PLAIN without an initial response");
    };
    let Ok(message) = std::str::from_utf8(message) else {
        return failure("PLAIN response is not UTF-8");
    };
    let parts: Vec<&str> = message.split('\0').collect();
    let [authzid, user, password] = parts[..] else {
        return failure("PLAIN response is not authzid NUL user NUL password");
    };
    if !authzid.is_empty() && authzid != user {
        return failure(format!(
            "PLAIN: user \"{user}\" may not act as \"{authzid}\""
        ));
    }
    match users.get(user) {
        None => {
            // Spend what a known user costs, so timing tells nothing.
            let _ = Credential::with_salt(password, b"bote-unknown-user", DEFAULT_ITERATIONS);
            failure(format!("PLAIN: unknown user \"{user}\""))
        }
        Some(c) if c.verify_password(password) => Step::Success {
            user: user.to_owned(),
            additional_data: None,
        },
        Some(_) => failure(format!("PLAIN: wrong password for user \"{user}\"")),
    }
}

/// EXTERNAL: the transport's identity; an initial response, if not empty,
/// must name that same identity.
fn external(initial_response: Option<&[u8]>, peer_identity: Option<&str>) -> Step {
    let Some(identity) = peer_identity else {
        return failure("EXTERNAL: the transport established no identity (no client certificate)");
    };
    match initial_response {
        Some(r) if !r.is_empty() && r != identity.as_bytes() => failure(format!(
            "EXTERNAL: authorization identity \"{}\" is not the peer's \"{identity}\"",
            String::from_utf8_lossy(r)
        )),
        _ => Step::Success {
            user: identity.to_owned(),
            additional_data: None,
        },
    }
}

/// `saslname` of RFC 5802: `=2C` is `,` and `=3D` is `=`.
fn decode_saslname(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(format!("SCRAM user name \"{name}\" has a bad '=' escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    /// client-first-message -> server-first-message.
    fn start(
        initial_response: Option<&[u8]>,
        users: &UserStore,
        server_nonce: &str,
    ) -> Result<(ScramServer, String), String> {
        let message = initial_response.ok_or("SCRAM-SHA-256 without an initial response")?;
        let message =
            std::str::from_utf8(message).map_err(|_| "SCRAM client-first message is not UTF-8")?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = message.splitn(3, ',');
        let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("SCRAM client-first message has no GS2 header".into());
        };
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => {
                return Err("SCRAM channel binding (-PLUS) is not supported".into());
            }
            other => return Err(format!("SCRAM: bad channel-binding flag \"{other}\"")),
        }
        let gs2_header = format!("{cbind},{authzid},");
        let mut name = None;
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match (i, attr.split_once('=')) {
                (0, Some(("m", _))) => {
                    return Err("SCRAM mandatory extension (m=) is not supported".into());
                }
                (0, Some(("n", v))) => name = Some(decode_saslname(v)?),
                (1, Some(("r", v))) if !v.is_empty() => client_nonce = Some(v),
                (0 | 1, _) => {
                    return Err(format!(
                        "SCRAM client-first message \"{bare}\" is not n=USER,r=NONCE"
                    ));
                }
                _ => {}
            }
        }
        let (Some(name), Some(client_nonce)) = (name, client_nonce) else {
            return Err(format!(
                "SCRAM client-first message \"{bare}\" is not n=USER,r=NONCE"
            ));
        };
        if let Some(authzid) = authzid.strip_prefix("a=")
            && decode_saslname(authzid)? != name
        {
            return Err(format!(
                "SCRAM: user \"{name}\" may not act as \"{authzid}\""
            ));
        }
        if client_nonce.contains(|c: char| !(' '..='~').contains(&c) || c == ',') {
            return Err("SCRAM client nonce has characters outside printable ASCII".into());
        }
        let user = users.get(&name).map(|c| (name.clone(), c.clone()));
        let (salt, iterations) = match &user {
            Some((_, c)) => (c.salt.clone(), c.iterations),
            None => (rand::random::<[u8; 16]>().to_vec(), DEFAULT_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        Ok((
            ScramServer {
                user,
                name,
                gs2_header,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// client-final-message -> success with server-final, or failure.
    fn finish(self, response: &[u8]) -> Step {
        let Ok(message) = std::str::from_utf8(response) else {
            return failure("SCRAM client-final message is not UTF-8");
        };
        let Some((without_proof, proof)) = message.rsplit_once(",p=") else {
            return failure("SCRAM client-final message has no proof (p=)");
        };
        let mut attrs = without_proof.split(',');
        let (Some(channel), Some(nonce)) = (attrs.next(), attrs.next()) else {
            return failure("SCRAM client-final message is not c=...,r=...,p=...");
        };
        if channel.strip_prefix("c=") != Some(&B64.encode(&self.gs2_header)) {
            return failure("SCRAM channel binding data does not match the GS2 header");
        }
        if nonce.strip_prefix("r=") != Some(self.nonce.as_str()) {
            return failure("SCRAM nonce does not match");
        }
        let Ok(proof) = B64.decode(proof) else {
            return failure("SCRAM proof is not base64");
        };
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let Some((user, credential)) = self.user else {
            return failure(format!("SCRAM-SHA-256: unknown user \"{}\"", self.name));
        };
        if !credential.verify_proof(auth_message.as_bytes(), &proof) {
            return failure(format!("SCRAM-SHA-256: wrong password for user \"{user}\""));
        }
        let signature = credential.server_signature(auth_message.as_bytes());
        Step::Success {
            user,
            additional_data: Some(format!("v={}", B64.encode(signature)).into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::entry_line;

    fn store() -> UserStore {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let text = format!(
            "{}\n{}\n",
            entry_line("user", &Credential::with_salt("pencil", &salt, 4096)),
            entry_line("a,b=c", &Credential::with_salt("pw", b"salt", 1024)),
        );
        UserStore::parse(&text, "users").unwrap()
    }

    #[test]
    fn scram_sha_256_rfc7677_exchange() {
        let users = store();
        let (mut m, step) = Mechanism::start_with_nonce(
            MechanismName::ScramSha256,
            Some(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
            &users,
            None,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        assert_eq!(
            step,
            Step::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let step = m.respond(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(
            step,
            Step::Success {
                user: "user".into(),
                additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()),
            }
        );
        assert!(matches!(m.respond(b"again"), Step::Failure(_)));
    }

    #[test]
    fn scram_refuses_wrong_proofs_nonces_unknown_users_and_bad_messages() {
        let users = store();
        let start = |first: &[u8]| {
            Mechanism::start_with_nonce(MechanismName::ScramSha256, Some(first), &users, None, "SN")
        };
        let (mut m, _) = start(b"n,,n=user,r=abc");
        let r = m.respond(b"c=biws,r=abcSN,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert!(
            matches!(r, Step::Failure(ref why) if why.contains("wrong password")),
            "{r:?}"
        );
        let (mut m, _) = start(b"n,,n=user,r=abc");
        let r = m.respond(b"c=biws,r=abcXX,p=AAAA");
        assert!(
            matches!(r, Step::Failure(ref why) if why.contains("nonce")),
            "{r:?}"
        );
        let (mut m, _) = start(b"n,,n=user,r=abc");
        let r = m.respond(b"c=eSws,r=abcSN,p=AAAA");
        assert!(
            matches!(r, Step::Failure(ref why) if why.contains("channel binding")),
            "{r:?}"
        );
        // An unknown user still gets a challenge (with a made-up salt).
        let (mut m, step) = start(b"n,,n=nobody,r=abc");
        assert!(matches!(step, Step::Challenge(_)));
        let r = m.respond(b"c=biws,r=abcSN,p=AAAA");
        assert!(
            matches!(r, Step::Failure(ref why) if why.contains("unknown user")),
            "{r:?}"
        );
        for bad in [
            &b"p=tls-unique,,n=user,r=abc"[..],
            b"x,,n=user,r=abc",
            b"n,,r=abc",
            b"n,,n=user",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=us=XXer,r=abc",
            b"n,a=other,n=user,r=abc",
            b"\xff\xfe",
            b"garbage",
        ] {
            let (_, step) = start(bad);
            assert!(matches!(step, Step::Failure(_)), "{bad:?}: {step:?}");
        }
        let (_, step) = Mechanism::start(MechanismName::ScramSha256, None, &users, None);
        assert!(matches!(step, Step::Failure(_)));
    }

    #[test]
    fn scram_user_names_are_unescaped() {
        let users = store();
        let (_, step) = Mechanism::start_with_nonce(
            MechanismName::ScramSha256,
            Some(b"n,,n=a=2Cb=3Dc,r=abc"),
            &users,
            None,
            "SN",
        );
        match step {
            Step::Challenge(c) => {
                let c = String::from_utf8(c).unwrap();
                assert!(c.starts_with("r=abcSN,s=c2FsdA==,i=1024"), "{c}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_checks_the_password_against_the_stored_keys() {
        let users = store();
        let plain = |r: &[u8]| Mechanism::start(MechanismName::Plain, Some(r), &users, None).1;
        assert_eq!(
            plain(b"\0user\0pencil"),
            Step::Success {
                user: "user".into(),
                additional_data: None
            }
        );
        assert_eq!(
            plain(b"user\0user\0pencil"),
            Step::Success {
                user: "user".into(),
                additional_data: None
            }
        );
        for (bad, says) in [
            (&b"\0user\0pencil2"[..], "wrong password"),
            (b"\0nobody\0pencil", "unknown user"),
            (b"root\0user\0pencil", "may not act"),
            (b"user pencil", "not authzid"),
            (b"\0user\xff\0pencil", "UTF-8"),
        ] {
            let step = plain(bad);
            assert!(
                matches!(step, Step::Failure(ref why) if why.contains(says)),
                "{bad:?}: {step:?}"
            );
        }
        assert!(matches!(
            Mechanism::start(MechanismName::Plain, None, &users, None).1,
            Step::Failure(_)
        ));
    }

    #[test]
    fn external_takes_the_transport_identity() {
        let users = UserStore::default();
        let ext = |r: Option<&[u8]>, id: Option<&str>| {
            Mechanism::start(MechanismName::External, r, &users, id).1
        };
        let ok = Step::Success {
            user: "CN=router-b".into(),
            additional_data: None,
        };
        assert_eq!(ext(None, Some("CN=router-b")), ok);
        assert_eq!(ext(Some(b""), Some("CN=router-b")), ok);
        assert_eq!(ext(Some(b"CN=router-b"), Some("CN=router-b")), ok);
        assert!(matches!(
            ext(Some(b"CN=admin"), Some("CN=router-b")),
            Step::Failure(_)
        ));
        assert!(matches!(ext(None, None), Step::Failure(ref why) if why.contains("no identity")));
    }

    #[test]
    fn names_round_trip() {
        for m in MechanismName::ALL {
            assert_eq!(MechanismName::from_name(m.as_str()), Some(m));
        }
        assert_eq!(MechanismName::from_name("plain"), None);
    }
}
