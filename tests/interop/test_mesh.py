"""Several boted processes in a mesh, driven by real Qpid Proton clients:
deliveries cross routers and their outcomes come back hop by hop."""

import contextlib
import pathlib
import re
import signal
import time

import pytest

from clients import EchoServer, Receiver, Requester, Sender
from conftest import Router, wait_until

# The window per address and inter-router hop, read from the router's
# source so the bound below follows it.
HOP_WINDOW = int(re.search(
    r"pub const HOP_WINDOW: u32 = (\d+);",
    (pathlib.Path(__file__).resolve().parents[2] / "node/src/mesh/data.rs").read_text(),
).group(1))


def routes(router):
    """The router's own latest view of the mesh (its state file)."""
    return router.state()


@pytest.fixture
def chain():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)])
    routers = [a, b, c]
    wait_until(lambda: all(len(routes(r).get("routes", {})) == 2 for r in routers), 20,
               "the chain to converge")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def test_chain_a_b_c_delivers_ten_thousand_unsettled_and_every_outcome_returns(chain):
    a, b, c = chain
    rx = Receiver(c.url, "queue.chain", expect=10_000).start()
    assert rx.attached.wait(10)
    # The sender on A gets credit once A has learned of C's consumer.
    tx = Sender(a.url, "queue.chain", 10_000, timeout=120).start()
    tx.join()
    rx.join()
    assert tx.error is None and rx.error is None, (tx.error, rx.error)
    assert tx.counts() == {"accepted": 10_000}
    assert sorted(m.id for m in rx.messages) == list(range(10_000))


def test_chain_presettled_arrives_none_dropped(chain):
    a, b, c = chain
    rx = Receiver(c.url, "queue.chain.pre", expect=2_000).start()
    assert rx.attached.wait(10)
    tx = Sender(a.url, "queue.chain.pre", 2_000, presettled=True, timeout=60).start()
    tx.join()
    rx.join()
    assert rx.count == 2_000


def test_closest_prefers_a_local_consumer_then_the_remote_one(chain):
    a, b, c = chain
    remote = Receiver(c.url, "closest.pref").start()
    local = Receiver(a.url, "closest.pref").start()
    for r in (remote, local):
        assert r.attached.wait(10)
    Sender(a.url, "closest.pref", 50).start().join()
    wait_until(lambda: local.count == 50, 10, "local consumer got all")
    assert remote.count == 0
    local.stop_requested.set()
    local.join()
    # Deliveries that still reach the departed local consumer's link are
    # routed again, so no wait is needed here.
    tx = Sender(a.url, "closest.pref", 20).start().join()
    assert tx.counts() == {"accepted": 20}
    wait_until(lambda: remote.count == 20, 10, "remote consumer got the rest")
    remote.stop_requested.set()
    remote.join()


def test_large_message_crosses_the_chain_intact(chain):
    import os
    from proton import Message
    a, b, c = chain
    payload = os.urandom(3 << 20)
    rx = Receiver(c.url, "queue.chain.large", expect=1).start()
    assert rx.attached.wait(10)
    tx = Sender(a.url, "queue.chain.large", [Message(body=payload)], timeout=60).start().join()
    rx.join()
    assert tx.counts() == {"accepted": 1}
    assert rx.messages[0].body == payload


def test_killing_the_middle_router_returns_in_flight_deliveries_to_the_sender():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)])
    try:
        wait_until(lambda: all(len(routes(r).get("routes", {})) == 2 for r in (a, b, c)), 20,
                   "the chain to converge")
        rx = Receiver(c.url, "queue.fail", settle=None, credit=100).start()
        assert rx.attached.wait(10)
        tx = Sender(a.url, "queue.fail", 200, timeout=60).start()
        wait_until(lambda: rx.count == 100, 20, "receiver holds 100 unsettled")
        b.proc.kill()
        b.proc.wait()
        # Every delivery ends with an outcome at the sender: none vanishes.
        wait_until(lambda: len(tx.outcomes) == tx.sent and tx.sent > 0, 30,
                   "an outcome for every message sent")
        counts = tx.counts()
        assert set(counts) <= {"modified", "released"}, counts
        rx.stop_requested.set()
        tx.stop_requested.set()
        rx.join()
        tx.join()
    finally:
        for r in (a, c):
            assert r.stop() == 0, r.log()


