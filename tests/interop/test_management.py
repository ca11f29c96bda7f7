"""AMQP management against a 3-router chain A - B - C, with the requests
qdstat and qdmanage 1.19.0 send (see management.py): every entity type
with qdrouterd's attribute names, the counters of known traffic on the
ingress, transit and egress routers, `_topo/0/<id>/$management` of a
remote router through the mesh, run-time CREATE and DELETE (a connector
that joins the mesh and leaves it, a listener, an address), and clear
errors for what is unknown."""

import socket

import pytest
from proton import Delivery, Message
from proton.reactor import AtMostOnce
from proton.utils import BlockingConnection, SendException

from clients import Receiver, Sender
from conftest import Router, wait_until
from management import Management, ManagementError

# qdrouterd 1.19.0's attribute names, in its agent's order
# (src/router_core/agent_*.c); name, identity and type first.
ATTRIBUTES = {
    "router": ["name", "identity", "type", "id", "mode", "area", "version", "metadata",
               "addrCount", "linkCount", "nodeCount", "linkRouteCount", "autoLinkCount",
               "connectionCount", "presettledDeliveries", "droppedPresettledDeliveries",
               "acceptedDeliveries", "rejectedDeliveries", "releasedDeliveries",
               "modifiedDeliveries", "deliveriesDelayed1Sec", "deliveriesDelayed10Sec",
               "deliveriesStuck", "deliveriesIngress", "deliveriesEgress", "deliveriesTransit",
               "deliveriesIngressRouteContainer", "deliveriesEgressRouteContainer",
               "deliveriesRedirectedToFallback", "linksBlocked", "uptimeSeconds", "memoryUsage",
               "workerThreads"],
    "connection": ["name", "identity", "host", "role", "protocol", "dir", "container", "sasl",
                   "isAuthenticated", "user", "isEncrypted", "sslProto", "sslCipher",
                   "properties", "sslSsf", "tenant", "type", "ssl", "opened", "active",
                   "adminStatus", "operStatus", "uptimeSeconds", "lastDlvSeconds",
                   "enableProtocolTrace"],
    "router.link": ["name", "identity", "type", "linkName", "linkType", "linkDir", "owningAddr",
                    "capacity", "peer", "undeliveredCount", "unsettledCount", "deliveryCount",
                    "connectionId", "adminStatus", "operStatus", "presettledCount",
                    "droppedPresettledCount", "acceptedCount", "rejectedCount",
                    "releasedCount", "modifiedCount", "deliveriesDelayed1Sec",
                    "deliveriesDelayed10Sec", "deliveriesStuck", "ingressHistogram",
                    "priority", "settleRate", "creditAvailable", "zeroCreditSeconds"],
    "router.address": ["name", "identity", "type", "key", "distribution", "inProcess",
                       "subscriberCount", "remoteCount", "containerCount", "remoteHostRouters",
                       "deliveriesIngress", "deliveriesEgress", "deliveriesTransit",
                       "deliveriesToContainer", "deliveriesFromContainer",
                       "deliveriesEgressRouteContainer", "deliveriesIngressRouteContainer",
                       "transitOutstanding", "trackedDeliveries", "priority",
                       "deliveriesRedirectedToFallback"],
    "router.config.address": ["name", "identity", "type", "prefix", "distribution", "waypoint",
                              "ingressPhase", "egressPhase", "pattern", "priority", "fallback"],
    "router.config.linkRoute": ["name", "identity", "type", "prefix", "pattern",
                                "addExternalPrefix", "delExternalPrefix", "containerId",
                                "connection", "distribution", "direction", "operStatus"],
    "router.config.autoLink": ["name", "identity", "type", "address", "direction", "phase",
                               "containerId", "connection", "externalAddress", "fallback",
                               "linkRef", "operStatus", "lastError"],
}


def start_chain():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", inter_router=True, connectors=[("to-b", b.inter_router_port, 1)])
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    return routers


@pytest.fixture(scope="module")
def chain():
    routers = start_chain()
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


