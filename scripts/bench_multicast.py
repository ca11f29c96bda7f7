#!/usr/bin/env python3
"""Multicast through a chain of three real routers A - B - C against direct,
in the same run: `botectl bench --routers A,C --compare` on a multicast
address, the sender on A and one subscriber on C, so every message takes
the multicast path on all three routers (fan-out at A, along A's tree at B,
local delivery at C). Prints one line per run (ratio, msgs/s, CPU per
message of the middle router B) and the median ratio.

    cargo build --release -p bote-node --bin boted && cargo build --release -p botectl
    BOTED=target/release/boted .venv/bin/python scripts/bench_multicast.py \\
        --botectl target/release/botectl --runs 3 --messages 100000

`--presettled` sends at-most-once. The routers are started with the Python
interop suite's `Router` (tests/interop/conftest.py), which reads their
ports from their state files."""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

from conftest import Router, wait_until  # noqa: E402


def chain():
    a = Router("Bench.A", inter_router=True)
    b = Router("Bench.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Bench.C", connectors=[("to-b", b.inter_router_port, 1)])
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    return routers


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--botectl", default=os.path.join(ROOT, "target", "release", "botectl"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--presettled", action="store_true")
    args = p.parse_args()
    ratios = []
    for i in range(args.runs):
        routers = chain()
        try:
            a, b, c = routers
            cmd = [args.botectl, "bench", "--compare", "--json",
                   "--routers", f"127.0.0.1:{a.port},127.0.0.1:{c.port}",
                   "--router-pid", str(b.proc.pid),
                   "--address", f"multicast.bench.{i}",
                   "--messages", str(args.messages)]
            if args.presettled:
                cmd.append("--presettled")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                sys.exit(f"botectl bench failed: {out.stderr}")
            report = json.loads(out.stdout)
            direct, routed = report["runs"]
            usage = routed.get("router") or {}
            print(f"run {i + 1}: ratio {report['ratio']:.3f}, direct "
                  f"{direct['msgs_per_sec']:.0f} msg/s, chain {routed['msgs_per_sec']:.0f} msg/s, "
                  f"B {usage.get('cpu_us_per_message', float('nan')):.2f} us/msg", flush=True)
            ratios.append(report["ratio"])
        finally:
            for r in routers:
                r.stop()
    print(f"median ratio {statistics.median(ratios):.3f} over {len(ratios)} runs "
          f"({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
