"""Brokers for the link-routing tests, each a real separate process.

`CBroker` is the Qpid Proton C example broker (`broker.c` from Debian's
`libqpid-proton11-dev-examples`, which scripts/test installs), compiled by
the tests into target/proton-c-broker/ against Debian's `libqpid-proton11`.
It keeps a queue per address, accepts and settles what it receives and
sends presettled; it ignores drain and has no transaction coordinator.

`DrainPeer` (drain_peer.py) and `TxnPeer` (txn_peer.py) are tiny brokers
written with real Proton (Python) for what the C broker does not do: the
first completes a receiver's drain and writes each flow it sees to its
stdout; the second is a transaction coordinator."""

import os
import queue
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = "/usr/share/proton/examples/c/broker.c"
BUILD_DIR = os.path.join(ROOT, "target", "proton-c-broker")
HERE = os.path.dirname(os.path.abspath(__file__))


def c_broker_path():
    """Compiles the Proton C example broker once (again when its source
    changed) and returns the binary's path."""
    if not os.path.exists(EXAMPLE):
        pytest.fail(f"{EXAMPLE} is missing: apt-get install libqpid-proton11-dev-examples "
                    "libqpid-proton11-dev (scripts/test does)")
    binary = os.path.join(BUILD_DIR, "broker")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(EXAMPLE):
        os.makedirs(BUILD_DIR, exist_ok=True)
        cmd = ["gcc", "-O1", "-o", binary, EXAMPLE, "-I", os.path.dirname(EXAMPLE),
               "-lqpid-proton", "-lpthread"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building the Proton C broker failed: {' '.join(cmd)}\n{done.stderr}")
    return binary


def free_port():
    """A port nobody listens on now (bound and released at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Process:
    """A broker process that prints `listening on PORT` first."""

    def __init__(self, argv, executable=None, what="broker"):
        self.proc = subprocess.Popen(argv, executable=executable, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=BUILD_DIR
                                     if os.path.isdir(BUILD_DIR) else None)
        self.lines = queue.Queue()
        self.output = []

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        self.port = None
        while self.port is None:
            try:
                line = self.lines.get(timeout=10)
            except queue.Empty:
                self.proc.kill()
                raise RuntimeError(f"{what} did not start:\n{''.join(self.output)}")
            if line.startswith("listening on"):
                self.port = int(line.split()[-1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class CBroker(_Process):
    """The Proton C example broker on 127.0.0.1; its container-id is
    `container_id` (the example takes argv[0])."""

    def __init__(self, container_id="broker-1", port=0):
        self.container_id = container_id
        super().__init__([container_id, "127.0.0.1", str(port)], executable=c_broker_path(),
                         what="the Proton C broker")


class DrainPeer(_Process):
    """drain_peer.py: a Proton (Python) broker that completes drains."""

    def __init__(self, container_id="drain-peer", port=0, certs=None):
        """With `certs` (a `botectl certs` directory) it listens with TLS."""
        self.container_id = container_id
        if port == 0:
            port = free_port()
        super().__init__([sys.executable, os.path.join(HERE, "drain_peer.py"), container_id,
                          str(port)] + ([certs] if certs else []), what="the drain peer")

    def flows(self):
        """The `flow address credit drain` lines it printed so far."""
        return [line.split() for line in list(self.output) if line.startswith("flow ")]


class TxnPeer(_Process):
    """txn_peer.py: a Proton (Python) broker with a transaction coordinator."""

    def __init__(self, container_id="txn-peer", port=0):
        self.container_id = container_id
        if port == 0:
            port = free_port()
        super().__init__([sys.executable, os.path.join(HERE, "txn_peer.py"), container_id,
                          str(port)], what="the transactional peer")

    def events(self):
        """The declare/message/discharge lines it printed so far, split."""
        return [line.split() for line in list(self.output)
                if line.split() and line.split()[0] in ("declare", "message", "discharge")]
