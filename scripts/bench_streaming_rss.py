"""Peak RSS of each router of a chain A-B-C while one 50 MiB message
streams through it (issue 17; BENCHMARKS.md, streaming). The sender sends
the first 40 MiB, waits 8 s (the consumer's partial bytes then say whether
the routers forwarded it frame by frame), then the rest. Prints the bytes
the consumer held of the incomplete message and each router's VmHWM minus
its VmRSS before. Run with BOTED=<path to boted>; uses the interop tests'
Router and clients (tests/interop)."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))
import test_streaming as t
from conftest import Router, wait_until
from proton import Message
big = "max-message-size = 0"
a = Router("Router.A", inter_router=True, extra_listener=big)
b = Router("Router.B", inter_router=True, extra_listener=big, connectors=[("to-a", a.inter_router_port, 1)])
c = Router("Router.C", extra_listener=big, connectors=[("to-b", b.inter_router_port, 1)])
rs = (a, b, c)
try:
    wait_until(lambda: all(len(r.state().get("routes", {})) == 2 for r in rs), 20, "converge")
    body = bytes(range(256)) * (t.SIZE // 256)
    enc = Message(body=body, id="big").encode()
    rx = t.PartialReceiver(c.url, "stream.big", expect=1, credit=1, timeout=60).start()
    assert rx.attached.wait(10)
    wait_until(lambda: len(a.state().get("addresses", {}).get("stream.big", [])) == 1, 10, "A")
    before = {r.name: t.kib(r.proc.pid, "VmRSS") for r in rs}
    s = t.PartialSender(a.url, "stream.big", enc, t.FIRST, timeout=60).start()
    time.sleep(8)
    print("partial at consumer after 8 s:", rx.partial_bytes)
    s.finish.set()
    wait_until(lambda: rx.count == 1, 60, "big")
    print("growth KiB", {r.name: t.kib(r.proc.pid, "VmHWM") - before[r.name] for r in rs})
    s.stop_requested.set(); rx.stop_requested.set()
finally:
    for r in rs: r.stop()
