"""Link routing to a real broker (tests/interop/brokers.py): a client's
attach to a link-routed address is passed, link for link, to a broker the
router dialled (a route-container connector), and attach, flow (credit and
drain), transfers, dispositions and detach pass end to end. The broker is
the Qpid Proton C example broker (a separate process); drain is shown with
a tiny Proton (Python) peer, since the C broker ignores drain."""

import subprocess
import time

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container

from brokers import CBroker, DrainPeer
from clients import Receiver, Sender
from conftest import DEFAULT_ADDRESSES, Router, wait_until
from management import Management


def statuses(router, entity, key):
    """name -> (key attribute, operStatus[, lastError]) as qdstat
    --linkroutes / --autolinks read them."""
    with Management(router.url) as m:
        rows = m.query(entity)
    return {r["name"]: (r[key], r["operStatus"], r.get("lastError")) for r in rows}


def link_routes(port, connector="broker", prefix="broker", extra=""):
    return (
        f'[[connector]]\nname = "{connector}"\nhost = "127.0.0.1"\nport = {port}\n'
        f'role = "route-container"\n'
        f'[[link-route]]\nprefix = "{prefix}"\ndirection = "in"\nconnection = "{connector}"\n{extra}'
        f'[[link-route]]\nprefix = "{prefix}"\ndirection = "out"\nconnection = "{connector}"\n{extra}'
    )


def routed_router(name, port, **kw):
    return Router(name, addresses=DEFAULT_ADDRESSES + "\n" + link_routes(port, **kw))


def wait_connected(router, connector="broker", container=None):
    def up():
        rc = router.state().get("route_containers", {})
        return connector in rc and (container is None or rc[connector] == container)

    try:
        wait_until(up, timeout=20, what=f"{router.name} connected to route container {connector}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{router.log()[-4000:]}") from None


def run(client, timeout=30):
    client.start()
    client.join(timeout)
    return client


def stop_all(*things):
    for t in things:
        t.stop()


def test_messages_sent_through_a_link_route_are_stored_by_the_broker_and_received_back():
    broker = CBroker("broker-1")
    router = routed_router("Router.LR", broker.port)
    try:
        wait_connected(router, container="broker-1")
        # No receiver anywhere: message routing would release these; the
        # broker accepts and stores them (its own outcome, end to end).
        sender = run(Sender(router.url, "broker.orders", 10))
        assert sender.error is None and sender.refused is None, sender.refused or sender.error
        assert sender.counts() == {"accepted": 10}
        receiver = run(Receiver(router.url, "broker.orders", expect=10, credit=10))
        assert receiver.refused is None, receiver.refused
        assert [m.body for m in receiver.messages] == [f"message-{i}" for i in range(10)]
        # The terminus the client sees is the broker's answer.
        assert receiver.remote_address == "broker.orders"
    finally:
        stop_all(router, broker)


def test_a_receiver_gets_no_more_than_its_credit_the_rest_stays_in_the_broker():
    broker = CBroker("broker-1")
    router = routed_router("Router.LR", broker.port)
    try:
        wait_connected(router)
        assert run(Sender(router.url, "broker.credit", 10)).counts() == {"accepted": 10}
        # Credit 3, never settles, never adds credit: exactly 3 arrive.
        held = Receiver(router.url, "broker.credit", credit=3, settle=None).start()
        wait_until(lambda: held.count >= 3, what="3 messages")
        time.sleep(0.5)
        assert held.count == 3
        # qdstat -l: both ends of the routed link, each with its 3 deliveries
        # (the sender's pair goes once the broker answered its detach).
        def routed_links():
            with Management(router.url) as m:
                links = m.query("router.link", ["linkDir", "owningAddr", "deliveryCount"])
            return sorted((l["linkDir"], l["deliveryCount"]) for l in links
                          if (l["owningAddr"] or "").endswith("broker.credit"))
        wait_until(lambda: routed_links() == [("in", 3), ("out", 3)], timeout=10,
                   what="the routed receiver's two ends in router.link")
        held.close()
        held.join(10)
        # The other 7 never left the broker (the router buffered none):
        # a client of the broker itself gets them.
        direct = run(Receiver(f"amqp://127.0.0.1:{broker.port}", "broker.credit", expect=7,
                              credit=10, timeout=10))
        assert [m.body for m in direct.messages] == [f"message-{i}" for i in range(3, 10)]
    finally:
        stop_all(router, broker)


