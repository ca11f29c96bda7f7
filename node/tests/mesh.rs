//! The mesh with real `boted` processes on loopback: routers dial each other
//! over gRPC (`InterRouter.Exchange`), flood link state and agree on
//! shortest-path routes. Each router's own view is read from its state file
//! (`boted --state-file`, replaced on every change) and compared with an
//! oracle (Dijkstra over the configured edges).
//!
//! Every wait is bounded; no assertion is about speed. The `#[ignore]`d
//! `measure_*` tests print convergence times (BENCHMARKS.md, mesh control plane):
//! cold start, a router killed, and one link lost through a TCP proxy in this
//! process (sockets closed, or silently blackholed until the hello timeout).
//! Processes, oracle and proxy live in `tests/support/`.

use std::thread;
use std::time::{Duration, Instant};

#[path = "support/boted.rs"]
mod boted;
#[path = "support/mesh.rs"]
mod mesh_support;
#[path = "support/proxy.rs"]
mod proxy;

use boted::{Router, RouterSpec, Table, WAIT, log_time, now_of_day};
use mesh_support::{Edge, connectors_of, converge, converged_at, start_mesh};

/// Mesh tests run one at a time: each starts up to ten routers.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn name(i: usize) -> String {
    format!("R{i}")
}

/// Router `id` (one worker, hellos every second) listening for peers on
/// `port` (0: ephemeral) and dialling each `(name, port, cost)` connector.
fn boted(id: &str, port: u16, connectors: &[(String, u16, u32)], hello_timeout_ms: u64) -> Router {
    RouterSpec::new(id)
        .workers(1)
        .hello(1000, hello_timeout_ms)
        .inter_router(port)
        .connectors(connectors)
        .start()
}

/// Starts routers R0..R(n-1) in order; each dials its lower-numbered
/// neighbours.
fn mesh_of(n: usize, edges: &[Edge], hello_timeout_ms: u64) -> Vec<Router> {
    let ids: Vec<String> = (0..n).map(name).collect();
    start_mesh(&ids, edges, &[], |s| {
        s.workers(1).hello(1000, hello_timeout_ms)
    })
    .0
}

/// Ten routers: a ring with three chords, assorted costs.
fn ten_router_mesh() -> Vec<Edge> {
    let mut edges: Vec<Edge> = (0..10)
        .map(|i| (i, (i + 1) % 10, 1 + (i as u32 % 3)))
        .collect();
    edges.extend([(0, 5, 2), (2, 7, 3), (3, 8, 1)]);
    edges
}

#[test]
fn chain_a_b_c_converges_with_next_hop_and_cost_through_the_middle() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let a = boted("A", 0, &[], 3000);
    let b = boted("B", 0, &[("to-A".into(), a.inter_router_port, 2)], 3000);
    let c = boted("C", 0, &[("to-B".into(), b.inter_router_port, 3)], 3000);
    let want = |r: &Router, expected: &[(&str, &str, u32)]| {
        let expected: Table = expected
            .iter()
            .map(|(d, h, c)| (d.to_string(), (h.to_string(), *c)))
            .collect();
        r.routes() == expected
    };
    let deadline = Instant::now() + WAIT;
    while !(want(&a, &[("B", "B", 2), ("C", "B", 5)])
        && want(&b, &[("A", "A", 2), ("C", "C", 3)])
        && want(&c, &[("A", "B", 5), ("B", "B", 3)]))
    {
        assert!(
            Instant::now() < deadline,
            "chain did not converge: A {:?}, B {:?}, C {:?}",
            a.routes(),
            b.routes(),
            c.routes()
        );
        thread::sleep(Duration::from_millis(25));
    }
    for (r, peers) in [(&a, vec!["B"]), (&b, vec!["A", "C"]), (&c, vec!["B"])] {
        for p in peers {
            // Routers of this version exchange the compact data forms.
            assert!(
                r.lines()
                    .iter()
                    .any(|l| l.contains(&format!("neighbour up: {p} (instance "))
                        && l.contains("compact data forms")),
                "{} logged no `neighbour up: {p}` with compact data forms",
                r.id
            );
        }
    }
}

