//! Link actors or link endpoints inside the connection actor? A link actor
//! puts a mailbox hop (to the link) and back (to the connection, which owns
//! the engine) on every delivery. This measures that hop against the direct
//! call an endpoint costs, per delivery, in batches like the router's.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};

/// Per-link state a delivery touches (credit, counters).
#[derive(Default)]
struct LinkState {
    credit: u32,
    unsettled: u32,
    delivered: u64,
}

impl LinkState {
    #[inline(never)]
    fn on_delivery(&mut self) {
        self.credit = self.credit.wrapping_sub(1);
        self.unsettled += 1;
        self.delivered += 1;
    }
}

struct LinkActor {
    state: LinkState,
    done: mpsc::Sender<()>,
    want: u64,
}

impl Actor for LinkActor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Delivery;

#[derive(Message)]
#[rtype(result = "()")]
struct Expect(u64);

impl Handler<Delivery> for LinkActor {
    type Result = ();
    fn handle(&mut self, _: Delivery, _: &mut Context<Self>) {
        self.state.on_delivery();
        if self.state.delivered == self.want {
            let _ = self.done.send(());
        }
    }
}

impl Handler<Expect> for LinkActor {
    type Result = ();
    fn handle(&mut self, m: Expect, _: &mut Context<Self>) {
        self.want = self.state.delivered + m.0;
    }
}

fn link_placement(c: &mut Criterion) {
    const BATCH: u64 = 1000;
    let mut g = c.benchmark_group("link_placement");
    g.throughput(criterion::Throughput::Elements(BATCH));

    g.bench_function("endpoint_in_connection_1000_deliveries", |b| {
        let mut state = LinkState::default();
        b.iter(|| {
            for _ in 0..BATCH {
                state.on_delivery();
            }
            std::hint::black_box(&state);
        })
    });

    // A link actor on another worker arbiter, as the router would spread it.
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let system = std::thread::spawn(move || {
        let sys = actix_rt::System::new();
        sys.block_on(async move {
            let arbiter = Arbiter::new();
            let addr = LinkActor::start_in_arbiter(&arbiter.handle(), move |_| LinkActor {
                state: LinkState::default(),
                done: done_tx,
                want: u64::MAX,
            });
            addr_tx.send(addr).expect("bench thread gone");
        });
        sys.run().ok();
    });
    let addr: Addr<LinkActor> = addr_rx.recv().expect("actor started");
    g.bench_function("link_actor_hop_1000_deliveries", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                addr.do_send(Expect(BATCH));
                // Let the Expect land before timing.
                std::thread::sleep(Duration::from_micros(50));
                let start = Instant::now();
                for _ in 0..BATCH {
                    addr.do_send(Delivery);
                }
                done_rx.recv().expect("actor answered");
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    drop(addr);
    drop(system);
}

criterion_group!(benches, link_placement);
criterion_main!(benches);