@pytest.fixture
def observed_chain():
    """A fresh chain A - B - C and an observer D linked to each of them at
    cost 10: D's management requests reach each router directly, so they
    cross none of the chain's client links and none is transit."""
    a, b, c = start_chain()
    d = Router("Router.D", connectors=[("to-a", a.inter_router_port, 10),
                                       ("to-b", b.inter_router_port, 10),
                                       ("to-c", c.inter_router_port, 10)])
    routers = [a, b, c, d]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 3 for r in routers), 20,
               "the observer to join")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def by(rows, key, value):
    found = [r for r in rows if r[key] == value]
    assert len(found) == 1, (key, value, rows)
    return found[0]


def test_every_entity_type_answers_a_qdstat_query_with_qdrouterd_attribute_names(chain):
    a, b, c = chain
    with Management(b.url) as m:
        for short, names in ATTRIBUTES.items():
            body = m.query_page(short)
            assert body["attributeNames"] == names, short
            for row in body["results"]:
                assert len(row) == len(names)
        router = m.query("router")
        assert len(router) == 1 and router[0]["id"] == "Router.B"
        assert router[0]["mode"] == "interior" and router[0]["nodeCount"] == 2
        # This client's own connection and its two links (the sender to
        # $management, the dynamic receiver of the replies).
        conns = m.query("connection")
        assert len(conns) == 1 and conns[0]["dir"] == "in" and conns[0]["protocol"] == "amqp"
        links = m.query("router.link", ["linkDir", "owningAddr", "connectionId", "capacity"])
        assert sorted(l["linkDir"] for l in links) == ["in", "out"]
        assert by(links, "linkDir", "in")["owningAddr"] == "M0$management"
        assert by(links, "linkDir", "out")["owningAddr"].startswith("Ltemp.")
        assert all(str(l["connectionId"]) == conns[0]["identity"] for l in links)
        nodes = m.query("router.node", ["id", "nextHop", "cost", "linkState", "validOrigins"])
        assert {n["id"]: (n["nextHop"], n["cost"]) for n in nodes} == {
            "Router.A": ("Router.A", 1), "Router.B": ("(self)", 0), "Router.C": ("Router.C", 1)}
        assert sorted(by(nodes, "id", "Router.B")["linkState"]) == ["Router.A", "Router.C"]
        # B lies on A's tree toward C and on C's toward A.
        assert by(nodes, "id", "Router.C")["validOrigins"] == ["Router.A"]
        addresses = m.query("router.address", ["key", "inProcess", "subscriberCount"])
        keys = {x["key"] for x in addresses}
        assert {"RRouter.A", "RRouter.C", "M0$management", "L$management"} <= keys
        assert by(addresses, "key", "L$management")["inProcess"] == 1
        listeners = m.query("listener", ["role", "port"])
        assert sorted(l["role"] for l in listeners) == ["inter-router", "normal"]
        assert str(b.port) in [l["port"] for l in listeners]
        connectors = m.query("connector", ["name", "port", "role", "cost"])
        assert connectors == [{"name": "to-a", "port": str(a.inter_router_port),
                               "role": "inter-router", "cost": 1}]
        assert m.query("allocator") == []


