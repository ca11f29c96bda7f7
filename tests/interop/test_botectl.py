"""`botectl stat`, `manage` and `topology` against a 3-router chain
A - B - C: their output parsed (tables and JSON), `-r` reaching another
router through the mesh, run-time connector CREATE/DELETE, and clear
errors for an unreachable router, an unknown entity type or attribute."""

import json
import os
import re
import subprocess

import pytest

from conftest import ROOT, Router, wait_until


def botectl(*args, check=True):
    path = os.environ.get("BOTECTL") or os.path.join(ROOT, "target", "debug", "botectl")
    if not os.path.exists(path):
        raise RuntimeError(f"botectl binary not found at {path}; build it or set BOTECTL")
    r = subprocess.run([path, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def bus(router):
    return ["-b", f"127.0.0.1:{router.port}"]


def table(text):
    """A botectl table as dicts: the header line names the columns (words
    apart by two or more spaces, each starting its column), rows follow the
    ==== line until a blank line."""
    lines = text.splitlines()
    sep = next(i for i, l in enumerate(lines) if l.strip().startswith("==="))
    header = lines[sep - 1]
    columns = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines[sep + 1:]:
        if not line.strip():
            break
        bounds = [s for s, _ in columns] + [None]
        rows.append({name: line[s:e].strip()
                     for (s, name), e in zip(columns, bounds[1:])})
    return rows


@pytest.fixture(scope="module")
def chain():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", inter_router=True, connectors=[("to-b", b.inter_router_port, 3)])
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def test_stat_general_json_and_table_name_the_router(chain):
    a, b, c = chain
    general = json.loads(botectl("stat", *bus(a), "-g", "--json").stdout)
    assert (general["id"], general["mode"], general["nodeCount"]) == ("Router.A", "interior", 2)
    assert general["connectionCount"] == 1  # botectl's own
    text = botectl("stat", *bus(a), "-r", "Router.C", "-g").stdout
    assert text.startswith("Router Statistics\n")
    general = {r["attr"]: r["value"] for r in table(text)}
    assert (general["Router Id"], general["Mode"], general["Nodes"]) == ("Router.C", "interior", "2")


def test_stat_nodes_links_connections_addresses_parse(chain):
    a, b, c = chain
    nodes = table(botectl("stat", *bus(a), "-n").stdout)
    assert {n["router-id"]: (n["next-hop"], n["cost"]) for n in nodes} == {
        "Router.A": ("(self)", "0"), "Router.B": ("Router.B", "1"), "Router.C": ("Router.B", "4")}
    links = json.loads(botectl("stat", *bus(b), "-l", "--json").stdout)
    assert sorted((l["linkDir"], l["owningAddr"][:5]) for l in links) == [
        ("in", "M0$ma"), ("out", "Ltemp")]
    conns = json.loads(botectl("stat", *bus(b), "-c", "--json").stdout)
    assert len(conns) == 1 and conns[0]["container"].startswith("botectl-")
    addresses = json.loads(botectl("stat", *bus(c), "-a", "--json").stdout)
    assert {"RRouter.A", "RRouter.B", "M0$management", "L$management"} <= {x["key"] for x in addresses}


def test_topology_table_dot_and_json_agree(chain):
    a, b, c = chain
    topo = json.loads(botectl("topology", *bus(a), "--format", "json").stdout)
    assert topo["router"] == "Router.A"
    assert sorted((l["from"], l["to"], l["cost"]) for l in topo["links"]) == [
        ("Router.A", "Router.B", 1), ("Router.B", "Router.C", 3)]
    dot = botectl("topology", *bus(a), "--format", "dot").stdout
    assert '"Router.B" -- "Router.C" [label="3"];' in dot
    text = botectl("topology", *bus(c)).stdout
    assert "Routers (3, seen from Router.C)" in text and "Links (2)" in text


def test_manage_creates_a_connector_that_joins_the_mesh_and_deletes_it(chain):
    a, b, c = chain
    d = Router("Router.D", inter_router=True)
    try:
        created = json.loads(botectl("manage", *bus(a), "-r", "Router.C", "create",
                                     "--type", "connector", "--name", "to-d", "host=127.0.0.1",
                                     f"port={d.inter_router_port}", "role=inter-router",
                                     "cost=2").stdout)
        assert (created["name"], created["cost"]) == ("to-d", 2)

        def ids():
            return sorted(r["id"] for r in json.loads(
                botectl("topology", *bus(a), "--format", "json").stdout)["routers"])
        wait_until(lambda: ids() == ["Router.A", "Router.B", "Router.C", "Router.D"], 20,
                   "D to join")
        names = [x["name"] for x in json.loads(
            botectl("manage", *bus(c), "query", "--type", "connector", "name").stdout)]
        assert names == ["to-b", "to-d"]
        botectl("manage", *bus(c), "update", "--type", "connector", "--name", "to-d", "cost=7")
        wait_until(lambda: {r["id"]: r["cost"] for r in json.loads(
            botectl("topology", *bus(a), "--format", "json").stdout)["routers"]}["Router.D"] == 11,
            20, "the new cost to reach A")
        assert json.loads(botectl("manage", *bus(c), "delete", "--type", "connector",
                                  "--name", "to-d").stdout) == {"deleted": "to-d"}
        wait_until(lambda: ids() == ["Router.A", "Router.B", "Router.C"], 20, "D to leave")
    finally:
        assert d.stop() == 0, d.log()


def test_errors_name_what_failed(chain):
    a, b, c = chain
    r = botectl("stat", *bus(a), "-r", "Router.Z", "-g", "--timeout", "2", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith('botectl stat: router "Router.Z" is unreachable from 127.0.0.1:')
    r = botectl("manage", *bus(a), "query", "--type", "colour", check=False)
    assert (r.returncode, r.stderr) == (
        1, "botectl manage: 404: unknown entity type 'org.apache.qpid.dispatch.colour'\n")
    r = botectl("manage", *bus(a), "query", "--type", "connection", "bogus", check=False)
    assert (r.returncode, r.stderr) == (
        1, "botectl manage: 400: unknown attribute 'bogus' for type "
           "'org.apache.qpid.dispatch.connection'\n")
    r = botectl("stat", "-b", "127.0.0.1:1", "-g", check=False)
    assert r.returncode == 1 and "cannot connect to 127.0.0.1:1" in r.stderr


def test_topology_renders_a_simulated_thousand_router_mesh():
    scenario = os.path.join(ROOT, "sim", "scenarios", "scale1000.toml")
    topo = json.loads(botectl("topology", "--sim", scenario, "--format", "json").stdout)
    assert len(topo["routers"]) == 1000
    assert all(r["cost"] is not None for r in topo["routers"])  # connected
    assert len(topo["links"]) >= 1000
    text = botectl("topology", "--sim", scenario, "--from", "R500").stdout
    assert text.startswith("Routers (1000, seen from R500)")
