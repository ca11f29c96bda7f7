"""TLS against a real boted (issue 16): amqps listeners with Qpid Proton
clients verifying the router against a test CA, mutual TLS (a client
without a certificate is refused), TLS handshake junk on an amqps port,
certificates reloaded on SIGHUP without dropping an open connection, and a
chain of three routers whose inter-router links are mutual TLS.

Certificates are made at test time by `botectl certs` (a fresh CA each
time, nothing committed)."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from clients import Receiver, Sender
from conftest import Router, botectl_path, inter_router_tls, make_certs, wait_until

ADDRESS = "queue.tls"


def tls_listener(certs, mutual=False):
    """A second, TLS, [[listener]] for Router(extra_listener=...)."""
    text = (f'\n[[listener]]\nname = "amqps"\nhost = "127.0.0.1"\nport = 0\n'
            f'tls-cert-file = "{certs}/server.pem"\ntls-key-file = "{certs}/server-key.pem"\n')
    if mutual:
        text += f'tls-ca-file = "{certs}/ca.pem"\nrequire-client-cert = true\n'
    return text


def amqps_port(router):
    """The TLS listener's port: the second normal listener, in config order."""
    normal = [l["port"] for l in router.state()["listeners"] if l["role"] == "normal"]
    assert len(normal) == 2, router.state()
    return normal[1]


def client_domain(ca, cert=None, key=None):
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(ca)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, ca)
    if cert:
        domain.set_credentials(cert, key, None)
    return domain


def connect(router, domain, timeout=10):
    """A blocking Proton connection to the amqps listener, the server name
    checked as `localhost`."""
    return BlockingConnection(f"amqps://127.0.0.1:{amqps_port(router)}", timeout=timeout,
                              ssl_domain=domain, sni="localhost")


def round_trip(conn, router, address, n):
    """Both ways through the router: the TLS connection `conn` sends n
    messages (each waits for its outcome, which comes end to end) to a
    plain Proton receiver, then receives n from a plain Proton sender.
    Returns the bodies the TLS connection received."""
    plain_rx = Receiver(router.url, address + ".out", expect=n).start()
    assert plain_rx.attached.wait(10)
    tx = conn.create_sender(address + ".out")
    for i in range(n):
        tx.send(Message(body=f"tls-{i}"))
    plain_rx.join(10)
    assert plain_rx.count == n
    assert [m.body for m in plain_rx.messages] == [f"tls-{i}" for i in range(n)]
    tx.close()
    rx = conn.create_receiver(address + ".in", credit=n)
    plain_tx = Sender(router.url, address + ".in",
                      [Message(body=f"tls-{i}") for i in range(n)]).start()
    got = []
    for _ in range(n):
        got.append(rx.receive(timeout=10).body)
        rx.accept()
    # Closing the link (waiting for the router's detach) puts the last
    # accepts on the wire.
    rx.close()
    plain_tx.join(10)
    assert len(plain_tx.outcomes) == n and set(plain_tx.outcomes.values()) == {"accepted"}, \
        plain_tx.outcomes
    return got


def http_connections(router):
    with urllib.request.urlopen(f"{router.http_url}/api/v1/connections", timeout=10) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def certs():
    path = make_certs()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_proton_sends_and_receives_over_amqps_verifying_the_router_against_the_test_ca(certs):
    r = Router("Router.TLS", extra_listener=tls_listener(certs))
    try:
        conn = connect(r, client_domain(f"{certs}/ca.pem"))
        assert round_trip(conn, r, ADDRESS, 20) == [f"tls-{i}" for i in range(20)]
        # Management (HTTP API and botectl stat -c) shows the session.
        entities = http_connections(r)
        rows = entities if isinstance(entities, list) else entities.get("results", entities)
        text = json.dumps(rows)
        assert '"isEncrypted": true' in text, text
        assert "TLSv1.3" in text and "TLS_AES_" in text, text
        stat = subprocess.run([botectl_path(), "stat", "-b", f"127.0.0.1:{r.port}", "-c"],
                              capture_output=True, text=True, timeout=30)
        assert stat.returncode == 0, stat.stderr
        assert "TLSv1.3" in stat.stdout and "TLS_AES_" in stat.stdout, stat.stdout
        conn.close()
        # A client trusting another CA refuses the router's certificate.
        other = make_certs()
        with pytest.raises(ConnectionException):
            connect(r, client_domain(f"{other}/ca.pem"), timeout=5)
        shutil.rmtree(other, ignore_errors=True)
    finally:
        assert r.stop() == 0, r.log()


