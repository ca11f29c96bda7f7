"""Credit hop by hop, settlement end to end (issue 12), with Qpid Proton
clients against real boted processes: a sender's credit comes back as its
deliveries move on (into a consumer link's window, or the next hop's), not
when they settle; a consumer that leaves gives back exactly what it never
got (released) and what it had unsettled (modified); a stuck consumer holds
back only its own address, by a bound per hop; a receiver in receiver
settle mode `second` reads the outcome on the router's settling
disposition. The same cases with fe2o3-amqp and raw frames are in
node/tests/credit_fe2o3.rs."""

import pathlib
import re
import time

from proton import Delivery, Link

from clients import Receiver, Sender, _Base
from conftest import Router, wait_until

# The window per address and inter-router hop, read from the router's source.
HOP_WINDOW = int(re.search(
    r"pub const HOP_WINDOW: u32 = (\d+);",
    (pathlib.Path(__file__).resolve().parents[2] / "node/src/mesh/data.rs").read_text(),
).group(1))

# The default listener's link capacity.
LINK_CAPACITY = 250


def held_count(tx, quiet=0.5, timeout=30):
    """How many `tx` sent once it stopped sending (unchanged for `quiet`)."""
    deadline = time.time() + timeout
    last = tx.sent
    while True:
        time.sleep(quiet)
        if tx.sent == last and last > 0:
            return last
        assert time.time() < deadline, f"the sender never stopped: {tx.sent} sent"
        last = tx.sent


def test_credit_comes_back_before_settlement_and_a_leaving_receiver_returns_exactly_what_it_never_got(router):
    rx = Receiver(router.url, "queue.credit", settle=None, credit=10).start()
    assert rx.attached.wait(10)
    tx = Sender(router.url, "queue.credit", 1000, timeout=60).start()
    wait_until(lambda: rx.count == 10, 20, "the receiver's 10")
    # None settled, yet past its link capacity: the receiver's 10, the
    # link's window the router holds for it (250) and the sender's own
    # credit (250).
    held = held_count(tx)
    assert held == 10 + LINK_CAPACITY + LINK_CAPACITY, held
    assert rx.count == 10
    rx.stop_requested.set()  # leaves with its 10 unsettled
    rx.join()
    # (The sender may send a few more before the router hears the receiver
    # is gone: they come back released too.)
    wait_until(lambda: len(tx.outcomes) == tx.sent, 20, "an outcome for each one sent")
    assert tx.sent >= held
    assert tx.counts() == {"modified": 10, "released": tx.sent - 10}, tx.counts()
    assert getattr(tx, "modified_failed", 0) == 10
    tx.stop_requested.set()
    tx.join()


def test_a_stuck_unsettled_consumer_holds_back_only_its_own_address_across_the_chain():
    a = Router("Router.A", inter_router=True)
    b = Router("Router.B", inter_router=True, connectors=[("to-a", a.inter_router_port, 1)])
    c = Router("Router.C", connectors=[("to-b", b.inter_router_port, 1)])
    try:
        wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in (a, b, c)), 20,
                   "the chain to converge")
        stuck = Receiver(c.url, "queue.hol.x", settle=None, credit=10).start()
        healthy = Receiver(c.url, "queue.hol.y", expect=1000).start()
        for r in (stuck, healthy):
            assert r.attached.wait(10)
        wait_until(lambda: all(len(a.state().get("addresses", {}).get(q, [])) == 1
                               for q in ("queue.hol.x", "queue.hol.y")), 10, "A to learn both")
        tx_x = Sender(a.url, "queue.hol.x", 4000, timeout=90).start()
        wait_until(lambda: stuck.count == 10, 20, "the stuck consumer's 10")
        tx_y = Sender(a.url, "queue.hol.y", 1000, timeout=60).start().join()
        healthy.join()
        assert tx_y.counts() == {"accepted": 1000}, "Y was held behind X"
        # X's credit came back long before any settlement, but X is held:
        # the consumer's 10, its link's window on C, a window per
        # inter-router hop (B-C, A-B), its own credit.
        held = held_count(tx_x, quiet=0.7)
        bound = 10 + LINK_CAPACITY + 2 * HOP_WINDOW + LINK_CAPACITY
        assert HOP_WINDOW + LINK_CAPACITY < held <= bound, (held, bound)
        assert stuck.count == 10
        # The consumer leaves: 10 modified, the rest released, none lost.
        stuck.stop_requested.set()
        stuck.join()
        # (Its sender may send a few more before A hears the consumer is
        # gone: they come back released too.)
        wait_until(lambda: len(tx_x.outcomes) == tx_x.sent, 30, "an outcome for each one X sent")
        assert tx_x.sent >= held
        assert tx_x.counts() == {"modified": 10, "released": tx_x.sent - 10}, tx_x.counts()
        tx_x.stop_requested.set()
        tx_x.join()
    finally:
        for r in (a, b, c):
            assert r.stop() == 0, r.log()


class SecondModeReceiver(_Base):
    """A receiver attaching with receiver settle mode `second`: it accepts
    each message without settling and records the state the router's
    settling disposition carries (the sender settles in mode second)."""

    def __init__(self, url, address, expect, timeout=30):
        super().__init__(url, timeout, prefetch=0, auto_accept=False, auto_settle=False)
        self.address = address
        self.expect = expect
        self.attached = None
        self.settled_states = []
        self.rcv_settle_mode = None

    def attach(self, event):
        self.receiver = event.container.create_receiver(self.conn, self.address)
        self.receiver.rcv_settle_mode = Link.RCV_SECOND
        self.receiver.flow(self.expect)

    def on_link_opened(self, event):
        if event.receiver is not None:
            self.rcv_settle_mode = event.receiver.remote_rcv_settle_mode

    def on_message(self, event):
        event.delivery.update(Delivery.ACCEPTED)

    def on_settled(self, event):
        self.settled_states.append(event.delivery.remote_state)
        event.delivery.settle()

    def finished(self):
        return len(self.settled_states) >= self.expect


def test_receiver_settle_mode_second_reads_the_outcome_on_the_settling_disposition(router):
    rx = SecondModeReceiver(router.url, "queue.second", 5).start()
    wait_until(lambda: rx.rcv_settle_mode is not None, 10, "the receiver's attach answered")
    assert rx.rcv_settle_mode == Link.RCV_SECOND, "mode second echoed, so it must work"
    time.sleep(0.2)  # the address actor has the consumer
    tx = Sender(router.url, "queue.second", 5).start().join()
    rx.join()
    assert tx.counts() == {"accepted": 5}
    assert rx.settled_states == [Delivery.ACCEPTED] * 5, rx.settled_states
