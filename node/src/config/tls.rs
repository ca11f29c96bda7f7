//! The TLS material a configuration names: reading the PEM certificate,
//! private key and CA files of a `[[listener]]` or `[[connector]]` and
//! building the rustls server or client configuration from them (ring
//! provider, TLS 1.2 and 1.3). Validation calls these to check the files at
//! load time; the router calls them again when it starts and on each
//! `SIGHUP` (`crate::tls`). Every error names the file and the key that
//! named it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The configuration key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the kind expected.
    #[error("{}: {what}", .path.display())]
    Content {
        /// The configuration key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

impl TlsError {
    /// The configuration key that names the faulty file (`tls-cert-file`).
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Read { key, .. } | TlsError::Content { key, .. } => key,
        }
    }

    /// The faulty file.
    pub fn path(&self) -> &Path {
        match self {
            TlsError::Read { path, .. } | TlsError::Content { path, .. } => path,
        }
    }
}

/// The rustls provider Bote uses: ring (no aws-lc, no OpenSSL). rustls
/// 0.23.48 deprecates ring's provider because ring has no post-quantum key
/// exchange; the only provider that has one is aws-lc-rs, which the
/// project keeps out of its tree (`DEPENDENCIES.md`), so the classical
/// groups (X25519, P-256, P-384) it is.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn content(key: &'static str, path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Content {
        key,
        path: path.to_owned(),
        what: what.into(),
    }
}

/// The certificates of a PEM file, in order (a chain: leaf first).
pub fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(content(
            key,
            path,
            "holds no certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        content(
            key,
            path,
            format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })
}

/// The trust anchors of a PEM CA file.
pub fn roots(key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(key, path)? {
        store
            .add(cert)
            .map_err(|e| content(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// What a TLS server (an amqps or inter-router listener) is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// `tls-cert-file`: the certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// `tls-key-file`: its private key, PEM.
    pub key: PathBuf,
    /// `tls-ca-file`: the CAs client certificates are verified against.
    pub ca: Option<PathBuf>,
    /// `require-client-cert`: refuse clients without a valid certificate.
    pub require_client_cert: bool,
    /// ALPN protocols to offer (`h2` for the inter-router gRPC).
    pub alpn: Vec<Vec<u8>>,
}

/// What a TLS client (an inter-router connector) is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// `tls-ca-file`: the CAs the server's certificate is verified against.
    pub ca: PathBuf,
    /// `tls-cert-file` and `tls-key-file`: the client certificate (mutual TLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// The rustls server configuration of `files`: its certificate and key
/// (which must match), and client certificates verified against the CA
/// file when one is given (required when `require_client_cert`, else
/// optional but checked if presented).
pub fn server_config(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates("tls-cert-file", &files.cert)?;
    let key = private_key("tls-key-file", &files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| content("tls-cert-file", &files.cert, e.to_string()))?;
    let builder = match &files.ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots("tls-ca-file", ca)?, provider());
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| content("tls-ca-file", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => content(
            "tls-key-file",
            &files.key,
            format!(
                "this private key does not belong to the certificate in {}",
                files.cert.display()
            ),
        ),
        e => content("tls-key-file", &files.key, e.to_string()),
    })?;
    config.alpn_protocols = files.alpn.clone();
    Ok(config)
}

/// The rustls client configuration of `files`: servers verified against
/// the CA file, and the client certificate presented when one is given.
pub fn client_config(files: &ClientFiles) -> Result<ClientConfig, TlsError> {
    let roots = roots("tls-ca-file", &files.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| content("tls-ca-file", &files.ca, e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key_file)) => {
            let chain = certificates("tls-cert-file", cert)?;
            let key = private_key("tls-key-file", key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => content(
                        "tls-key-file",
                        key_file,
                        format!(
                            "this private key does not belong to the certificate in {}",
                            cert.display()
                        ),
                    ),
                    e => content("tls-key-file", key_file, e.to_string()),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = files.alpn.clone();
    Ok(config)
}