def test_counters_of_known_traffic_on_the_ingress_transit_and_egress_routers(observed_chain):
    a, b, c, d = observed_chain
    address = "queue.counted"
    rx = Receiver(c.url, address).start()  # stays attached until the end
    assert rx.attached.wait(10)
    wait_until(lambda: address in a.state().get("addresses", {}), 20, "A to learn of C's consumer")
    conn = BlockingConnection(a.url, timeout=30)
    try:
        unsettled = conn.create_sender(address, name="unsettled")
        for i in range(20):
            unsettled.send(Message(id=i, body=i))  # waits for the outcome
        presettled = conn.create_sender(address, name="presettled", options=AtMostOnce())
        for i in range(5):
            presettled.send(Message(id=20 + i, body=i))
        # Presettled sends do not wait: pump the connection until they arrived.
        conn.wait(lambda: rx.count == 25, timeout=20, msg="the presettled deliveries to arrive")
        assert rx.error is None and rx.count == 25

        # Each router is asked from D, through the mesh.
        # Outcomes are counted on every incoming link, inter-router ones
        # included (as qdrouterd does): the 20 unsettled deliveries are
        # accepted once on each router of the chain. D's request that reads
        # them is accepted too, before or after it is answered: 20 or 21.
        with Management(d.url, router="Router.B") as m:
            router = m.query("router")[0]
            assert (router["deliveriesIngress"], router["deliveriesEgress"],
                    router["deliveriesTransit"]) == (0, 0, 25)
            assert router["acceptedDeliveries"] in (20, 21), router
            assert (router["presettledDeliveries"], router["rejectedDeliveries"],
                    router["releasedDeliveries"], router["modifiedDeliveries"]) == (0, 0, 0, 0)
            addr = by(m.query("router.address"), "key", "M0" + address)
            assert (addr["deliveriesIngress"], addr["deliveriesEgress"],
                    addr["deliveriesTransit"], addr["subscriberCount"],
                    addr["remoteCount"]) == (0, 0, 25, 0, 1)
            assert addr["remoteHostRouters"] == ["Router.C"]
        with Management(d.url, router="Router.A") as m:
            router = m.query("router")[0]
            assert (router["deliveriesIngress"], router["presettledDeliveries"],
                    router["rejectedDeliveries"], router["releasedDeliveries"],
                    router["modifiedDeliveries"], router["droppedPresettledDeliveries"],
                    router["deliveriesEgress"],
                    router["deliveriesTransit"]) == (25, 5, 0, 0, 0, 0, 0, 0)
            assert router["acceptedDeliveries"] in (20, 21), router
            addr = by(m.query("router.address"), "key", "M0" + address)
            assert (addr["deliveriesIngress"], addr["deliveriesEgress"],
                    addr["deliveriesTransit"], addr["distribution"]) == (25, 0, 0, "balanced")
            links = [l for l in m.query("router.link") if l["owningAddr"] == "M0" + address]
            assert sorted(l["linkDir"] for l in links) == ["in", "in"]
            assert sum(l["deliveryCount"] for l in links) == 25
            assert sum(l["presettledCount"] for l in links) == 5
            assert sum(l["acceptedCount"] for l in links) == 20
            assert sum(l["unsettledCount"] for l in links) == 0
            assert all(l["rejectedCount"] == l["releasedCount"] == l["modifiedCount"] == 0
                       for l in links)
        with Management(d.url, router="Router.C") as m:
            router = m.query("router")[0]
            assert (router["deliveriesIngress"], router["deliveriesEgress"],
                    router["deliveriesTransit"]) == (0, 25, 0)
            assert router["acceptedDeliveries"] in (20, 21), router
            addr = by(m.query("router.address"), "key", "M0" + address)
            assert (addr["deliveriesIngress"], addr["deliveriesEgress"],
                    addr["deliveriesTransit"], addr["subscriberCount"]) == (0, 25, 0, 1)
            link = by(m.query("router.link"), "owningAddr", "M0" + address)
            assert (link["linkDir"], link["deliveryCount"], link["presettledCount"],
                    link["acceptedCount"], link["unsettledCount"],
                    link["undeliveredCount"]) == ("out", 25, 5, 20, 0, 0)
            conn_row = by(m.query("connection"), "identity", str(link["connectionId"]))
            assert conn_row["opened"] is True and conn_row["lastDlvSeconds"] is not None
    finally:
        conn.close()
        rx.stop_requested.set()
        rx.join()
    # A presettled delivery no consumer anywhere takes is dropped, and counted.
    tx = Sender(b.url, "nobody.listens", 1, presettled=True, anonymous=True, timeout=10).start()
    with Management(d.url, router="Router.B") as m:
        wait_until(lambda: m.query("router")[0]["droppedPresettledDeliveries"] == 1, 10,
                   "the dropped presettled delivery to be counted")
    tx.stop_requested.set()
    tx.join()


