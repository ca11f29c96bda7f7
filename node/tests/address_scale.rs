//! Addresses at scale, on a router started in this process (so its address
//! registry can be read): attaching N addresses touches only the N address
//! actors concerned, never the others (each actor handles a bounded number
//! of messages, where broadcasting every mesh change made it N each), and
//! an address actor with nothing left to do is reclaimed (a dynamic reply
//! address, used by a real fe2o3-amqp client, leaves none behind).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bote_amqp::{LinkId, SessionId};
use bote_node::config::Config;
use bote_node::delivery::ConnId;
use bote_node::router::Router;
use bote_node::router::address::{AttachConsumer, AttachProducer, Deliver, PathState};
use bote_node::router::link::LinkCounters;
use bote_topology::Address;

const WAIT: Duration = Duration::from_secs(20);

/// Takes what an address actor sends to links: nothing here is delivered.
struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Sink {
    type Result = ();
    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}

impl Handler<PathState> for Sink {
    type Result = ();
    fn handle(&mut self, _: PathState, _: &mut Context<Self>) {}
}

fn config(id: &str, inter_router: bool, peers: &[std::net::SocketAddr]) -> Config {
    let mut text = format!(
        "[router]\nid = \"{id}\"\nworkers = 2\n\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"normal\"\n"
    );
    if inter_router {
        text.push_str("\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"inter-router\"\n");
    }
    for (i, p) in peers.iter().enumerate() {
        text.push_str(&format!(
            "\n[[connector]]\nname = \"peer{i}\"\nhost = \"127.0.0.1\"\nport = {}\nrole = \"inter-router\"\ncost = 1\n",
            p.port()
        ));
    }
    Config::from_str_named(&text, "address scale test").expect("valid config")
}

/// Polls `check` until it holds (bounded by [`WAIT`]).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn link(i: usize) -> LinkId {
    LinkId {
        session: SessionId(0),
        handle: i as u32,
    }
}

#[test]
fn attaching_n_addresses_touches_only_their_own_address_actors() {
    const N: usize = 300;
    actix_rt::System::new().block_on(async {
        let a = Router::start(config("A", true, &[]))
            .await
            .expect("router A starts");
        let mesh_a = a.shared.mesh.clone().expect("A is in a mesh");
        let b = Router::start(config("B", false, &mesh_a.bound))
            .await
            .expect("router B starts");
        let mesh_b = b.shared.mesh.clone().expect("B is in a mesh");
        eventually("A and B to route to each other", || {
            mesh_a.view().routes.reachable_count() == 1
                && mesh_b.view().routes.reachable_count() == 1
        })
        .await;
        let sink = Sink.start();
        let registry = &a.shared.addresses;

        // N consumers attach on A, one address after the other ...
        for i in 0..N {
            registry
                .get(&format!("local.{i}"))
                .do_send(AttachConsumer {
                    conn: ConnId(1),
                    link: link(i),
                    deliver: sink.clone().recipient(),
                    counters: Arc::new(LinkCounters::default()),
                    capacity: 250,
                });
        }
        // ... and N senders on A wait for addresses that gain consumers on
        // B, one after the other.
        for i in 0..N {
            registry
                .get(&format!("remote.{i}"))
                .do_send(AttachProducer {
                    conn: ConnId(2),
                    link: link(i),
                    notify: sink.clone().recipient(),
                });
        }
        // (A also advertises its management addresses, `$management` and
        // `_topo/0/A/$management`.)
        eventually("B to see A's N addresses", || {
            mesh_b
                .remote_addresses()
                .snapshot()
                .keys()
                .filter(|a| a.as_str().starts_with("local."))
                .count()
                == N
        })
        .await;
        for i in 0..N {
            mesh_b.add_local_address(&format!("remote.{i}"));
        }
        eventually("A to see B's N addresses", || {
            (0..N).all(|i| {
                !mesh_a
                    .remote_routers(&Address::from(format!("remote.{i}")))
                    .is_empty()
            })
        })
        .await;
        eventually("each remote address actor on A to hear of its consumer", || {
            (0..N).all(|i| {
                registry
                    .stats(&format!("remote.{i}"))
                    .is_some_and(|s| s.mesh_changes.load(Relaxed) >= 1)
            })
        })
        .await;
        // Anything still on its way arrives.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut total_changes = 0;
        for prefix in ["local", "remote"] {
            for i in 0..N {
                let address = format!("{prefix}.{i}");
                let stats = registry.stats(&address).expect("the actor is alive");
                let handled = stats.handled.load(Relaxed);
                let changes = stats.mesh_changes.load(Relaxed);
                total_changes += changes;
                // The link's attach, and the mesh change of its own
                // address (a remote consumer learned); broadcasting every
                // change would make it ~2N.
                assert!(
                    handled <= 3,
                    "{address} handled {handled} messages ({changes} mesh changes) for {N} addresses on each side"
                );
                // A local consumer announced changes no remote router: the
                // actor is not told.
                if prefix == "local" {
                    assert_eq!(changes, 0, "{address}: mesh changes for a local consumer");
                }
            }
        }
        assert!(
            total_changes <= N as u64 + 4,
            "{total_changes} mesh changes handled by {} address actors",
            2 * N
        );
        b.shutdown().await;
        a.shutdown().await;
    });
}

#[test]
fn idle_address_actors_are_reclaimed_and_dynamic_reply_addresses_leave_none() {
    use fe2o3_amqp::types::messaging::Source;
    use fe2o3_amqp::{Connection, Receiver, Session};
    actix_rt::System::new().block_on(async {
        let router = Router::start(config("R", false, &[]))
            .await
            .expect("router starts");
        router
            .shared
            .addresses
            .set_reclaim_after(Duration::from_millis(50));
        let url = format!("amqp://127.0.0.1:{}", router.bound[0].port());
        let mut connection = Connection::open("reclaim", url.as_str())
            .await
            .expect("connects");
        let mut session = Session::begin(&mut connection).await.expect("begins");
        let mut seen = Vec::new();
        for i in 0..20 {
            let receiver = Receiver::builder()
                .name(format!("reply-{i}"))
                .source(Source::builder().dynamic(true).build())
                .attach(&mut session)
                .await
                .expect("dynamic receiver attaches");
            let address = receiver
                .source()
                .as_ref()
                .and_then(|s| s.address.clone())
                .expect("the router assigns an address");
            assert!(
                router.shared.addresses.stats(&address).is_some(),
                "{address} has an actor while its receiver is attached"
            );
            seen.push(address);
            receiver.close().await.expect("detaches");
        }
        // Only the management node's own addresses stay (it is their
        // consumer for the router's life).
        eventually("every reply address's actor to be reclaimed", || {
            router.shared.addresses.addresses().iter().all(|(a, _)| {
                &**a == bote_node::router::management::MANAGEMENT || a.starts_with("_topo/")
            })
        })
        .await;
        let management_addresses = router.shared.addresses.len();
        // A reclaimed address works again at once: a new actor takes it.
        let receiver = Receiver::attach(&mut session, "again", seen[0].as_str())
            .await
            .expect("attaches to a reclaimed address");
        assert_eq!(router.shared.addresses.len(), management_addresses + 1);
        receiver.close().await.expect("detaches");
        session.end().await.expect("ends");
        connection.close().await.expect("closes");
        router.shutdown().await;
    });
}