def test_multicast_on_a_five_router_ring_reaches_every_receiver_exactly_once():
    r0 = Router("Router.R0", inter_router=True)
    r1 = Router("Router.R1", inter_router=True, connectors=[("to-r0", r0.inter_router_port, 1)])
    r2 = Router("Router.R2", inter_router=True, connectors=[("to-r1", r1.inter_router_port, 1)])
    r3 = Router("Router.R3", inter_router=True, connectors=[("to-r2", r2.inter_router_port, 1)])
    r4 = Router("Router.R4", inter_router=True, connectors=[("to-r3", r3.inter_router_port, 1),
                                                            ("to-r0", r0.inter_router_port, 1)])
    ring = [r0, r1, r2, r3, r4]
    try:
        wait_until(lambda: all(len(routes(r).get("routes", {})) == 4 for r in ring), 20,
                   "the ring to converge")
        rxs = [Receiver(r.url, "multicast.ring").start() for r in ring]
        for rx in rxs:
            assert rx.attached.wait(10)
        # Every router knows the four other routers with consumers.
        wait_until(lambda: all(
            len(routes(r).get("addresses", {}).get("multicast.ring", [])) == 4 for r in ring),
            20, "every router to learn the four other routers with consumers")
        tx = Sender(r2.url, "multicast.ring", 200, timeout=60).start().join()
        assert tx.counts() == {"accepted": 200}, tx.counts()
        wait_until(lambda: all(rx.count >= 200 for rx in rxs), 20, "every copy")
        time.sleep(0.5)  # a duplicate would arrive by now
        for rx in rxs:
            rx.stop_requested.set()
            rx.join()
            assert sorted(m.id for m in rx.messages) == list(range(200)), \
                f"{rx.url}: {len(rx.messages)} messages"
    finally:
        for r in ring:
            assert r.stop() == 0, r.log()


def test_balanced_across_routers_weighs_a_stuck_local_consumer_against_a_remote_one(chain):
    a, b, c = chain
    stuck = Receiver(a.url, "queue.balanced.mesh", settle=None, credit=1000).start()
    remote = Receiver(c.url, "queue.balanced.mesh").start()
    for r in (stuck, remote):
        assert r.attached.wait(10)
    wait_until(lambda: len(routes(a).get("addresses", {}).get("queue.balanced.mesh", [])) == 1, 10,
               "A to learn of C's consumer")
    total = 1000
    tx = Sender(a.url, "queue.balanced.mesh", total, timeout=60).start()
    wait_until(lambda: stuck.count + remote.count == total, 30, "all messages received")
    held = stuck.count
    # The stuck local link is weighed by its unsettled count against the
    # remote router's outstanding + cost, so it is not chosen past its
    # capacity (250) while the remote one can take deliveries, and
    # everything else is accepted through the mesh. (With credit hop by hop
    # the remote's outstanding count grows with the hop windows, so the
    # stuck link may fill up to its capacity.)
    assert 0 < held <= 250, held
    assert remote.count >= total - 250
    wait_until(lambda: len(tx.outcomes) == total - held, 30, "outcomes of the settled ones")
    assert tx.counts() == {"accepted": total - held}
    for r in (stuck, remote, tx):
        r.stop_requested.set()
        r.join()


def test_a_stuck_consumer_holds_back_only_its_own_address_and_presettled_waits_for_credit(chain):
    a, b, c = chain
    # X: a consumer on C that took 10 and grants no more credit.
    stuck = Receiver(c.url, "queue.hol.x", settle=None, credit=10).start()
    # Y: a healthy consumer on C; both addresses cross the same A-B and B-C streams.
    healthy = Receiver(c.url, "queue.hol.y", expect=1000).start()
    for r in (stuck, healthy):
        assert r.attached.wait(10)
    wait_until(lambda: all(len(routes(a).get("addresses", {}).get(q, [])) == 1
                           for q in ("queue.hol.x", "queue.hol.y")), 10, "A to learn both")
    tx_x = Sender(a.url, "queue.hol.x", 3000, presettled=True, timeout=60).start()
    wait_until(lambda: stuck.count == 10, 20, "the stuck consumer's 10")
    tx_y = Sender(a.url, "queue.hol.y", 1000, timeout=60).start().join()
    healthy.join()
    assert tx_y.counts() == {"accepted": 1000}, "Y was blocked behind X"
    assert healthy.count == 1000
    # X's sender is held back by credit, not allowed to pile messages up in
    # the mesh: at most what the consumer took, its link's window on C (the
    # link capacity, 250), a window per inter-router hop (A-B, B-C;
    # HOP_WINDOW in node/src/mesh/data.rs) and its own link capacity (250)
    # — and then no more, however long it waits. It tries 3000.
    time.sleep(1.0)
    assert stuck.count == 10
    sent = tx_x.sent
    assert sent <= 10 + 250 + 2 * HOP_WINDOW + 250, f"X sender sent {sent}: not held back"
    time.sleep(0.5)
    assert tx_x.sent == sent, f"X sender kept sending: {sent} -> {tx_x.sent}"
    for r in (stuck, tx_x):
        r.stop_requested.set()
        r.join()


