//! TLS as a Rust client meets it: `fe2o3-amqp` over an amqps listener
//! (the TLS session is Bote's own rustls/ring client handed to fe2o3 with
//! `open_with_stream`, since fe2o3's `rustls` feature pulls aws-lc), mutual
//! TLS with and without a client certificate, what a handshake records
//! (protocol, cipher, the client certificate's subject), and the
//! configuration errors for TLS files, each naming the key and the file.
//!
//! Certificates are made per test with `botectl::certs` (rcgen, ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bote_node::config::tls::{ClientFiles, ServerFiles, client_config, server_config};
use bote_node::config::{Config, ConfigError, Diagnostic};
use botectl::certs::{self, TestPki};
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::{Connection, Session};
use tokio::time::timeout;

#[path = "support/boted.rs"]
mod boted;
#[path = "support/client.rs"]
mod client;

use boted::{Router, RouterSpec, WAIT};
use client::*;

/// A fresh directory under the system temp dir for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bote-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn pki(name: &str) -> TestPki {
    certs::write(&scratch(name), &[], "fe2o3-client").expect("test certificates")
}

fn tls_router(id: &str, pki: &TestPki, mutual: bool) -> Router {
    let mut spec = RouterSpec::new(id)
        .listener_option(&format!("tls-cert-file = {:?}", pki.server_cert))
        .listener_option(&format!("tls-key-file = {:?}", pki.server_key));
    if mutual {
        spec = spec
            .listener_option(&format!("tls-ca-file = {:?}", pki.ca))
            .listener_option("require-client-cert = true");
    }
    spec.start()
}

