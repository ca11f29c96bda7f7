#!/usr/bin/env python3
"""Address propagation through a real boted chain A-B-C: the time from a
receiver's attach on C until a sender on A, already
waiting on the same address, is given credit. Prints p50/p90/max over N runs.

Usage: BOTED=target/release/boted .venv/bin/python scripts/measure_address_propagation.py [N]
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))

from clients import Receiver, Sender  # noqa: E402
from conftest import Router, wait_until  # noqa: E402
from test_mesh import routes  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)])
    try:
        wait_until(lambda: all(len(routes(r).get("routes", {})) == 2 for r in (a, b, c)), 20, "convergence")
        samples = []
        for i in range(n):
            address = f"queue.prop.{i}"
            tx = Sender(a.url, address, 1, timeout=30).start()
            time.sleep(0.2)  # the sender is attached and waiting without credit
            assert not tx.credit_seen.is_set()
            rx = Receiver(c.url, address, expect=1).start()
            # The clock starts when the receiver sees C's attach reply: C
            # handled the attach one loopback hop (tens of µs) earlier, so this
            # understates by that hop. (Starting it before the receiver
            # connects measures Proton's own start-up, ~36 ms, instead.)
            assert rx.attached.wait(10)
            t0 = time.perf_counter()
            assert tx.credit_seen.wait(10), "no credit"
            samples.append((time.perf_counter() - t0) * 1000)
            tx.join()
            rx.join()
        samples.sort()
        print(f"address propagation A<-C over {n} runs: p50 {statistics.median(samples):.1f} ms, "
              f"p90 {samples[int(0.9 * (n - 1))]:.1f} ms, max {samples[-1]:.1f} ms")
    finally:
        for r in (a, b, c):
            r.stop()


if __name__ == "__main__":
    main()
