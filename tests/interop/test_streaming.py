"""Streaming of large messages (issue 17) with Qpid Proton clients across a
chain of real boted processes A-B-C: a 50 MiB message is forwarded frame by
frame as it arrives (its consumer on C holds most of it while its sender on
A has not sent the rest), small messages on another address cross the
chain meanwhile without waiting for it, and no router holds it whole: each
router's peak RSS grows by less than the message's size.

(On the same address and the same consumer link the small ones would wait:
AMQP does not interleave deliveries on one link. On the inter-router hops
they would not: a streaming message takes turns with the others there.)"""

import hashlib
import threading

from proton import Message
from proton.reactor import AtLeastOnce

from clients import Receiver, Sender, _Base
from conftest import Router, wait_until

MiB = 1024 * 1024
SIZE = 50 * MiB
FIRST = 40 * MiB
SMALL = 500


class PartialSender(_Base):
    """Sends one encoded message in two parts: the first `first` bytes at
    once, the rest when `finish` is set."""

    def __init__(self, url, address, encoded, first, timeout=120):
        super().__init__(url, timeout)
        self.address = address
        self.encoded = encoded
        self.first = first
        self.finish = threading.Event()
        self.delivery = None
        self.completed = False
        self.outcome = None

    def attach(self, event):
        self.sender = event.container.create_sender(self.conn, self.address,
                                                    options=[AtLeastOnce()])

    def on_sendable(self, event):
        if self.delivery is None:
            self.delivery = self.sender.delivery(b"big")
            self.sender.stream(self.encoded[:self.first])

    def tick(self):
        if self.finish.is_set() and self.delivery is not None and not self.completed:
            self.sender.stream(self.encoded[self.first:])
            self.sender.advance()
            self.completed = True

    def on_accepted(self, event):
        self.outcome = "accepted"

    def on_rejected(self, event):
        self.outcome = "rejected"

    def on_released(self, event):
        self.outcome = "released"

    def finished(self):
        return self.outcome is not None


class PartialReceiver(Receiver):
    """A receiver that also records the most of a delivery it held while
    the delivery was still incomplete."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.partial_bytes = 0

    def on_delivery(self, event):
        d = event.delivery
        if d.partial:
            self.partial_bytes = max(self.partial_bytes, d.pending)
        # (MessagingHandler's own delivery handling is a child handler,
        # which proton calls after this.)


def kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_a_50mib_message_streams_across_the_chain_beside_small_messages_and_no_router_holds_it_whole():
    # (The default listener refuses messages over 10 MiB.)
    big = "max-message-size = 0"
    a = Router("Router.A", inter_router=True, extra_listener=big)
    b = Router("Router.B", inter_router=True, extra_listener=big,
               connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", extra_listener=big, connectors=[("to-b", b.inter_router_port, 1)])
    routers = (a, b, c)
    try:
        wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in routers), 20,
                   "the chain to converge")
        body = bytes(range(256)) * (SIZE // 256)
        encoded = Message(body=body, id="big").encode()
        assert len(encoded) > SIZE
        rx_big = PartialReceiver(c.url, "stream.big", expect=1, credit=1, timeout=120).start()
        rx_small = Receiver(c.url, "stream.small", expect=SMALL, timeout=120).start()
        for r in (rx_big, rx_small):
            assert r.attached.wait(10)
        wait_until(lambda: all(len(a.state().get("addresses", {}).get(q, [])) == 1
                               for q in ("stream.big", "stream.small")), 10, "A to learn both")
        before = {r.name: kib(r.proc.pid, "VmRSS") for r in routers}

        big = PartialSender(a.url, "stream.big", encoded, FIRST).start()
        small = Sender(a.url, "stream.small", SMALL, timeout=120).start()
        # The first 40 MiB cross the whole chain while the sender still
        # holds the rest: forwarded frame by frame, not once whole.
        try:
            wait_until(lambda: rx_big.partial_bytes >= FIRST - MiB, 60,
                       "most of the first part to reach the consumer")
        except AssertionError:
            print("partial", rx_big.partial_bytes, "small", rx_small.count, big.error, rx_big.error)
            for r in routers:
                print(r.name, "".join(r.log_lines[-15:]))
            raise
        # The small ones went by meanwhile.
        wait_until(lambda: rx_small.count == SMALL, 60, "the small messages")
        assert rx_big.count == 0 and not big.completed
        small.join()
        assert small.counts() == {"accepted": SMALL}, small.counts()

        big.finish.set()
        big.join()
        rx_big.join()
        assert big.outcome == "accepted"
        got = rx_big.messages[0].body
        assert len(got) == len(body) and hashlib.sha256(got).digest() == hashlib.sha256(body).digest()

        growth = {r.name: kib(r.proc.pid, "VmHWM") - before[r.name] for r in routers}
        print(f"peak RSS growth (KiB) against a {SIZE // MiB} MiB message: {growth}")
        for name, kb in growth.items():
            assert kb < SIZE // 1024, f"{name} grew by {kb} KiB"
        rx_small.join()
    finally:
        for r in reversed(routers):
            r.stop()
