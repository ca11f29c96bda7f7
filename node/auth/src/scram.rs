//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the stored credential (salt,
//! iterations, `StoredKey`, `ServerKey`), derived from a password once and
//! kept instead of it, and the key arithmetic both PLAIN and SCRAM check a
//! client with.
//!
//! Passwords are used as their UTF-8 bytes without SASLprep normalisation;
//! for the ASCII passwords of most deployments the two are the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// RFC 7677's minimum and the default for new credentials.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The fewest iterations a users file may state (RFC 7677 asks for 4096;
/// tests may use fewer, never below this).
pub const MIN_ITERATIONS: u32 = 1024;

/// The most iterations accepted: PLAIN derives the key at every login, so
/// a file cannot make each login cost seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// One user's SCRAM-SHA-256 credential: what a server keeps so it can
/// check a password (PLAIN) or a SCRAM proof without knowing the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares in time independent of where the inputs differ.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `SaltedPassword` = PBKDF2-HMAC-SHA-256(password, salt, iterations).
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

impl Credential {
    /// Derives the credential of `password` with a fresh random 16-byte
    /// salt.
    pub fn new(password: &str, iterations: u32) -> Credential {
        let salt: [u8; 16] = rand::random();
        Credential::with_salt(password, &salt, iterations)
    }

    /// Derives the credential of `password` with this salt.
    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Credential {
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Credential {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// True if `password` derives this credential (PLAIN). Costs one
    /// PBKDF2 of `iterations` rounds.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = salted_password(password.as_bytes(), &self.salt, self.iterations);
        equal(&sha256(&hmac(&salted, b"Client Key")), &self.stored_key)
    }

    /// SCRAM: true if `proof` (`ClientKey XOR ClientSignature`) proves
    /// knowledge of the password for `auth_message`.
    pub fn verify_proof(&self, auth_message: &[u8], proof: &[u8]) -> bool {
        if proof.len() != 32 {
            return false;
        }
        let signature = hmac(&self.stored_key, auth_message);
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        equal(&sha256(&client_key), &self.stored_key)
    }

    /// SCRAM: the server's signature of `auth_message`, which proves to the
    /// client that the server holds the credential.
    pub fn server_signature(&self, auth_message: &[u8]) -> [u8; 32] {
        hmac(&self.server_key, auth_message)
    }

    /// The credential's fields as the users file writes them:
    /// `ITERATIONS:SALT:STORED_KEY:SERVER_KEY`, base64.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses [`Credential::encode`]'s form; the error says which field is
    /// wrong.
    pub fn decode(text: &str) -> Result<Credential, String> {
        let fields: Vec<&str> = text.split(':').collect();
        let [iterations, salt, stored, server] = fields[..] else {
            return Err(format!(
                "expected ITERATIONS:SALT:STORED-KEY:SERVER-KEY, found {} field(s)",
                fields.len()
            ));
        };
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("iterations \"{iterations}\" is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iterations {iterations} is out of range ({MIN_ITERATIONS} to {MAX_ITERATIONS})"
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|e| format!("salt is not base64: {e}"))?;
        if salt.is_empty() {
            return Err("salt is empty".into());
        }
        let key = |name: &str, text: &str| -> Result<[u8; 32], String> {
            B64.decode(text)
                .map_err(|e| format!("{name} is not base64: {e}"))?
                .try_into()
                .map_err(|_| format!("{name} is not 32 bytes (a SHA-256 value)"))
        };
        Ok(Credential {
            salt,
            iterations,
            stored_key: key("stored key", stored)?,
            server_key: key("server key", server)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_credential_and_proof() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = Credential::with_salt("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert!(c.verify_proof(auth_message.as_bytes(), &proof));
        assert_eq!(
            B64.encode(c.server_signature(auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut bad = proof.clone();
        bad[0] ^= 1;
        assert!(!c.verify_proof(auth_message.as_bytes(), &bad));
        assert!(c.verify_password("pencil"));
        assert!(!c.verify_password("pencil "));
    }

    #[test]
    fn encode_decode_round_trip_and_errors_name_the_field() {
        let c = Credential::new("s3cret", MIN_ITERATIONS);
        assert_eq!(Credential::decode(&c.encode()), Ok(c.clone()));
        assert!(!c.encode().contains("s3cret"));
        for (text, says) in [
            ("4096:c2FsdA==:AAAA", "field"),
            ("many:c2FsdA==:a:b", "iterations"),
            ("10:c2FsdA==:a:b", "out of range"),
            ("4096:***:a:b", "salt"),
            ("4096:c2FsdA==:AAAA:AAAA", "stored key"),
        ] {
            let e = Credential::decode(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