def test_mutual_tls_admits_a_client_with_a_certificate_and_refuses_one_without(certs):
    r = Router("Router.MTLS", extra_listener=tls_listener(certs, mutual=True))
    try:
        with_cert = client_domain(f"{certs}/ca.pem", f"{certs}/client.pem",
                                  f"{certs}/client-key.pem")
        conn = connect(r, with_cert)
        assert round_trip(conn, r, ADDRESS, 5) == [f"tls-{i}" for i in range(5)]
        with pytest.raises(ConnectionException):
            connect(r, client_domain(f"{certs}/ca.pem"), timeout=5)
        # A certificate from another CA is refused too.
        other = make_certs()
        with pytest.raises(ConnectionException):
            connect(r, client_domain(f"{certs}/ca.pem", f"{other}/client.pem",
                                     f"{other}/client-key.pem"), timeout=5)
        shutil.rmtree(other, ignore_errors=True)
        # The admitted client was not disturbed.
        assert round_trip(conn, r, ADDRESS, 5) == [f"tls-{i}" for i in range(5)]
        conn.close()
        wait_until(lambda: "TLS handshake failed" in r.log(), 10, "the refusals to be logged")
    finally:
        assert r.stop() == 0, r.log()


def _closed_by_router(port, payload):
    """Sends payload to the port and returns what came back before the
    router closed the socket (it must close it within 10 s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return got


def test_tls_handshake_junk_is_closed_and_other_clients_are_unaffected(certs):
    r = Router("Router.JUNK", extra_listener=tls_listener(certs))
    try:
        conn = connect(r, client_domain(f"{certs}/ca.pem"))
        port = amqps_port(r)
        for payload in (os.urandom(512), b"AMQP\x00\x01\x00\x00", b"AMQP\x03\x01\x00\x00",
                        b"\x16\x03\x01\x00\x05hello"):
            started = time.time()
            got = _closed_by_router(port, payload)
            assert time.time() - started < 10
            # No AMQP header comes back: the port speaks only TLS (at most
            # a TLS alert record, content type 21).
            assert not got.startswith(b"AMQP"), got
            assert got == b"" or got[0] == 21, got
        # A connection that says nothing is closed at the handshake deadline.
        idle = socket.create_connection(("127.0.0.1", port), timeout=15)
        started = time.time()
        assert idle.recv(16) == b""
        assert time.time() - started < 12
        idle.close()
        # The established TLS client carried on throughout.
        assert round_trip(conn, r, ADDRESS, 3) == ["tls-0", "tls-1", "tls-2"]
        conn.close()
        assert r.proc.poll() is None
        assert "TLS handshake failed" in r.log()
    finally:
        assert r.stop() == 0, r.log()


def test_sighup_reloads_certificates_keeping_open_connections_and_a_bad_file_keeps_the_old(certs):
    live = tempfile.mkdtemp(prefix="bote-live-certs-")
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(f"{certs}/{name}", f"{live}/{name}")
    r = Router("Router.RELOAD", extra_listener=tls_listener(live))
    try:
        old = connect(r, client_domain(f"{certs}/ca.pem"))
        assert round_trip(old, r, ADDRESS, 3) == ["tls-0", "tls-1", "tls-2"]
        # New certificates from a new CA, then SIGHUP.
        fresh = make_certs()
        for name in ("server.pem", "server-key.pem"):
            shutil.copy(f"{fresh}/{name}", f"{live}/{name}")
        r.reload(lambda text: text)
        wait_until(lambda: "TLS certificates reloaded" in r.log(), 10, "the reload")
        # The open connection goes on.
        assert round_trip(old, r, ADDRESS, 3) == ["tls-0", "tls-1", "tls-2"]
        # New connections see the new certificate: the new CA verifies it,
        # the old one does not.
        new = connect(r, client_domain(f"{fresh}/ca.pem"))
        assert round_trip(new, r, ADDRESS, 2) == ["tls-0", "tls-1"]
        new.close()
        with pytest.raises(ConnectionException):
            connect(r, client_domain(f"{certs}/ca.pem"), timeout=5)
        # A broken certificate file: the reload fails naming it, and the
        # certificate in force stays.
        with open(f"{live}/server.pem", "w") as f:
            f.write("not a certificate\n")
        r.reload(lambda text: text)
        wait_until(lambda: f"{live}/server.pem" in r.log() and "the configuration in force is "
                   "unchanged" in r.log(), 10, "the failed reload to be logged")
        again = connect(r, client_domain(f"{fresh}/ca.pem"))
        assert round_trip(again, r, ADDRESS, 1) == ["tls-0"]
        again.close()
        assert round_trip(old, r, ADDRESS, 1) == ["tls-0"]
        old.close()
        shutil.rmtree(fresh, ignore_errors=True)
    finally:
        assert r.stop() == 0, r.log()
        shutil.rmtree(live, ignore_errors=True)


def test_a_chain_of_three_routers_over_mutual_tls_inter_router_links_carries_traffic(certs):
    listener, connector = inter_router_tls(certs)
    a = Router("Router.A", inter_router=True, inter_router_extra=listener)
    b = Router("Router.B", inter_router=True, inter_router_extra=listener,
               connectors=[("to-a", a.inter_router_port, 1)], connector_extra=connector)
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)],
               connector_extra=connector)
    routers = [a, b, c]
    try:
        wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 30,
                   "the TLS chain to converge")
        rx = Receiver(c.url, "queue.tlschain", expect=1000).start()
        assert rx.attached.wait(10)
        wait_until(lambda: "Router.C" in json.dumps(a.state().get("addresses", {})), 20,
                   "A to learn C's consumer")
        tx = Sender(a.url, "queue.tlschain", 1000).start()
        tx.join(60)
        rx.join(60)
        assert rx.count == 1000
        assert sorted(m.id for m in rx.messages) == list(range(1000))
        assert len(tx.outcomes) == 1000 and set(tx.outcomes.values()) == {"accepted"}
        # A connector without a client certificate is refused by A.
        d = Router("Router.D", connectors=[("to-a", a.inter_router_port, 1)],
                   connector_extra=f'tls-ca-file = "{certs}/ca.pem"\n')
        try:
            wait_until(lambda: "TLS handshake failed" in a.log(), 15,
                       "A to refuse a connector without a certificate")
            time.sleep(1)
            assert "Router.D" not in json.dumps(a.state().get("routes", {}))
        finally:
            assert d.stop() == 0, d.log()
    finally:
        for r in routers:
            assert r.stop() == 0, r.log()


def test_sasl_over_tls_plain_without_the_insecure_flag_and_external_as_the_certificate(certs):
    """SASL (item 2) on an amqps listener (item 1): PLAIN is offered over
    TLS without allow-insecure-plain, and EXTERNAL logs the client in as
    its certificate's subject; management shows both users."""
    from test_sasl import PASSWORD, add_user
    users_dir = tempfile.mkdtemp(prefix="bote-users-")
    users_file = os.path.join(users_dir, "users")
    add_user(users_file, "alice", PASSWORD)
    r = Router("Router.TLSASL", router_extra=f'users-file = "{users_file}"\n',
               extra_listener=tls_listener(certs, mutual=False)
               + f'tls-ca-file = "{certs}/ca.pem"\n'
               + 'sasl-mechanisms = ["PLAIN", "EXTERNAL"]\n')
    try:
        ca = f"{certs}/ca.pem"
        plain = BlockingConnection(f"amqps://127.0.0.1:{amqps_port(r)}", timeout=10,
                                   ssl_domain=client_domain(ca), sni="localhost",
                                   user="alice", password=PASSWORD, allowed_mechs="PLAIN")
        external = BlockingConnection(
            f"amqps://127.0.0.1:{amqps_port(r)}", timeout=10, sni="localhost",
            ssl_domain=client_domain(ca, f"{certs}/client.pem", f"{certs}/client-key.pem"),
            allowed_mechs="EXTERNAL")
        assert round_trip(external, r, ADDRESS + ".external", 3) == [f"tls-{i}" for i in range(3)]
        from management import Management
        with Management(r.url) as m:
            rows = m.query("connection", ["sasl", "user", "isEncrypted"])
        seen = sorted((row["sasl"] or "", row["user"] or "", row["isEncrypted"]) for row in rows)
        assert ("PLAIN", "alice", True) in seen, seen
        external_user = [u for s, u, _ in seen if s == "EXTERNAL"]
        assert external_user and "CN=client" in external_user[0], seen
        plain.close()
        external.close()
    finally:
        assert r.stop() == 0, r.log()
        shutil.rmtree(users_dir, ignore_errors=True)