def test_get_mgmt_nodes_lists_every_router_and_topo_addresses_reach_remote_routers(chain):
    a, b, c = chain
    with Management(a.url) as m:
        assert sorted(m.mgmt_nodes()) == [f"amqp:/_topo/0/Router.{r}/$management" for r in "ABC"]
        types = m.node_call("GET-TYPES")
        assert PREFIX_OF("connection") in types and PREFIX_OF("router.node") in types
        ops = m.node_call("GET-OPERATIONS", entityType=PREFIX_OF("connector"))
        assert "CREATE" in ops[PREFIX_OF("connector")]
        attrs = m.node_call("GET-ATTRIBUTES", entityType=PREFIX_OF("router.link"))
        assert attrs[PREFIX_OF("router.link")] == ATTRIBUTES["router.link"]
    for router in "ABC":
        with Management(a.url, router=f"Router.{router}") as m:
            assert m.query("router", ["id"]) == [{"id": f"Router.{router}"}]


def PREFIX_OF(short):
    return "org.apache.qpid.dispatch." + short


def test_a_connector_created_at_run_time_joins_the_mesh_and_leaves_it_when_deleted(chain):
    a, b, c = chain
    d = Router("Router.D", inter_router=True)
    try:
        def node_ids(m):
            return sorted(n["id"] for n in m.query("router.node", ["id"]))

        # Created on C, through the mesh from a client of A.
        with Management(a.url, router="Router.C") as m:
            created = m.create("connector", "to-d", host="127.0.0.1",
                               port=str(d.inter_router_port), role="inter-router", cost="2")
            assert (created["name"], created["port"], created["cost"]) == (
                "to-d", str(d.inter_router_port), 2)
            assert [x["name"] for x in m.query("connector")] == ["to-b", "to-d"]
        with Management(a.url) as m:
            wait_until(lambda: node_ids(m) == ["Router.A", "Router.B", "Router.C", "Router.D"],
                       20, "A to see Router.D")
            node = by(m.query("router.node"), "id", "Router.D")
            assert (node["nextHop"], node["cost"]) == ("Router.B", 4)
        with Management(a.url, router="Router.D") as m:
            assert m.query("router", ["id"]) == [{"id": "Router.D"}]
        with Management(a.url, router="Router.C") as m:
            m.delete("connector", "to-d")
            assert [x["name"] for x in m.query("connector")] == ["to-b"]
        with Management(a.url) as m:
            wait_until(lambda: node_ids(m) == ["Router.A", "Router.B", "Router.C"], 20,
                       "Router.D to leave A's view")
    finally:
        assert d.stop() == 0, d.log()


def test_a_listener_created_at_run_time_takes_connections_until_deleted(chain):
    a, b, c = chain
    with Management(a.url) as m:
        created = m.create("listener", "extra", host="127.0.0.1", port="0")
        port = int(created["port"])
        assert port > 0 and created["role"] == "normal"
        assert m.read("listener", name="extra")["port"] == str(port)
        with Management(f"amqp://127.0.0.1:{port}") as other:
            assert other.query("router", ["id"]) == [{"id": "Router.A"}]
        m.delete("listener", "extra")
        with pytest.raises(ManagementError) as e:
            m.read("listener", name="extra")
        assert e.value.status == 404
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # Listeners served by something other than AMQP connection actors are
    # the file's: created here they would speak the wrong protocol.
    with Management(a.url) as m:
        for role in ("edge", "inter-router"):
            with pytest.raises(ManagementError) as e:
                m.create("listener", "other", host="127.0.0.1", port="0", role=role)
            assert e.value.status == 501, e.value
            assert f"{role} listeners cannot be created at run time" in e.value.description, e.value
        with pytest.raises(ManagementError) as e:
            m.create("listener", "other", host="127.0.0.1", port="0", protocol="mqtt")
        assert e.value.status == 400 and "'protocol'" in e.value.description, e.value


