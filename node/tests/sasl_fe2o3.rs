//! SASL with the Rust client fe2o3-amqp against a real `boted`:
//! SCRAM-SHA-256 (which Python Proton cannot speak without Cyrus SASL)
//! good and bad, the server's signature checked by the client, and PLAIN
//! as a cross-check of the Proton suite (`tests/interop/test_sasl.py`).

use std::time::Duration;

use bote_auth::users::set_user;
use bote_auth::{Credential, scram::DEFAULT_ITERATIONS};
use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::sasl_profile::{SaslProfile, SaslScramSha256};
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use tokio::time::timeout;

#[path = "support/boted.rs"]
mod boted;

use boted::{Router, RouterSpec, WAIT};

/// A router whose listener offers `mechanisms`, with alice (password
/// "pencil") and bob in its users file.
fn secured(id: &str, mechanisms: &str) -> (Router, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bote-sasl-{id}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    let _ = std::fs::remove_file(&users);
    set_user(
        &users,
        "alice",
        &Credential::new("pencil", DEFAULT_ITERATIONS),
    )
    .unwrap();
    set_user(&users, "bob", &Credential::new("b0b", DEFAULT_ITERATIONS)).unwrap();
    let router = RouterSpec::new(id)
        .router_option(&format!("users-file = {:?}", users.display().to_string()))
        .listener_option(&format!("sasl-mechanisms = {mechanisms}"))
        .listener_option("allow-insecure-plain = true")
        .start();
    (router, dir)
}

async fn open(router: &Router, profile: SaslProfile) -> Result<ConnectionHandle<()>, OpenError> {
    timeout(
        WAIT,
        Connection::builder()
            .container_id("sasl-test")
            .sasl_profile(profile)
            .open(router.url().as_str()),
    )
    .await
    .expect("open does not hang")
}

fn scram(user: &str, password: &str) -> SaslProfile {
    SaslProfile::ScramSha256(SaslScramSha256::new(user, password))
}

/// One message through the router on `connection`.
async fn round_trip(connection: &mut ConnectionHandle<()>, address: &str) {
    let mut session = Session::begin(connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "rx", address).await.unwrap();
    let mut sender = Sender::attach(&mut session, "tx", address).await.unwrap();
    let send = sender.send("hello".to_owned());
    let take = async {
        let delivery = receiver.recv::<String>().await.expect("delivery");
        assert_eq!(delivery.body(), "hello");
        receiver.accept(&delivery).await.expect("accept");
    };
    let (outcome, taken) = tokio::join!(timeout(WAIT, send), timeout(WAIT, take));
    taken.expect("delivery in time");
    outcome.expect("outcome in time").expect("accepted");
    sender.close().await.unwrap();
    receiver.close().await.unwrap();
    session.end().await.unwrap();
}

fn is_auth_failure(e: &OpenError) -> bool {
    matches!(
        e,
        OpenError::SaslError {
            code: SaslCode::Auth,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_login_routes_and_the_server_proves_it_holds_the_key() {
    let (router, dir) = secured("Router.Scram", r#"["SCRAM-SHA-256"]"#);
    // fe2o3 checks the server's signature in the outcome's additional data:
    // the open fails unless the router's ServerKey matches the password.
    let mut connection = open(&router, scram("alice", "pencil"))
        .await
        .expect("SCRAM login");
    round_trip(&mut connection, "queue.scram").await;
    connection.close().await.unwrap();
    assert!(
        router
            .log()
            .lines()
            .any(|l| l.contains("SASL authenticated") && l.contains("alice")),
        "{}",
        router.log()
    );
    router.stop_cleanly();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_a_wrong_password_or_unknown_user_gets_the_auth_outcome() {
    let (router, dir) = secured("Router.ScramBad", r#"["SCRAM-SHA-256", "PLAIN"]"#);
    for (user, password, logged) in [
        ("alice", "pencil?", "wrong password for user \"alice\""),
        ("mallory", "pencil", "unknown user \"mallory\""),
    ] {
        let started = std::time::Instant::now();
        let e = open(&router, scram(user, password))
            .await
            .expect_err("refused");
        assert!(is_auth_failure(&e), "{user}: {e:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "refusals are delayed"
        );
        boted::wait_for("the refusal to be logged", || router.log().contains(logged));
    }
    // Another mechanism on the same listener still works, and PLAIN
    // checks the same stored keys.
    let mut ok = open(
        &router,
        SaslProfile::Plain {
            username: "bob".into(),
            password: "b0b".into(),
        },
    )
    .await
    .expect("PLAIN login");
    round_trip(&mut ok, "queue.plain").await;
    ok.close().await.unwrap();
    let e = open(
        &router,
        SaslProfile::Plain {
            username: "bob".into(),
            password: "pencil".into(),
        },
    )
    .await
    .expect_err("refused");
    assert!(is_auth_failure(&e), "{e:?}");
    router.stop_cleanly();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_refused_where_the_listener_offers_only_scram() {
    let (router, dir) = secured("Router.ScramOnly", r#"["SCRAM-SHA-256"]"#);
    let e = open(&router, SaslProfile::Anonymous)
        .await
        .expect_err("ANONYMOUS is not offered");
    assert!(matches!(e, OpenError::NotImplemented(_)), "{e:?}");
    router.stop_cleanly();
    std::fs::remove_dir_all(dir).unwrap();
}
