"""Fixtures for interop tests: real `boted` processes on ephemeral loopback
ports, driven by real AMQP clients (Qpid Proton for Python).

`Router` is the one way the Python side starts a router: a config in a fresh
temporary directory, `boted --config <it> --state-file <dir>/state.json`, and
what the router reports (its ports, routes, remote consumers) read from the
state file (`Router.state()`), never from its log, which is kept whole for
assertions on logged events and for failure messages.

`BOTED` names the router binary (scripts/test builds it and sets it)."""

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def boted_path():
    path = os.environ.get("BOTED") or os.path.join(ROOT, "target", "debug", "boted")
    if not os.path.exists(path):
        raise RuntimeError(f"boted binary not found at {path}; build it or set BOTED")
    return path


def botectl_path():
    path = os.environ.get("BOTECTL") or os.path.join(ROOT, "target", "debug", "botectl")
    if not os.path.exists(path):
        raise RuntimeError(f"botectl binary not found at {path}; build it or set BOTECTL")
    return path


def make_certs(client="client"):
    """A fresh test CA with a server certificate (localhost, 127.0.0.1) and
    a client certificate, made by `botectl certs`; returns the directory
    holding ca.pem, server.pem, server-key.pem, client.pem, client-key.pem."""
    out = tempfile.mkdtemp(prefix="bote-certs-")
    subprocess.run([botectl_path(), "certs", out, "--client", client], check=True,
                   capture_output=True)
    return out


def inter_router_tls(certs):
    """(inter_router_extra, connector_extra) for Router: inter-router links
    over mutual TLS, both ends verifying the other against the test CA."""
    listener = (f'tls-cert-file = "{certs}/server.pem"\ntls-key-file = "{certs}/server-key.pem"\n'
                f'tls-ca-file = "{certs}/ca.pem"\nrequire-client-cert = true\n')
    connector = (f'tls-ca-file = "{certs}/ca.pem"\ntls-cert-file = "{certs}/client.pem"\n'
                 f'tls-key-file = "{certs}/client-key.pem"\n')
    return listener, connector


# The address table of every test router, shared with the Rust fe2o3 suites.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "addresses.toml")) as _f:
    DEFAULT_ADDRESSES = _f.read()


class Router:
    """A boted process. `url` is its AMQP listener on 127.0.0.1."""

    def __init__(self, name, extra_listener="", addresses=DEFAULT_ADDRESSES, router_extra="",
                 inter_router=False, connectors=(), nofile=None, inter_router_extra="",
                 connector_extra="", edge_listener=False, edge_connectors=(), mqtt=""):
        """`nofile` lowers the router's file descriptor limit
        (RLIMIT_NOFILE) to that many. `inter_router_extra` and
        `connector_extra` are lines added to the inter-router (and edge)
        listener and to every connector (TLS keys, for instance). `edge_listener` adds a
        listener with role "edge" (for edge routers' uplinks);
        `edge_connectors` are (name, port) of interiors' edge listeners, and
        make the router an edge router (mode "edge")."""
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"bote-{name}-")
        # Removed when the test run ends (a test may read the state file
        # after stopping the router).
        atexit.register(shutil.rmtree, self.dir, True)
        self.config = os.path.join(self.dir, "bote.toml")
        self.state_file = os.path.join(self.dir, "state.json")
        with open(self.config, "w") as f:
            f.write(
                f'[router]\nid = "{name}"\nworkers = 2\nlog-level = "info"\n'
                f'http = "127.0.0.1:0"\n{router_extra}\n'
                + ('mode = "edge"\n' if edge_connectors else '') +
                f'\n'
                f'[[listener]]\nhost = "127.0.0.1"\nport = 0\n{extra_listener}\n'
                f"{addresses}\n"
            )
            if mqtt is not None and mqtt is not False and mqtt != "":
                # An MQTT listener; `mqtt` is extra keys for it (or True).
                keys = "" if mqtt is True else mqtt
                f.write(f'[[listener]]\nhost = "127.0.0.1"\nport = 0\nprotocol = "mqtt"\n{keys}\n')
            if inter_router:
                f.write('[[listener]]\nhost = "127.0.0.1"\nport = 0\nrole = "inter-router"\n'
                        f"{inter_router_extra}\n")
            for (cname, cport, cost) in connectors:
                f.write(f'[[connector]]\nname = "{cname}"\nhost = "127.0.0.1"\nport = {cport}\n'
                        f'role = "inter-router"\ncost = {cost}\n{connector_extra}\n')
            if edge_listener:
                f.write('[[listener]]\nhost = "127.0.0.1"\nport = 0\nrole = "edge"\n'
                        f'{inter_router_extra}\n')
            for (cname, cport) in edge_connectors:
                f.write(f'[[connector]]\nname = "{cname}"\nhost = "127.0.0.1"\nport = {cport}\n'
                        f'role = "edge"\n{connector_extra}\n')
        self.log_lines = []

        def limit_fds():
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [boted_path(), "--config", self.config, "--state-file", self.state_file],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit_fds if nofile else None,
        )

        def pump():
            for line in self.proc.stderr:
                self.log_lines.append(line)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        # The state file appears once every listener is bound.
        deadline = time.time() + 30
        state = self.state()
        while not state and self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
            state = self.state()
        if not state:
            self.proc.kill()
            self._pump.join(5)
            raise RuntimeError(f"router {name} did not start:\n" + "".join(self.log_lines))
        ports = {l["role"]: l["port"] for l in reversed(state["listeners"])}
        self.port = ports["normal"]
        self.inter_router_port = ports.get("inter-router")
        self.edge_port = ports.get("edge")
        self.mqtt_port = next((l["port"] for l in state["listeners"]
                               if l.get("protocol") == "mqtt"), None)
        self.url = f"amqp://127.0.0.1:{self.port}"
        http = state.get("http")
        self.http_url = f"http://127.0.0.1:{http['port']}" if http else None
        self.host = "127.0.0.1"

    def state(self):
        """What the router last reported in its state file: `router`,
        `listeners`, `routes` (destination -> next_hop, cost) and `addresses`
        (address -> the other routers with consumers); {} while there is
        none."""
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

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
    """Polls `pred` until it holds or `timeout` seconds pass. `what` names
    the condition in the error; a callable is called then, so the error
    can say what was seen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    if callable(what):
        what = what()
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# Proton's Python binding can abort the interpreter (SIGABRT, exit 134) when
# it shuts down while a daemon client thread still runs a container (a
# client left blocked by a test that failed or timed out, or a proxy pump):
# the results are reported by then, so the run ends with pytest's own exit
# status instead of the interpreter's finalisation.
_exit_status = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config):
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if _exit_status is not None and others:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
