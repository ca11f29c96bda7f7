#!/usr/bin/env python3
"""Idle MQTT connections, side by side in one run (issue 19): the Mosquitto
broker (Debian `mosquitto`, the baseline) and one Bote router each take
CONNS MQTT 3.1.1 connections (clean session, keep-alive off, one CONNECT
each, CONNACK awaited, then nothing), opened CONCURRENCY at a time by one
asyncio client. Prints, per broker, the time to open them all and its RSS
before and with every connection open, and the RSS per connection.

    cargo build --release -p bote-node --bin boted
    scripts/bench_mqtt_idle.py [--conns 10000] [--concurrency 200] [--runs 2]
"""

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench_mqtt import BOTED, free_port, wait_port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def connect_packet(client_id):
    cid = client_id.encode()
    variable = b"\x00\x04MQTT" + bytes([4, 0x02]) + (0).to_bytes(2, "big")
    payload = len(cid).to_bytes(2, "big") + cid
    body = variable + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def open_all(port, conns, concurrency, prefix):
    """Opens `conns` connections; returns them (reader, writer) and the
    seconds it took."""
    held = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(connect_packet(f"{prefix}-{i}"))
            await writer.drain()
            connack = await asyncio.wait_for(reader.readexactly(4), 30)
            if connack[0] != 0x20 or connack[3] != 0:
                raise RuntimeError(f"connection {i}: CONNACK {connack.hex()}")
            held.append((reader, writer))

    began = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(conns)))
    return held, time.monotonic() - began


def measure(name, pid, port, conns, concurrency):
    before = rss_kib(pid)

    async def run():
        held, took = await open_all(port, conns, concurrency, name)
        await asyncio.sleep(2)  # let the broker settle after the burst
        with_all = rss_kib(pid)
        for _, w in held:
            w.close()
        return took, with_all

    took, with_all = asyncio.run(run())
    per = (with_all - before) / conns
    print(f"{name}: {conns} connections open in {took:.2f} s, RSS {before / 1024:.1f} MiB -> "
          f"{with_all / 1024:.1f} MiB, {per:.2f} KiB per connection", flush=True)
    return per, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.conns + 100:
        sys.exit(f"the open-file limit ({hard}) is below {args.conns} connections")
    d = tempfile.mkdtemp(prefix="bote-mqtt-idle-")
    for run in range(1, args.runs + 1):
        port = free_port()
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n")
        mosq = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: resource.setrlimit(
                                    resource.RLIMIT_NOFILE, (hard, hard)))
        try:
            wait_port(port)
            m = measure(f"run {run} mosquitto", mosq.pid, port, args.conns, args.concurrency)
        finally:
            mosq.kill()
            mosq.wait()
        port = free_port()
        conf = os.path.join(d, "bote.toml")
        with open(conf, "w") as f:
            f.write(f'[router]\nid = "Router.Idle"\nhttp = "off"\n[[listener]]\nhost = "127.0.0.1"\n'
                    f'port = {port}\nprotocol = "mqtt"\n')
        bote = subprocess.Popen([BOTED, "--config", conf], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            b = measure(f"run {run} bote", bote.pid, port, args.conns, args.concurrency)
        finally:
            bote.kill()
            bote.wait()
        print(f"run {run}: Bote / Mosquitto RSS per connection {b[0] / m[0]:.2f}, "
              f"time to open all {b[1] / m[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
