//! Management under load: how long a QUERY of every connection takes with
//! 10,000 client connections open, and what repeated QUERYs cost the
//! forwarding throughput of the same router (beside the direct
//! client-to-client baseline, measured in the same run).
//!
//! ```text
//! cargo build --release -p bote-node --bin boted
//! cargo bench -p botectl --bench management -- [CONNECTIONS] [ROUNDS] [--control]
//! ```
//!
//! `--control` runs only the paced mode, against the forwarding router and
//! against a second router holding as many idle connections (the same
//! client and listing work on a router that does not forward): what the
//! listings cost the data plane beyond the CPU they take from the machine.
//!
//! Spawns one release `boted` (2 workers, idle timeout off so idle clients
//! stay), opens CONNECTIONS (default 10,000) AMQP connections that only open
//! and wait, then: ROUNDS (default 5) times one QUERY of every connection in
//! one request (`count` = all) and the listing qdstat makes (pages of 500);
//! then `botectl bench` throughput (3,000,000 messages of 100 bytes, one
//! sender, one receiver) through the router alone and while a client
//! repeats paged QUERYs of all connections (back to back, one every 300 ms,
//! then once a second), alternating five times each (the change is reported per pair,
//! a loaded run against the quiet run just before it), and the direct
//! baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bote_amqp::codec::Value;
use bote_amqp::{Connection, ConnectionConfig, Event, Side};
use botectl::bench::{self, BenchOptions};
use botectl::manage::Client;
use botectl::spawn::RouterSpec;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens one AMQP connection and returns once the router's open arrived.
async fn open_idle(addr: String, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let config = ConnectionConfig {
        container_id: format!("idle-{i}"),
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::new(config, Side::Client, std::time::Instant::now());
    conn.open();
    let mut out = BytesMut::new();
    while conn.poll_transmit(&mut out) > 0 {}
    stream.write_all(&out).await.expect("write");
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = stream.read_buf(&mut buf).await.expect("read");
        assert!(n > 0, "router closed connection {i}");
        conn.handle_input_buf(buf.split(), std::time::Instant::now());
        while let Some(e) = conn.poll_event() {
            if let Event::Opened { .. } = e {
                return stream;
            }
        }
    }
}

fn stats(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    )
}

/// Messages per throughput run: long enough (~3–5 s through the router)
/// that a QUERY once a second lands several times in each run.
const MESSAGES: u64 = 3_000_000;

/// Runs with and without QUERYs alternate this many times (pairs).
const PAIRS: usize = 5;

fn throughput(addr: Option<&str>) -> f64 {
    let options = BenchOptions {
        router: addr.map(str::to_owned),
        direct: addr.is_none(),
        messages: MESSAGES,
        ..BenchOptions::default()
    };
    let report = bench::run(&options).expect("bench run");
    assert!(report.is_complete(), "bench run incomplete");
    report.runs[0].msgs_per_sec
}

/// This thread's CPU time so far (ns, `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU ns of the router's threads: (all, the management thread's), the
/// latter found by its nice value (5, see `router::management`).
fn router_cpu_ns(pid: u32) -> (u64, u64) {
    let (mut all, mut management) = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let ns: u64 = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        // stat's field 19 is the nice value; fields after the ')' of the
        // command name start at field 3.
        let nice = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| {
                let after = &s[s.rfind(')')? + 1..];
                after.split_whitespace().nth(16)?.parse::<i64>().ok()
            })
            .unwrap_or(0);
        all += ns;
        if nice == 5 {
            management += ns;
        }
    }
    (all, management)
}