def test_an_address_configured_at_run_time_gives_new_addresses_its_distribution(chain):
    a, b, c = chain
    with Management(a.url) as m:
        created = m.create("router.config.address", "fanout", prefix="fanout",
                           distribution="multicast")
        assert (created["prefix"], created["distribution"]) == ("fanout", "multicast")
        rx = Receiver(a.url, "fanout.news").start()
        assert rx.attached.wait(10)
        wait_until(lambda: any(x["key"] == "M0fanout.news" for x in m.query("router.address")),
                   10, "the address")
        assert by(m.query("router.address"), "key", "M0fanout.news")["distribution"] == "multicast"
        configured = [x["name"] for x in m.query("router.config.address")]
        assert "fanout" in configured
        m.delete("router.config.address", "fanout")
        assert [x["name"] for x in m.query("router.config.address")] == [
            n for n in configured if n != "fanout"]
        rx.stop_requested.set()
        rx.join()


def test_unknown_types_attributes_operations_and_entities_get_a_status_and_a_description(chain):
    a, b, c = chain
    with Management(a.url) as m:
        cases = [
            (lambda: m.query_page("policy"), 404,
             "unknown entity type 'org.apache.qpid.dispatch.policy'"),
            (lambda: m.query_page("connection", ["colour"]), 400,
             "unknown attribute 'colour' for type 'org.apache.qpid.dispatch.connection'"),
            (lambda: m.node_call("FROB"), 501, "management operation 'FROB' is not implemented"),
            (lambda: m.read("connector", name="nope"), 404,
             "no org.apache.qpid.dispatch.connector with name 'nope'"),
            (lambda: m.create("connection", "c"), 400,
             "CREATE is not allowed on type 'org.apache.qpid.dispatch.connection'"),
            (lambda: m.create("listener", "bad", port="http"), 400,
             "port must be a number, not String(\"http\")"),
        ]
        for call, status, description in cases:
            with pytest.raises(ManagementError) as e:
                call()
            assert (e.value.status, e.value.description) == (status, description)
        # Still answering after all that.
        assert m.query("router", ["id"]) == [{"id": "Router.A"}]
    # A request with no reply-to is refused: rejected, not left hanging.
    conn = BlockingConnection(a.url, timeout=10)
    try:
        sender = conn.create_sender("$management")
        request = Message(properties={"operation": "GET-MGMT-NODES", "type": "org.amqp.management",
                                      "name": "self"}, body={})
        with pytest.raises(SendException) as e:
            sender.send(request)
        assert e.value.state == Delivery.REJECTED
    finally:
        conn.close()


def test_query_pages_of_connections_and_links_are_slices_of_the_whole_listing(router):
    """qdstat pages by `offset` and `count`: the router cuts each page from
    the sorted connections (and their links) without listing them all, so
    every page must still be exactly the same slice of the full listing."""
    clients = []
    try:
        for i in range(7):
            conn = BlockingConnection(router.url, timeout=10)
            for j in range(i % 3):
                conn.create_receiver(f"paging.{i}.{j}")
            clients.append(conn)
        with Management(router.url) as m:
            for short, key in [("connection", "identity"), ("router.link", "identity")]:
                attrs = [key, "name"]
                whole = m.query_page(short, attrs, 0, 1000)["results"]
                expected = 8 if short == "connection" else 2 + sum(i % 3 for i in range(7))
                assert len(whole) == expected, (short, whole)
                for size in (1, 3, 5):
                    pages, offset = [], 0
                    while True:
                        rows = m.query_page(short, attrs, offset, size)["results"]
                        assert len(rows) <= size
                        pages += rows
                        if len(rows) < size:
                            break
                        offset += size
                    assert pages == whole, (short, size)
                assert m.query_page(short, attrs, len(whole), 10)["results"] == []
                assert m.query_page(short, attrs, 10_000, 10)["results"] == []
    finally:
        for conn in clients:
            conn.close()