class DrainingReceiver(MessagingHandler):
    """Attaches a receiver, asks for `credit` with drain, and records what
    arrived and the credit once the drain completed."""

    def __init__(self, url, address):
        super().__init__(prefetch=0, auto_accept=True)
        self.url, self.address = url, address
        self.bodies = []
        self.drained = False
        self.error = None

    def on_start(self, event):
        self.conn = event.container.connect(self.url, reconnect=False)
        self.receiver = event.container.create_receiver(self.conn, self.address)
        self.timer = event.container.schedule(15, self)

    def on_link_opened(self, event):
        if event.receiver == self.receiver:
            self.receiver.drain(5)

    def on_message(self, event):
        self.bodies.append(event.message.body)

    def on_link_flow(self, event):
        if event.receiver == self.receiver and self.receiver.credit == 0 and not self.drained:
            self.drained = True
            self.timer.cancel()
            self.conn.close()

    def on_link_error(self, event):
        cond = event.link.remote_condition
        self.error = f"{cond.name}: {cond.description}" if cond else "link error"
        self.timer.cancel()
        self.conn.close()

    def on_timer_task(self, event):
        self.error = self.error or "timed out"
        self.conn.close()


def test_drain_reaches_the_broker_and_its_completion_comes_back():
    peer = DrainPeer("drain-peer")
    router = routed_router("Router.LR", peer.port)
    try:
        wait_connected(router, container="drain-peer")
        assert run(Sender(router.url, "broker.d", 2)).counts() == {"accepted": 2}
        client = DrainingReceiver(router.url, "broker.d")
        Container(client).run()
        assert client.error is None, client.error
        assert client.bodies == ["message-0", "message-1"]
        assert client.drained, "the drain completed (credit 0) end to end"
        # The broker saw the client's credit and drain flag.
        assert any(f[1] == "broker.d" and f[3] == "1" for f in peer.flows()), peer.flows()
    finally:
        stop_all(router, peer)


def test_an_attach_with_no_broker_connected_is_refused_not_found():
    # A route-container connector to a port nobody listens on.
    from brokers import free_port

    router = routed_router("Router.LR", free_port())
    try:
        sender = run(Sender(router.url, "broker.none", 1, timeout=10))
        assert sender.refused is not None and sender.refused.startswith("amqp:not-found"), sender.refused
        receiver = run(Receiver(router.url, "broker.none", expect=1, timeout=10))
        assert receiver.refused is not None and receiver.refused.startswith("amqp:not-found")
        # Addresses outside the link route are message-routed as before.
        rx = Receiver(router.url, "queue.plain", expect=1).start()
        wait_until(lambda: rx.attached.is_set())
        assert run(Sender(router.url, "queue.plain", 1)).counts() == {"accepted": 1}
        rx.join(10)
        assert rx.count == 1
    finally:
        router.stop()


def test_broker_restart_detaches_routed_links_with_an_error_and_the_router_reconnects():
    broker = CBroker("broker-1")
    port = broker.port
    router = routed_router("Router.LR", port)
    try:
        wait_connected(router)
        assert statuses(router, "router.config.linkRoute", "prefix") == {
            "linkRoute/0": ("broker", "active", None), "linkRoute/1": ("broker", "active", None)}
        held = Receiver(router.url, "broker.restart", credit=5, timeout=30).start()
        wait_until(lambda: held.attached.is_set(), what="routed receiver attached")
        assert held.refused is None
        broker.stop()
        wait_until(lambda: held.refused is not None, what="routed link detached")
        assert held.refused.startswith("amqp:link:detach-forced"), held.refused
        assert "broker" in held.refused
        wait_until(lambda: "broker" not in router.state().get("route_containers", {}),
                   what="the route container gone from the state")
        assert {s[1] for s in statuses(
            router, "router.config.linkRoute", "prefix").values()} == {"inactive"}
        broker = CBroker("broker-1", port=port)
        wait_connected(router)
        assert run(Sender(router.url, "broker.restart", 3)).counts() == {"accepted": 3}
        again = run(Receiver(router.url, "broker.restart", expect=3, credit=3))
        assert again.count == 3
    finally:
        stop_all(router, broker)


