//! `botectl certs`: a throw-away certificate authority and certificates it
//! signs (rcgen, ring), for TLS tests, the examples and `bench --tls`.
//! Nothing here is for production: keys are written unencrypted, and a
//! fresh CA is made on each call.
//!
//! The server certificate names `localhost` and `127.0.0.1` (and whatever
//! `hosts` adds); the client certificate's subject is `CN=<name>,O=Bote
//! Test`, which a router shows as the peer's identity. Neither carries an
//! extended key usage, so one certificate can serve a router both as a
//! TLS server (its inter-router listener) and as a client (its connector).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The organisation every test certificate names.
pub const ORGANIZATION: &str = "Bote Test";

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A certificate authority made on the spot.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

impl TestCa {
    /// A new CA whose subject is `CN=<common_name>,O=Bote Test`.
    pub fn new(common_name: &str) -> Result<TestCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = name(common_name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate signed by this CA, subject `CN=<common_name>,O=Bote
    /// Test`, with `alt_names` (DNS names or IP addresses) as its subject
    /// alternative names.
    pub fn issue(&self, common_name: &str, alt_names: &[String]) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(alt_names.to_vec())?;
        params.distinguished_name = name(common_name);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused.
    #[error("cannot make a certificate: {0}")]
    Make(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The files [`write`] made.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// `ca.pem`: the CA certificate.
    pub ca: PathBuf,
    /// `server.pem`: the server certificate (also fit for a client).
    pub server_cert: PathBuf,
    /// `server-key.pem`.
    pub server_key: PathBuf,
    /// `client.pem`: the client certificate.
    pub client_cert: PathBuf,
    /// `client-key.pem`.
    pub client_key: PathBuf,
}

/// Writes a new CA (`ca.pem`), a server certificate for `localhost`,
/// `127.0.0.1` and `hosts` (`server.pem`, `server-key.pem`) and a client
/// certificate `CN=<client>,O=Bote Test` (`client.pem`, `client-key.pem`)
/// into `dir`, which is created if missing. The CA's key is not kept.
pub fn write(dir: &Path, hosts: &[String], client: &str) -> Result<TestPki, CertsError> {
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca = TestCa::new("Bote Test CA")?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(hosts.iter().cloned());
    let server = ca.issue("localhost", &names)?;
    let client_cert = ca.issue(client, &[])?;
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    for (path, text) in [
        (&pki.ca, ca.cert_pem()),
        (&pki.server_cert, server.cert_pem),
        (&pki.server_key, server.key_pem),
        (&pki.client_cert, client_cert.cert_pem),
        (&pki.client_key, client_cert.key_pem),
    ] {
        std::fs::write(path, text).map_err(|source| CertsError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(pki)
}
