#!/usr/bin/env python3
"""MQTT publish -> subscribe throughput, side by side in one run: the
Mosquitto broker (Debian `mosquitto`, the baseline), one Bote router, and
the Bote chain A-B-C (publisher on A, subscriber on C). The load client is
`node/examples/mqtt_load.rs` (one publisher, one subscriber, one topic,
MQTT 3.1.1, 100-byte payloads; QoS 1 with 20 PUBLISHes unacknowledged, Mosquitto's default
max_inflight_messages: with more it drops the publisher).

    cargo build --release -p bote-node --bin boted --example mqtt_load
    scripts/bench_mqtt.py [--runs 3] [--messages 100000]

Each run starts the brokers afresh; the lines printed are the load
client's, then the medians and the ratio to Mosquitto of the same runs."""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOTED = os.path.join(ROOT, "target", "release", "boted")
LOAD = os.path.join(ROOT, "target", "release", "examples", "mqtt_load")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def boted(d, name, mqtt, inter=None, connect=None):
    conf = os.path.join(d, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(f'[router]\nid = "{name}"\nlog-level = "warn"\nhttp = "off"\n'
                f'[[listener]]\nhost = "127.0.0.1"\nport = {free_port()}\n'
                f'[[listener]]\nhost = "127.0.0.1"\nport = {mqtt}\nprotocol = "mqtt"\n')
        if inter:
            f.write(f'[[listener]]\nhost = "127.0.0.1"\nport = {inter}\nrole = "inter-router"\n')
        if connect:
            f.write(f'[[connector]]\nname = "up"\nhost = "127.0.0.1"\nport = {connect}\n'
                    f'role = "inter-router"\n')
    p = subprocess.Popen([BOTED, "--config", conf], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, f"{name}.log"), "w"))
    wait_port(mqtt)
    return p


def load(pub, sub, qos, messages):
    out = subprocess.run([LOAD, "--pub", f"127.0.0.1:{pub}", "--sub", f"127.0.0.1:{sub}",
                          "--qos", str(qos), "--messages", str(messages), "--window", "20",
                          "--timeout", "120"],
                         capture_output=True, text=True, timeout=180).stdout.strip()
    print("   ", out, flush=True)
    parts = out.split()
    if "msg/s" not in parts:
        return None
    # (rate, messages the subscriber did not get: Mosquitto drops QoS 1
    # messages past max_queued_messages, 1,000 by default)
    return float(parts[parts.index("msg/s") + 1]), messages - int(parts[parts.index("received") + 1])


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    for path in (BOTED, LOAD):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: cargo build --release -p bote-node --bin boted --example mqtt_load")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        for run in range(args.runs):
            for qos in (0, 1):
                print(f"run {run + 1}, QoS {qos}", flush=True)
                port = free_port()
                m = subprocess.Popen([mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                wait_port(port)
                print("  mosquitto", flush=True)
                results.setdefault(("mosquitto", qos), []).append(load(port, port, qos, args.messages))
                stop([m])
                port = free_port()
                one = boted(d, "R", port)
                print("  bote, 1 router", flush=True)
                results.setdefault(("bote 1 router", qos), []).append(
                    load(port, port, qos, args.messages))
                stop([one])
                pa, pb, pc = free_port(), free_port(), free_port()
                ia, ib = free_port(), free_port()
                a = boted(d, "A", pa, inter=ia)
                b = boted(d, "B", pb, inter=ib, connect=ia)
                c = boted(d, "C", pc, connect=ib)
                time.sleep(1.0)  # the chain converges (milliseconds; generous)
                print("  bote, chain A-B-C (publisher on A, subscriber on C)", flush=True)
                results.setdefault(("bote chain A-B-C", qos), []).append(
                    load(pa, pc, qos, args.messages))
                stop([a, b, c])
    print()
    print("| setup | QoS | msg/s (median of runs) | runs | not received | × mosquitto |")
    print("|---|---|---|---|---|---|")
    for qos in (0, 1):
        base = [x[0] for x in results[("mosquitto", qos)] if x]
        base_m = statistics.median(base) if base else None
        for setup in ("mosquitto", "bote 1 router", "bote chain A-B-C"):
            vals = results[(setup, qos)]
            ok = [x[0] for x in vals if x]
            med = statistics.median(ok) if ok else None
            ratio = f"{med / base_m:.2f}" if med and base_m else "-"
            shown = ", ".join(f"{x[0] / 1000:.0f}k" if x else "fail" for x in vals)
            lost = ", ".join(str(x[1]) if x else "-" for x in vals)
            rate = f"{med / 1000:.0f}k" if med else "-"
            print(f"| {setup} | {qos} | {rate} | {shown} | {lost} | {ratio} |")


if __name__ == "__main__":
    main()
