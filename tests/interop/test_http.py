"""The HTTP API of each router (`[router] http`): health, readiness and
the read model as JSON, on a 3-router chain A - B - C."""

import json
import re
import socket
import urllib.error
import urllib.request

import pytest

from clients import Receiver, Sender
from conftest import Router, wait_until


def get(router, path):
    """(status, JSON body) of GET path."""
    try:
        with urllib.request.urlopen(router.http_url + path, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


@pytest.fixture(scope="module")
def chain():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 5)])
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def test_health_readiness_and_the_read_model_as_json(chain):
    a, b, c = chain
    for r in chain:
        assert get(r, "/healthz") == (200, {"status": "ok", "router": r.name})
        assert get(r, "/readyz") == (200, {"status": "ready"})
    status, router = get(b, "/api/v1/router")
    assert status == 200
    assert (router["id"], router["mode"], router["nodeCount"]) == ("Router.B", "interior", 2)
    rx = Receiver(c.url, "queue.http").start()
    try:
        assert rx.attached.wait(10)
        wait_until(lambda: any(x["key"] == "M0queue.http" for x in get(c, "/api/v1/addresses")[1]),
                   10, "the address on C")
        conns = get(c, "/api/v1/connections")[1]
        assert len(conns) == 1 and conns[0]["dir"] == "in"
        links = get(c, "/api/v1/links")[1]
        assert [(l["linkDir"], l["owningAddr"]) for l in links] == [("out", "M0queue.http")]
        addr = [x for x in get(c, "/api/v1/addresses")[1] if x["key"] == "M0queue.http"][0]
        assert addr["subscriberCount"] == 1
        wait_until(lambda: any(x["key"] == "M0queue.http" and x["remoteHostRouters"] == ["Router.C"]
                               for x in get(a, "/api/v1/addresses")[1]), 10, "A to learn of it")
    finally:
        rx.stop_requested.set()
        rx.join()
    nodes = get(a, "/api/v1/nodes")[1]
    assert {n["id"]: (n["nextHop"], n["cost"]) for n in nodes} == {
        "Router.A": ("(self)", 0), "Router.B": ("Router.B", 1), "Router.C": ("Router.B", 6)}


def test_topology_lists_every_router_and_each_link_once_with_its_cost(chain):
    a, b, c = chain
    status, topo = get(a, "/api/v1/topology")
    assert status == 200 and topo["router"] == "Router.A"
    assert sorted((l["from"], l["to"], l["cost"]) for l in topo["links"]) == [
        ("Router.A", "Router.B", 1), ("Router.B", "Router.C", 5)]
    assert {r["id"]: (r["next_hop"], r["cost"]) for r in topo["routers"]} == {
        "Router.A": ("(self)", 0), "Router.B": ("Router.B", 1), "Router.C": ("Router.B", 6)}


def test_events_stream_topology_snapshots(chain):
    a, b, c = chain
    with urllib.request.urlopen(a.http_url + "/api/v1/events", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event, data = None, None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                break
    assert event == "snapshot"
    assert data["router"]["id"] == "Router.A"
    assert len(data["topology"]["links"]) == 2


def test_a_router_whose_neighbour_is_down_is_healthy_but_not_ready():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unused = s.getsockname()[1]
    lonely = Router("Router.L", connectors=[("to-nowhere", unused, 1)])
    try:
        assert get(lonely, "/healthz")[0] == 200
        assert get(lonely, "/readyz") == (503, {"status": "0 of 1 configured neighbours are up"})
    finally:
        assert lonely.stop() == 0, lonely.log()


def fetch(router, path):
    """(content type, body text) of GET path."""
    with urllib.request.urlopen(router.http_url + path, timeout=10) as r:
        return r.headers["content-type"], r.read().decode()


def test_the_console_is_served_from_the_binary_and_needs_nothing_else(chain):
    a, b, c = chain
    kind, page = fetch(a, "/")
    assert kind.startswith("text/html") and "<svg id=\"graph\"" in page
    assert fetch(a, "/console.js")[0].startswith("text/javascript")
    assert fetch(a, "/console.css")[0].startswith("text/css")
    # Works offline: nothing but its own two assets and its own API.
    script = fetch(a, "/console.js")[1]
    assert re.findall(r"(?:src|href)=\"([^\"]+)\"", page) == ["/console.css", "/console.js"]
    assert set(re.findall(r"https?://[^\"' ]+", page + script)) == {"http://www.w3.org/2000/svg"}


def test_console_state_names_the_consumers_and_the_traffic_per_neighbour(chain):
    a, b, c = chain
    rx = Receiver(c.url, "queue.http.console").start()
    try:
        assert rx.attached.wait(10)
        wait_until(lambda: any(x["address"] == "queue.http.console" and x["routers"] == ["Router.C"]
                               for x in get(a, "/api/v1/console")[1]["addresses"]), 10,
                   "A to learn of the consumer")
        tx = Sender(a.url, "queue.http.console", 3).start()
        tx.join(30)
        assert [tx.outcomes[i] for i in range(3)] == ["accepted"] * 3
        state = get(a, "/api/v1/console")[1]
        addr = [x for x in state["addresses"] if x["address"] == "queue.http.console"][0]
        assert addr == {"address": "queue.http.console", "local_consumers": 0,
                        "routers": ["Router.C"], "to_neighbour": {"Router.B": 3},
                        "ingress": 3, "egress": 0}
        assert not any(x["address"].startswith(("$", "temp.")) for x in state["addresses"])
        assert state["topology"]["router"] == "Router.A" and len(state["topology"]["links"]) == 2
        on_c = [x for x in get(c, "/api/v1/console")[1]["addresses"]
                if x["address"] == "queue.http.console"][0]
        assert (on_c["local_consumers"], on_c["egress"]) == (1, 3)
        assert get(c, "/api/v1/console")[1]["clients"] == 1
    finally:
        rx.stop_requested.set()
        rx.join()