@contextlib.contextmanager
def square(router_extra=""):
    """A - B - D and A - C - D, A's cheaper path to D through B (cost 2
    against 4). Yields (A, B, C, D) once A routes to D through B; at the
    end B (which the tests kill) is killed if it still runs, and the others
    must stop cleanly."""
    a = Router("Router.A", inter_router=True, router_extra=router_extra)
    b = Router("Router.B", inter_router=True, router_extra=router_extra,
               connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", inter_router=True, router_extra=router_extra,
               connectors=[("to-a", a.inter_router_port, 2)])
    d = Router("Router.D", router_extra=router_extra,
               connectors=[("to-b", b.inter_router_port, 1), ("to-c", c.inter_router_port, 2)])
    try:
        wait_until(lambda: all(len(routes(r).get("routes", {})) == 3 for r in (a, b, c, d))
                   and route(a, "Router.D") == {"next_hop": "Router.B", "cost": 2}, 20,
                   "the square to converge with A reaching D through B")
        yield a, b, c, d
    finally:
        if b.proc.poll() is None:
            kill(b)
        for r in (a, c, d):
            assert r.stop() == 0, r.log()


def receiver_on_d(a, d, address, **options):
    """A receiver on D, attached, once A has learned of it."""
    rx = Receiver(d.url, address, **options).start()
    assert rx.attached.wait(10)
    wait_until(lambda: len(routes(a).get("addresses", {}).get(address, [])) == 1, 10,
               f"A to learn of the consumer of {address} on D")
    return rx


def kill(router):
    router.proc.kill()
    router.proc.wait()


def reforwarded(a, n):
    """A's log line for the loss of B: `n` re-forwarded (any number when
    None), none returned modified."""
    count = r"\d+" if n is None else str(n)
    return re.search(rf"lost Router\.B: {count} in-flight deliveries re-forwarded, 0 returned modified",
                     a.log())


def assert_re_forwarded_and_accepted_once(a, tx, rx, n):
    """Waits for `tx` and `rx`: all `n` accepted, each received exactly once,
    and A logged all `n` as re-forwarded when it lost B."""
    tx.join()
    rx.join()
    assert tx.error is None and rx.error is None, (tx.error, rx.error)
    assert tx.counts() == {"accepted": n}, tx.counts()
    time.sleep(0.3)  # a duplicate would arrive by now
    assert sorted(m.id for m in rx.messages) == list(range(n)), "lost or duplicated"
    assert reforwarded(a, n), a.log()


# A stopped B must not be declared lost by hello timeout while the test
# fills its stream: only the SIGKILL ends it.
PATIENT = "hello-timeout-ms = 10000"


def test_square_kill_b_under_load_reroutes_through_c_and_no_message_vanishes():
    with square() as (a, b, c, d):
        rx = receiver_on_d(a, d, "queue.square")
        total = 5000
        tx = Sender(a.url, "queue.square", total, timeout=90).start()
        wait_until(lambda: rx.count > 1000, 30, "traffic through B")
        kill(b)
        wait_until(lambda: (route(a, "Router.D") or {}).get("next_hop") == "Router.C", 10,
                   "A to reroute through C")
        tx.join()
        # Every message has exactly one outcome at the sender.
        assert len(tx.outcomes) == total, f"{total - len(tx.outcomes)} messages have no outcome ({tx.error}, {tx.refused}, sent {tx.sent}, {tx.counts()})"
        counts = tx.counts()
        print("square under load, outcomes at the sender:", counts)
        assert set(counts) <= {"accepted", "modified", "released"}, counts
        time.sleep(0.5)
        rx.stop_requested.set()
        rx.join()
        received = [m.id for m in rx.messages]
        accepted = {i for i, o in tx.outcomes.items() if o == "accepted"}
        # Accepted exactly once; nothing accepted went missing.
        assert len(received) == len(set(received)), "a message was delivered twice"
        assert accepted <= set(received)
        # What was in flight through B went on through C, and the copies of
        # what D's consumer had when B died were answered with its own
        # outcome: all accepted. Nothing is released: A never lacks a path
        # to D (it has C), and what it routed to B's stream as that stream
        # closed waits for the new routes.
        assert counts == {"accepted": total}, counts
        assert reforwarded(a, None), a.log()


