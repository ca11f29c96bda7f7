"""Event-driven Qpid Proton clients for the interop tests. Each runs its own
proton Container in a thread, bounded by a timeout, and records what it saw."""

import collections
import threading
import time

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import AtLeastOnce, AtMostOnce, Container, DynamicNodeProperties


class _Base(MessagingHandler):
    def __init__(self, url, timeout, **kw):
        super().__init__(**kw)
        self.url = url
        self.timeout = timeout
        self.deadline = time.time() + timeout
        self.stop_requested = threading.Event()
        self.done = threading.Event()
        self.error = None
        self.conn = None
        self.timed_out = False

    def on_start(self, event):
        self.container = event.container
        self.conn = event.container.connect(self.url, reconnect=False)
        self.attach(event)
        event.container.schedule(0.05, self)

    def on_timer_task(self, event):
        if self.done.is_set():
            return
        self.tick()
        if self.stop_requested.is_set() or self.finished():
            self.close()
            return
        if time.time() > self.deadline:
            self.timed_out = True
            self.close()
            return
        event.container.schedule(0.05, self)

    def finished(self):
        return False

    def tick(self):
        """Runs on the client's own thread every 50 ms."""

    def close(self):
        if not self.done.is_set():
            self.done.set()
            if self.conn is not None:
                self.conn.close()

    def on_transport_error(self, event):
        cond = event.transport.condition
        self.error = f"{cond.name}: {cond.description}" if cond else "transport error"
        self.done.set()

    def on_connection_error(self, event):
        cond = event.connection.remote_condition
        self.error = f"{cond.name}: {cond.description}" if cond else "connection error"
        self.close()

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            Container(self).run()
        except Exception as e:  # surfaced by join()
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.done.set()

    def join(self, timeout=None):
        self.thread.join(timeout if timeout is not None else self.timeout + 10)
        assert not self.thread.is_alive(), f"{type(self).__name__} did not finish"
        return self


class Sender(_Base):
    """Sends `messages` (a list of proton Messages, or a count of small ones)
    to `address` and records each delivery's outcome in send order."""

    def __init__(self, url, address, messages, presettled=False, timeout=60, anonymous=False):
        super().__init__(url, timeout)
        if isinstance(messages, int):
            messages = [Message(body=f"message-{i}", id=i) for i in range(messages)]
        self.messages = messages
        self.address = address
        self.presettled = presettled
        self.anonymous = anonymous
        self.sent = 0
        self.outcomes = {}  # index -> outcome name
        self.remote_conditions = []
        self.credit_seen = threading.Event()
        self.refused = None

    def attach(self, event):
        opts = [AtMostOnce()] if self.presettled else [AtLeastOnce()]
        target = None if self.anonymous else self.address
        self.sender = event.container.create_sender(self.conn, target, options=opts)

    def on_link_opened(self, event):
        if event.link.remote_target.address is None and not self.anonymous:
            self.refused = "null target"

    def on_link_error(self, event):
        cond = event.link.remote_condition
        self.refused = f"{cond.name}: {cond.description}" if cond else "link error"
        self.remote_conditions.append(self.refused)
        self.close()

    def on_sendable(self, event):
        self.credit_seen.set()
        while event.sender.credit > 0 and self.sent < len(self.messages):
            m = self.messages[self.sent]
            if self.anonymous and m.address is None:
                m.address = self.address
            d = event.sender.send(m)
            d.index = self.sent
            self.sent += 1
        if self.presettled and self.sent == len(self.messages):
            self.close()

    def _record(self, event, name):
        self.outcomes[event.delivery.index] = name

    def on_accepted(self, event):
        self._record(event, "accepted")

    def on_rejected(self, event):
        self._record(event, "rejected")

    def on_released(self, event):
        d = event.delivery
        name = "modified" if d.remote_state == d.MODIFIED else "released"
        self._record(event, name)
        if name == "modified":
            self.modified_failed = getattr(self, "modified_failed", 0) + int(bool(d.remote.failed))

    def on_settled(self, event):
        pass

    def finished(self):
        return (not self.presettled) and len(self.outcomes) == len(self.messages)

    def counts(self):
        c = {}
        for v in self.outcomes.values():
            c[v] = c.get(v, 0) + 1
        return c


