"""Edge routers (issue 17, item 4) with real boted processes and Qpid
Proton clients: edge routers attached to interior routers of a mesh by
their uplinks (role "edge"), clients on the edges and on the interiors.
An edge takes no part in link state; its interior proxies its addresses
into the mesh; traffic between clients of one edge stays on the edge; an
edge's uplink fails over to its alternate; an edge's management is
reached through the mesh at `_edge/<id>/$management`."""

import os
import signal
import subprocess

import pytest

from clients import AtLeastOnceSender, Receiver, Sender
from conftest import ROOT, Router, wait_until
from management import Management
from test_mesh import routes


def edge_rows(interior):
    with Management(interior.url) as m:
        return [c for c in m.query("connection") if c["role"] == "edge"]


def remote(router, address):
    """The routers `router` knows to have consumers for `address`."""
    return routes(router).get("addresses", {}).get(address, [])


def router_entity(router):
    with Management(router.url) as m:
        return m.query("router")[0]


@pytest.fixture
def mesh_with_edges():
    """Interiors I1 - I2 (a mesh), edges E1 and E2 on I1."""
    i1 = Router("Router.I1", inter_router=True, edge_listener=True)
    i2 = Router("Router.I2", edge_listener=True,
                connectors=[("to-i1", i1.inter_router_port, 1)])
    e1 = Router("Router.E1", edge_connectors=[("up", i1.edge_port)])
    e2 = Router("Router.E2", edge_connectors=[("up", i1.edge_port)])
    routers = [i1, i2, e1, e2]
    wait_until(lambda: all(len(routes(r).get("routes", {})) == 1 for r in (i1, i2)), 20,
               "the interiors to converge")
    wait_until(lambda: len(edge_rows(i1)) == 2, 20, "both edges to attach to I1")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def test_edges_are_not_nodes_of_the_mesh(mesh_with_edges):
    i1, i2, e1, _ = mesh_with_edges
    # Link state knows the two interiors only.
    assert set(routes(i1)["routes"]) == {"Router.I2"}
    assert set(routes(i2)["routes"]) == {"Router.I1"}
    assert routes(e1).get("routes", {}) == {}
    with Management(i2.url) as m:
        nodes = {n["id"] for n in m.query("router.node")}
    assert nodes == {"Router.I1", "Router.I2"}
    assert router_entity(e1)["mode"] == "edge"
    assert router_entity(i1)["mode"] == "interior"


def test_a_consumer_on_an_edge_gets_what_the_other_edge_and_another_interior_send(
        mesh_with_edges):
    i1, i2, e1, e2 = mesh_with_edges
    n = 500
    rx = Receiver(e1.url, "edge.q", expect=2 * n)
    rx.start()
    assert rx.attached.wait(10)
    # The interior proxies the edge's consumer: to I1 the edge has it, to
    # the rest of the mesh I1 has it.
    wait_until(lambda: "Router.E1" in remote(i1, "edge.q"), 10, "I1 to learn E1's consumer")
    wait_until(lambda: remote(i2, "edge.q") == ["Router.I1"], 10,
               "I2 to see the address on I1")
    from_edge = Sender(e2.url, "edge.q", n)
    from_mesh = Sender(i2.url, "edge.q", n)
    for s in (from_edge, from_mesh):
        s.start()
    for s in (from_edge, from_mesh):
        s.join(60)
        assert s.counts() == {"accepted": n}, s.counts()
    rx.join(30)
    assert rx.count == 2 * n
    bodies = sorted(m.body for m in rx.messages)
    assert bodies == sorted([f"message-{i}" for i in range(n)] * 2)


def test_traffic_between_clients_of_one_edge_stays_on_the_edge(mesh_with_edges):
    i1, _, e1, e2 = mesh_with_edges
    n = 300
    rx = Receiver(e1.url, "local.q", expect=n)
    rx.start()
    assert rx.attached.wait(10)
    wait_until(lambda: "Router.E1" in remote(i1, "local.q"), 10, "I1 to learn E1's consumer")
    before = router_entity(i1)
    tx = Sender(e1.url, "local.q", n)
    tx.start()
    tx.join(60)
    rx.join(30)
    assert tx.counts() == {"accepted": n}
    assert rx.count == n
    after = router_entity(i1)
    # Nothing of it crossed the uplink: the interior saw no delivery.
    assert after["deliveriesTransit"] == before["deliveriesTransit"]
    with Management(i1.url) as m:
        row = [a for a in m.query("router.address") if a["key"] == "M0local.q"]
    assert [(a["deliveriesIngress"], a["deliveriesTransit"], a["deliveriesEgress"])
            for a in row] in ([], [(0, 0, 0)]), row
    # The same address from the other edge does cross I1 (the counter
    # above is alive).
    rx2 = Receiver(e1.url, "local.q", expect=10)
    rx.close()
    rx2.start()
    assert rx2.attached.wait(10)
    tx2 = Sender(e2.url, "local.q", 10)
    tx2.start()
    tx2.join(30)
    rx2.join(30)
    assert tx2.counts() == {"accepted": 10}
    assert router_entity(i1)["deliveriesTransit"] >= before["deliveriesTransit"] + 10