#[test]
fn chain_cold_start_converges_well_within_a_digest_interval_every_time() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let edges: Vec<Edge> = vec![(0, 1, 1), (1, 2, 1)];
    for run in 0..10 {
        let started = Instant::now();
        let routers = mesh_of(3, &edges, 3000);
        converge(&routers, &edges, &[true; 3], WAIT).expect("the chain converges");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "cold start {run} took {took:?}:\n{}",
            routers
                .iter()
                .map(|r| format!("== {}\n{}", r.id, r.log()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn ten_router_mesh_converges_and_every_router_agrees_with_the_oracle() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let edges = ten_router_mesh();
    let routers = mesh_of(10, &edges, 3000);
    let alive = vec![true; 10];
    if let Err(problem) = converge(&routers, &edges, &alive, WAIT) {
        panic!("the 10-router mesh did not converge: {problem}");
    }
}

#[test]
fn killed_router_is_dropped_by_its_neighbours_at_once_and_rejoins_when_restarted() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // A hello timeout of a minute: losing the router in time can only come
    // from the streams closing.
    let hello_timeout_ms = 60_000;
    let edges = ten_router_mesh();
    let mut routers = mesh_of(10, &edges, hello_timeout_ms);
    let mut alive = vec![true; 10];
    converge(&routers, &edges, &alive, WAIT).unwrap_or_else(|p| panic!("no convergence: {p}"));

    let victim = 4;
    let port = routers[victim].inter_router_port;
    routers[victim].kill();
    alive[victim] = false;
    converge(&routers, &edges, &alive, Duration::from_secs(10))
        .unwrap_or_else(|p| panic!("no reconvergence without {}: {p}", name(victim)));
    for (a, b, _) in &edges {
        let neighbour = if *a == victim {
            *b
        } else if *b == victim {
            *a
        } else {
            continue;
        };
        let logs = routers[neighbour].lines();
        assert!(
            logs.iter().any(|l| l
                .contains(&format!("neighbour down: {} (instance ", name(victim)))
                && l.contains("stream closed")),
            "{} did not drop {} on stream close",
            name(neighbour),
            name(victim)
        );
    }

    let connectors = connectors_of(victim, &edges, &routers);
    routers[victim] = boted(&name(victim), port, &connectors, hello_timeout_ms);
    alive[victim] = true;
    converge(&routers, &edges, &alive, WAIT)
        .unwrap_or_else(|p| panic!("{} did not rejoin: {p}", name(victim)));
}

#[test]
#[ignore = "measurement for BENCHMARKS.md (mesh control plane): run with --ignored --nocapture"]
fn measure_cold_start_and_reconvergence_after_a_router_kill_in_ten_routers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let edges = ten_router_mesh();
    for run in 0..5 {
        let mut alive = vec![true; 10];
        let mut routers = mesh_of(10, &edges, 3000);
        // Cold start: routers start one after another (each once the
        // previous one listens); measured from the first and from the last
        // router's start to the last router's final route line.
        let start_of = |r: &Router| {
            r.lines()
                .iter()
                .find(|l| l.contains("boted starting"))
                .and_then(|l| log_time(l))
                .expect("start line")
        };
        let (first_start, last_start) = (start_of(&routers[0]), start_of(&routers[9]));
        converge(&routers, &edges, &alive, WAIT).expect("cold start converges");
        let done = converged_at(&routers, &edges, &alive, last_start);
        let (cold, spread) = (done - last_start, done - first_start);
        thread::sleep(Duration::from_millis(500));
        let victim = 1 + run % 9;
        let killed_at = now_of_day();
        routers[victim].kill();
        alive[victim] = false;
        converge(&routers, &edges, &alive, Duration::from_secs(10)).expect("reconverges");
        thread::sleep(Duration::from_millis(300));
        let re = converged_at(&routers, &edges, &alive, killed_at) - killed_at;
        println!(
            "run {run}: cold start: first start -> all converged {:.1} ms, last start -> all converged {:.1} ms; kill R{victim} -> all reconverged {:.1} ms",
            spread * 1e3,
            cold * 1e3,
            re * 1e3
        );
    }
}

/// How one inter-router link is lost.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The proxy closes both sockets and refuses redials.
    Closed,
    /// The proxy forwards nothing more but keeps the sockets open.
    Silent,
}

/// Median, min and max of `samples` (seconds), in ms.
fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = (samples[(n - 1) / 2] + samples[n / 2]) / 2.0;
    format!(
        "median {:.1} ms ({:.1}-{:.1}, {n} runs)",
        median * 1e3,
        samples[0] * 1e3,
        samples[n - 1] * 1e3
    )
}