def test_external_prefixes_rewrite_the_address_the_broker_sees():
    broker = CBroker("broker-1")
    router = routed_router(
        "Router.LR", broker.port, prefix="ext",
        extra='del-external-prefix = "ext."\nadd-external-prefix = "queue/"\n')
    try:
        wait_connected(router)
        assert run(Sender(router.url, "ext.orders", 2)).counts() == {"accepted": 2}
        direct = run(Receiver(f"amqp://127.0.0.1:{broker.port}", "queue/orders", expect=2,
                              credit=2, timeout=10))
        assert direct.count == 2
    finally:
        stop_all(router, broker)


def container_routes(prefix="broker", container="broker-1"):
    return "".join(
        f'[[link-route]]\nprefix = "{prefix}"\ndirection = "{d}"\ncontainer-id = "{container}"\n'
        for d in ("in", "out"))


def routed_chain(broker_port):
    """A - B - C, the broker's connection on C; A and C have the link
    routes (by container-id), B only passes the links on."""
    a = Router("Router.A", inter_router=True,
               addresses=DEFAULT_ADDRESSES + "\n" + container_routes())
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)],
               addresses=DEFAULT_ADDRESSES + "\n" + (
                   f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {broker_port}\n'
                   f'role = "route-container"\n') + container_routes())
    wait_connected(c, container="broker-1")
    wait_until(lambda: "Router.C" in a.state().get("routes", {}), what="A routes to C")
    wait_until(lambda: "_linkroute/broker-1" in a.state().get("addresses", {}),
               what="A learns the broker's link route through the mesh")
    return a, b, c


def test_link_routes_in_and_out_cross_a_three_router_mesh_to_the_broker():
    broker = CBroker("broker-1")
    a, b, c = routed_chain(broker.port)
    try:
        sender = run(Sender(a.url, "broker.mesh", 20))
        assert sender.refused is None, sender.refused
        assert sender.counts() == {"accepted": 20}
        # Stored in the broker behind C: a client of C's own link route and
        # one on A both read from the same queue.
        # Credit 5 and never more: exactly 5 arrive.
        first = run(Receiver(a.url, "broker.mesh", expect=5, credit=5, settle=None))
        assert first.refused is None, first.refused
        assert [m.body for m in first.messages] == [f"message-{i}" for i in range(5)]
        rest = run(Receiver(c.url, "broker.mesh", expect=15, credit=15))
        assert [m.body for m in rest.messages] == [f"message-{i}" for i in range(5, 20)]
    finally:
        stop_all(a, b, c, broker)


def test_credit_and_drain_pass_end_to_end_across_the_mesh():
    peer = DrainPeer("broker-1")
    a, b, c = routed_chain(peer.port)
    try:
        assert run(Sender(a.url, "broker.md", 2)).counts() == {"accepted": 2}
        client = DrainingReceiver(a.url, "broker.md")
        Container(client).run()
        assert client.error is None, client.error
        assert client.bodies == ["message-0", "message-1"]
        assert client.drained, "the drain completed (credit 0) end to end"
        assert any(f[1] == "broker.md" and f[2] in ("5", "3") and f[3] == "1"
                   for f in peer.flows()), peer.flows()
    finally:
        stop_all(a, b, c, peer)


def test_across_the_mesh_a_broker_restart_detaches_and_not_found_follows_until_it_is_back():
    broker = CBroker("broker-1")
    port = broker.port
    a, b, c = routed_chain(port)
    try:
        held = Receiver(a.url, "broker.mr", credit=5, timeout=40).start()
        wait_until(lambda: held.attached.is_set(), what="routed receiver attached")
        assert held.refused is None
        broker.stop()
        wait_until(lambda: held.refused is not None, what="routed link detached on A")
        assert held.refused.startswith("amqp:link:detach-forced"), held.refused
        wait_until(lambda: "_linkroute/broker-1" not in a.state().get("addresses", {}),
                   what="A forgets the broker's link route")
        sender = run(Sender(a.url, "broker.mr", 1, timeout=10))
        assert sender.refused is not None and sender.refused.startswith("amqp:not-found")
        broker = CBroker("broker-1", port=port)
        wait_until(lambda: "_linkroute/broker-1" in a.state().get("addresses", {}),
                   what="A learns the broker is back")
        assert run(Sender(a.url, "broker.mr", 3)).counts() == {"accepted": 3}
    finally:
        stop_all(a, b, c, broker)