def test_square_in_flight_deliveries_of_a_lost_neighbour_are_re_forwarded_and_accepted_once():
    with square(PATIENT) as (a, b, c, d):
        n = 100
        rx = receiver_on_d(a, d, "queue.reforward", expect=n)
        b.proc.send_signal(signal.SIGSTOP)
        tx = Sender(a.url, "queue.reforward", n, timeout=60).start()
        wait_until(lambda: tx.sent == n, 10, "the sender to send all")
        time.sleep(0.5)  # A forwards them to the stopped B, where they stall
        assert rx.count == 0 and not tx.outcomes, (rx.count, tx.counts())
        kill(b)
        assert_re_forwarded_and_accepted_once(a, tx, rx, n)


def test_square_a_silent_neighbour_is_dropped_at_the_hello_timeout_and_its_in_flight_deliveries_re_forwarded():
    # B stops (SIGSTOP) without closing anything: only the hello timeout
    # can tell. A then closes B's stream and re-forwards what B holds.
    with square("hello-interval-ms = 100\nhello-timeout-ms = 500") as (a, b, c, d):
        n = 100
        rx = receiver_on_d(a, d, "queue.silent", expect=n)
        b.proc.send_signal(signal.SIGSTOP)
        try:
            tx = Sender(a.url, "queue.silent", n, timeout=60).start()
            assert_re_forwarded_and_accepted_once(a, tx, rx, n)
            assert re.search(r"closing inter-router stream .*no message from Router\.B for the hello timeout",
                             a.log()), a.log()
        finally:
            b.proc.send_signal(signal.SIGCONT)


def test_square_copies_of_deliveries_a_consumer_holds_wait_for_its_outcome_and_are_not_delivered_again():
    with square(PATIENT) as (a, b, c, d):
        n = 50
        rx = receiver_on_d(a, d, "queue.held", settle=None, credit=200)
        tx = Sender(a.url, "queue.held", n, timeout=60).start()
        wait_until(lambda: rx.count == n, 10, "the consumer to hold them all")
        kill(b)
        # A re-forwards them through C; D finds each one held by its
        # consumer: the copy waits for the consumer's outcome instead of
        # being delivered again.
        wait_until(lambda: reforwarded(a, n), 10, "A to re-forward them")
        time.sleep(0.5)
        assert not tx.outcomes, tx.counts()
        assert sorted(m.id for m in rx.messages) == list(range(n)), "lost or duplicated"
        # The consumer accepts what it holds: its outcomes cannot go back
        # through B, but D answers the copies with them.
        rx.accept_held.set()
        tx.join()
        assert tx.counts() == {"accepted": n}, tx.counts()
        assert rx.accepted_held == n
        # New messages take C.
        more = Sender(a.url, "queue.held", numbered(n, 20), timeout=30).start().join()
        assert more.counts() == {"accepted": 20}, more.counts()
        assert sorted(m.id for m in rx.messages) == list(range(n + 20))
        rx.stop_requested.set()
        rx.join()


def test_many_64k_messages_cross_the_chain_in_bounded_batches(chain):
    # Hundreds of 64 KiB messages in flight would make one gRPC message far
    # larger than a peer accepts if frames were not cut into bounded batches.
    import os
    from proton import Message
    a, b, c = chain
    payloads = [os.urandom(64 * 1024) for _ in range(8)]
    rx = Receiver(c.url, "queue.chain.64k", expect=400).start()
    assert rx.attached.wait(10)
    tx = Sender(a.url, "queue.chain.64k",
                [Message(body=payloads[i % 8], id=i) for i in range(400)], timeout=60).start().join()
    rx.join()
    assert tx.counts() == {"accepted": 400}, tx.counts()
    assert all(m.body == payloads[m.id % 8] for m in rx.messages)


# ------------------------------------------------------- triangle with costs

TRACE = "x-opt-qd.trace"
INGRESS = "x-opt-qd.ingress"
A_B_C = ["0/Router.A", "0/Router.B", "0/Router.C"]
A_C = ["0/Router.A", "0/Router.C"]


def route(router, dest):
    return routes(router).get("routes", {}).get(dest)