/// A TLS session to the router's (amqps) listener, the router verified
/// against `ca` as `localhost`, presenting `identity` if given.
async fn tls_stream(
    router: &Router,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = client_config(&ClientFiles {
        ca: ca.to_owned(),
        identity: identity.map(|(c, k)| (c.to_owned(), k.to_owned())),
        alpn: Vec::new(),
    })
    .expect("client TLS config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", router.port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}

/// An fe2o3 client over a TLS session.
async fn tls_client(router: &Router, pki: &TestPki, name: &str, mutual: bool) -> Client {
    let identity = mutual.then_some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let stream = timeout(WAIT, tls_stream(router, &pki.ca, identity))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
    let mut connection = timeout(
        WAIT,
        Connection::builder()
            .container_id(name)
            .scheme("amqp")
            .open_with_stream(stream),
    )
    .await
    .expect("open timed out")
    .expect("open over TLS");
    let session = timeout(WAIT, Session::begin(&mut connection))
        .await
        .expect("begin timed out")
        .expect("begin");
    Client {
        connection,
        session,
    }
}

async fn transfer_over_tls(router: &Router, pki: &TestPki, mutual: bool, n: u64) {
    let mut rx_client = tls_client(router, pki, "tls-rx", mutual).await;
    let mut receiver = rx_client
        .receiver("tls-rx", "queue.tls", CreditMode::Auto(100))
        .await;
    let mut tx_client = tls_client(router, pki, "tls-tx", mutual).await;
    let mut sender = tx_client.sender("tls-tx", "queue.tls").await;
    // The receiver takes messages while the sender sends (credit is hop
    // by hop: the router holds only a window for a consumer).
    let receiving = tokio::spawn(async move {
        let ids = receive_ids(&mut receiver, n as usize, true).await;
        (ids, receiver)
    });
    let outcomes = send_all(&mut sender, 0..n).await;
    let (ids, receiver) = timeout(WAIT, receiving)
        .await
        .expect("receiving timed out")
        .expect("receiver task");
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
    assert_eq!(
        counts(&outcomes_of(outcomes).await),
        all_accepted(n as usize)
    );
    let _ = timeout(WAIT, sender.close()).await;
    let _ = timeout(WAIT, receiver.close()).await;
    tx_client.close().await;
    rx_client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fe2o3_sends_and_receives_a_thousand_messages_over_amqps() {
    let pki = pki("amqps");
    let router = tls_router("Router.TLS", &pki, false);
    transfer_over_tls(&router, &pki, false, 1000).await;
    router.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_fe2o3_with_a_client_certificate_and_refuses_it_without() {
    let pki = pki("mutual");
    let router = tls_router("Router.MTLS", &pki, true);
    transfer_over_tls(&router, &pki, true, 200).await;
    // Without a certificate: in TLS 1.3 the client's side of the handshake
    // may finish before the router checks, but the router then closes the
    // session with an alert and nothing AMQP ever succeeds on it.
    let refused = async {
        let stream = tls_stream(&router, &pki.ca, None).await?;
        Connection::builder()
            .container_id("no-cert")
            .scheme("amqp")
            .open_with_stream(stream)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    let result = timeout(WAIT, refused).await.expect("refusal timed out");
    assert!(result.is_err(), "a client without a certificate got in");
    boted::wait_for("the refusal to be logged", || {
        router.log().contains("TLS handshake failed")
    });
    router.stop_cleanly();
}

/// The server's and the client's configurations of `pki` shaking hands in
/// memory: what the server records of the session.
#[tokio::test]
async fn a_handshake_records_protocol_cipher_and_the_client_certificate_subject() {
    let pki = pki("record");
    let server = server_config(&ServerFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        ca: Some(pki.ca.clone()),
        require_client_cert: true,
        alpn: Vec::new(),
    })
    .expect("server config");
    let client = client_config(&ClientFiles {
        ca: pki.ca.clone(),
        identity: Some((pki.client_cert.clone(), pki.client_key.clone())),
        alpn: Vec::new(),
    })
    .expect("client config");
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let (server_side, client_side) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    let server_side = server_side.expect("server handshake");
    client_side.expect("client handshake");
    let info = bote_node::tls::session_info(server_side.get_ref().1);
    assert_eq!(info.protocol, "TLSv1.3");
    assert!(info.cipher.starts_with("TLS_"), "{}", info.cipher);
    assert!(info.ssf >= 128, "{info:?}");
    // RFC 4514 order: the last RDN of the DER (O) first.
    assert_eq!(
        info.peer_subject.as_deref(),
        Some("O=Bote Test,CN=fe2o3-client")
    );
}

#[test]
fn the_tls_example_parses_once_its_certificates_exist() {
    let pki = pki("example");
    let dir = pki.ca.parent().expect("certs dir").display().to_string();
    let text = include_str!("../examples/tls.toml").replace("\"certs/", &format!("\"{dir}/"));
    let config = Config::from_str_named(&text, "tls.toml").expect("the TLS example parses");
    assert_eq!(config.listeners[1].port, 5671);
    assert!(config.listeners[1].tls_files().is_some());
    // MQTT over TLS, then the mesh's mutual TLS listener.
    assert_eq!(config.listeners[2].port, 8883);
    assert_eq!(config.listeners[2].protocol.as_str(), "mqtt");
    assert!(config.listeners[2].tls_files().is_some());
    assert!(config.listeners[3].require_client_cert);
    assert!(config.connectors[0].tls_files().is_some());
    // Without the files it names, it is refused, naming the file.
    let e = Config::from_str_named(include_str!("../examples/tls.toml"), "tls.toml")
        .expect_err("certs/ does not exist here");
    assert!(e.to_string().contains("certs/server.pem"), "{e}");
}

fn diagnostic(text: &str) -> Diagnostic {
    match Config::from_str_named(text, "bote.toml") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(ConfigError::Invalid(d)) => *d,
        Err(e) => panic!("expected a diagnostic, got {e}"),
    }
}

#[test]
fn tls_file_errors_name_the_key_the_line_and_the_file() {
    let pki = pki("errors");
    let other = certs::write(&scratch("errors-other"), &[], "x").expect("certs");
    let listener = |lines: &str| format!("[[listener]]\nport = 5671\n{lines}");
    let cert = format!("tls-cert-file = {:?}\n", pki.server_cert);
    let key = format!("tls-key-file = {:?}\n", pki.server_key);

    // A valid amqps listener parses, with its files.
    let ok = Config::from_str_named(&listener(&format!("{cert}{key}")), "bote.toml")
        .expect("a valid TLS listener");
    assert_eq!(
        ok.listeners[0].tls_cert_file.as_ref(),
        Some(&pki.server_cert)
    );

    let missing = pki.server_cert.with_file_name("nope.pem");
    let d = diagnostic(&listener(&format!("tls-cert-file = {missing:?}\n{key}")));
    assert_eq!(d.key.as_deref(), Some("tls-cert-file"), "{d}");
    assert_eq!(d.line, 3, "{d}");
    assert!(
        d.message.contains("nope.pem") && d.message.contains("cannot read"),
        "{d}"
    );

    // A key that belongs to another certificate.
    let d = diagnostic(&listener(&format!(
        "{cert}tls-key-file = {:?}\n",
        other.server_key
    )));
    assert_eq!(d.key.as_deref(), Some("tls-key-file"), "{d}");
    assert!(d.message.contains("does not belong"), "{d}");
    assert!(d.to_string().starts_with("bote.toml:4:"), "{d}");

    // A certificate file that holds none.
    let d = diagnostic(&listener(&format!(
        "tls-cert-file = {:?}\n{key}",
        pki.server_key
    )));
    assert_eq!(d.key.as_deref(), Some("tls-cert-file"), "{d}");
    assert!(d.message.contains("no certificate"), "{d}");

    for (lines, bad) in [
        (cert.clone(), "tls-cert-file"),
        (key.clone(), "tls-key-file"),
        (format!("tls-ca-file = {:?}\n", pki.ca), "tls-ca-file"),
        (
            format!("{cert}{key}require-client-cert = true\n"),
            "require-client-cert",
        ),
    ] {
        let d = diagnostic(&listener(&lines));
        assert_eq!(d.key.as_deref(), Some(bad), "{lines}: {d}");
    }

    let connector = |lines: &str| {
        format!("[[connector]]\nname = \"up\"\nhost = \"127.0.0.1\"\nport = 5671\n{lines}")
    };
    let d = diagnostic(&connector(&cert));
    assert_eq!(d.key.as_deref(), Some("tls-cert-file"), "{d}");
    assert!(d.message.contains("needs tls-ca-file"), "{d}");
    let d = diagnostic(&connector(&format!("tls-ca-file = {:?}\n", pki.server_key)));
    assert_eq!(d.key.as_deref(), Some("tls-ca-file"), "{d}");
    let ok = Config::from_str_named(
        &connector(&format!(
            "tls-ca-file = {:?}\ntls-cert-file = {:?}\ntls-key-file = {:?}\n",
            pki.ca, pki.client_cert, pki.client_key
        )),
        "bote.toml",
    )
    .expect("a mutual-TLS connector");
    assert_eq!(ok.connectors[0].tls_server_name(), "127.0.0.1");
}