# ---------------------------------------------------------------- auto-links

def auto_links(queue="orders"):
    """`to.orders` feeds the broker's queue (out); the queue feeds
    `from.orders` (in)."""
    return (
        f'[[auto-link]]\nname = "feed"\naddress = "to.{queue}"\ndirection = "out"\n'
        f'container-id = "broker-1"\nexternal-address = "{queue}"\n'
        f'[[auto-link]]\nname = "drain"\naddress = "from.{queue}"\ndirection = "in"\n'
        f'container-id = "broker-1"\nexternal-address = "{queue}"\n'
    )


def test_auto_links_feed_and_drain_a_broker_queue_across_the_mesh():
    broker = CBroker("broker-1")
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)],
               addresses=DEFAULT_ADDRESSES + "\n" + (
                   f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {broker.port}\n'
                   f'role = "route-container"\n') + auto_links())
    try:
        wait_connected(c, container="broker-1")
        # The feeding auto-link is a consumer of to.orders on C: A learns it.
        wait_until(lambda: "to.orders" in a.state().get("addresses", {}),
                   what="A routes to.orders toward C's auto-link")
        sender = run(Sender(a.url, "to.orders", 10))
        assert sender.counts() == {"accepted": 10}, sender.counts()
        # The messages are in the broker's queue (nobody consumed from.orders
        # yet, so the draining auto-link had no credit to take them).
        receiver = run(Receiver(a.url, "from.orders", expect=10, credit=10))
        assert receiver.refused is None, receiver.refused
        assert sorted(m.body for m in receiver.messages) == sorted(
            f"message-{i}" for i in range(10))
    finally:
        stop_all(a, b, c, broker)


def test_auto_links_attach_again_after_the_broker_restarts():
    broker = CBroker("broker-1")
    port = broker.port
    router = Router("Router.AL", addresses=DEFAULT_ADDRESSES + "\n" + (
        f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {port}\n'
        f'role = "route-container"\n') + auto_links("jobs"))
    try:
        wait_connected(router)
        wait_until(lambda: {s[1] for s in statuses(
            router, "router.config.autoLink", "address").values()} == {"active"},
            what="both auto-links active")
        assert statuses(router, "router.config.autoLink", "address") == {
            "feed": ("to.jobs", "active", None), "drain": ("from.jobs", "active", None)}
        assert run(Sender(router.url, "to.jobs", 2)).counts() == {"accepted": 2}
        broker.stop()  # the example broker keeps nothing: the 2 are gone with it
        wait_until(lambda: "broker" not in router.state().get("route_containers", {}),
                   what="the broker connection gone")
        assert {s[1] for s in statuses(
            router, "router.config.autoLink", "address").values()} == {"inactive"}
        broker = CBroker("broker-1", port=port)
        wait_connected(router)
        wait_until(lambda: {s[1] for s in statuses(
            router, "router.config.autoLink", "address").values()} == {"active"},
            what="both auto-links active again")
        # Re-attached: new messages reach the new broker's queue and come back.
        sender = run(Sender(router.url, "to.jobs", 3))
        assert sender.counts() == {"accepted": 3}
        receiver = run(Receiver(router.url, "from.jobs", expect=3, credit=3))
        assert sorted(m.body for m in receiver.messages) == [f"message-{i}" for i in range(3)]
    finally:
        stop_all(router, broker)


# ---------------------------------------------------------------- transactions