@pytest.fixture
def triangle():
    # A-B and B-C cost 1, A-C cost 10 (C dialled A: C's connector decides
    # the cost and A adopts it). C's client listener keeps the router
    # annotations, so a receiver there sees the path each message took.
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", extra_listener='strip-annotations = "no"',
               connectors=[("to-b", b.inter_router_port, 1), ("to-a", a.inter_router_port, 10)])
    routers = [a, b, c]
    wait_until(lambda: all(len(routes(r).get("routes", {})) == 2 for r in routers)
               and route(a, "Router.C") == {"next_hop": "Router.B", "cost": 2}
               and route(c, "Router.A") == {"next_hop": "Router.B", "cost": 2}, 20,
               "the triangle to converge on A-B-C")
    yield routers
    for r in routers:
        assert r.stop() == 0, r.log()


def numbered(first, count):
    from proton import Message
    return [Message(body=f"message-{i}", id=i) for i in range(first, first + count)]


def test_closest_takes_the_cheaper_path_and_a_cost_change_on_sighup_moves_the_traffic(triangle):
    a, b, c = triangle
    n = 200
    rx = Receiver(c.url, "closest.cost", expect=n + 2000 + n, timeout=120).start()
    assert rx.attached.wait(10)
    wait_until(lambda: routes(a).get("addresses", {}).get("closest.cost") == ["Router.C"], 10,
               "A to learn of C's consumer")

    # Through B: A-B-C costs 2, the direct link 10.
    before = Sender(a.url, "closest.cost", numbered(0, n)).start().join()
    assert before.counts() == {"accepted": n}, before.counts()
    wait_until(lambda: rx.count >= n, 10, "the first messages")
    for m in rx.messages[:n]:
        assert m.annotations[INGRESS] == "0/Router.A"
        assert list(m.annotations[TRACE]) == A_B_C, m.annotations

    # Lower A-C to 1 on C (the end that decides it) while messages flow.
    during = Sender(a.url, "closest.cost", numbered(n, 2000), timeout=90).start()
    wait_until(lambda: rx.count >= n + 100, 20, "traffic during the change")
    c.reload(lambda text: text.replace("cost = 10", "cost = 1"))
    wait_until(lambda: route(a, "Router.C") == {"next_hop": "Router.C", "cost": 1}
               and route(c, "Router.A") == {"next_hop": "Router.A", "cost": 1}, 5,
               "both ends to route A-C directly")
    assert "cost of link to Router.A changed 10 -> 1" in c.log(), c.log()
    assert "cost of link to Router.C changed 10 -> 1" in a.log(), a.log()
    during.join()
    assert during.counts() == {"accepted": 2000}, during.counts()

    # Directly: the trace no longer passes B.
    after = Sender(a.url, "closest.cost", numbered(n + 2000, n)).start().join()
    assert after.counts() == {"accepted": n}, after.counts()
    rx.join()
    assert rx.error is None, rx.error
    assert sorted(m.id for m in rx.messages) == list(range(n + 2000 + n)), "lost or duplicated"
    by_id = {m.id: m for m in rx.messages}
    for i in range(n + 2000, n + 2000 + n):
        assert list(by_id[i].annotations[TRACE]) == A_C, by_id[i].annotations
    during_paths = {tuple(by_id[i].annotations[TRACE]) for i in range(n, n + 2000)}
    assert during_paths <= {tuple(A_B_C), tuple(A_C)}, during_paths


