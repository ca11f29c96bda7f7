//! TLS at run time: the rustls configuration of each TLS listener and
//! connector, swapped whole when its files are re-read (`SIGHUP`), and the
//! record of one session (protocol, cipher suite, the client certificate's
//! subject) that the read model and management show.
//!
//! A listener holds its `ServerTls` and takes the configuration in force at
//! each accept, a connector its `ClientTls` at each dial: a reload changes
//! what new handshakes see, and established sessions keep theirs (a TLS
//! session needs its certificate only during the handshake). A reload that
//! fails (a file missing, unreadable, or a key that does not match the
//! certificate) keeps the configuration in force and says which file.
//!
//! The subject is formatted from the certificate's DER here, by a short
//! walk of the `tbsCertificate` down to its `subject` `Name`
//! ([`subject_of`]), rather than with an X.509 crate: the router needs that
//! one field, and rustls has verified the certificate already.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, CommonState, ProtocolVersion, ServerConfig};

use crate::config::tls::{self, ClientFiles, ServerFiles, TlsError};
use crate::model::TlsInfo;

/// The TLS server of one listener: its configuration in force and the
/// files it is read from.
#[derive(Debug)]
pub struct ServerTls {
    label: String,
    files: ServerFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads `files`; `label` names the listener in logs.
    pub fn new(label: String, files: ServerFiles) -> Result<Arc<ServerTls>, TlsError> {
        let config = tls::server_config(&files)?;
        Ok(Arc::new(ServerTls {
            label,
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }

    /// Re-reads the files; on failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(tls::server_config(&self.files)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// The TLS client of one connector: its configuration in force, the files
/// it is read from, and the name the peer's certificate must carry.
#[derive(Debug)]
pub struct ClientTls {
    label: String,
    files: ClientFiles,
    server_name: ServerName<'static>,
    current: RwLock<Arc<ClientConfig>>,
}

impl ClientTls {
    /// Reads `files`; `server_name` goes in SNI and is verified against the
    /// peer's certificate; `label` names the connector in logs.
    pub fn new(
        label: String,
        files: ClientFiles,
        server_name: &str,
    ) -> Result<Arc<ClientTls>, TlsError> {
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|e| TlsError::Content {
                key: "tls-server-name",
                path: files.ca.clone(),
                what: format!("\"{server_name}\": {e}"),
            })?;
        let config = tls::client_config(&files)?;
        Ok(Arc::new(ClientTls {
            label,
            files,
            server_name,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// A connector with the configuration in force.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        let config = match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        tokio_rustls::TlsConnector::from(config)
    }

    /// The name sent in SNI and verified.
    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    /// Re-reads the files; on failure the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(tls::client_config(&self.files)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// A TLS listener's or connector's configuration, for reloads.
#[derive(Debug, Clone)]
pub enum TlsContext {
    /// A listener's.
    Server(Arc<ServerTls>),
    /// A connector's.
    Client(Arc<ClientTls>),
}

impl TlsContext {
    /// Re-reads the files, logging the outcome: on failure, an error that
    /// names the file, and the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (label, result) = match self {
            TlsContext::Server(s) => (&s.label, s.reload()),
            TlsContext::Client(c) => (&c.label, c.reload()),
        };
        match &result {
            Ok(()) => tracing::info!("{label}: TLS certificates reloaded"),
            Err(e) => tracing::error!(
                file = %e.path().display(),
                "{label}: TLS reload failed, {}: {e}; the certificates in force stay",
                e.key()
            ),
        }
        result
    }
}

/// Every TLS context of one router, for `SIGHUP` (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct TlsRegistry(Arc<std::sync::Mutex<Vec<TlsContext>>>);

impl TlsRegistry {
    /// Adds a context to reload.
    pub fn add(&self, context: TlsContext) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(context);
    }

    /// A listener's TLS server from its configuration (`None` when it is
    /// not a TLS listener), registered for reloads.
    pub fn listener(
        &self,
        config: &crate::config::ListenerConfig,
    ) -> Result<Option<Arc<ServerTls>>, TlsError> {
        let Some(files) = config.tls_files() else {
            return Ok(None);
        };
        let label = match &config.name {
            Some(name) => format!("listener {name} ({})", config.socket_address()),
            None => format!("listener {}", config.socket_address()),
        };
        let server = ServerTls::new(label, files)?;
        self.add(TlsContext::Server(server.clone()));
        Ok(Some(server))
    }

    /// A connector's TLS client from its configuration (`None` when it
    /// dials without TLS), registered for reloads.
    pub fn connector(
        &self,
        config: &crate::config::ConnectorConfig,
    ) -> Result<Option<Arc<ClientTls>>, TlsError> {
        let Some(files) = config.tls_files() else {
            return Ok(None);
        };
        let label = format!("connector {} ({})", config.name, config.socket_address());
        let client = ClientTls::new(label, files, config.tls_server_name())?;
        self.add(TlsContext::Client(client.clone()));
        Ok(Some(client))
    }

    /// Re-reads every context's files (each logs its outcome); returns the
    /// failures. A context that fails keeps its configuration in force.
    pub fn reload_all(&self) -> Vec<TlsError> {
        let contexts = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        contexts.iter().filter_map(|c| c.reload().err()).collect()
    }

    /// How many contexts there are.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when the router has no TLS listener or connector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `state`'s handshake negotiated, and the subject of the peer's
/// certificate if it presented one.
pub fn session_info(state: &CommonState) -> TlsInfo {
    let protocol = match state.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher = state
        .negotiated_cipher_suite()
        .map(|s| {
            // rustls spells TLS 1.3 suites TLS13_*; IANA (and OpenSSL's
            // `sslCipher` in qdrouterd) TLS_*.
            let name = format!("{:?}", s.suite());
            match name.strip_prefix("TLS13_") {
                Some(rest) => format!("TLS_{rest}"),
                None => name,
            }
        })
        .unwrap_or_default();
    let ssf = if cipher.contains("AES_128") {
        128
    } else if cipher.contains("AES_256") || cipher.contains("CHACHA20") {
        256
    } else {
        0
    };
    let peer_subject = state
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| subject_of(leaf));
    TlsInfo {
        protocol,
        cipher,
        ssf,
        peer_subject,
    }
}

/// One DER element: its tag and its content.
fn der_next<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    *input = after;
    Some((tag, content))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate as an RFC 4514 string (`CN=client,O=Bote
/// Test`: the last RDN first), or `None` if the certificate does not parse.
pub fn subject_of(cert: &[u8]) -> Option<String> {
    let mut input = cert;
    let (SEQUENCE, certificate) = der_next(&mut input)? else {
        return None;
    };
    let mut certificate = certificate;
    let (SEQUENCE, mut tbs) = der_next(&mut certificate)? else {
        return None;
    };
    // [0] version (optional), serialNumber, signature, issuer, validity.
    if tbs.first() == Some(&0xa0) {
        der_next(&mut tbs)?;
    }
    for _ in 0..4 {
        der_next(&mut tbs)?;
    }
    let (SEQUENCE, mut name) = der_next(&mut tbs)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (SET, mut set) = der_next(&mut name)? else {
            return None;
        };
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, mut atv) = der_next(&mut set)? else {
                return None;
            };
            let (OID, oid) = der_next(&mut atv)? else {
                return None;
            };
            let (tag, value) = der_next(&mut atv)?;
            parts.push(attribute(oid, tag, value));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// `type=value` of one attribute, RFC 4514.
fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> String {
    let name = match oid {
        [0x55, 0x04, 0x03] => "CN".to_owned(),
        [0x55, 0x04, 0x06] => "C".to_owned(),
        [0x55, 0x04, 0x07] => "L".to_owned(),
        [0x55, 0x04, 0x08] => "ST".to_owned(),
        [0x55, 0x04, 0x09] => "STREET".to_owned(),
        [0x55, 0x04, 0x0a] => "O".to_owned(),
        [0x55, 0x04, 0x0b] => "OU".to_owned(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC".to_owned(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID".to_owned(),
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".to_owned(),
        _ => dotted(oid),
    };
    let text = match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(value.to_vec()).ok(),
        // TeletexString: taken as Latin-1.
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e if value.len().is_multiple_of(2) => String::from_utf16(
            &value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .ok(),
        _ => None,
    };
    match text {
        Some(text) => format!("{name}={}", escape(&text)),
        // Not a string: RFC 4514's `#` and the DER in hex.
        None => {
            let mut hex = format!("{name}=#{tag:02x}");
            let _ = write!(hex, "{:02x}", value.len());
            for b in value {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
    }
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RFC 4514 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_oid_of_unknown_attributes() {
        // 2.5.4.5 serialNumber; 1.2.840.113549 (multi-byte arcs).
        assert_eq!(dotted(&[0x55, 0x04, 0x05]), "2.5.4.5");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }

    #[test]
    fn escape_follows_rfc_4514() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#lead"), "\\#lead");
        assert_eq!(escape(" both "), "\\ both\\ ");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn subject_of_rejects_what_is_not_a_certificate() {
        assert_eq!(subject_of(b""), None);
        assert_eq!(subject_of(b"\x30\x05abc"), None);
        assert_eq!(subject_of(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