class TransactionalSender(MessagingHandler):
    """Declares a transaction, sends `n` messages in it, commits."""

    def __init__(self, url, address, n):
        super().__init__()
        self.url, self.address, self.n = url, address, n
        self.outcomes = []
        self.committed = False
        self.error = None
        self.txn_id = None

    def on_start(self, event):
        self.conn = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(self.conn, self.address)
        event.container.declare_transaction(self.conn, handler=self)
        self.timer = event.container.schedule(15, self)

    def on_transaction_declared(self, event):
        self.txn_id = event.transaction.id
        for i in range(self.n):
            event.transaction.send(self.sender, Message(body=f"tx-{i}"))
        event.transaction.commit()

    def done(self, error=None):
        self.error = self.error or error
        self.timer.cancel()
        self.conn.close()

    def on_transaction_declare_failed(self, event):
        self.done("declare failed")

    def on_transaction_committed(self, event):
        self.committed = True
        self.done()

    def on_transaction_commit_failed(self, event):
        self.done("commit failed")

    def on_link_error(self, event):
        cond = event.link.remote_condition
        self.done(f"{cond.name}: {cond.description}" if cond else "link error")

    def on_timer_task(self, event):
        self.error = self.error or "timed out"
        self.conn.close()


def coordinator_route(container="broker-1"):
    return (f'[[link-route]]\nprefix = "$coordinator"\ndirection = "in"\n'
            f'container-id = "{container}"\n')


def test_a_transactional_send_through_a_coordinator_link_route_across_the_mesh():
    from brokers import TxnPeer

    peer = TxnPeer("broker-1")
    a = Router("Router.A", inter_router=True,
               addresses=DEFAULT_ADDRESSES + "\n" + container_routes() + coordinator_route())
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)],
               addresses=DEFAULT_ADDRESSES + "\n" + (
                   f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {peer.port}\n'
                   f'role = "route-container"\n') + container_routes() + coordinator_route())
    try:
        wait_connected(c, container="broker-1")
        wait_until(lambda: "_linkroute/broker-1" in a.state().get("addresses", {}),
                   what="A learns the broker's link route")
        client = TransactionalSender(a.url, "broker.tx", 3)
        Container(client).run()
        assert client.error is None, client.error
        assert client.committed
        events = peer.events()
        assert events[0] == ["declare", "txn-1"], events
        # Each message reached the broker inside the transaction (its
        # transactional-state, 52, with the declared id), then the commit.
        assert [e for e in events if e[0] == "message"] == [
            ["message", "broker.tx", f"tx-{i}", "52", "txn-1"] for i in range(3)]
        assert events[-1] == ["discharge", "txn-1", "False"]
    finally:
        stop_all(a, b, c, peer)


def test_a_transaction_without_a_coordinator_route_is_refused_not_found(router):
    client = TransactionalSender(router.url, "queue.tx", 1)
    Container(client).run()
    assert client.error is not None and (
        client.error.startswith("amqp:not-found") or client.error == "declare failed"), client.error


def test_vhost_address_patterns_apply_to_link_routed_attaches_too():
    """Policy (issue 16) sees a link-routed attach before the broker does:
    a user group whose targets do not match the routed address is refused
    with amqp:unauthorized-access and no link reaches the broker; an
    allowed address is routed as usual."""
    import pytest
    from proton.utils import BlockingConnection, LinkDetached
    broker = CBroker("broker-1")
    vhosts = ('\n[[vhost]]\nhostname = "shop.example"\nallow-unknown-user = true\n'
              '[vhost.groups."$default"]\ntargets = ["broker.orders.#"]\n'
              'sources = ["broker.orders.#"]\n'
              '\n[[vhost]]\nhostname = "$default"\nallow-unknown-user = true\n')
    router = Router("Router.LRP", addresses=DEFAULT_ADDRESSES + "\n"
                    + link_routes(broker.port) + vhosts)
    try:
        wait_connected(router)
        conn = BlockingConnection(router.url, timeout=10, virtual_host="shop.example")
        with pytest.raises(LinkDetached) as e:
            conn.create_sender("broker.admin")
        assert "amqp:unauthorized-access" in str(e.value), str(e.value)
        with pytest.raises(LinkDetached) as e:
            conn.create_receiver("broker.admin")
        assert "amqp:unauthorized-access" in str(e.value), str(e.value)
        snd = conn.create_sender("broker.orders.eu")
        snd.send(Message(body="routed"))
        rcv = conn.create_receiver("broker.orders.eu", credit=1)
        assert rcv.receive(timeout=10).body == "routed"
        conn.close()
    finally:
        stop_all(router, broker)