def test_management_reaches_an_edge_through_the_mesh(mesh_with_edges):
    i1, i2, e1, e2 = mesh_with_edges
    # From the far interior, as `qdstat -g` through the mesh would.
    wait_until(lambda: "Router.I1" in remote(i2, "_edge/Router.E1/$management"), 10,
               "E1's management to be proxied into the mesh")
    with Management(i2.url, edge="Router.E1") as m:
        router = m.query("router")[0]
        assert (router["id"], router["mode"]) == ("Router.E1", "edge")
        uplink = [c for c in m.query("connection") if c["role"] == "edge"]
    assert [(c["container"], c["dir"]) for c in uplink] == [("Router.I1", "out")]
    # The interior lists its edges as connections with role "edge".
    rows = edge_rows(i1)
    assert sorted((c["container"], c["dir"]) for c in rows) == [
        ("Router.E1", "in"), ("Router.E2", "in")]
    # botectl stat -c shows them too.
    botectl = os.environ.get("BOTECTL") or os.path.join(ROOT, "target", "debug", "botectl")
    out = subprocess.run([botectl, "stat", "-b", f"127.0.0.1:{i1.port}", "-c"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    edge_lines = [line for line in out.stdout.splitlines() if " edge " in f" {line} "]
    assert len(edge_lines) == 2, out.stdout
    # botectl stat -d EDGE (qdstat's -d): the edge's own view, from I2.
    out = subprocess.run([botectl, "stat", "-b", f"127.0.0.1:{i2.port}", "-d", "Router.E1",
                          "-g", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '"Router.E1"' in out.stdout and '"edge"' in out.stdout, out.stdout
    # qdrouterd's address keys: the interior shows the edge's management
    # address as H<edge>/..., the edge as its own (L).
    with Management(i1.url) as m:
        keys = {a["key"] for a in m.query("router.address")}
    assert "HRouter.E1/$management" in keys
    with Management(e1.url) as m:
        keys = {a["key"] for a in m.query("router.address")}
    assert "L$management" in keys


def test_an_edge_uplink_fails_over_to_its_alternate_and_nothing_is_lost():
    i1 = Router("Router.I1", inter_router=True, edge_listener=True)
    i2 = Router("Router.I2", edge_listener=True,
                connectors=[("to-i1", i1.inter_router_port, 1)])
    edge = Router("Router.E", edge_connectors=[("up-i1", i1.edge_port),
                                               ("up-i2", i2.edge_port)])
    try:
        wait_until(lambda: len(routes(i2).get("routes", {})) == 1, 20, "the mesh to converge")
        wait_until(lambda: len(edge_rows(i1)) == 1, 20, "the edge to attach to I1")
        n = 5000
        rx = Receiver(i2.url, "fo.q", settle="accept", credit=100)
        rx.start()
        assert rx.attached.wait(10)
        tx = AtLeastOnceSender(edge.url, "fo.q", n, timeout=90)
        tx.start()
        wait_until(lambda: rx.count >= n // 3, 60, "a third of the messages")
        i1.proc.send_signal(signal.SIGKILL)
        i1.proc.wait()
        # The alternate takes over.
        wait_until(lambda: len(edge_rows(i2)) == 1, 20, "the edge to fail over to I2")
        tx.join(90)
        assert tx.finished(), f"{len(tx.settled)} of {n} settled"
        wait_until(lambda: rx.count >= n, 30, "every message at the consumer")
        ids = [m.id for m in rx.messages]
        # Nothing lost: every id reached the consumer and was accepted.
        assert set(ids) == set(range(n))
        assert all(tx.outcomes[i][-1] == "accepted" for i in range(n))
        resent = sum(1 for i in range(n) if len(tx.outcomes[i]) > 1)
        duplicates = len(ids) - n
        # What was in flight on the uplink is re-forwarded up the next one
        # (marked resend, within REROUTE_WAIT) and I2 answers those its
        # consumer had through I1 from its record: none arrives twice.
        # What the sender sent meanwhile came back released and was sent
        # again (never delivered).
        assert duplicates == 0, f"{duplicates} duplicates, {resent} resent"
        assert all(set(tx.outcomes[i][:-1]) <= {"released", "modified"} for i in range(n))
        print(f"failover: {resent} resent by the sender, {duplicates} duplicates")
        rx.close()
        # Traffic resumes both ways: the edge's consumers are proxied by I2 now.
        back = Receiver(edge.url, "fo.back", expect=50)
        back.start()
        assert back.attached.wait(10)
        wait_until(lambda: "Router.E" in remote(i2, "fo.back"), 10, "I2 to proxy the edge")
        s = Sender(i2.url, "fo.back", 50)
        s.start()
        s.join(30)
        back.join(30)
        assert s.counts() == {"accepted": 50} and back.count == 50
    finally:
        for r in (i2, edge):
            assert r.stop() == 0, r.log()
        if i1.proc.poll() is None:
            i1.stop()


def test_edge_configuration_errors_name_file_line_and_key(tmp_path):
    from conftest import boted_path
    cases = {
        'mode = "edge"': ('[[listener]]\nport = 0\nrole = "inter-router"\n', "listener"),
        "": ('[[connector]]\nname = "up"\nhost = "127.0.0.1"\nport = 1\nrole = "edge"\n',
             "connector"),
    }
    for mode, (section, what) in cases.items():
        path = tmp_path / f"bad-{what}.toml"
        path.write_text(f'[router]\nid = "X"\n{mode}\n{section}')
        out = subprocess.run([boted_path(), "--check-config", str(path)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        assert f"{path}:" in out.stderr and "role" in out.stderr, out.stderr


def test_multicast_from_an_edge_reaches_every_subscriber_once(mesh_with_edges):
    i1, i2, e1, e2 = mesh_with_edges
    n = 200
    subscribers = [Receiver(r.url, "multicast.edge", expect=n) for r in (e1, e2, i1, i2)]
    for s in subscribers:
        s.start()
        assert s.attached.wait(10)
    wait_until(lambda: set(remote(i1, "multicast.edge")) >= {"Router.E1", "Router.E2",
                                                            "Router.I2"}, 10,
               "I1 to know every subscriber")
    wait_until(lambda: remote(i2, "multicast.edge") == ["Router.I1"], 10,
               "I2 to know I1's")
    tx = Sender(e1.url, "multicast.edge", n)
    tx.start()
    tx.join(60)
    assert tx.counts() == {"accepted": n}
    for s in subscribers:
        s.join(30)
        # Each exactly once: the copy going up never comes back to E1.
        assert sorted(m.body for m in s.messages) == sorted(f"message-{i}" for i in range(n))


def test_an_edge_uplink_over_mutual_tls_carries_messages_both_ways():
    """The gateway pattern's TLS uplink (node/examples/edge.toml): the
    interior's edge listener and the edge's connector are mutual TLS, and
    Proton clients on either side exchange messages through it."""
    import shutil
    from conftest import inter_router_tls, make_certs
    certs = make_certs()
    listener_tls, connector_tls = inter_router_tls(certs)
    interior = Router("Router.IT", edge_listener=True, inter_router_extra=listener_tls)
    edge = Router("Router.ET", edge_connectors=[("up", interior.edge_port)],
                  connector_extra=connector_tls)
    try:
        wait_until(lambda: len(edge_rows(interior)) == 1, 20, "the edge to attach over TLS")
        assert "(TLS)" in interior.log(), interior.log()[-2000:]
        rx = Receiver(interior.url, "tls.uplink.up", expect=20).start()
        assert rx.attached.wait(10)
        # An edge sends what it cannot deliver itself up its uplink.
        sent = Sender(edge.url, "tls.uplink.up", 20).start()
        sent.join(20)
        rx.join(20)
        assert rx.count == 20 and sent.counts() == {"accepted": 20}, (rx.count, sent.counts())
        down = Receiver(edge.url, "tls.uplink.down", expect=20).start()
        assert down.attached.wait(10)
        wait_until(lambda: "Router.ET" in remote(interior, "tls.uplink.down"), 10,
                   "the interior to learn the edge's consumer")
        up = Sender(interior.url, "tls.uplink.down", 20).start()
        up.join(20)
        down.join(20)
        assert down.count == 20 and up.counts() == {"accepted": 20}, (down.count, up.counts())
    finally:
        for r in (edge, interior):
            assert r.stop() == 0, r.log()
        shutil.rmtree(certs, ignore_errors=True)