def test_a_bad_config_on_sighup_is_reported_and_the_router_keeps_routing(triangle):
    a, b, c = triangle
    rx = Receiver(c.url, "closest.bad", expect=400).start()
    assert rx.attached.wait(10)
    wait_until(lambda: routes(a).get("addresses", {}).get("closest.bad") == ["Router.C"], 10,
               "A to learn of C's consumer")

    # An invalid value: reported with file, line and key; nothing changes.
    good = c.reload(lambda text: text.replace("cost = 10", "cost = 0"))
    line = good.splitlines().index("cost = 0") + 1
    error = re.compile(re.escape(c.config) + rf":{line}:\d+: cost in \[\[connector\]\] #2: "
                       r"0 is out of range.*the configuration in force is unchanged")
    wait_until(lambda: error.search(c.log()), 10, "the error to be logged")
    # A file that is not TOML at all: the same.
    c.reload(lambda text: text + "\n[[listener\n")
    wait_until(lambda: len(re.findall(re.escape(c.config) + r":\d+:\d+: .*configuration in force",
                                      c.log())) == 2, 10, "the syntax error to be logged")
    assert c.proc.poll() is None, "boted exited"
    tx = Sender(a.url, "closest.bad", numbered(0, 200)).start().join()
    assert tx.counts() == {"accepted": 200}, tx.counts()
    assert route(a, "Router.C") == {"next_hop": "Router.B", "cost": 2}

    # A valid file that changes what only a restart applies: logged, not applied.
    c.reload(lambda text: text.replace("cost = 0", "cost = 10").replace("\n[[listener\n", "")
             .replace('strip-annotations = "no"', 'strip-annotations = "no"\nlink-capacity = 10'))
    wait_until(lambda: "needs a restart" in c.log(), 10, "the restart notice")
    assert re.search(r"\[\[listener\]\] 127\.0\.0\.1:0 changed: needs a restart", c.log()), c.log()
    tx = Sender(a.url, "closest.bad", numbered(200, 200)).start().join()
    assert tx.counts() == {"accepted": 200}, tx.counts()
    rx.join()
    assert sorted(m.id for m in rx.messages) == list(range(400))
    assert all(list(m.annotations[TRACE]) == A_B_C for m in rx.messages)


def test_a_large_streamed_message_is_annotated_on_its_first_part_and_arrives_intact(triangle):
    import os
    from proton import Message
    a, b, c = triangle
    payload = os.urandom(3 << 20)
    rx = Receiver(c.url, "closest.large", expect=2).start()
    assert rx.attached.wait(10)
    wait_until(lambda: routes(a).get("addresses", {}).get("closest.large") == ["Router.C"], 10,
               "A to learn of C's consumer")
    big = Message(body=payload, id=0, annotations={"x-opt-app": "kept", INGRESS: "forged"})
    tx = Sender(a.url, "closest.large", [big, Message(body="small", id=1)], timeout=60).start().join()
    rx.join()
    assert tx.counts() == {"accepted": 2}, tx.counts()
    by_id = {m.id: m for m in rx.messages}
    assert by_id[0].body == payload
    for m in by_id.values():
        assert list(m.annotations[TRACE]) == A_B_C, m.annotations
        assert m.annotations[INGRESS] == "0/Router.A"
    assert by_id[0].annotations["x-opt-app"] == "kept"


def test_amqp_connections_on_the_mesh_thread_cross_the_mesh_and_reply():
    """`amqp-on-mesh-thread = true`: a router's AMQP connections run on its
    mesh's thread, beside the address and peer actors. Proton clients still
    send across the mesh (every delivery accepted), get replies through a
    dynamic reply-to on the far router, and deliver locally."""
    knob = "amqp-on-mesh-thread = true\n"
    a = Router("Router.MA", extra_listener=knob, inter_router=True)
    b = Router("Router.MB", extra_listener=knob, connectors=[("to-a", a.inter_router_port, 1)])
    try:
        wait_until(lambda: all(len(routes(r).get("routes", {})) == 1 for r in (a, b)), 20,
                   "the two routers to converge")
        for r in (a, b):
            assert f"listening on 127.0.0.1:{r.port} (amqp, on the mesh's thread)" in r.log(), r.log()
        rx = Receiver(b.url, "queue.meshthread", expect=200).start()
        assert rx.attached.wait(10)
        wait_until(lambda: routes(a).get("addresses", {}).get("queue.meshthread"), 10,
                   "A to learn of the consumer on B")
        tx = Sender(a.url, "queue.meshthread", 200).start().join()
        rx.join()
        assert rx.count == 200 and tx.counts() == {"accepted": 200}, tx.counts()

        server = EchoServer(b.url, "service.meshthread").start()
        assert server.attached.wait(10)
        wait_until(lambda: routes(a).get("addresses", {}).get("service.meshthread"), 10,
                   "A to learn of the echo server on B")
        client = Requester(a.url, "service.meshthread", 50).start().join()
        assert client.error is None, client.error
        assert client.replies == {i: f"PING-{i}" for i in range(50)}
        server.stop_requested.set()
        server.join()

        local = Receiver(a.url, "queue.meshthread.local", expect=20).start()
        assert local.attached.wait(10)
        tx = Sender(a.url, "queue.meshthread.local", 20).start().join()
        local.join()
        assert local.count == 20 and tx.counts() == {"accepted": 20}, tx.counts()
    finally:
        for r in (b, a):
            assert r.stop() == 0, r.log()
