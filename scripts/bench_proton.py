#!/usr/bin/env python3
"""Throughput with Qpid Proton (Python) clients: the scenarios of `botectl
bench` (direct, one router, a chain of three; unsettled or presettled; any
body size) driven by another client, to show the router's figures are not
specific to Bote's own bench client.

Sender and receiver run in separate processes (one interpreter each). The
direct baseline is a Proton receiver that is itself the AMQP listener, the
sender connecting straight to it; then the same clients go through `boted`
process(es) started here on ephemeral loopback ports, in the same run, and
the ratio is printed.

Usage (from the repository root, with the test venv):
  .venv/bin/python scripts/bench_proton.py                      # all scenarios
  .venv/bin/python scripts/bench_proton.py --path chain --presettled
  .venv/bin/python scripts/bench_proton.py --messages 50000 --size 1024

`BOTED` names the router binary (default: the release build in
$CARGO_TARGET_DIR or target/).
"""

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

from proton import Message  # noqa: E402
from proton.handlers import MessagingHandler  # noqa: E402
from proton.reactor import AtMostOnce, Container  # noqa: E402

TIMEOUT_S = 120


class Receive(MessagingHandler):
    """Receives `count` messages (accepting each) on a connection to `url`,
    or, with `listen`, on connections accepted at `url`."""

    def __init__(self, url, address, count, listen, credit, ready):
        super().__init__(prefetch=credit)
        self.url, self.address, self.count, self.listen = url, address, count, listen
        self.ready = ready
        self.received = 0
        self.first = self.last = None

    def on_start(self, event):
        self.timer = event.container.schedule(TIMEOUT_S, self)
        if self.listen:
            self.acceptor = event.container.listen(self.url)
            self.ready.set()
        else:
            conn = event.container.connect(self.url)
            event.container.create_receiver(conn, self.address)

    def on_link_opened(self, event):
        if not self.listen and event.receiver:
            self.ready.set()

    def on_message(self, event):
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.received += 1
        if self.received == self.count:
            self.timer.cancel()
            event.connection.close()
            if self.listen:
                self.acceptor.close()

    def on_timer_task(self, event):
        # The run is over (or stuck): stop whatever is left.
        event.container.stop()


class Send(MessagingHandler):
    """Sends `count` messages of `size` body bytes to `address` at `url` as
    fast as credit allows; finishes when every one is settled."""

    def __init__(self, url, address, count, size, presettled):
        super().__init__()
        self.url, self.address, self.count, self.presettled = url, address, count, presettled
        self.body = b"x" * size
        self.sent = self.settled = self.accepted = 0
        self.start = None

    def on_start(self, event):
        self.timer = event.container.schedule(TIMEOUT_S, self)
        conn = event.container.connect(self.url)
        options = AtMostOnce() if self.presettled else None
        event.container.create_sender(conn, self.address, options=options)

    def on_sendable(self, event):
        if self.start is None:
            self.start = time.monotonic()
        while event.sender.credit and self.sent < self.count:
            event.sender.send(Message(body=self.body, address=self.address))
            self.sent += 1
        if self.presettled and self.sent == self.count:
            self.timer.cancel()
            event.connection.close()

    def on_accepted(self, event):
        self.accepted += 1

    def on_settled(self, event):
        self.settled += 1
        if self.settled == self.count:
            self.timer.cancel()
            event.connection.close()

    def on_timer_task(self, event):
        event.container.stop()


def receive_process(url, address, count, listen, credit, ready, out):
    h = Receive(url, address, count, listen, credit, ready)
    Container(h).run()
    out.put(("receiver", h.received, h.first, h.last))


def send_process(url, address, count, size, presettled, out):
    h = Send(url, address, count, size, presettled)
    Container(h).run()
    out.put(("sender", h.sent, h.accepted, h.start))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(send_url, recv_url, listen, args):
    """One sender and one receiver; returns (msgs/s, received, accepted)."""
    ctx = mp.get_context("fork")
    out, ready = ctx.Queue(), ctx.Event()
    receiver = ctx.Process(target=receive_process, args=(
        recv_url, args.address, args.messages, listen, args.credit, ready, out))
    receiver.start()
    if not ready.wait(30):
        receiver.kill()
        sys.exit(f"receiver at {recv_url} did not become ready within 30 s")
    sender = ctx.Process(target=send_process, args=(
        send_url, args.address, args.messages, args.size, args.presettled, out))
    sender.start()
    results = {}
    for _ in range(2):
        kind, *rest = out.get(timeout=TIMEOUT_S + 30)
        results[kind] = rest
    sender.join(10)
    receiver.join(10)
    received, _first, last = results["receiver"]
    _sent, accepted, start = results["sender"]
    if not received or last is None or start is None:
        return 0.0, received, accepted
    return received / (last - start), received, accepted


def start_path(path):
    """The boted processes of `path`: [] (direct), [R] or [A, B, C]."""
    from conftest import Router, wait_until

    if path == "direct":
        return []
    if path == "router":
        return [Router("Bench.R")]
    a = Router("Bench.A", inter_router=True)
    wait_until(lambda: a.inter_router_port, 10, "A's inter-router listener")
    b = Router("Bench.B", inter_router=True, connectors=[("a", a.inter_router_port, 1)])
    wait_until(lambda: b.inter_router_port, 10, "B's inter-router listener")
    c = Router("Bench.C", connectors=[("b", b.inter_router_port, 1)])
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    return routers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=["router", "chain", "all"], default="all")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--presettled", action="store_true")
    parser.add_argument("--credit", type=int, default=250)
    parser.add_argument("--runs", type=int, default=3, help="paired runs (median)")
    parser.add_argument("--address", default="bench")
    args = parser.parse_args()
    if "BOTED" not in os.environ:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        os.environ["BOTED"] = os.path.join(target, "release", "boted")

    paths = ["router", "chain"] if args.path == "all" else [args.path]
    mode = "presettled" if args.presettled else "unsettled"
    print(f"Qpid Proton (Python) clients, {mode}, {args.messages} messages, "
          f"{args.size}-byte body, credit {args.credit}, {args.runs} paired runs")
    for path in paths:
        direct, routed = [], []
        for _ in range(args.runs):
            port = free_port()
            url = f"amqp://127.0.0.1:{port}"
            rate, received, accepted = one_run(url, url, True, args)
            direct.append(rate)
            routers = start_path(path)
            try:
                first, last = routers[0], routers[-1]
                rate_r, received_r, accepted_r = one_run(first.url, last.url, False, args)
            finally:
                for r in routers:
                    r.stop()
            routed.append(rate_r)
            lost = args.messages - received_r
            print(f"  {path}: direct {rate:,.0f} msg/s, through {len(routers)} boted "
                  f"{rate_r:,.0f} msg/s, ratio {rate_r / rate if rate else 0:.3f}; "
                  f"received {received_r}, accepted {accepted_r if not args.presettled else '-'}"
                  + (f", {lost} not received" if lost else ""))
        d, r = statistics.median(direct), statistics.median(routed)
        print(f"{path}: median direct {d:,.0f} msg/s, through boted {r:,.0f} msg/s, "
              f"ratio {r / d if d else 0:.3f}")


if __name__ == "__main__":
    main()