class Receiver(_Base):
    """Receives from `address` (or a dynamic address). `settle`: "accept",
    "reject", "release", "batch" (accept what arrived every 50 ms, as a
    consumer that processes in batches, unless `hold` is set), or None to
    never settle. Stops after `expect` messages when given, else when
    asked."""

    def __init__(self, url, address=None, expect=None, settle="accept", credit=250,
                 timeout=60, dynamic=False, keep_bodies=True):
        super().__init__(url, timeout, prefetch=0, auto_accept=False, auto_settle=False)
        self.address = address
        self.expect = expect
        self.settle_mode = settle
        self.credit = credit
        self.dynamic = dynamic
        self.keep_bodies = keep_bodies
        self.messages = []
        self.count = 0
        self.attached = threading.Event()
        self.remote_address = None
        self.unsettled = []
        self.refused = None
        # Set from another thread to make a never-settling receiver accept
        # what it holds (and, from then on, what it gets).
        self.accept_held = threading.Event()
        self.accepted_held = 0
        # Set from another thread to make a batch receiver hold what it has.
        self.hold = threading.Event()

    def attach(self, event):
        if self.dynamic:
            self.receiver = event.container.create_receiver(
                self.conn, None, dynamic=True, options=DynamicNodeProperties({}))
        else:
            self.receiver = event.container.create_receiver(self.conn, self.address)
        self.receiver.flow(self.credit)

    def on_link_opened(self, event):
        if event.receiver is not None and event.receiver == getattr(self, "receiver", None):
            self.remote_address = event.receiver.remote_source.address
            self.attached.set()

    def on_link_error(self, event):
        cond = event.link.remote_condition
        self.refused = f"{cond.name}: {cond.description}" if cond else "link error"
        self.attached.set()
        self.close()

    def on_message(self, event):
        self.count += 1
        if self.keep_bodies:
            self.messages.append(event.message)
        d = event.delivery
        if self.settle_mode == "accept":
            self.accept(d)
        elif self.settle_mode == "reject":
            self.reject(d)
        elif self.settle_mode == "release":
            self.release(d, delivered=False)
        else:
            self.unsettled.append(d)
        # Keep the window full for settling receivers; a never-settling one
        # gets only its initial credit, like a stuck consumer. A batch is
        # given its credit back as it is accepted.
        if self.settle_mode not in (None, "batch"):
            event.receiver.flow(1)

    def credit_left(self):
        return self.receiver.credit

    def tick(self):
        if self.settle_mode == "batch" and self.unsettled and not self.hold.is_set():
            for d in self.unsettled:
                self.accept(d)
            self.receiver.flow(len(self.unsettled))
            self.unsettled = []
        if self.accept_held.is_set() and self.unsettled:
            for d in self.unsettled:
                self.accept(d)
            self.accepted_held += len(self.unsettled)
            self.unsettled = []

    def finished(self):
        return self.expect is not None and self.count >= self.expect


class AtLeastOnceSender(_Base):
    """Sends messages 0..n-1 (message id = number) unsettled and, as an
    at-least-once application does, sends again each one that comes back
    released or modified, until every one is accepted or rejected.
    `outcomes[id]` lists every outcome that id got, in order."""

    def __init__(self, url, address, n, timeout=60):
        super().__init__(url, timeout)
        self.address = address
        self.n = n
        self.todo = collections.deque(range(n))
        self.outcomes = collections.defaultdict(list)
        self.settled = set()  # ids accepted or rejected
        self.sent = 0

    def attach(self, event):
        self.sender = event.container.create_sender(self.conn, self.address,
                                                    options=[AtLeastOnce()])

    def on_sendable(self, event):
        self._send()

    def _send(self):
        while self.sender.credit > 0 and self.todo:
            i = self.todo.popleft()
            d = self.sender.send(Message(body=f"message-{i}", id=i))
            d.index = i
            self.sent += 1

    def _outcome(self, event, name):
        i = event.delivery.index
        self.outcomes[i].append(name)
        if name in ("accepted", "rejected"):
            self.settled.add(i)
        else:
            self.todo.append(i)
            self._send()

    def on_accepted(self, event):
        self._outcome(event, "accepted")

    def on_rejected(self, event):
        self._outcome(event, "rejected")

    def on_released(self, event):
        d = event.delivery
        self._outcome(event, "modified" if d.remote_state == d.MODIFIED else "released")

    def finished(self):
        return len(self.settled) == self.n


def run_all(*clients):
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    return clients


class EchoServer(_Base):
    """Answers each request on `address` to its reply-to, with the request's
    correlation id and body upper-cased, through an anonymous sender."""

    def __init__(self, url, address, timeout=60):
        super().__init__(url, timeout)
        self.address = address
        self.attached = threading.Event()
        self.served = 0

    def attach(self, event):
        self.receiver = event.container.create_receiver(self.conn, self.address)
        self.sender = event.container.create_sender(self.conn, None)

    def on_link_opened(self, event):
        if event.link == getattr(self, "receiver", None):
            self.attached.set()

    def on_message(self, event):
        req = event.message
        self.sender.send(Message(address=req.reply_to, body=str(req.body).upper(),
                                 correlation_id=req.correlation_id))
        self.served += 1


class Requester(_Base):
    """Sends `count` requests to `address` with a dynamic reply-to and
    collects the replies by correlation id."""

    def __init__(self, url, address, count, timeout=60):
        super().__init__(url, timeout)
        self.address = address
        self.count = count
        self.reply_to = None
        self.replies = {}
        self.sent = 0

    def attach(self, event):
        self.receiver = event.container.create_receiver(self.conn, None, dynamic=True)
        self.sender = event.container.create_sender(self.conn, self.address)

    def on_link_opened(self, event):
        if event.receiver is not None and event.receiver == self.receiver:
            self.reply_to = event.receiver.remote_source.address
            self._send()

    def on_sendable(self, event):
        self._send()

    def _send(self):
        while self.reply_to and self.sender.credit > 0 and self.sent < self.count:
            self.sender.send(Message(body=f"ping-{self.sent}", reply_to=self.reply_to,
                                     correlation_id=self.sent))
            self.sent += 1

    def on_message(self, event):
        self.replies[event.message.correlation_id] = event.message.body

    def finished(self):
        return len(self.replies) == self.count
