"""Resend released (issue 18): a delivery one consumer released is sent to
another consumer, and a delivery a consumer accepted is never sent again.

Two receivers on one balanced address, each with a window of 50 credits:
R1 releases every delivery, R2 accepts (or takes them presettled). Every
body must reach R2 exactly once and every delivery must end accepted at the
sender. The duplicate was reported in about one run of four, so each test
repeats the exchange in a loop bounded in runs and time and checks the
receipts per body after every run. Across a chain the releasing consumer
sits on one router and the accepting one on another, either nearer the
sender or further from it."""

import threading
import time

import pytest
from proton import Message
from proton.reactor import AtMostOnce

from clients import Sender, _Base
from conftest import wait_until
from test_mesh import chain, routes  # noqa: F401 (fixture)

MESSAGES = 200
CREDIT = 50
RUNS = 12
RUN_BUDGET = 8  # seconds: no new run starts past it (after the third)


class TwoReceivers(_Base):
    """R1 on `url1` releases every delivery; R2 on `url2` does as `r2` says:
    "accept", "release", or "presettled" (attached with sender settle mode
    settled, so the router sends it every delivery settled). Each grants
    `CREDIT` and one more per message. On one router both share one
    connection and session. Records every receipt as (receiver, body)."""

    def __init__(self, url1, url2, address, r2="accept", timeout=30):
        super().__init__(url1, timeout, prefetch=0, auto_accept=False, auto_settle=False)
        self.url2 = url2
        self.address = address
        self.r2_mode = r2
        self.receipts = []
        self.attached = threading.Event()
        self.opened = 0
        self.conn2 = None

    def attach(self, event):
        if self.url2 != self.url:
            self.conn2 = event.container.connect(self.url2, reconnect=False)
        self.r1 = event.container.create_receiver(self.conn, self.address, name="R1")
        opts = [AtMostOnce()] if self.r2_mode == "presettled" else []
        self.r2 = event.container.create_receiver(self.conn2 or self.conn, self.address,
                                                  name="R2", options=opts)
        for r in (self.r1, self.r2):
            r.flow(CREDIT)

    def close(self):
        if not self.done.is_set() and self.conn2 is not None:
            self.conn2.close()
        super().close()

    def on_link_opened(self, event):
        self.opened += 1
        if self.opened == 2:
            self.attached.set()

    def on_message(self, event):
        d = event.delivery
        name = "R1" if event.receiver == self.r1 else "R2"
        self.receipts.append((name, event.message.body))
        if name == "R1" or self.r2_mode == "release":
            self.release(d, delivered=False)
        elif not d.settled:
            self.accept(d)
        event.receiver.flow(1)


def one_run(tx_url, r1_url, r2_url, address, r2="accept", ready=None):
    """Sends MESSAGES distinct bodies to `address` from `tx_url` with R1 and
    R2 attached (once `ready(address)` returns). Returns the sender's
    outcome counts and each receiver's receipts per body."""
    rx = TwoReceivers(r1_url, r2_url, address, r2).start()
    assert rx.attached.wait(10), "receivers did not attach"
    if ready is not None:
        ready(address)
    bodies = [f"{address}/{i}" for i in range(MESSAGES)]
    tx = Sender(tx_url, address, [Message(body=b, id=i) for i, b in enumerate(bodies)],
                timeout=20).start()
    tx.join()
    # The sender has every outcome; a duplicate still on its way has a
    # moment to show.
    time.sleep(0.05)
    rx.stop_requested.set()
    rx.join()
    assert tx.error is None and rx.error is None, (tx.error, rx.error)
    per_body = {name: {b: 0 for b in bodies} for name in ("R1", "R2")}
    for name, body in rx.receipts:
        per_body[name][body] += 1
    return tx.counts(), per_body


def runs(body):
    """Calls body(run) RUNS times, or fewer (at least three) once RUN_BUDGET
    seconds have passed."""
    start = time.time()
    for run in range(RUNS):
        if run >= 3 and time.time() - start > RUN_BUDGET:
            break
        body(run)


def some(counts):
    """How many bodies, and the first few with their counts (for messages)."""
    return f"{len(counts)} bodies, e.g. {dict(list(counts.items())[:4])}"


def check_r2_got_each_once(outcomes, per_body, run):
    not_once = {b: n for b, n in per_body["R2"].items() if n != 1}
    r1_twice = {b: n for b, n in per_body["R1"].items() if n > 1}
    assert not not_once, f"run {run}: R2 receipts per body not 1: {some(not_once)}"
    assert not r1_twice, f"run {run}: R1 got these more than once: {some(r1_twice)}"
    assert outcomes == {"accepted": MESSAGES}, f"run {run}: sender outcomes {outcomes}"


def test_a_delivery_r2_accepted_is_not_resent_when_r1_releases(router):
    runs(lambda run: check_r2_got_each_once(
        *one_run(router.url, router.url, router.url, f"queue.resend.{run}"), run))


def test_r2_taking_deliveries_presettled_gets_each_released_one_once(router):
    runs(lambda run: check_r2_got_each_once(
        *one_run(router.url, router.url, router.url, f"queue.resend.pre.{run}", "presettled"),
        run))


def test_two_releasing_consumers_each_get_a_delivery_once_then_it_goes_back_released(router):
    # Each consumer that gave a delivery back is not offered it again, so
    # two consumers that release everything do not pass deliveries between
    # them for ever: each sees each message once, then it goes home.
    def run_once(run):
        outcomes, per_body = one_run(router.url, router.url, router.url,
                                     f"queue.resend.both.{run}", "release")
        for name in ("R1", "R2"):
            not_once = {b: n for b, n in per_body[name].items() if n != 1}
            assert not not_once, f"run {run}: {name} receipts per body not 1: {some(not_once)}"
        assert outcomes == {"released": MESSAGES}, f"run {run}: sender outcomes {outcomes}"
    runs(run_once)


def knows_consumers_on(router, ids):
    """`ready` for one_run: `router` has learned of consumers of the address
    on every router in `ids`, so balanced has them all to choose from."""
    def ready(address):
        wait_until(lambda: all(r in routes(router).get("addresses", {}).get(address, [])
                               for r in ids), 10, f"{address} known on {ids}")
    return ready


# (R1's router, R2's router) on the chain A-B-C, the sender on A: the
# releasing consumer nearer the sender (its releases go on to C), or
# further (C gives them back to B, which must resend them to R2).
PLACEMENTS = [("B", "C"), ("C", "B")]


@pytest.mark.parametrize("r2", ["accept", "presettled"])
@pytest.mark.parametrize("r1_on,r2_on", PLACEMENTS)
def test_chain_a_delivery_released_on_one_router_is_resent_to_the_consumer_on_another(
        chain, r1_on, r2_on, r2):
    routers = dict(zip("ABC", chain))
    ready = knows_consumers_on(routers["A"], ["Router.B", "Router.C"])
    runs(lambda run: check_r2_got_each_once(
        *one_run(routers["A"].url, routers[r1_on].url, routers[r2_on].url,
                 f"queue.resend.chain.{r1_on}{r2_on}.{r2}.{run}", r2, ready), run))
