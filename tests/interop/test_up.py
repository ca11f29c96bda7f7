"""`botectl up`, `status` and `down` on this machine: the 3-router example
comes up, Python Proton sends on router A and receives on router C, status
lists all three, down leaves no process (by PID); every bad topology file
gets its documented error (file and line) and leaves nothing running; a
generated ring comes up and goes down."""

import json
import os
import socket
import subprocess

import pytest

from clients import Receiver, Sender
from conftest import ROOT, boted_path


def botectl(*args, timeout=90):
    path = os.environ.get("BOTECTL") or os.path.join(ROOT, "target", "debug", "botectl")
    if not os.path.exists(path):
        raise RuntimeError(f"botectl binary not found at {path}; build it or set BOTECTL")
    env = dict(os.environ, BOTED=boted_path())
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout, env=env)


def alive(pid):
    """A live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def boted_pids_under(run_dir):
    """PIDs of live boted processes whose command line names `run_dir`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"boted") and any(str(run_dir).encode() in a for a in argv):
            if alive(int(entry)):
                pids.append(int(entry))
    return pids


def table_rows(text):
    lines = text.splitlines()
    sep = next(i for i, l in enumerate(lines) if l.strip().startswith("==="))
    rows = []
    for line in lines[sep + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_up_line_of_three_send_on_a_receive_on_c_status_down(tmp_path):
    run_dir = tmp_path / "run"
    up = botectl("up", os.path.join(ROOT, "examples", "line3.toml"), "--run-dir", str(run_dir), "-q")
    try:
        assert up.returncode == 0, up.stderr
        assert "mesh of 3 routers ready" in up.stdout
        mesh = json.loads((run_dir / "mesh.json").read_text())
        pids = {r["id"]: r["pid"] for r in mesh["routers"]}
        assert sorted(pids) == ["A", "B", "C"]
        assert all(alive(p) for p in pids.values())
        rows = {r[0]: r for r in table_rows(up.stdout)}
        assert sorted(rows) == ["A", "B", "C"]
        url_a, url_c = rows["A"][2], rows["C"][2]
        assert url_a.startswith("amqp://127.0.0.1:") and rows["A"][3].startswith("http://127.0.0.1:")

        rx = Receiver(url_c, "queue.up", expect=100).start()
        assert rx.attached.wait(10)
        tx = Sender(url_a, "queue.up", 100, timeout=30).start()
        tx.join()
        rx.join()
        assert tx.error is None and rx.error is None, (tx.error, rx.error)
        assert tx.counts() == {"accepted": 100}
        assert sorted(m.id for m in rx.messages) == list(range(100))

        status = botectl("status", str(run_dir))
        assert status.returncode == 0, status.stderr
        assert "3 running" in status.stdout
        srows = {r[0]: r for r in table_rows(status.stdout)}
        assert sorted(srows) == ["A", "B", "C"]
        assert all(srows[i][1] == str(pids[i]) and srows[i][4] == "3/3" for i in pids)
    finally:
        down = botectl("down", str(run_dir))
    assert down.returncode == 0, down.stderr
    for i, pid in pids.items():
        assert f"{i} (pid {pid}): stopped on SIGTERM" in down.stdout
        assert not alive(pid), f"router {i} (pid {pid}) still running"
    assert boted_pids_under(run_dir) == []
    status = botectl("status", str(run_dir))
    assert "0 running" in status.stdout and "(stopped)" in status.stdout


def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


BAD = {
    "duplicate": (
        '[[router]]\nid = "A"\n\n[[router]]\nid = "B"\n\n[[router]]\nid = "A"\n',
        ':8: duplicate router id "A" (first at line 2)',
    ),
    "unknown": (
        'router = [{ id = "A" }, { id = "B" }]\nlink = [\n  { a = "A", b = "B" },\n  { a = "B", b = "Q" },\n]\n',
        ':4: link to unknown router "Q"',
    ),
    "disconnected": (
        'router = [{ id = "A" }, { id = "B" }, { id = "C" }, { id = "D" }]\n'
        'link = [{ a = "A", b = "B" }, { a = "C", b = "D" }]\n',
        ':1: disconnected topology: router "C" has no path of links to router "A"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD) + ["port-in-use"])
def test_a_bad_topology_file_names_file_and_line_and_leaves_nothing_running(tmp_path, case):
    held = None
    if case == "port-in-use":
        held = busy_port()
        port = held.getsockname()[1]
        text = f'router = [{{ id = "A" }},\n  {{ id = "B", port = {port} }}]\nlink = [{{ a = "A", b = "B" }}]\n'
        want = f':2: router "B": client port {port} is in use on 127.0.0.1'
    else:
        text, want = BAD[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    run_dir = tmp_path / "run"
    try:
        r = botectl("up", str(path), "--run-dir", str(run_dir), "-q")
    finally:
        if held:
            held.close()
    assert r.returncode == 1
    assert r.stderr.startswith(f"botectl up: {path}{want}"), r.stderr
    assert boted_pids_under(run_dir) == []
    assert not (run_dir / "mesh.json").exists()


def test_a_router_that_fails_to_start_stops_the_others(tmp_path):
    # B's extra configuration is invalid: boted exits, and up stops A and C.
    path = tmp_path / "bad-extra.toml"
    path.write_text(
        'router = [{ id = "A" }, { id = "B", extra = "[[bogus]]" }, { id = "C" }]\n'
        'link = [{ a = "A", b = "B" }, { a = "B", b = "C" }]\n'
    )
    run_dir = tmp_path / "run"
    r = botectl("up", str(path), "--run-dir", str(run_dir), "-q")
    assert r.returncode == 1
    assert "router B (pid" in r.stderr and "exited before the mesh was ready" in r.stderr, r.stderr
    mesh = json.loads((run_dir / "mesh.json").read_text())
    assert len(mesh["routers"]) == 3
    assert not any(alive(r["pid"]) for r in mesh["routers"])
    assert boted_pids_under(run_dir) == []


def test_generate_ring_of_six_up_and_down(tmp_path):
    run_dir = tmp_path / "ring"
    r = botectl("up", "--generate", "ring", "6", "--run-dir", str(run_dir), "-q")
    try:
        assert r.returncode == 0, r.stderr
        assert "mesh of 6 routers ready" in r.stdout
        assert (run_dir / "topology.toml").read_text().count("{ a =") == 6
        assert len(boted_pids_under(run_dir)) == 6
    finally:
        botectl("down", str(run_dir))
    assert boted_pids_under(run_dir) == []
