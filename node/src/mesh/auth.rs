//! Credentials on inter-router streams. An inter-router link is one gRPC
//! call, not an AMQP connection, so there is no SASL exchange to carry
//! mechanisms in: a connector with `sasl-username` sends a SASL PLAIN
//! message (`NUL user NUL password`) in the call's `bote-sasl-plain-bin`
//! metadata, and an inter-router listener that authenticates its peers
//! (`authenticate-peer`, or `sasl-mechanisms` without ANONYMOUS) checks it
//! against the users file with the same code as a client's PLAIN
//! (`bote_auth`). PLAIN is the only mechanism carried this way; it is
//! accepted on a listener only if it offers PLAIN, and over an unencrypted
//! link only with `allow-insecure-plain` (the same rule as for clients).
//! A refusal is logged with the peer's address, waits
//! `bote_auth::mechanism::FAILURE_DELAY`, and ends the call `UNAUTHENTICATED`.

use bote_auth::{Mechanism, MechanismName, Step, UserStore};
use tonic::metadata::{BinaryMetadataValue, MetadataMap};

use crate::config::{ConnectorConfig, ListenerConfig, SaslMechanism};

/// The metadata key of the PLAIN message.
pub const SASL_PLAIN_METADATA: &str = "bote-sasl-plain-bin";

/// The PLAIN message `connector` sends, if it has a user name; the
/// password is read from `sasl-password-file` at each dial (so a rotated
/// file takes effect at the next one).
pub fn credentials(connector: &ConnectorConfig) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(user) = &connector.sasl_username else {
        return Ok(None);
    };
    let password = match (&connector.sasl_password, &connector.sasl_password_file) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("sasl-password-file {}: {e}", file.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        (None, None) => String::new(),
    };
    let mut message = Vec::with_capacity(user.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    Ok(Some(message))
}

/// Adds `message` to a call's metadata.
pub fn attach(metadata: &mut MetadataMap, message: &[u8]) {
    metadata.insert_bin(
        SASL_PLAIN_METADATA,
        BinaryMetadataValue::from_bytes(message),
    );
}

/// True if `listener` (inter-router) requires its peers to authenticate.
pub fn required(listener: &ListenerConfig) -> bool {
    listener.sasl_required()
}

/// Checks a call's credentials for `listener` (over TLS when `encrypted`):
/// the authenticated user, or why not (for the log).
pub fn check(
    listener: &ListenerConfig,
    users: &UserStore,
    encrypted: bool,
    metadata: &MetadataMap,
) -> Result<String, String> {
    let Some(value) = metadata.get_bin(SASL_PLAIN_METADATA) else {
        return Err("no credentials (the connector has no sasl-username)".into());
    };
    if !listener.sasl_mechanisms.contains(&SaslMechanism::Plain) {
        return Err("PLAIN credentials, but the listener does not offer PLAIN".into());
    }
    if !encrypted && !listener.allow_insecure_plain {
        return Err(
            "PLAIN over an unencrypted inter-router link (set allow-insecure-plain)".into(),
        );
    }
    let message = value
        .to_bytes()
        .map_err(|e| format!("credentials are not valid base64: {e}"))?;
    match Mechanism::start(MechanismName::Plain, Some(&message), users, None).1 {
        Step::Success { user, .. } => Ok(user),
        Step::Failure(reason) => Err(reason),
        Step::Challenge(_) => Err("PLAIN does not challenge".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bote_auth::Credential;
    use bote_auth::users::entry_line;

    fn listener(insecure: bool) -> ListenerConfig {
        ListenerConfig {
            sasl_mechanisms: vec![SaslMechanism::Plain],
            authenticate_peer: true,
            allow_insecure_plain: insecure,
            ..ListenerConfig::default()
        }
    }

    #[test]
    fn a_connectors_credentials_pass_the_listeners_check() {
        let users = UserStore::parse(
            &entry_line("router-b", &Credential::new("s3cret", 4096)),
            "users",
        )
        .unwrap();
        let mut connector: ConnectorConfig = toml::from_str(
            "name = \"c\"\nhost = \"h\"\nport = 1\nsasl-username = \"router-b\"\nsasl-password = \"s3cret\"\n",
        )
        .unwrap();
        let mut metadata = MetadataMap::new();
        attach(
            &mut metadata,
            &credentials(&connector).unwrap().expect("credentials"),
        );
        assert_eq!(
            check(&listener(true), &users, false, &metadata),
            Ok("router-b".into())
        );
        let e = check(&listener(false), &users, false, &metadata).unwrap_err();
        assert!(e.contains("allow-insecure-plain"), "{e}");
        assert_eq!(
            check(&listener(false), &users, true, &metadata),
            Ok("router-b".into()),
            "over TLS, PLAIN needs no allow-insecure-plain"
        );

        connector.sasl_password = Some("guess".into());
        let mut metadata = MetadataMap::new();
        attach(&mut metadata, &credentials(&connector).unwrap().unwrap());
        let e = check(&listener(true), &users, false, &metadata).unwrap_err();
        assert!(e.contains("wrong password"), "{e}");
        let e = check(&listener(true), &users, false, &MetadataMap::new()).unwrap_err();
        assert!(e.contains("no credentials"), "{e}");
    }
}