def test_mqtt_over_tls_carries_paho_clients_to_amqp_and_refuses_plain_mqtt(certs):
    """An MQTT listener with a certificate (MQTT over TLS, 8883 in the
    examples): paho clients verifying the router against the test CA
    publish at QoS 1 to a TLS subscriber and to an AMQP receiver; the
    connection shows as encrypted in management; a client speaking plain
    MQTT to that port gets no CONNACK and is closed."""
    import ssl
    import threading

    import paho.mqtt.client as paho

    from management import Management

    r = Router("Router.MQTTS", mqtt=f'tls-cert-file = "{certs}/server.pem"\n'
                                    f'tls-key-file = "{certs}/server-key.pem"\n')
    try:
        def tls_client(name):
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name)
            c.tls_set(ca_certs=f"{certs}/ca.pem", tls_version=ssl.PROTOCOL_TLS_CLIENT)
            got, subscribed, connected = [], threading.Event(), threading.Event()
            c.on_connect = lambda *a: connected.set()
            c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
            c.on_subscribe = lambda *a: subscribed.set()
            c.connect("localhost", r.mqtt_port, keepalive=30)
            c.loop_start()
            assert connected.wait(10), f"{name}: no CONNACK over TLS"
            return c, got, subscribed

        sub, got, subscribed = tls_client("mqtts-sub")
        sub.subscribe("sensors/tls", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        amqp_rx = Receiver(r.url, "sensors/amqp", expect=1).start()
        assert amqp_rx.attached.wait(10)
        pub, _, _ = tls_client("mqtts-pub")
        infos = [pub.publish("sensors/tls", f"t{i}".encode(), qos=1) for i in range(3)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published(), "no PUBACK over TLS"
        wait_until(lambda: len(got) == 3, 10, "the TLS subscriber's messages")
        assert got == [("sensors/tls", f"t{i}".encode()) for i in range(3)]
        # To an AMQP receiver: the PUBACK follows its accept.
        to_amqp = pub.publish("sensors/amqp", b"to-amqp", qos=1)
        amqp_rx.join(10)
        assert [bytes(m.body) for m in amqp_rx.messages] == [b"to-amqp"]
        to_amqp.wait_for_publish(10)
        assert to_amqp.is_published()
        with Management(r.url) as m:
            mqtt_conns = [c for c in m.query("connection") if c["protocol"] == "mqtt"]
            assert sorted(c["container"] for c in mqtt_conns) == ["mqtts-pub", "mqtts-sub"]
            assert all(c["isEncrypted"] and c["sslProto"] in ("TLSv1.2", "TLSv1.3") for c in mqtt_conns)
        # Plain MQTT to the TLS port: a CONNECT is not a TLS client hello.
        with socket.create_connection(("127.0.0.1", r.mqtt_port), timeout=10) as s:
            s.sendall(bytes.fromhex("101000044d5154540402003c0004706c61696e"))
            s.settimeout(10)
            try:
                data = s.recv(1024)
            except ConnectionResetError:
                data = b""
            assert not data.startswith(b"\x20"), "a CONNACK over plain TCP on a TLS port"
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
    finally:
        r.stop()