fn query_all(connections: usize) -> Vec<(&'static str, Value)> {
    vec![
        ("operation", Value::from("QUERY")),
        (
            "entityType",
            Value::from("org.apache.qpid.dispatch.connection"),
        ),
        ("offset", Value::Long(0)),
        ("count", Value::Long(connections as i64 + 10)),
        ("name", Value::from("self")),
        ("type", Value::from("org.amqp.management")),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let connections: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let boted = std::env::var("BOTED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/boted"));
    let spec = RouterSpec::new("Router.M")
        .workers(2)
        .listener_option("idle-timeout-secs = 0");
    let mut router = spec
        .start(&boted, Duration::from_secs(30))
        .expect("spawn boted (cargo build --release -p bote-node --bin boted)");
    let addr = router.addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let _idle: Vec<TcpStream> = rt.block_on(async {
        let mut all = Vec::with_capacity(connections);
        for chunk in (0..connections).collect::<Vec<_>>().chunks(500) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|&i| tokio::spawn(open_idle(addr.clone(), i)))
                .collect();
            for t in tasks {
                all.push(t.await.unwrap());
            }
        }
        all
    });
    println!(
        "{connections} idle connections open in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // `--control`: a second router with as many idle connections, which
    // the paced QUERYs go to in a control mode: the same client CPU and
    // the same listing work, on a router that does not forward.
    let control = std::env::args().any(|a| a == "--control");
    let mut other = control.then(|| {
        RouterSpec::new("Router.Q")
            .workers(2)
            .listener_option("idle-timeout-secs = 0")
            .start(&boted, Duration::from_secs(30))
            .expect("spawn the control boted")
    });
    let other_addr = other.as_ref().map(|r| r.addr());
    let _other_idle: Vec<TcpStream> = match &other_addr {
        None => Vec::new(),
        Some(a) => rt.block_on(async {
            let mut all = Vec::with_capacity(connections);
            for chunk in (0..connections).collect::<Vec<_>>().chunks(500) {
                let tasks: Vec<_> = chunk
                    .iter()
                    .map(|&i| tokio::spawn(open_idle(a.clone(), i)))
                    .collect();
                for t in tasks {
                    all.push(t.await.unwrap());
                }
            }
            all
        }),
    };
    let (one, paged) = rt.block_on(async {
        let mut client = Client::connect(&addr, None, Duration::from_secs(30))
            .await
            .unwrap();
        let mut one = Vec::new();
        let mut paged = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let reply = client
                .call(
                    &query_all(connections),
                    Value::Map(vec![(Value::from("attributeNames"), Value::List(vec![]))]),
                )
                .await
                .unwrap();
            one.push(t.elapsed().as_secs_f64() * 1e3);
            let rows = reply
                .body
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("results")))
                .and_then(|(_, v)| v.as_list().map(<[Value]>::len))
                .unwrap_or(0);
            assert!(
                rows > connections,
                "{rows} rows for {connections} connections"
            );
            let t = Instant::now();
            let (_, rows) = client.query("connection", &[]).await.unwrap();
            paged.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(rows.len() > connections);
        }
        (one, paged)
    });
    println!(
        "QUERY of all {connections}+ connections, one request: {}",
        stats(one)
    );
    println!(
        "QUERY of all {connections}+ connections, pages of 500 (as qdstat -c): {}",
        stats(paged)
    );
    // The router's own share (RUST_LOG=bote_node::router::management=debug
    // makes it log each request's times).
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (mut answered, mut routed) = (Vec::new(), Vec::new());
    for line in router.log_lines() {
        if line.contains("management request answered")
            && line.contains("QUERY")
            && let (Some(a), Some(r)) = (
                field(&line, "answered_us="),
                field(&line, "encoded_and_routed_us="),
            )
            && a > 10_000.0
        {
            answered.push(a / 1e3);
            routed.push(r / 1e3);
        }
    }
    if !answered.is_empty() {
        println!(
            "  in the router, large QUERYs: entities read {}; reply encoded and handed on {}",
            stats(answered),
            stats(routed)
        );
    }

    // Throughput with and without a client repeating paged QUERYs of all
    // connections: back to back; one every 300 ms (the rate of QUERYs
    // repeated one after another if each took the 300 ms the target
    // allows); once a second (a console's refresh).
    let direct = throughput(None);
    println!("direct client-to-client: {direct:.0} msgs/s");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let paced = Some(Duration::from_millis(300));
    let modes: Vec<(&str, Option<Duration>, String)> = match &other_addr {
        None => vec![
            ("back to back", None, addr.clone()),
            ("one every 300 ms", paced, addr.clone()),
            ("once a second", Some(Duration::from_secs(1)), addr.clone()),
        ],
        Some(o) => vec![
            ("one every 300 ms", paced, addr.clone()),
            ("one every 300 ms, to the control router", paced, o.clone()),
        ],
    };
    for (label, pause, target) in modes {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let mut quiet = Vec::new();
        let mut loaded = Vec::new();
        let mut per_query = Vec::new();
        // Share of one core while the loaded runs lasted: the querying
        // client's thread, the router's management thread, the router.
        let (mut client_cpu, mut management_cpu, mut router_cpu, mut wall) =
            (0u64, 0u64, 0u64, 0.0);
        let pid = router.pid().unwrap_or(0);
        for _ in 0..PAIRS {
            quiet.push(throughput(Some(&addr)));
            stop.store(false, Ordering::SeqCst);
            let (stop2, queries2, addr2) = (stop.clone(), queries.clone(), target.clone());
            let before = queries.load(Ordering::SeqCst);
            let querier = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let cpu_at_start = thread_cpu_ns();
                let times = rt.block_on(async {
                    let mut client = Client::connect(&addr2, None, Duration::from_secs(30))
                        .await
                        .unwrap();
                    let mut times = Vec::new();
                    while !stop2.load(Ordering::SeqCst) {
                        let t = Instant::now();
                        client.query("connection", &[]).await.unwrap();
                        let took = t.elapsed();
                        times.push(took.as_secs_f64() * 1e3);
                        queries2.fetch_add(1, Ordering::SeqCst);
                        if let Some(p) = pause {
                            tokio::time::sleep(p.saturating_sub(took)).await;
                        }
                    }
                    times
                });
                (times, thread_cpu_ns() - cpu_at_start)
            });
            let t = Instant::now();
            let (router_before, management_before) = router_cpu_ns(pid);
            loaded.push(throughput(Some(&addr)));
            let secs = t.elapsed().as_secs_f64();
            let (router_after, management_after) = router_cpu_ns(pid);
            stop.store(true, Ordering::SeqCst);
            let (times, cpu) = querier.join().unwrap();
            per_query.extend(times);
            client_cpu += cpu;
            router_cpu += router_after - router_before;
            management_cpu += management_after - management_before;
            wall += secs;
            println!(
                "  {label}: {} full paged QUERYs during a {secs:.1} s run",
                queries.load(Ordering::SeqCst) - before
            );
        }
        println!(
            "through the router, no queries: {quiet:.0?} msgs/s (mean {:.0})",
            mean(&quiet)
        );
        // Each loaded run against the quiet run just before it.
        let mut pairs: Vec<f64> = quiet.iter().zip(&loaded).map(|(q, l)| l / q).collect();
        pairs.sort_by(f64::total_cmp);
        println!(
            "through the router, paged QUERYs of all connections {label}: {loaded:.0?} msgs/s (mean {:.0}, {:+.1}%; per pair {pairs:.3?}, median {:+.1}%)",
            mean(&loaded),
            (mean(&loaded) / mean(&quiet) - 1.0) * 100.0,
            (pairs[pairs.len() / 2] - 1.0) * 100.0
        );
        println!("  QUERY time while forwarding: {}", stats(per_query));
        let share = |ns: u64| ns as f64 / 1e9 / wall * 100.0;
        println!(
            "  CPU while the loaded runs lasted, % of one core: querying client {:.1}, router's management thread {:.1}, router in all {:.1}",
            share(client_cpu),
            share(management_cpu),
            share(router_cpu)
        );
    }
    let _ = router.stop(Duration::from_secs(10));
    if let Some(o) = other.as_mut() {
        let _ = o.stop(Duration::from_secs(10));
    }
}