/// Starts the 10-router mesh with link `edges[k]` through a proxy, loses
/// that link `settle` after convergence as `cut` says, and returns the time
/// from the cut to the last router's first route line matching the oracle
/// without the link.
fn reconvergence_after_link_cut(
    edges: &[Edge],
    k: usize,
    cut: Cut,
    hello: (u64, u64),
    settle: Duration,
) -> f64 {
    let ids: Vec<String> = (0..10).map(name).collect();
    let (routers, proxies) =
        start_mesh(&ids, edges, &[k], |s| s.workers(1).hello(hello.0, hello.1));
    let alive = vec![true; 10];
    converge(&routers, edges, &alive, WAIT).expect("the mesh converges");
    assert_eq!(proxies[0].forwarded(), 1, "the link goes through the proxy");
    thread::sleep(settle);
    let without: Vec<Edge> = edges
        .iter()
        .enumerate()
        .filter_map(|(i, e)| (i != k).then_some(*e))
        .collect();
    let cut_at = now_of_day();
    match cut {
        Cut::Closed => proxies[0].cut(),
        Cut::Silent => proxies[0].silence(),
    }
    converge(&routers, &without, &alive, Duration::from_secs(20)).unwrap_or_else(|p| {
        panic!(
            "no reconvergence after a {cut:?} cut of {:?}: {p}",
            edges[k]
        )
    });
    thread::sleep(Duration::from_millis(300));
    converged_at(&routers, &without, &alive, cut_at) - cut_at
}

#[test]
#[ignore = "measurement for BENCHMARKS.md (mesh control plane): run with --ignored --nocapture"]
fn measure_reconvergence_after_a_link_cut_closed_or_silent_in_ten_routers() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let edges = ten_router_mesh();
    const RUNS: usize = 10;
    // Every link of this mesh is on some shortest path, so each cut changes
    // routes; runs step through seven ring links and the three chords.
    let series = [
        (
            "closed (sockets closed, redials refused)",
            Cut::Closed,
            (1000, 3000),
        ),
        (
            "silent, hello 1000 ms / timeout 3000 ms (default)",
            Cut::Silent,
            (1000, 3000),
        ),
        (
            "silent, hello 100 ms / timeout 400 ms",
            Cut::Silent,
            (100, 400),
        ),
    ];
    let mut results = Vec::new();
    for (label, cut, hello) in series {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let k = (run * 4) % edges.len();
            // Cuts fall at evenly spread phases of the hello interval.
            let settle = Duration::from_millis(300 + hello.0 * run as u64 / RUNS as u64);
            let t = reconvergence_after_link_cut(&edges, k, cut, hello, settle);
            println!("{label}: run {run}, link {:?}: {:.1} ms", edges[k], t * 1e3);
            samples.push(t);
        }
        results.push(format!("{label}: {}", summary(&mut samples)));
    }
    for r in results {
        println!("link cut -> all reconverged, {r}");
    }
}

