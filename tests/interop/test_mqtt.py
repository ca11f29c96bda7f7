"""MQTT clients through real boted processes: paho-mqtt (3.1.1 and 5.0) and
mosquitto_pub/mosquitto_sub (Debian mosquitto-clients), beside Python Proton
AMQP clients, on one router and across a 3-router chain A-B-C."""

import shutil
import socket
import struct
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from proton import Disposition, Message
from proton.utils import BlockingConnection

from conftest import Router, wait_until

MOSQ = shutil.which("mosquitto_pub") is not None


class Client:
    """A paho client run by its own network thread; what it receives is
    kept in `messages` (topic, payload, properties)."""

    def __init__(self, port, version=paho.MQTTv311, client_id="", will=None):
        self.v5 = version == paho.MQTTv5
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=version)
        self.messages = []
        self.acked = set()
        self.disconnect_reason = None
        self.connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.c.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload, getattr(m, "properties", None)))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acked.add(mid)
        self.c.on_disconnect = self._disconnected
        if will:
            self.c.will_set(*will)
        if self.v5:
            self.c.connect("127.0.0.1", port, keepalive=30, clean_start=True)
        else:
            self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _disconnected(self, c, u, flags, rc, props):
        self.disconnect_reason = rc

    def subscribe(self, topic, qos=1):
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, codes, p: done.set()
        self.c.subscribe(topic, qos)
        assert done.wait(10), "no SUBACK"

    def publish(self, topic, payload, qos=1, props=None):
        return self.c.publish(topic, payload, qos=qos, properties=props)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for_address(router, address, timeout=20):
    """The router's state lists `address` among the remote consumers."""
    wait_until(lambda: address in router.state().get("addresses", {}), timeout,
               f"{address} to reach {router.name}")


@pytest.fixture
def one():
    r = Router("Router.M", mqtt="max-message-size = 1048576")
    yield r
    assert r.stop() == 0, r.log()


@pytest.fixture
def chain():
    a = Router("Router.A", inter_router=True, mqtt=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)],
               mqtt=True)
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True)
    routers = [a, b, c]
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def test_mqtt5_publish_reaches_a_proton_consumer_as_data_with_properties(one):
    conn = BlockingConnection(one.url, timeout=10)
    rcv = conn.create_receiver("sensors/kitchen/temp", credit=10)
    pub = Client(one.mqtt_port, paho.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.ResponseTopic = "replies/kitchen"
    props.CorrelationData = b"corr-1"
    props.UserProperty = [("room", "kitchen"), ("unit", "C")]
    info = pub.publish("sensors/kitchen/temp", b'{"t": 21.5}', qos=1, props=props)
    m = rcv.receive(timeout=10)
    rcv.accept()
    assert m.body == b'{"t": 21.5}'
    assert m.address == "sensors/kitchen/temp"
    assert m.content_type == "application/json"
    assert m.reply_to == "replies/kitchen"
    assert bytes(m.correlation_id) == b"corr-1"
    assert m.properties == {"room": "kitchen", "unit": "C"}
    # (Proton's blocking API sends the disposition while it waits.)
    conn.wait(lambda: info.mid in pub.acked, timeout=10, msg="the PUBACK")
    pub.close()
    conn.close()


def test_amqp_sender_reaches_mqtt_subscribers_exact_and_wildcard(one):
    exact = Client(one.mqtt_port, paho.MQTTv5)
    exact.subscribe("plant/line1/speed", 1)
    wild = Client(one.mqtt_port)
    wild.subscribe("plant/+/speed", 1)
    conn = BlockingConnection(one.url, timeout=10)
    snd = conn.create_sender("plant/line1/speed")
    m = Message(body=b"42", address="plant/line1/speed", content_type="text/plain",
                correlation_id=b"c-7", reply_to="plant/replies", properties={"k": "v"})
    snd.send(m)  # blocks until settled: accepted
    wait_until(lambda: exact.messages and wild.messages, 10, "both subscribers")
    topic, payload, props = exact.messages[0]
    assert (topic, payload) == ("plant/line1/speed", b"42")
    assert props.ContentType == "text/plain"
    assert props.CorrelationData == b"c-7"
    assert props.ResponseTopic == "plant/replies"
    assert props.UserProperty == [("k", "v")]
    assert wild.messages[0][:2] == ("plant/line1/speed", b"42")
    # AMQP's dotted addresses match the same filter.
    snd2 = conn.create_sender("plant.line2.speed")
    snd2.send(Message(body=b"7", address="plant.line2.speed"))
    wait_until(lambda: len(wild.messages) == 2, 10, "the dotted address")
    assert wild.messages[1][:2] == ("plant.line2.speed", b"7")
    assert len(exact.messages) == 1
    conn.close()
    exact.close()
    wild.close()



def test_a_large_amqp_message_streams_to_mqtt_subscribers_whole(one):
    """A message far larger than a frame comes in frame by frame and the
    router streams it (issue 17); each MQTT subscriber (one exact, one on
    a filter: two readers of one stream) gets it as one PUBLISH, byte for
    byte, and the sender's delivery is accepted."""
    exact = Client(one.mqtt_port)
    exact.subscribe("bulk/file", 1)
    wild = Client(one.mqtt_port, paho.MQTTv5)
    wild.subscribe("bulk/#", 1)
    body = bytes(range(256)) * 2048  # 512 KiB, ~32 frames of 16 KiB
    conn = BlockingConnection(one.url, timeout=20)
    snd = conn.create_sender("bulk/file")
    snd.send(Message(body=body, address="bulk/file"))  # blocks until accepted
    wait_until(lambda: exact.messages and wild.messages, 20, "both subscribers")
    assert exact.messages[0][0] == "bulk/file" and exact.messages[0][1] == body
    assert wild.messages[0][1] == body
    conn.close()
    exact.close()
    wild.close()

@pytest.mark.skipif(not MOSQ, reason="mosquitto-clients not installed")
def test_mosquitto_clients_across_the_chain_and_paho_back(chain):
    a, b, c = chain
    # By default a router in a mesh runs its plain MQTT connections on the
    # mesh's thread, its AMQP ones on the workers.
    for r in chain:
        assert f"listening on 127.0.0.1:{r.mqtt_port} (mqtt, on the mesh's thread)" in r.log(), \
            r.log()
        assert f"listening on 127.0.0.1:{r.port} (amqp, " in r.log(), r.log()
        assert f"listening on 127.0.0.1:{r.port} (amqp, on the mesh's thread)" not in r.log(), \
            r.log()
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(c.mqtt_port), "-t", "mesh/#",
         "-q", "1", "-C", "3", "-v", "-V", "mqttv5"],
        stdout=subprocess.PIPE, text=True)
    try:
        wait_for_address(a, "mesh/#")
        for i in range(3):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(a.mqtt_port),
                            "-t", f"mesh/dev{i}/state", "-m", f"on{i}", "-q", "1"],
                           check=True, timeout=10)
        out, _ = sub.communicate(timeout=15)
    finally:
        sub.kill()
    assert out.splitlines() == [f"mesh/dev{i}/state on{i}" for i in range(3)]
    # And back: a paho subscriber on A, a paho publisher on C.
    back = Client(a.mqtt_port)
    back.subscribe("reply/+", 1)
    wait_for_address(c, "reply/+")
    p = Client(c.mqtt_port, paho.MQTTv5)
    p.publish("reply/1", b"pong", qos=1).wait_for_publish(10)
    wait_until(lambda: back.messages, 10, "the message from C")
    assert back.messages[0][:2] == ("reply/1", b"pong")
    back.close()
    p.close()


