//! A TCP proxy in the test process standing in for one inter-router link:
//! it listens on an ephemeral port of 127.0.0.1 and forwards every
//! connection to the real listener. [`LinkProxy::cut`] closes both sockets of
//! every proxied connection and refuses new ones (the link stays down);
//! [`LinkProxy::silence`] keeps the sockets open but forwards nothing more,
//! in either direction (only the hello timeout can notice).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

const FORWARD: u8 = 0;
const SILENT: u8 = 1;
const CUT: u8 = 2;

struct Shared {
    mode: AtomicU8,
    /// Both ends of every connection (clones), to close them on a cut.
    sockets: Mutex<Vec<TcpStream>>,
    forwarded: AtomicUsize,
}

pub struct LinkProxy {
    /// The port to dial instead of the real listener's.
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl LinkProxy {
    /// A proxy to the listener on `upstream` (a port of 127.0.0.1).
    pub fn start(upstream: u16) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the link proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(FORWARD),
            sockets: Mutex::new(Vec::new()),
            forwarded: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let upstream = match s.mode.load(Ordering::SeqCst) {
                    FORWARD => TcpStream::connect(("127.0.0.1", upstream)).ok(),
                    _ => None,
                };
                let mut sockets = s.sockets.lock().unwrap_or_else(|e| e.into_inner());
                // Decided under the lock that `cut` takes: nothing slips past it.
                match (s.mode.load(Ordering::SeqCst), upstream) {
                    (CUT, _) => break,
                    (FORWARD, Some(server)) => {
                        let _ = (client.set_nodelay(true), server.set_nodelay(true));
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            let (from, to) = (
                                from.try_clone().expect("clone socket"),
                                to.try_clone().expect("clone socket"),
                            );
                            let s = s.clone();
                            thread::spawn(move || pump(from, to, &s));
                        }
                        s.forwarded.fetch_add(1, Ordering::SeqCst);
                        sockets.extend([client, server]);
                    }
                    // Silent: a black hole holds the connection, forwards nothing.
                    (SILENT, _) => sockets.push(client),
                    _ => {}
                }
            }
            // The listener drops here: later dials are refused.
        });
        LinkProxy {
            port,
            shared,
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    /// Connections forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Stops forwarding in both directions; the sockets stay open.
    pub fn silence(&self) {
        self.shared.mode.store(SILENT, Ordering::SeqCst);
    }

    /// Closes both sockets of every connection and refuses new ones.
    pub fn cut(&self) {
        {
            let mut sockets = self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.mode.store(CUT, Ordering::SeqCst);
            for s in sockets.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(acceptor) = acceptor {
            // Wake the accept loop so that it sees the cut and drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = acceptor.join();
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Copies `from` to `to` while forwarding; drops what arrives while silent.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match shared.mode.load(Ordering::SeqCst) {
            FORWARD => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            SILENT => {}
            _ => break,
        }
    }
    if shared.mode.load(Ordering::SeqCst) == FORWARD {
        let _ = to.shutdown(Shutdown::Write);
    }
}
