#!/usr/bin/env python3
"""Throughput of normal clients while thousands of connections trickle their
handshake (issue 16). Starts one boted (default handshake deadline, 5 s),
then RUNS times: `botectl bench --compare` (direct, then through the router)
with no attack, and again while CONNS connections each send one byte of the
protocol header and open per second (each is closed at the deadline and
dials again at once, so CONNS stay open). Prints both ratios (router /
direct, each against its own direct run), the attack's effect on the
router's throughput, the router's RSS (peak while attacked) and how many
trickling connections the router closed.

    scripts/bench_trickle.py [--conns 5000] [--runs 2] [--messages 2000000] [--attacker rust|python]
    (BOTED, BOTECTL: the binaries; default target/release; the Rust attacker
    is `cargo build --release -p bote-node --example trickle`)

It also prints the CPU the attack alone costs the router and the attacker
(% of one core, 5 s after each attacked bench): the attacker shares the
machine's cores, and the Python one takes ~30 % of a core, the Rust one ~4 %.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))

HANDSHAKE = b"AMQP\x00\x01\x00\x00" + bytes.fromhex("0000001102000000005310c00401a10178")


async def trickle_one(port, stats, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["open"] += 1
        try:
            for b in HANDSHAKE:
                writer.write(bytes([b]))
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                    if not data:
                        stats["closed_by_router"] += 1
                        break
                    if b"handshake not finished" in data:
                        stats["closed_by_router"] += 1
                        break
                except asyncio.TimeoutError:
                    pass
                if stop.is_set():
                    break
        except (ConnectionError, OSError):
            stats["closed_by_router"] += 1
        finally:
            stats["open"] -= 1
            writer.close()


def trickler(port, conns):
    """Runs in a child process: keeps `conns` trickling connections open
    until stdin closes; prints its counters as JSON every second."""
    stats = {"open": 0, "refused": 0, "closed_by_router": 0}

    async def main():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(trickle_one(port, stats, stop)) for _ in range(conns)]
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, sys.stdin.read)
        while not done.done():
            print(json.dumps(stats), flush=True)
            await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def bench(botectl, router, messages):
    out = subprocess.run(
        [botectl, "bench", "--router", f"127.0.0.1:{router.port}", "--router-pid",
         str(router.proc.pid), "--compare", "--messages", str(messages), "--json"],
        capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    rates = [r["msgs_per_sec"] for r in report["runs"]]
    return report["ratio"], rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--attacker", choices=["rust", "python"], default="rust",
                    help="rust: target/release/examples/trickle (cargo build --release -p bote-node "
                         "--example trickle), a few %% of a core; python: this script's asyncio "
                         "trickler, ~30 %% of a core for 5,000 connections")
    ap.add_argument("--trickler", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trickler:
        trickler(args.trickler, args.conns)
        return
    os.environ.setdefault("BOTED", os.path.join(ROOT, "target", "release", "boted"))
    botectl = os.environ.get("BOTECTL", os.path.join(ROOT, "target", "release", "botectl"))
    from conftest import Router
    r = Router("Router.Trickle")
    try:
        print(f"router RSS at start {rss_kib(r.proc.pid) / 1024:.1f} MiB")
        for run in range(args.runs):
            quiet_ratio, quiet_rates = bench(botectl, r, args.messages)
            if args.attacker == "rust":
                command = [os.path.join(ROOT, "target", "release", "examples", "trickle"), str(r.port),
                           str(args.conns)]
            else:
                command = [sys.executable, __file__, "--trickler", str(r.port), "--conns", str(args.conns)]
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            cpu_at = {}
            latest = {}
            peak = [0]

            def read():
                for line in child.stdout:
                    latest.update(json.loads(line))

            def sample():
                while child.poll() is None:
                    peak[0] = max(peak[0], rss_kib(r.proc.pid))
                    time.sleep(0.2)

            threading.Thread(target=read, daemon=True).start()
            threading.Thread(target=sample, daemon=True).start()
            deadline = time.time() + 60
            while latest.get("open", 0) < args.conns * 0.95 and time.time() < deadline:
                time.sleep(0.2)
            # Past the first deadline: connections are being closed and dial
            # again, as in a sustained attack.
            time.sleep(6)
            opened = latest.get("open", 0)
            cpu_at["start"] = (time.time(), cpu_seconds(r.proc.pid), cpu_seconds(child.pid))
            attacked_ratio, attacked_rates = bench(botectl, r, args.messages)
            cpu_at["end"] = (time.time(), cpu_seconds(r.proc.pid), cpu_seconds(child.pid))
            still = latest.get("open", 0)
            # The attack alone (no bench traffic): what it costs the router
            # and what the attacker itself takes, in % of one core.
            t0, r0, a0 = time.time(), cpu_seconds(r.proc.pid), cpu_seconds(child.pid)
            time.sleep(5)
            t1, r1, a1 = time.time(), cpu_seconds(r.proc.pid), cpu_seconds(child.pid)
            idle_router, idle_attacker = 100 * (r1 - r0) / (t1 - t0), 100 * (a1 - a0) / (t1 - t0)
            (s0, _, sa0), (s1, _, sa1) = cpu_at["start"], cpu_at["end"]
            attacker_during = 100 * (sa1 - sa0) / (s1 - s0)
            child.stdin.close()
            child.wait(60)
            time.sleep(1)
            print(f"run {run + 1}: no attack: direct {quiet_rates[0]:.0f}/s, router "
                  f"{quiet_rates[1]:.0f}/s, x{quiet_ratio:.3f} | {opened}->{still} trickling: "
                  f"direct {attacked_rates[0]:.0f}/s, router {attacked_rates[1]:.0f}/s, "
                  f"x{attacked_ratio:.3f} | router under attack / without: "
                  f"{attacked_ratio / quiet_ratio:.3f} | RSS peak {peak[0] / 1024:.1f} MiB, "
                  f"after {rss_kib(r.proc.pid) / 1024:.1f} MiB | closed at the deadline "
                  f"{latest.get('closed_by_router', 0)} | attack alone: router {idle_router:.1f} % "
                  f"of a core, attacker {idle_attacker:.1f} % ({attacker_during:.1f} % during the "
                  f"attacked bench)", flush=True)
    finally:
        r.stop()


if __name__ == "__main__":
    main()