def test_mqtt_connections_on_the_workers_still_cross_the_mesh():
    """`mqtt-on-mesh-thread = false`: MQTT connections of a router in a
    mesh run on the workers, as AMQP ones do; QoS 1 both ways across two
    routers with every PUBACK."""
    knob = "mqtt-on-mesh-thread = false"
    a = Router("Router.WA", inter_router=True, mqtt=knob)
    b = Router("Router.WB", connectors=[("to-a", a.inter_router_port, 1)], mqtt=knob)
    try:
        wait_until(lambda: all(len(r.state().get("routes", {})) == 1 for r in (a, b)), 20,
                   "the two routers to converge")
        for r in (a, b):
            assert f"listening on 127.0.0.1:{r.mqtt_port} (mqtt, " in r.log(), r.log()
            assert f"listening on 127.0.0.1:{r.mqtt_port} (mqtt, on the mesh's thread)" \
                not in r.log(), r.log()
        sub = Client(b.mqtt_port)
        sub.subscribe("workers/+", 1)
        wait_for_address(a, "workers/+")
        pub = Client(a.mqtt_port, paho.MQTTv5)
        infos = [pub.publish(f"workers/{i}", f"w{i}".encode(), qos=1) for i in range(20)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        wait_until(lambda: len(sub.messages) == 20, 10, "the 20 messages on B")
        assert sorted(m[1] for m in sub.messages) == sorted(f"w{i}".encode() for i in range(20))
        sub.close()
        pub.close()
    finally:
        for r in (b, a):
            assert r.stop() == 0, r.log()


def test_qos1_is_not_acknowledged_until_a_consumer_accepts(one):
    pub = Client(one.mqtt_port)
    info = pub.publish("orders/new", b"order-1", qos=1)
    time.sleep(1.5)  # no consumer: released, retried, never acknowledged
    assert info.mid not in pub.acked
    conn = BlockingConnection(one.url, timeout=10)
    rcv = conn.create_receiver("orders/new", credit=1)
    m = rcv.receive(timeout=10)
    assert m.body == b"order-1"
    assert info.mid not in pub.acked  # not before the consumer settles
    rcv.accept()
    conn.wait(lambda: info.mid in pub.acked, timeout=10, msg="the PUBACK after accepted")
    conn.close()
    pub.close()


def test_mqtt_subscriber_settles_amqp_delivery_and_a_gone_one_gets_modified(one):
    sub = Client(one.mqtt_port)
    sub.subscribe("jobs", 1)
    conn = BlockingConnection(one.url, timeout=10)
    snd = conn.create_sender("jobs")
    snd.send(Message(body=b"j1"))  # accepted by the subscriber's PUBACK
    wait_until(lambda: sub.messages, 10, "the job")
    sub.close()
    conn.close()


@pytest.mark.skipif(not MOSQ, reason="mosquitto-clients not installed")
def test_will_is_published_when_a_client_is_killed(one):
    watcher = Client(one.mqtt_port)
    watcher.subscribe("status/+", 1)
    dev = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(one.mqtt_port), "-t", "nothing",
         "--will-topic", "status/dev1", "--will-payload", "offline", "--will-qos", "1",
         "-i", "dev1"], stdout=subprocess.DEVNULL)
    wait_until(lambda: "client=dev1" in one.log(), 10, "dev1 to connect")
    time.sleep(0.2)
    assert watcher.messages == []
    dev.kill()
    dev.wait()
    wait_until(lambda: watcher.messages, 10, "the will")
    assert watcher.messages[0][:2] == ("status/dev1", b"offline")
    # A clean DISCONNECT publishes no will.
    polite = Client(one.mqtt_port, client_id="dev2", will=("status/dev2", b"offline", 1))
    polite.close()
    time.sleep(0.5)
    assert [m[0] for m in watcher.messages] == ["status/dev1"]
    watcher.close()


def raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def connect_packet(client_id, level=5):
    cid = client_id.encode()
    vh = b"\x00\x04MQTT" + bytes([level, 0x02]) + struct.pack(">H", 30)
    if level == 5:
        vh += b"\x00"  # no properties
    body = vh + struct.pack(">H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def read_all(s):
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False


def test_bad_input_gets_the_spec_error_and_others_carry_on(one):
    watcher = Client(one.mqtt_port)
    watcher.subscribe("ok/#", 1)
    # Not CONNECT first: closed.
    s = raw(one.mqtt_port)
    s.sendall(b"\x30\x05\x00\x01xyz")
    data, closed = read_all(s)
    assert closed and data == b""
    # Garbage remaining length: closed.
    s = raw(one.mqtt_port)
    s.sendall(b"\x10\xff\xff\xff\xff\xff")
    data, closed = read_all(s)
    assert closed
    # 5.0, QoS 2 PUBLISH: DISCONNECT 0x9B, closed.
    s = raw(one.mqtt_port)
    s.sendall(connect_packet("q2"))
    time.sleep(0.2)
    topic = b"ok/x"
    body = struct.pack(">H", len(topic)) + topic + b"\x00\x01" + b"\x00" + b"x"
    s.sendall(bytes([0x34, len(body)]) + body)
    data, closed = read_all(s)
    assert data[:2] == b"\x20\x00" or data[0] == 0x20  # CONNACK first
    assert b"\xe0" in data and data[data.index(b"\xe0") + 2] == 0x9B
    assert closed
    # Oversized (max-message-size is 1 MiB here): DISCONNECT 0x95.
    big = Client(one.mqtt_port, paho.MQTTv5)
    big.publish("ok/big", b"x" * (2 * 1024 * 1024), qos=0)
    wait_until(lambda: big.disconnect_reason is not None, 10, "the disconnect")
    assert int(big.disconnect_reason.value) == 0x95
    big.c.loop_stop()
    # A wildcard in a PUBLISH topic: 3.1.1 just closes.
    s = raw(one.mqtt_port)
    s.sendall(connect_packet("wild", level=4))
    topic = b"ok/+"
    body = struct.pack(">H", len(topic)) + topic + b"x"
    s.sendall(bytes([0x30, len(body)]) + body)
    data, closed = read_all(s)
    assert data == b"\x20\x02\x00\x00" and closed  # CONNACK, then closed
    # Nothing else was affected.
    good = Client(one.mqtt_port)
    good.publish("ok/fine", b"fine", qos=1).wait_for_publish(10)
    wait_until(lambda: watcher.messages, 10, "the good message")
    assert [m[:2] for m in watcher.messages] == [("ok/fine", b"fine")]
    good.close()
    watcher.close()


def test_mqtt_connections_show_in_botectl_stat_and_metrics(one):
    import json
    import urllib.request
    from test_botectl import botectl, table
    c = Client(one.mqtt_port, client_id="meter-7")
    c.subscribe("m/#", 1)
    c.publish("m/1", b"x", qos=1).wait_for_publish(10)
    rows = table(botectl("stat", "-b", f"127.0.0.1:{one.port}", "-c").stdout)
    mine = [r for r in rows if r.get("container") == "meter-7"]
    assert len(mine) == 1 and mine[0]["proto"] == "mqtt", rows
    links = json.loads(botectl("stat", "-b", f"127.0.0.1:{one.port}", "-l", "--json").stdout)
    assert "m/#" in json.dumps(links)
    with urllib.request.urlopen(one.http_url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    metrics = dict(l.rsplit(" ", 1) for l in text.splitlines() if l.startswith("bote_mqtt"))
    assert int(metrics["bote_mqtt_connections_total"]) >= 1
    assert int(metrics["bote_mqtt_sessions"]) == 1
    assert int(metrics["bote_mqtt_publish_received_total"]) == 1
    assert int(metrics["bote_mqtt_publish_sent_total"]) == 1
    c.close()


def test_retained_message_reaches_a_late_subscriber_on_another_router(chain):
    a, b, c = chain
    # Every router's retained store listens on _mqtt/retain.
    wait_until(lambda: len(a.state().get("addresses", {}).get("_mqtt/retain", [])) == 2, 20,
               "A to see the retained stores of B and C")
    pub = Client(a.mqtt_port)
    pub.c.publish("home/door", b"locked", qos=1, retain=True).wait_for_publish(10)
    pub.c.publish("home/window", b"open", qos=0, retain=True)
    # An AMQP client retains a message the same way.
    conn = BlockingConnection(a.url, timeout=10)
    conn.create_sender("_mqtt/retain").send(Message(body=b"on", address="home/light"))
    conn.close()
    late = Client(c.mqtt_port, paho.MQTTv5)
    time.sleep(0.5)
    late.subscribe("home/#", 1)
    wait_until(lambda: len(late.messages) == 3, 10, "the retained messages")
    assert sorted(m[:2] for m in late.messages) == [
        ("home/door", b"locked"), ("home/light", b"on"), ("home/window", b"open")]
    # Cleared by an empty retained publish.
    pub.c.publish("home/door", b"", qos=1, retain=True).wait_for_publish(10)
    time.sleep(0.5)
    later = Client(b.mqtt_port)
    later.subscribe("home/door", 1)
    time.sleep(0.5)
    assert later.messages == []
    # A live subscriber gets new messages as usual.
    pub.c.publish("home/door", b"unlocked", qos=1).wait_for_publish(10)
    wait_until(lambda: later.messages, 10, "the live message")
    assert later.messages[0][:2] == ("home/door", b"unlocked")
    for cl in (pub, late, later):
        cl.close()


def connect_persistent(port, client_id, session_present, on_message=None):
    """A paho client with a persistent session (clean_session=False),
    connected and looping, whose CONNACK said `session_present`;
    `on_message` gets the payloads it receives."""
    s = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    present = []
    s.on_connect = lambda c, u, f, rc, p: present.append(f.session_present)
    if on_message is not None:
        s.on_message = lambda c, u, m: on_message(m.payload)
    s.connect("127.0.0.1", port)
    s.loop_start()
    wait_until(lambda: present, 10, "CONNACK")
    assert present == [session_present]
    return s


def resume_persistent_session(port, client_id, on_message=None):
    """Reconnects a persistent session's client: CONNACK session present 1."""
    return connect_persistent(port, client_id, True, on_message)


def subscribe_persistently_and_leave(port, client_id, topic, on_message=None):
    """A persistent session's client that connects as new (session present
    0), subscribes to `topic` at QoS 1 and disconnects; `on_message` gets
    the payloads of anything it receives meanwhile."""
    s = connect_persistent(port, client_id, False, on_message)
    done = threading.Event()
    s.on_subscribe = lambda *a: done.set()
    s.subscribe(topic, 1)
    assert done.wait(10), "no SUBACK"
    s.disconnect()
    s.loop_stop()


def test_persistent_session_queues_qos1_while_away_and_resumes():
    r = Router("Router.S", mqtt="mqtt-session-max-messages = 3")
    try:
        s = Client(r.mqtt_port, client_id="s1")
        s.c.disconnect()
        s.c.loop_stop()
        got = []
        subscribe_persistently_and_leave(r.mqtt_port, "s1", "inbox/s1", on_message=got.append)
        # Away: three QoS 1 messages queue, a fourth goes back released.
        conn = BlockingConnection(r.url, timeout=10)
        snd = conn.create_sender("inbox/s1")
        from proton.utils import SendException
        results = []

        def send(i):
            try:
                snd.send(Message(body=f"m{i}".encode()), timeout=3)
                results.append((i, "accepted"))
            except SendException as e:
                results.append((i, "released" if e.state == Disposition.RELEASED else str(e)))
            except Exception as e:  # timeout: still waiting for the client
                results.append((i, type(e).__name__))
        for i in range(4):
            send(i)
        assert [x[1] for x in results] == ["Timeout"] * 3 + ["released"], results
        # Back: session present, the queued messages delivered.
        s2 = resume_persistent_session(r.mqtt_port, "s1", on_message=got.append)
        wait_until(lambda: len(got) >= 3, 10, "the queued messages")
        assert got[:3] == [b"m0", b"m1", b"m2"]
        # A clean session with the same id ends the old one.
        s2.disconnect()
        s2.loop_stop()
        s3 = Client(r.mqtt_port, client_id="s1")
        assert s3.connected.is_set()
        s3.close()
        conn.close()
    finally:
        assert r.stop() == 0, r.log()


def test_second_connection_with_the_same_client_id_takes_over(one):
    first = Client(one.mqtt_port, paho.MQTTv5, client_id="twin")
    second = Client(one.mqtt_port, paho.MQTTv5, client_id="twin")
    wait_until(lambda: first.disconnect_reason is not None, 10, "the first to be closed")
    assert int(first.disconnect_reason.value) == 0x8E
    first.c.loop_stop()
    second.close()


def test_mqtt5_request_is_answered_by_an_amqp_responder_through_reply_to(chain):
    a, b, c = chain
    requester = Client(a.mqtt_port, paho.MQTTv5, client_id="requester")
    requester.subscribe("replies/requester", 1)
    conn = BlockingConnection(c.url, timeout=10)
    service = conn.create_receiver("service/echo", credit=10)
    replies = conn.create_sender(None)  # anonymous: each reply's `to`
    wait_for_address(a, "service/echo")
    wait_for_address(c, "replies/requester")
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "replies/requester"
    props.CorrelationData = b"req-42"
    requester.publish("service/echo", b"ping", qos=1, props=props)
    req = service.receive(timeout=10)
    service.accept()
    assert req.reply_to == "replies/requester", req
    replies.send(Message(address=req.reply_to, body=bytes(req.body).upper(),
                         # (Proton hands a binary id over as a memoryview)
                         correlation_id=bytes(req.correlation_id)))
    wait_until(lambda: requester.messages, 10, "the reply")
    topic, payload, rprops = requester.messages[0]
    assert (topic, payload, rprops.CorrelationData) == ("replies/requester", b"PING", b"req-42")
    conn.close()
    requester.close()


def test_an_amqp_receiver_on_a_filter_gets_matching_mqtt_and_amqp_messages(chain):
    a, b, c = chain
    conn = BlockingConnection(c.url, timeout=10)
    rcv = conn.create_receiver("fleet/+/position", credit=10)
    wait_for_address(a, "fleet/+/position")
    pub = Client(a.mqtt_port)
    info = pub.publish("fleet/truck1/position", b"1,2", qos=1)
    got = []
    m = rcv.receive(timeout=10)
    rcv.accept()
    got.append((m.address, bytes(m.body)))
    conn.wait(lambda: info.mid in pub.acked, timeout=10, msg="the PUBACK")
    # An AMQP sender's dotted address matches too (sent from a thread: each
    # blocking connection does its I/O only while it is called).
    amqp = BlockingConnection(a.url, timeout=10)
    snd = amqp.create_sender("fleet.truck2.position")
    result = []
    t = threading.Thread(target=lambda: result.append(
        snd.send(Message(address="fleet.truck2.position", body=b"3,4")).remote_state))
    t.start()
    m = rcv.receive(timeout=10)
    rcv.accept()
    got.append((m.address, bytes(m.body)))
    conn.wait(lambda: bool(result), timeout=10, msg="the sender's outcome")
    t.join()
    assert result == [Disposition.ACCEPTED]
    assert sorted(got) == [("fleet.truck2.position", b"3,4"), ("fleet/truck1/position", b"1,2")]
    amqp.close()
    conn.close()
    pub.close()


def test_a_connect_flood_is_cut_at_the_handshake_deadline_and_clients_are_served():
    r = Router("Router.F", mqtt="handshake-timeout-ms = 1000")
    try:
        idle = [raw(r.mqtt_port) for _ in range(300)]
        # Half-sent CONNECTs too.
        for s in idle[:100]:
            s.sendall(b"\x10\x20\x00\x04MQ")
        good = Client(r.mqtt_port)
        good.subscribe("f/x", 1)
        good.publish("f/x", b"served", qos=1).wait_for_publish(10)
        wait_until(lambda: good.messages, 10, "the message")
        # Every idle connection is closed by the router (no CONNECT in time).
        deadline = time.time() + 10
        for s in idle:
            s.settimeout(max(0.1, deadline - time.time()))
            assert s.recv(16) == b""
            s.close()
        good.close()
    finally:
        assert r.stop() == 0, r.log()


def retained_on_subscribe(port, topic, timeout=20):
    """Subscribes a new client to `topic` until it is given a message with
    the retain flag (a new client per try, each waiting up to 2 s); returns
    (topic, payload, retain flag)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = []
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        c.on_message = lambda cl, u, m: got.append((m.topic, m.payload, m.retain))
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe(topic, 1)
        until = time.time() + 2
        while not got and time.time() < until:
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()
        if got:
            return got[0]
    raise AssertionError(f"no retained message for {topic} within {timeout}s")


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_a_retained_message_survives_a_restart_with_the_same_data_dir(tmp_path, stop):
    data = tmp_path / "data"
    extra = f'data-dir = "{data}"'
    r = Router("Router.D", mqtt=True, router_extra=extra)
    try:
        wait_until(lambda: f"MQTT store {data}/Router.D.redb" in r.log(), 10, "the store's log line")
        pub = Client(r.mqtt_port)
        pub.c.publish("plant/valve", b"shut", qos=1, retain=True).wait_for_publish(10)
        pub.c.publish("plant/pump", b"on", qos=1, retain=True).wait_for_publish(10)
        pub.c.publish("plant/pump", b"", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        # A subscriber given the message means it is on disk (a change is
        # committed before the router's retained store has it), so even
        # SIGKILL keeps it from here on.
        assert retained_on_subscribe(r.mqtt_port, "plant/valve") == ("plant/valve", b"shut", True)
    finally:
        if stop == "sigkill":
            r.proc.kill()
            r.proc.wait()
            r._pump.join(5)
        else:
            assert r.stop() == 0, r.log()
    r2 = Router("Router.D", mqtt=True, router_extra=extra)
    try:
        wait_until(lambda: "1 retained message(s), 0 persistent session(s) read" in r2.log(), 10, "the store read back")
        late = Client(r2.mqtt_port, paho.MQTTv5)
        late.subscribe("plant/#", 1)
        wait_until(lambda: late.messages, 10, "the retained message after the restart")
        late.close()
        assert [m[:2] for m in late.messages] == [("plant/valve", b"shut")]
        assert retained_on_subscribe(r2.mqtt_port, "plant/valve") == ("plant/valve", b"shut", True)
    finally:
        assert r2.stop() == 0, r2.log()


def test_a_data_dir_that_cannot_be_created_fails_the_start_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(RuntimeError) as e:
        Router("Router.E", mqtt=True, router_extra=f'data-dir = "{blocker}/data"')
    assert f"{blocker}/data" in str(e.value), str(e.value)


def test_without_a_data_dir_the_log_says_mqtt_state_is_in_memory_only(one):
    wait_until(lambda: "kept in memory only ([router] data-dir is not set)" in one.log(), 10,
               "the in-memory log line")


def test_a_persistent_session_and_its_queue_survive_a_restart_with_the_same_data_dir(tmp_path):
    extra = f'data-dir = "{tmp_path / "data"}"'
    listener = "mqtt-session-max-messages = 3"
    r = Router("Router.Q", mqtt=listener, router_extra=extra)
    conn = None
    try:
        subscribe_persistently_and_leave(r.mqtt_port, "away", "inbox/away")
        # Away: three QoS 1 messages queue (unsettled: nobody acknowledged
        # them), a fourth goes back released: the session took the three
        # (and sent them to the store) before it.
        conn = BlockingConnection(r.url, timeout=10)
        snd = conn.create_sender("inbox/away")
        from proton.utils import SendException
        outcomes = []
        for i in range(4):
            try:
                snd.send(Message(body=f"m{i}".encode()), timeout=10 if i == 3 else 0.5)
                outcomes.append("accepted")
            except SendException as e:
                outcomes.append("released" if e.state == Disposition.RELEASED else str(e))
            except Exception as e:  # not settled: queued for the client
                outcomes.append(type(e).__name__)
        assert outcomes == ["Timeout"] * 3 + ["released"], outcomes
    finally:
        assert r.stop() == 0, r.log()
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass  # the router is gone
    r2 = Router("Router.Q", mqtt=listener, router_extra=extra)
    try:
        wait_until(lambda: "1 persistent session(s) read" in r2.log(), 10, "the store read back")
        # The restored session is subscribed again: a message published
        # while its client is still away queues for it too.
        pub = Client(r2.mqtt_port, client_id="publisher")
        pub.publish("inbox/away", b"m4", qos=1)
        got = []
        s = resume_persistent_session(r2.mqtt_port, "away", on_message=got.append)
        wait_until(lambda: len(got) >= 4, 20, "the queued messages")
        assert got[:3] == [b"m0", b"m1", b"m2"] and b"m4" in got, got
        s.disconnect()
        s.loop_stop()
        pub.close()
        # A clean session with the same id ends it, on disk too.
        Client(r2.mqtt_port, client_id="away").close()
    finally:
        assert r2.stop() == 0, r2.log()
    r3 = Router("Router.Q", mqtt=listener, router_extra=extra)
    try:
        wait_until(lambda: "0 persistent session(s) read" in r3.log(), 10, "the store read back")
    finally:
        assert r3.stop() == 0, r3.log()


def retained_set(port, topic_filter, count, timeout=20):
    """Subscribes a new client to `topic_filter` until it is given `count`
    messages with the retain flag (a new client per try, each waiting up
    to 2 s); returns them sorted as (topic, payload)."""
    deadline = time.time() + timeout
    best = []
    while time.time() < deadline:
        got = []
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        c.on_message = lambda cl, u, m: got.append((m.topic, m.payload)) if m.retain else None
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe(topic_filter, 1)
        until = time.time() + 2
        while len(got) < count and time.time() < until:
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()
        best = sorted(got)
        if len(got) >= count:
            return best
    raise AssertionError(f"{count} retained messages for {topic_filter} not given within "
                         f"{timeout}s (last try: {best})")


def test_a_router_started_later_with_an_empty_data_dir_syncs_the_retained_messages(tmp_path):
    a = Router("Router.RA", inter_router=True, mqtt=True,
               router_extra=f'data-dir = "{tmp_path / "a"}"')
    b = None
    try:
        pub = Client(a.mqtt_port)
        pub.c.publish("site/gate", b"closed", qos=1, retain=True).wait_for_publish(10)
        pub.c.publish("site/lamp", b"on", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        want = [("site/gate", b"closed"), ("site/lamp", b"on")]
        assert retained_set(a.mqtt_port, "site/#", 2) == want
        b = Router("Router.RB", connectors=[("to-a", a.inter_router_port, 1)], mqtt=True,
                   router_extra=f'data-dir = "{tmp_path / "b"}"')
        assert retained_set(b.mqtt_port, "site/#", 2) == want
        wait_until(lambda: "MQTT retained messages synced" in b.log(), 10, "B's log to say so")
        # A live clear after the sync reaches B as before.
        pub = Client(a.mqtt_port)
        pub.c.publish("site/lamp", b"", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        wait_until(lambda: retained_set(b.mqtt_port, "site/#", 1) == want[:1], 20,
                   "the clear to reach B")
    finally:
        for r in (b, a):
            if r is not None:
                assert r.stop() == 0, r.log()


def test_a_router_killed_and_restarted_empty_gets_the_retained_messages_back(tmp_path):
    b = Router("Router.KB", inter_router=True, mqtt=True,
               router_extra=f'data-dir = "{tmp_path / "b"}"')
    data_a = tmp_path / "a"
    a_extra = f'data-dir = "{data_a}"'
    a = Router("Router.KA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
               router_extra=a_extra)
    a2 = None
    try:
        wait_until(lambda: "_mqtt/retain" in b.state().get("addresses", {}), 20,
                   "B to see A's retained store")
        wait_until(lambda: "_mqtt/retain" in a.state().get("addresses", {}), 20,
                   "A to see B's retained store")
        pub = Client(a.mqtt_port)
        pub.c.publish("yard/door", b"open", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        pub = Client(b.mqtt_port)
        pub.c.publish("yard/light", b"off", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        want = [("yard/door", b"open"), ("yard/light", b"off")]
        assert retained_set(a.mqtt_port, "yard/#", 2) == want
        assert retained_set(b.mqtt_port, "yard/#", 2) == want
        a.proc.kill()
        a.proc.wait()
        a._pump.join(5)
        shutil.rmtree(data_a)
        a2 = Router("Router.KA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
                    router_extra=a_extra)
        wait_until(lambda: "0 retained message(s)" in a2.log(), 10, "A's empty store read")
        assert retained_set(a2.mqtt_port, "yard/#", 2) == want
    finally:
        for r in (a2, b):
            if r is not None:
                assert r.stop() == 0, r.log()


def metric(router, name):
    """The value of one sample of the router's /metrics (None: absent)."""
    import urllib.request
    with urllib.request.urlopen(router.http_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


@pytest.fixture
def pair():
    """Two MQTT routers, B connected to A."""
    a = Router("Router.PA", inter_router=True, mqtt=True)
    b = Router("Router.PB", connectors=[("to-a", a.inter_router_port, 1)], mqtt=True)
    for r in (a, b):
        wait_until(lambda r=r: "_mqtt/retain" in r.state().get("addresses", {}), 20,
                   f"{r.name} to see the other MQTT router")
    yield a, b
    for r in (a, b):
        assert r.stop() == 0, r.log()


def test_a_persistent_session_reconnecting_to_another_router_is_handed_over(pair):
    a, b = pair
    got = []
    subscribe_persistently_and_leave(a.mqtt_port, "roamer", "inbox/roamer")
    wait_for_address(b, "inbox/roamer")
    # Away: QoS 1 messages published on B queue in the session on A; their
    # publisher gets no PUBACK yet (nobody accepted them).
    pub = Client(b.mqtt_port, client_id="roamer-pub")
    infos = [pub.publish("inbox/roamer", f"m{i}".encode(), qos=1) for i in range(3)]
    wait_until(lambda: metric(a, 'bote_address_undelivered{address="inbox/roamer"}') == 3, 10,
               "the three messages queued in the session on A")
    assert not pub.acked, pub.acked
    # Back, on B: session present, the queued messages, the subscription.
    s = resume_persistent_session(b.mqtt_port, "roamer", on_message=got.append)
    wait_until(lambda: len(got) >= 3, 10, "the queued messages on B")
    assert got[:3] == [b"m0", b"m1", b"m2"], got
    # A settled them accepted once B confirmed: the publisher has its PUBACKs.
    wait_until(lambda: len(pub.acked) == 3, 10, "the publisher's PUBACKs")
    wait_until(lambda: "MQTT session handed over to another router: ended here" in a.log(), 10,
               "A to end its copy")
    wait_until(lambda: "MQTT session handed over from another router" in b.log(), 10,
               "B's log to say so")
    # The subscription is B's now: a message published on A reaches it.
    wait_until(lambda: a.state().get("addresses", {}).get("inbox/roamer") == ["Router.PB"], 20,
               "A to route inbox/roamer to B only")
    pub_a = Client(a.mqtt_port, client_id="roamer-pub-a")
    pub_a.publish("inbox/roamer", b"live", qos=1).wait_for_publish(10)
    wait_until(lambda: b"live" in got, 10, "the live message")
    assert got.count(b"live") == 1 and len(got) == 4, got
    s.disconnect()
    s.loop_stop()
    pub.close()
    pub_a.close()


def test_a_connected_mqtt5_session_is_taken_over_by_a_connection_on_another_router(pair):
    a, b = pair
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600

    def connect(port, clean):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mover",
                        protocol=paho.MQTTv5)
        present, reasons, got = [], [], []
        c.on_connect = lambda cl, u, f, rc, p: present.append(f.session_present)
        c.on_disconnect = lambda cl, u, f, rc, p: reasons.append(rc)
        c.on_message = lambda cl, u, m: got.append(m.payload)
        c.connect("127.0.0.1", port, clean_start=clean, properties=props)
        c.loop_start()
        wait_until(lambda: present, 10, "CONNACK")
        return c, present, reasons, got

    first, present, reasons, _ = connect(a.mqtt_port, True)
    assert present == [False]
    done = threading.Event()
    first.on_subscribe = lambda *x: done.set()
    first.subscribe("moves/#", 1)
    assert done.wait(10)
    wait_for_address(b, "moves/#")
    second, present2, _, got = connect(b.mqtt_port, False)
    assert present2 == [True]
    wait_until(lambda: reasons, 10, "the first connection to be closed")
    assert int(reasons[0].value) == 0x8E, reasons
    first.loop_stop()
    # Subscribed on B as it was on A.
    pub = Client(a.mqtt_port, paho.MQTTv5, client_id="mover-pub")
    wait_until(lambda: "Router.PB" in a.state().get("addresses", {}).get("moves/#", []), 20,
               "A to route moves/# to B")
    pub.publish("moves/1", b"here", qos=1).wait_for_publish(10)
    wait_until(lambda: got, 10, "the message on B")
    assert got == [b"here"]
    second.disconnect()
    second.loop_stop()
    pub.close()


def log_line(router, *parts):
    """True if a line of the router's log holds every one of `parts`."""
    return any(all(p in line for p in parts) for line in list(router.log_lines))


def test_a_session_outlives_its_router_through_its_replica_and_the_stale_copy_is_dropped(tmp_path):
    b = Router("Router.VB", inter_router=True, mqtt=True,
               router_extra=f'data-dir = "{tmp_path / "b"}"')
    a_extra = f'data-dir = "{tmp_path / "a"}"'
    a = Router("Router.VA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
               router_extra=a_extra)
    a2 = None
    clients = []
    try:
        for r in (a, b):
            wait_until(lambda r=r: "_mqtt/session" in r.state().get("addresses", {}), 20,
                       f"{r.name} to see the other router's session replicas")
        subscribe_persistently_and_leave(a.mqtt_port, "keeper", "inbox/keeper")
        wait_until(lambda: log_line(b, "MQTT session replica kept", "client=keeper",
                                    "owner=Router.VA", "subscriptions=1"), 10,
                   "B to keep the replica of the session with its subscription")
        # The session's router dies: the client reconnects to B and gets its
        # session back from the replica (subscribed; what was queued on A
        # only is not here).
        a.proc.kill()
        a.proc.wait()
        a._pump.join(5)
        got = []
        s = resume_persistent_session(b.mqtt_port, "keeper", on_message=got.append)
        wait_until(lambda: log_line(b, "restored from its replica", "client=keeper"), 10,
                   "B's log to say so")
        pub = Client(b.mqtt_port, client_id="keeper-pub")
        clients.append(pub)
        pub.publish("inbox/keeper", b"after", qos=1).wait_for_publish(10)
        wait_until(lambda: got == [b"after"], 10, "the message on B")
        s.disconnect()
        s.loop_stop()
        # A comes back with its stale copy on disk: it learns the session
        # is newer on B and drops its copy.
        a2 = Router("Router.VA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
                    router_extra=a_extra)
        wait_until(lambda: "1 persistent session(s) read" in a2.log(), 10, "A's stored copy read")
        wait_until(lambda: "superseded by a newer copy on another router" in a2.log(), 20,
                   "A to drop its stale copy")
        wait_until(lambda: a2.state().get("addresses", {}).get("inbox/keeper") == ["Router.VB"],
                   20, "A to route inbox/keeper to B only")
        # A message published on A queues in the session on B.
        pub_a = Client(a2.mqtt_port, client_id="keeper-pub-a")
        clients.append(pub_a)
        info = pub_a.publish("inbox/keeper", b"later", qos=1)
        got2 = []
        s2 = resume_persistent_session(b.mqtt_port, "keeper", on_message=got2.append)
        wait_until(lambda: got2 == [b"later"], 10, "the message queued on B")
        info.wait_for_publish(10)
        s2.disconnect()
        s2.loop_stop()
    finally:
        for c in clients:
            c.close()
        for r in (a2, b):
            if r is not None:
                assert r.stop() == 0, r.log()


def test_a_clean_start_on_another_router_discards_the_session_and_takes_over_its_client(pair):
    a, b = pair
    # A persistent session waiting on A; a clean start on B discards it.
    subscribe_persistently_and_leave(a.mqtt_port, "cleaner", "inbox/cleaner")
    wait_until(lambda: log_line(b, "MQTT session replica kept", "client=cleaner",
                                "subscriptions=1"), 10, "B to keep the replica")
    Client(b.mqtt_port, client_id="cleaner").close()
    wait_until(lambda: log_line(a, "MQTT session discarded", "client=cleaner"), 10,
               "A to discard the session")
    # Nothing to resume anywhere now (neither handed over nor a replica).
    s = connect_persistent(b.mqtt_port, "cleaner", False)
    s.disconnect()
    s.loop_stop()
    # A connected client is taken over by a connection on another router,
    # clean or not (5.0 reason 0x8E).
    first = Client(a.mqtt_port, paho.MQTTv5, client_id="twin-mesh")
    second = Client(b.mqtt_port, paho.MQTTv5, client_id="twin-mesh")
    wait_until(lambda: first.disconnect_reason is not None, 10, "the first to be closed")
    assert int(first.disconnect_reason.value) == 0x8E
    first.c.loop_stop()
    second.close()


def test_a_persistent_session_is_handed_over_across_the_chain(chain):
    a, b, c = chain
    for r in (a, c):
        wait_until(lambda r=r: len(r.state().get("addresses", {}).get("_mqtt/retain", [])) == 2,
                   20, f"{r.name} to see the other MQTT routers")
    subscribe_persistently_and_leave(a.mqtt_port, "traveller", "inbox/traveller")
    wait_for_address(c, "inbox/traveller")
    pub = Client(c.mqtt_port, client_id="traveller-pub")
    pub.publish("inbox/traveller", b"while-away", qos=1)
    wait_until(lambda: metric(a, 'bote_address_undelivered{address="inbox/traveller"}') == 1,
               10, "the message queued in the session on A")
    got = []
    s = resume_persistent_session(c.mqtt_port, "traveller", on_message=got.append)
    wait_until(lambda: got == [b"while-away"], 10, "the queued message on C, across B")
    wait_until(lambda: len(pub.acked) == 1, 10, "the publisher's PUBACK")
    s.disconnect()
    s.loop_stop()
    pub.close()


def test_a_message_sent_and_not_acknowledged_is_handed_over_with_a_connected_session(pair):
    a, b = pair
    # A 3.1.1 client with a persistent session on A that never acknowledges.
    s = raw(a.mqtt_port)
    cid, topic = b"unacked", b"inbox/unacked"
    body = b"\x00\x04MQTT\x04\x00" + struct.pack(">H", 30) + struct.pack(">H", len(cid)) + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    sub = struct.pack(">HH", 1, len(topic)) + topic + b"\x01"
    s.sendall(bytes([0x82, len(sub)]) + sub)
    seen = b""

    def received(what):
        nonlocal seen
        try:
            seen += s.recv(4096)
        except socket.timeout:
            pass
        return what in seen
    wait_until(lambda: received(b"\x90\x03\x00\x01\x01"), 10, "the SUBACK")
    wait_for_address(b, "inbox/unacked")
    pub = Client(b.mqtt_port, client_id="unacked-pub")
    pub.publish("inbox/unacked", b"first", qos=1)
    wait_until(lambda: received(b"first"), 10, "the PUBLISH on A (left unacknowledged)")
    assert not pub.acked
    # Its client id connects to B: A closes the raw connection (3.1.1 has
    # no DISCONNECT from the server) and hands the unacknowledged message.
    got = []
    c = resume_persistent_session(b.mqtt_port, "unacked", on_message=got.append)
    wait_until(lambda: got == [b"first"], 10, "the unacknowledged message again, on B")
    wait_until(lambda: len(pub.acked) == 1, 10, "the publisher's PUBACK once B has it")
    s.settimeout(5)
    assert read_all(s)[1], "the connection on A was not closed"
    s.close()
    c.disconnect()
    c.loop_stop()
    pub.close()


def test_a_router_back_with_its_data_dir_learns_the_retained_changes_it_missed(tmp_path):
    b = Router("Router.WB", inter_router=True, mqtt=True,
               router_extra=f'data-dir = "{tmp_path / "b"}"')
    a_extra = f'data-dir = "{tmp_path / "a"}"'
    a = Router("Router.WA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
               router_extra=a_extra)
    a2 = None
    try:
        for r in (a, b):
            wait_until(lambda r=r: "_mqtt/retain" in r.state().get("addresses", {}), 20,
                       f"{r.name} to see the other retained store")
        pub = Client(b.mqtt_port)
        pub.c.publish("farm/silo", b"full", qos=1, retain=True).wait_for_publish(10)
        pub.c.publish("farm/gate", b"open", qos=1, retain=True).wait_for_publish(10)
        assert retained_set(a.mqtt_port, "farm/#", 2) == [("farm/gate", b"open"),
                                                          ("farm/silo", b"full")]
        assert a.stop() == 0, a.log()
        # While A is down: one topic replaced, the other cleared.
        pub.c.publish("farm/silo", b"empty", qos=1, retain=True).wait_for_publish(10)
        pub.c.publish("farm/gate", b"", qos=1, retain=True).wait_for_publish(10)
        pub.close()
        a2 = Router("Router.WA", connectors=[("to-b", b.inter_router_port, 1)], mqtt=True,
                    router_extra=a_extra)
        wait_until(lambda: "2 retained message(s)" in a2.log(), 10, "A's old copies read back")
        wait_until(lambda: retained_set(a2.mqtt_port, "farm/#", 1) == [("farm/silo", b"empty")],
                   20, "A to learn the replacement and the clear it missed")
    finally:
        for r in (a2, b):
            if r is not None:
                assert r.stop() == 0, r.log()
