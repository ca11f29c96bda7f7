"""Fixtures for interop tests: real `boted` processes on ephemeral loopback
ports, driven by real AMQP clients (Qpid Proton for Python).

`BOTED` names the router binary (scripts/test builds it and sets it)."""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r"listening on (\S+):(\d+) \(amqp")
INTER_ROUTER = re.compile(r"inter-router listening on (\S+):(\d+)")


def boted_path():
    path = os.environ.get("BOTED") or os.path.join(ROOT, "target", "debug", "boted")
    if not os.path.exists(path):
        raise RuntimeError(f"boted binary not found at {path}; build it or set BOTED")
    return path


# The address table of every test router, shared with the Rust fe2o3 suites.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "addresses.toml")) as _f:
    DEFAULT_ADDRESSES = _f.read()


class Router:
    """A boted process. `url` is its AMQP listener on 127.0.0.1."""

    def __init__(self, name, extra_listener="", addresses=DEFAULT_ADDRESSES, router_extra="",
                 inter_router=False, connectors=()):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"bote-{name}-")
        self.config = os.path.join(self.dir, "bote.toml")
        with open(self.config, "w") as f:
            f.write(
                f'[router]\nid = "{name}"\nworkers = 2\nlog-level = "info"\n{router_extra}\n'
                f'[[listener]]\nhost = "127.0.0.1"\nport = 0\n{extra_listener}\n'
                f"{addresses}\n"
            )
            if inter_router:
                f.write('[[listener]]\nhost = "127.0.0.1"\nport = 0\nrole = "inter-router"\n')
            for (cname, cport, cost) in connectors:
                f.write(f'[[connector]]\nname = "{cname}"\nhost = "127.0.0.1"\nport = {cport}\n'
                        f'role = "inter-router"\ncost = {cost}\n')
        self.log_lines = []
        self.proc = subprocess.Popen(
            [boted_path(), "--config", self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        self.inter_router_port = None
        self.route_lines = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log_lines.append(line)
                m = INTER_ROUTER.search(line)
                if m and self.inter_router_port is None:
                    self.inter_router_port = int(m.group(2))
                if "mesh: routes " in line:
                    self.route_lines.append(line)
                m = LISTENING.search(line)
                if m and self.port is None:
                    self.port = int(m.group(2))
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(30) or self.port is None:
            self.proc.kill()
            raise RuntimeError(f"router {name} did not start:\n" + "".join(self.log_lines))
        self.url = f"amqp://127.0.0.1:{self.port}"
        self.host = "127.0.0.1"

    def log(self):
        return "".join(self.log_lines)

    def reload(self, edit):
        """Rewrites the config file as `edit(text)` and sends SIGHUP (boted
        re-reads it). Returns the new text."""
        with open(self.config) as f:
            text = edit(f.read())
        with open(self.config, "w") as f:
            f.write(text)
        self.proc.send_signal(signal.SIGHUP)
        return text

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"router {self.name} did not stop on SIGTERM:\n{self.log()}")
        self._pump.join(5)
        return self.proc.returncode


@pytest.fixture
def router():
    r = Router("Router.T")
    yield r
    code = r.stop()
    assert code == 0, f"boted exited {code}:\n{r.log()}"


def wait_until(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
