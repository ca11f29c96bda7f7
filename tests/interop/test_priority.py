"""Message priority (issue 17) with Qpid Proton clients across a chain of
real boted processes A-B-C: a backlog of low-priority messages waits for a
slow consumer, then high-priority ones arrive; the high ones reach the
consumer ahead of most of the backlog, and every low one still arrives, in
its order (no starvation). The priority is read from the AMQP header at A,
carried on each inter-router transfer and honoured where the deliveries
wait (the consumer link's queue on C here; a neighbour's outbound queue
when a hop is the bottleneck, see node/src/mesh/data.rs's tests). An
address's configured priority replaces the messages' own."""

import json
import urllib.request

from proton import Message

from clients import Receiver, Sender
from conftest import DEFAULT_ADDRESSES, Router, wait_until

LOW, HIGH = 200, 50


def undelivered(router, address):
    """The undelivered count of the router's consumer link(s) for `address`."""
    with urllib.request.urlopen(router.http_url + "/api/v1/links", timeout=10) as r:
        links = json.load(r)
    return sum(l["undeliveredCount"] for l in links
               if l["linkDir"] == "out" and l["owningAddr"] == "M0" + address)


def chain(a_addresses=DEFAULT_ADDRESSES):
    a = Router("Router.A", inter_router=True, addresses=a_addresses)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)])
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in (a, b, c)), 20,
               "the chain to converge")
    return a, b, c


def backlog_then_high(routers, address):
    """Sends LOW messages of priority 0 to a consumer on C that holds its
    first 10, then HIGH of priority 9, lets the consumer go on, and returns
    the ids in the order the consumer got them."""
    a, _, c = routers
    # A slow consumer: it takes 10 and holds them (a batch consumer that
    # stopped), so the rest of the backlog waits in the routers.
    rx = Receiver(c.url, address, settle="batch", credit=10, timeout=90)
    rx.hold.set()
    rx.start()
    assert rx.attached.wait(10)
    wait_until(lambda: len(a.state().get("addresses", {}).get(address, [])) == 1, 10,
               "A to learn the consumer")
    low = Sender(a.url, address,
                 [Message(body=f"low-{i}", id=f"low-{i}", priority=0) for i in range(LOW)],
                 timeout=90).start()
    wait_until(lambda: low.sent == LOW and rx.count == 10, 30, "the backlog to be sent")
    high = Sender(a.url, address,
                  [Message(body=f"high-{i}", id=f"high-{i}", priority=9) for i in range(HIGH)],
                  timeout=90).start()
    wait_until(lambda: high.sent == HIGH, 30, "the high-priority ones to be sent")
    # They reach C, behind the backlog (nothing moves meanwhile).
    wait_until(lambda: undelivered(c, address) == LOW + HIGH - 10, 30,
               "everything to wait on C")
    assert rx.count == 10
    rx.hold.clear()
    wait_until(lambda: rx.count == LOW + HIGH, 60, "every message to arrive")
    for s in (low, high):
        s.join()
        assert s.counts() == {"accepted": len(s.messages)}, s.counts()
    rx.stop_requested.set()
    rx.join()
    ids = [m.id for m in rx.messages]
    assert sorted(ids) == sorted([f"low-{i}" for i in range(LOW)] +
                                 [f"high-{i}" for i in range(HIGH)])
    # Each priority arrives whole and in its own order.
    assert [m for m in ids if m.startswith("low-")] == [f"low-{i}" for i in range(LOW)]
    assert [m for m in ids if m.startswith("high-")] == [f"high-{i}" for i in range(HIGH)]
    return ids


def lows_before_last_high(ids):
    # The first 10 were taken before the high ones existed.
    after = ids[10:]
    last_high = max(i for i, m in enumerate(after) if m.startswith("high-"))
    return sum(1 for m in after[:last_high] if m.startswith("low-"))


def test_high_priority_overtakes_a_low_priority_backlog_across_the_chain_and_the_backlog_still_arrives():
    routers = chain()
    try:
        ids = backlog_then_high(routers, "queue.prio")
        # Ahead of most of the backlog (which still arrived whole, above).
        assert lows_before_last_high(ids) < (LOW - 10) // 4, ids
    finally:
        for r in reversed(routers):
            r.stop()


def test_an_addresss_configured_priority_replaces_the_messages_own_across_the_chain():
    # Only A (the ingress router) knows the address's priority: C orders by
    # what the transfers carry.
    routers = chain(DEFAULT_ADDRESSES + '\n[[address]]\nprefix = "fixed"\npriority = 4\n')
    try:
        ids = backlog_then_high(routers, "fixed.prio")
        # All at 4: nobody overtakes, the high ones come after the backlog.
        assert lows_before_last_high(ids) == LOW - 10, ids
    finally:
        for r in reversed(routers):
            r.stop()
