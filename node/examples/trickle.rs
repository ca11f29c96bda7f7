//! The attacker of `scripts/bench_trickle.py`, in Rust: CONNS connections
//! that each send the AMQP protocol header and an `open` one byte a second
//! (a slow-loris handshake); a connection the router closes dials again at
//! once, so CONNS stay open. It prints its counters as one JSON line a
//! second and stops when its stdin closes.
//!
//! `cargo run --release -p bote-node --example trickle -- PORT [CONNS]`
//!
//! The Python attacker the script also has needs ~30 % of a core for 5,000
//! connections on this machine; this one a few percent, so that what the
//! benchmark measures is the router's cost of the attack rather than the
//! attacker's share of the same two cores.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The protocol header, then an `open` frame with container id "x".
const HANDSHAKE: &[u8] = b"AMQP\x00\x01\x00\x00\
    \x00\x00\x00\x11\x02\x00\x00\x00\x00\x53\x10\xc0\x04\x01\xa1\x01\x78";

#[derive(Default)]
struct Stats {
    open: AtomicI64,
    refused: AtomicU64,
    closed_by_router: AtomicU64,
}

async fn trickle_one(port: u16, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    while !stop.load(Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            stats.refused.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        stats.open.fetch_add(1, Relaxed);
        let mut buf = [0u8; 4096];
        for byte in HANDSHAKE {
            if stop.load(Relaxed) {
                break;
            }
            if stream.write_all(&[*byte]).await.is_err() {
                stats.closed_by_router.fetch_add(1, Relaxed);
                break;
            }
            // Wait a second for the next byte, noticing a close meanwhile.
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    stats.closed_by_router.fetch_add(1, Relaxed);
                    break;
                }
                Ok(Ok(_)) => {
                    // The router's close (with its error) arrives before
                    // the socket closes; count it once, at the close.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => {}
            }
        }
        stats.open.fetch_sub(1, Relaxed);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .expect("usage: trickle PORT [CONNS]");
    let conns: usize = args.get(1).map_or(5000, |c| {
        c.parse().expect("CONNS is a number of connections")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stdin_closed = Arc::new(AtomicBool::new(false));
    {
        let stdin_closed = stdin_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stdin_closed.store(true, Relaxed);
        });
    }
    rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(trickle_one(port, stats.clone(), stop.clone())))
            .collect();
        while !stdin_closed.load(Relaxed) {
            println!(
                "{{\"open\": {}, \"refused\": {}, \"closed_by_router\": {}}}",
                stats.open.load(Relaxed),
                stats.refused.load(Relaxed),
                stats.closed_by_router.load(Relaxed)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
}
