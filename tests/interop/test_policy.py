"""Limits and policy against a real boted (issue 16 item 3) with Qpid Proton
clients: connection limits per listener (total, per user, per second),
sessions and links per connection, and a vhost picked by the open
hostname whose user groups limit message size and the addresses they may
use. Each violation gets its AMQP error (`amqp:resource-limit-exceeded`,
`amqp:unauthorized-access`, `amqp:link:message-size-exceeded`) and the
other clients carry on."""

import time

import pytest
from proton import ConnectionException, Endpoint, Message
from proton.utils import BlockingConnection, LinkDetached

from clients import Receiver
from conftest import Router, wait_until
from test_sasl import PASSWORD, add_user


def _expect_refused(url, condition, **kw):
    with pytest.raises(ConnectionException) as e:
        BlockingConnection(url, timeout=10, **kw)
    assert condition in str(e.value), str(e.value)
    return str(e.value)


def _works(conn, address):
    rcv = Receiver(conn_url(conn), address, expect=1).start()
    assert rcv.attached.wait(10)
    conn.create_sender(address).send(Message(body="ok"))
    rcv.join()
    assert rcv.count == 1


def conn_url(conn):
    return conn.url


def test_listener_max_connections_refuses_the_one_too_many_and_no_other():
    r = Router("Router.MaxConn", extra_listener="max-connections = 3\n")
    try:
        held = [BlockingConnection(r.url, timeout=10) for _ in range(3)]
        error = _expect_refused(r.url, "amqp:resource-limit-exceeded")
        assert "at most 3 connections" in error, error
        wait_until(lambda: "connection refused by policy" in r.log(), 5, "the log line")
        # Closing two makes room for a new one and the threaded receiver
        # _works starts (3 in all).
        held[0].close()
        held[1].close()
        time.sleep(0.2)
        extra = BlockingConnection(r.url, timeout=10)
        _works(extra, "queue.maxconn")
        for c in held[2:] + [extra]:
            c.close()
    finally:
        assert r.stop() == 0, r.log()


def test_max_connections_per_user_counts_authenticated_users(tmp_path):
    users = str(tmp_path / "users")
    add_user(users, "alice", PASSWORD)
    add_user(users, "bob", PASSWORD)
    r = Router("Router.PerUser", router_extra=f'users-file = "{users}"\n',
               extra_listener='sasl-mechanisms = ["ANONYMOUS", "PLAIN"]\n'
                              'allow-insecure-plain = true\nmax-connections-per-user = 1\n')
    try:
        def login(user):
            return dict(user=user, password=PASSWORD, allowed_mechs="PLAIN",
                        allow_insecure_mechs=True)
        alice = BlockingConnection(r.url, timeout=10, **login("alice"))
        error = _expect_refused(r.url, "amqp:resource-limit-exceeded", **login("alice"))
        assert 'connections of user "alice"' in error, error
        bob = BlockingConnection(r.url, timeout=10, **login("bob"))
        alice.close()
        bob.close()
    finally:
        assert r.stop() == 0, r.log()


def test_a_connection_rate_over_the_limit_is_refused_then_recovers():
    r = Router("Router.Rate", extra_listener="max-connections-per-second = 2\n")
    try:
        refused, held = 0, []
        for _ in range(6):
            try:
                held.append(BlockingConnection(r.url, timeout=10))
            except ConnectionException as e:
                assert "amqp:resource-limit-exceeded" in str(e) and "per second" in str(e), str(e)
                refused += 1
        assert refused >= 2, f"{refused} of 6 refused"
        time.sleep(1.1)
        held.append(BlockingConnection(r.url, timeout=10))
        for c in held:
            c.close()
    finally:
        assert r.stop() == 0, r.log()


def test_sessions_and_senders_over_the_limit_are_refused_on_that_connection_only():
    r = Router("Router.Links", extra_listener="max-sessions = 1\nmax-senders = 1\n")
    try:
        conn = BlockingConnection(r.url, timeout=10)
        first = conn.create_sender("queue.one")
        with pytest.raises(LinkDetached) as e:
            conn.create_sender("queue.two")
        assert "amqp:resource-limit-exceeded" in str(e.value), str(e.value)
        assert "at most 1 senders" in str(e.value), str(e.value)
        # A second session is ended with the error.
        ssn = conn.conn.session()
        ssn.open()
        conn.wait(lambda: ssn.state & Endpoint.REMOTE_CLOSED, msg="the session's end")
        assert ssn.remote_condition.name == "amqp:resource-limit-exceeded", ssn.remote_condition
        # The connection and its first sender carry on.
        rcv = Receiver(r.url, "queue.one", expect=1).start()
        assert rcv.attached.wait(10)
        first.send(Message(body="still"))
        rcv.join()
        assert rcv.count == 1
        conn.close()
    finally:
        assert r.stop() == 0, r.log()


VHOSTS = """
[[vhost]]
hostname = "shop.example"
allow-unknown-user = true
[vhost.groups."$default"]
targets = ["orders.#"]
sources = ["orders.#", "public.*"]
max-message-size = 1000

[[vhost]]
hostname = "closed.example"
allow-unknown-user = false

[[vhost]]
hostname = "$default"
allow-unknown-user = true
"""


@pytest.fixture
def vhost_router():
    r = Router("Router.Vhost", addresses=__import__("conftest").DEFAULT_ADDRESSES + VHOSTS)
    yield r
    assert r.stop() == 0, r.log()


def test_the_open_hostname_picks_the_vhost_and_its_address_patterns(vhost_router):
    conn = BlockingConnection(vhost_router.url, timeout=10, virtual_host="shop.example")
    conn.create_sender("orders.eu")
    with pytest.raises(LinkDetached) as e:
        conn.create_sender("admin.reset")
    assert "amqp:unauthorized-access" in str(e.value), str(e.value)
    assert "may not send to" in str(e.value) and "admin.reset" in str(e.value), str(e.value)
    with pytest.raises(LinkDetached) as e:
        conn.create_receiver("secret.inbox")
    assert "amqp:unauthorized-access" in str(e.value), str(e.value)
    conn.create_receiver("public.news")
    conn.close()
    # closed.example admits no user outside its groups (it has none).
    error = _expect_refused(vhost_router.url, "amqp:unauthorized-access",
                            virtual_host="closed.example")
    assert 'user "anonymous" is in no group' in error, error


def test_a_group_message_size_limit_detaches_only_the_offending_sender(vhost_router):
    conn = BlockingConnection(vhost_router.url, timeout=10, virtual_host="shop.example")
    # The receiver's hostname (127.0.0.1) falls to $default: no limits.
    rcv = Receiver(vhost_router.url, "orders.size", expect=1).start()
    assert rcv.attached.wait(10)
    big = conn.create_sender("orders.size")
    with pytest.raises(Exception) as e:
        big.send(Message(body="x" * 5000))
    assert "amqp:link:message-size-exceeded" in str(e.value), str(e.value)
    small = conn.create_sender("orders.size", name="small")
    small.send(Message(body="fits"))
    rcv.join()
    assert rcv.count == 1 and rcv.messages[0].body == "fits"
    conn.close()
