"""Qpid Proton clients for the tracing test (node/tests/tracing.rs), which
starts a 3-router mesh and an OTLP receiver and runs this script twice:

  trace_client.py recv URL ADDRESS N    receives N messages as raw bytes (no
                                        decode and re-encode), accepts them,
                                        and prints one JSON line per message:
                                        {"raw": hex, "id": message-id}
  trace_client.py send URL ADDRESS      sends three messages (the cases below)
                                        as raw bytes, waits for each outcome,
                                        and prints one JSON line per message:
                                        {"id", "sent": hex, "bare": hex, "outcome"}
  trace_client.py manage URL ROUTER     one management QUERY of the `router`
                                        entity of ROUTER (through the mesh, as
                                        `qdstat -r`), printed as {"id": ...}

Cases (message-id): "plain" (no trace context), "qpid" (the caller's context
in the message annotation x-opt-qpid-tracestate, as Qpid JMS and Proton C++
write it), "app-props" (the caller's context in application-property
traceparent). `bare` is the message's bare part (properties,
application-properties, body) as encoded: the router must deliver it byte
for byte. Everything is bounded by a 30 s timeout.
"""

import json
import sys
import time

from proton import Delivery, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container

QPID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
APP_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TIMEOUT = 30


def strip_header(encoded):
    """The message after its header section (Proton always writes one)."""
    if not encoded.startswith(b"\x00\x53\x70"):
        return encoded
    code = encoded[3]
    if code == 0x45:  # list0
        return encoded[4:]
    if code == 0xC0:  # list8: size, count, items
        return encoded[5 + encoded[4]:]
    if code == 0xD0:  # list32
        return encoded[8 + int.from_bytes(encoded[4:8], "big"):]
    raise ValueError(f"header section with format code {code:#x}")


def cases():
    props = {"color": "blue", "n": 7}
    plain = Message(id="plain", body="hello plain", properties=dict(props))
    qpid = Message(id="qpid", body="hello qpid", properties=dict(props))
    qpid_annotations = {
        symbol("x-opt-qpid-tracestate"): {"traceparent": QPID_TRACEPARENT, "tracestate": "bote=t1"}
    }
    app = Message(
        id="app-props",
        body=b"\x00\x01binary body",
        properties=dict(props, traceparent=APP_TRACEPARENT, tracestate="bote=t2"),
    )
    out = []
    for msg, annotations in [(plain, None), (qpid, qpid_annotations), (app, None)]:
        bare = strip_header(msg.encode())
        if annotations:
            msg.annotations = annotations
        sent = msg.encode()
        assert sent.endswith(bare), "the bare message follows the annotations"
        out.append((msg.id, sent, bare))
    return out


class Recv(MessagingHandler):
    def __init__(self, url, address, n):
        super().__init__(prefetch=0, auto_accept=False)
        self.url, self.address, self.n = url, address, n
        self.got = 0

    def on_start(self, event):
        self.conn = event.container.connect(self.url, reconnect=False)
        self.link = event.container.create_receiver(self.conn, self.address)
        self.link.flow(self.n)
        self.timer = event.container.schedule(TIMEOUT, self)

    def on_link_opened(self, event):
        print(json.dumps({"attached": True}), flush=True)

    def on_delivery(self, event):
        dlv = event.delivery
        if not dlv.readable or dlv.partial:
            return
        raw = dlv.link.recv(dlv.pending)
        dlv.link.advance()
        msg = Message()
        msg.decode(raw)
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        print(json.dumps({"raw": raw.hex(), "id": msg.id}), flush=True)
        self.got += 1
        if self.got == self.n:
            self.timer.cancel()
            self.conn.close()

    def on_timer_task(self, event):
        print(json.dumps({"timeout": True}), flush=True)
        self.conn.close()


class Send(MessagingHandler):
    def __init__(self, url, address):
        super().__init__(auto_settle=True)
        self.url, self.address = url, address
        self.todo = cases()
        self.current = None

    def on_start(self, event):
        self.conn = event.container.connect(self.url, reconnect=False)
        self.link = event.container.create_sender(self.conn, self.address)
        self.timer = event.container.schedule(TIMEOUT, self)

    def on_sendable(self, event):
        # One at a time: each outcome before the next message.
        if self.current is None and self.todo and event.sender.credit > 0:
            self.current = self.todo.pop(0)
            mid, sent, _ = self.current
            event.sender.delivery(mid.encode())
            event.sender.stream(sent)
            event.sender.advance()

    def _outcome(self, event, outcome):
        mid, sent, bare = self.current
        print(json.dumps({"id": mid, "sent": sent.hex(), "bare": bare.hex(), "outcome": outcome}), flush=True)
        self.current = None
        if self.todo:
            self.on_sendable(event)
        else:
            self.timer.cancel()
            self.conn.close()

    def on_accepted(self, event):
        self._outcome(event, "accepted")

    def on_released(self, event):
        self._outcome(event, "released")

    def on_rejected(self, event):
        self._outcome(event, "rejected")

    def on_timer_task(self, event):
        print(json.dumps({"timeout": True}), flush=True)
        self.conn.close()


def main():
    mode, url, address = sys.argv[1:4]
    if mode == "manage":
        from management import Management
        with Management(url, router=address, timeout=TIMEOUT) as m:
            print(json.dumps({"id": m.query("router", ["id"])[0]["id"]}), flush=True)
        return
    if mode == "recv":
        handler = Recv(url, address, int(sys.argv[4]))
    else:
        handler = Send(url, address)
    container = Container(handler)
    container.run()


if __name__ == "__main__":
    main()