def test_a_route_container_connector_dials_the_broker_over_tls():
    """A route-container connector with tls-ca-file (issue 17 item 1)
    dials the broker with TLS, verifying its certificate: the broker here
    is a Proton (Python) peer listening on amqps; messages reach it and
    come back through the link route, and management shows the broker's
    connection encrypted."""
    import shutil
    from conftest import make_certs
    certs = make_certs()
    peer = DrainPeer("tls-broker", certs=certs)
    extra = (f'tls-ca-file = "{certs}/ca.pem"\ntls-server-name = "localhost"\n')
    connector = (f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {peer.port}\n'
                 f'role = "route-container"\n{extra}')
    routes = ('[[link-route]]\nprefix = "broker"\ndirection = "in"\nconnection = "broker"\n'
              '[[link-route]]\nprefix = "broker"\ndirection = "out"\nconnection = "broker"\n')
    router = Router("Router.LRTLS", addresses=DEFAULT_ADDRESSES + "\n" + connector + routes)
    try:
        wait_connected(router, container="tls-broker")
        sender = run(Sender(router.url, "broker.tls", 5))
        assert sender.counts() == {"accepted": 5}, (sender.refused, sender.error)
        receiver = run(Receiver(router.url, "broker.tls", expect=5, credit=5))
        assert [m.body for m in receiver.messages] == [f"message-{i}" for i in range(5)]
        with Management(router.url) as m:
            rows = m.query("connection", ["role", "isEncrypted", "sslProto"])
        broker = [r for r in rows if r["role"] == "route-container"]
        assert broker and broker[0]["isEncrypted"] is True, rows
        assert broker[0]["sslProto"].startswith("TLSv1."), rows
    finally:
        stop_all(router, peer)
        shutil.rmtree(certs, ignore_errors=True)


def test_a_route_container_connector_logs_in_with_sasl_plain():
    """A route-container connector with sasl-username and a password file
    logs in with SASL PLAIN. The container is another boted here (Proton's
    Python build cannot check PLAIN on a server), whose amqps listener
    offers PLAIN only against a users file written by `botectl user add`;
    Proton clients on both routers exchange messages through the route,
    and the container shows the connection as the user, over TLS."""
    import os
    import shutil
    import tempfile
    from conftest import make_certs
    from test_sasl import PASSWORD, add_user
    certs = make_certs()
    d = tempfile.mkdtemp(prefix="bote-users-")
    users, password_file = os.path.join(d, "users"), os.path.join(d, "password")
    add_user(users, "router-a", PASSWORD)
    with open(password_file, "w") as f:
        f.write(PASSWORD + "\n")
    container = Router(
        "Router.Container", router_extra=f'users-file = "{users}"\n',
        extra_listener=(f'\n[[listener]]\nhost = "127.0.0.1"\nport = 0\n'
                        f'tls-cert-file = "{certs}/server.pem"\n'
                        f'tls-key-file = "{certs}/server-key.pem"\n'
                        f'sasl-mechanisms = ["PLAIN"]\n'))
    routed = None
    try:
        normal = [l["port"] for l in container.state()["listeners"] if l["role"] == "normal"]
        connector = (f'[[connector]]\nname = "broker"\nhost = "127.0.0.1"\nport = {normal[1]}\n'
                     f'role = "route-container"\ntls-ca-file = "{certs}/ca.pem"\n'
                     f'tls-server-name = "localhost"\nsasl-username = "router-a"\n'
                     f'sasl-password-file = "{password_file}"\n')
        routes = ('[[link-route]]\nprefix = "shared"\ndirection = "in"\nconnection = "broker"\n'
                  '[[link-route]]\nprefix = "shared"\ndirection = "out"\nconnection = "broker"\n')
        routed = Router("Router.Dialler", addresses=DEFAULT_ADDRESSES + "\n" + connector + routes)
        wait_connected(routed, container="Router.Container")
        rx = Receiver(container.url, "shared.q", expect=5).start()
        assert rx.attached.wait(10)
        sender = run(Sender(routed.url, "shared.q", 5))
        rx.join(20)
        assert rx.count == 5 and sender.counts() == {"accepted": 5}, (rx.count, sender.counts())
        with Management(container.url) as m:
            rows = m.query("connection", ["sasl", "user", "isEncrypted"])
        assert ("PLAIN", "router-a", True) in [(r["sasl"], r["user"], r["isEncrypted"])
                                               for r in rows], rows
    finally:
        stop_all(*[r for r in (routed, container) if r is not None])
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)
