#!/usr/bin/env python3
"""Measures boted's resident memory across bursts of connections (issue 16):
starts a router, then BURSTS times opens CONNS connections at once (each
does the protocol header, open, begin and attaches a receiver, as a client
would), holds them, closes them all, waits SETTLE seconds and reads the
router's RSS (/proc/PID/status VmRSS). Prints one line per burst.

    scripts/measure_bursts.py [--boted PATH] [--bursts 8] [--conns 2000]
                              [--env NAME=VALUE ...]
"""

import argparse
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))
from conftest import Router  # noqa: E402

AMQP = b"AMQP\x00\x01\x00\x00"


def frame(body):
    return struct.pack(">IBBH", 8 + len(body), 2, 0, 0) + body


def list8(*fields):
    body = b"".join(fields)
    return b"\xc0" + bytes([len(body) + 1, len(fields)]) + body


def str8(text):
    return b"\xa1" + bytes([len(text)]) + text.encode()


OPEN = frame(b"\x00\x53\x10" + list8(str8("burst")))
BEGIN = frame(b"\x00\x53\x11" + list8(b"\x40", b"\x43", b"\x70\x00\x00\x03\xe8", b"\x70\x00\x00\x03\xe8"))


def attach(i):
    source = b"\x00\x53\x28" + list8(str8(f"burst.{i % 100}"))
    return frame(b"\x00\x53\x12" + list8(str8(f"r{i}"), b"\x43", b"\x41", b"\x40", b"\x40", source))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bursts", type=int, default=8)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--no-attach", action="store_true", help="only header, open and begin")
    args = ap.parse_args()
    for kv in args.env:
        k, v = kv.split("=", 1)
        os.environ[k] = v
    r = Router("Router.Burst", extra_listener="idle-timeout-secs = 0\n")
    try:
        print(f"boted {os.environ.get('BOTED')} env {args.env}: RSS at start {rss_kib(r.proc.pid) / 1024:.1f} MiB")
        for b in range(args.bursts):
            socks = []
            t0 = time.time()
            for i in range(args.conns):
                s = socket.create_connection((r.host, r.port), timeout=30)
                s.sendall(AMQP + OPEN + BEGIN + (b"" if args.no_attach else attach(i)))
                socks.append(s)
            for s in socks:  # every connection answered: header, open, begin, attach
                s.settimeout(30)
                got = b""
                while got.count(b"\x00\x53") < (2 if args.no_attach else 3):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            held = rss_kib(r.proc.pid)
            for s in socks:
                s.close()
            time.sleep(args.settle)
            print(f"burst {b + 1}: {args.conns} connections in {time.time() - t0:.1f} s, "
                  f"RSS held {held / 1024:.1f} MiB, after close {rss_kib(r.proc.pid) / 1024:.1f} MiB",
                  flush=True)
    finally:
        r.stop()


if __name__ == "__main__":
    main()