/// Waits until `router` has logged a line containing every one of `parts`.
fn wait_for_log(router: &Router, parts: &[&str]) {
    let deadline = Instant::now() + WAIT;
    while !router
        .lines()
        .iter()
        .any(|l| parts.iter().all(|p| l.contains(p)))
    {
        assert!(
            Instant::now() < deadline,
            "{} never logged {parts:?}:\n{}",
            router.id,
            router.lines().join("\n")
        );
        thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn the_state_file_reports_bound_listeners_and_routes_and_goes_when_the_router_stops() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut a = boted("A", 0, &[], 3000);
    let b = boted("B", 0, &[("to-A".into(), a.inter_router_port, 4)], 3000);
    boted::wait_for("A and B to route to each other", || {
        a.routes().get("B") == Some(&("B".into(), 4))
            && b.routes().get("A") == Some(&("A".into(), 4))
    });
    // The ports reported are the ones bound: both take connections.
    for port in [a.port, a.inter_router_port] {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("A's listener on {port}: {e}"));
    }
    let path = a.state_path();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("A's state file"))
            .expect("the state file is JSON");
    assert_eq!(json["router"], "A");
    assert_eq!(
        json["listeners"],
        serde_json::json!([
            {"role": "normal", "host": "127.0.0.1", "port": a.port},
            {"role": "inter-router", "host": "127.0.0.1", "port": a.inter_router_port},
        ])
    );
    assert_eq!(
        json["routes"]["B"],
        serde_json::json!({"next_hop": "B", "cost": 4})
    );
    assert!(json["sequence"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(a.stop(), Some(0));
    assert!(
        !path.exists(),
        "the state file is removed when the router stops"
    );
}

#[test]
fn a_peer_claiming_our_own_id_or_an_id_already_connected_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let a = boted("A", 0, &[], 3000);
    let impostor = boted("A", 0, &[("to-A".into(), a.inter_router_port, 1)], 3000);
    // Whichever side reads the other's hello first refuses the stream (the
    // other may then see it closed before reading a hello).
    let refused = |r: &Router| {
        r.lines().iter().any(|l| {
            l.contains("closing inter-router stream") && l.contains("claims our own router id A")
        })
    };
    let deadline = Instant::now() + WAIT;
    while !(refused(&a) || refused(&impostor)) {
        assert!(
            Instant::now() < deadline,
            "neither A refused the other:\n{}",
            a.lines().join("\n")
        );
        thread::sleep(Duration::from_millis(25));
    }
    assert!(
        a.routes().is_empty(),
        "A routes to its impostor: {:?}",
        a.routes()
    );

    // Two live routers named B: the later boot (greater instance) holds the
    // adjacency; the earlier one's redials are refused as duplicates.
    let b1 = boted("B", 0, &[("to-A".into(), a.inter_router_port, 1)], 3000);
    wait_for_log(&a, &["neighbour up: B (instance "]);
    let b2 = boted("B", 0, &[("to-A".into(), a.inter_router_port, 1)], 3000);
    wait_for_log(
        &a,
        &["closing inter-router stream", "duplicate router id B"],
    );
    assert!(a.routes().contains_key("B"), "A lost its route to B");
    assert!(a.routes().len() == 1, "A routes {:?}", a.routes());
    drop((b1, b2));
}

/// A mesh configuration for an in-process router `id` dialling `peers`.
fn mesh_config(id: &str, peers: &[std::net::SocketAddr]) -> bote_node::config::Config {
    let mut text = format!(
        "[router]\nid = \"{id}\"\n\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\nrole = \"inter-router\"\n"
    );
    for (i, p) in peers.iter().enumerate() {
        text.push_str(&format!(
            "\n[[connector]]\nname = \"peer{i}\"\nhost = \"127.0.0.1\"\nport = {}\ncost = 1\n",
            p.port()
        ));
    }
    bote_node::config::Config::from_str_named(&text, "mesh test").expect("valid mesh config")
}

/// Polls `check` on the actix system until it holds (bounded by [`WAIT`]).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn local_address_hooks_publish_remote_consumers_in_the_neighbours_mesh_view() {
    use bote_node::mesh;
    use bote_topology::{Address, RouterId};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    actix_rt::System::new().block_on(async {
        let a = mesh::start(
            &mesh_config("A", &[]),
            Default::default(),
            &Default::default(),
        )
        .await
        .expect("mesh A");
        let b = mesh::start(
            &mesh_config("B", &a.bound),
            Default::default(),
            &Default::default(),
        )
        .await
        .expect("mesh B");
        let c = mesh::start(
            &mesh_config("C", &b.bound),
            Default::default(),
            &Default::default(),
        )
        .await
        .expect("mesh C");
        let id_a = RouterId::from("A");
        eventually("C to route to A through B", || {
            c.view()
                .routes
                .next_hop(&id_a)
                .is_some_and(|hop| hop.as_str() == "B")
        })
        .await;
        assert!(c.view().peers.contains_key(&RouterId::from("B")));
        assert!(
            !c.view().peers.contains_key(&id_a),
            "A is not C's neighbour"
        );

        let queue = Address::from("queue.x");
        a.add_local_address("queue.x");
        a.add_local_address("queue.x");
        eventually("C to see A's consumer for queue.x", || {
            c.remote_routers(&queue).iter().eq([&id_a])
        })
        .await;
        assert!(
            a.remote_routers(&queue).is_empty(),
            "local consumers are not listed in the mesh view"
        );

        a.remove_local_address("queue.x");
        eventually("C to forget queue.x", || {
            c.remote_routers(&queue).is_empty()
        })
        .await;
    });
}
