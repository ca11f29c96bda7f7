"""Hostile traffic against a real boted (issue 16): running out of file
descriptors, connections that trickle their handshake, the listen backlog,
and bad input (SASL garbage, wrong mechanisms, truncated frames). Each
offender gets a clean, specific error and nobody else notices: an
established Qpid Proton client keeps sending and receiving throughout."""

import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from proton import Message
from proton.utils import BlockingConnection

from clients import Receiver, Sender
from conftest import Router, wait_until
from test_single_router import _assert_router_still_works, _frame, _open_frame, _raw

AMQP = b"AMQP\x00\x01\x00\x00"
SASL = b"AMQP\x03\x01\x00\x00"


def _cpu_seconds(pid):
    """User + system CPU time the process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round_trip(sender, receiver, body):
    """Sends `body` on a blocking sender (which waits for its outcome) to
    the threaded `receiver`, which accepts it."""
    before = receiver.count
    sender.send(Message(body=body))
    assert receiver.count == before + 1


def test_at_the_fd_limit_the_router_backs_off_keeps_serving_and_accepts_again():
    # handshake-timeout-ms = 0: the held sockets stay until the test lets go.
    r = Router("Router.F", extra_listener="handshake-timeout-ms = 0\n", nofile=64)
    held = []
    try:
        rcv = Receiver(r.url, "queue.fd", timeout=60).start()
        assert rcv.attached.wait(10)
        conn = BlockingConnection(r.url, timeout=10)
        snd = conn.create_sender("queue.fd")
        _round_trip(snd, rcv, "before")
        # More connects than the router has descriptors for: it accepts
        # until EMFILE, the rest wait in the listen backlog.
        for _ in range(120):
            s = socket.create_connection((r.host, r.port), timeout=5)
            s.sendall(AMQP)
            held.append(s)
        wait_until(lambda: "accept failed" in r.log(), 10, "the router to run out of fds")
        cpu_before = _cpu_seconds(r.proc.pid)
        time.sleep(3)
        cpu_used = _cpu_seconds(r.proc.pid) - cpu_before
        # A spinning accept loop burns a whole core (3 s here).
        assert cpu_used < 1.0, f"router used {cpu_used:.2f} s of CPU in 3 s at the fd limit"
        failures = [l for l in r.log_lines if "accept failed" in l]
        assert len(failures) <= 2, f"{len(failures)} accept-failure lines: logs once per interval"
        assert "Too many open files" in failures[0], failures[0]
        # The established connection is served at the limit.
        _round_trip(snd, rcv, "at the limit")
        for s in held:
            s.close()
        held.clear()
        # Descriptors free up: new clients get in again.
        late = BlockingConnection(r.url, timeout=15)
        _round_trip(late.create_sender("queue.fd"), rcv, "after")
        late.close()
        _round_trip(snd, rcv, "still")
        conn.close()
        rcv.stop_requested.set()
        rcv.join()
        wait_until(lambda: "accepting again" in r.log(), 10, "the router to report accepting again")
    finally:
        for s in held:
            s.close()
        assert r.stop() == 0, r.log()


def test_connections_trickling_their_handshake_are_closed_at_the_deadline():
    r = Router("Router.H", extra_listener="handshake-timeout-ms = 1000\n")
    try:
        rx = Receiver(r.url, "queue.trickle", expect=100, timeout=30).start()
        assert rx.attached.wait(10)
        tricklers = [socket.create_connection((r.host, r.port), timeout=5) for _ in range(50)]
        start = time.time()
        got = {s: b"" for s in tricklers}
        closed = set()
        i = 0
        # One byte of the header per connection every 300 ms (an idle timer
        # would be reset by each); bounded at 10 s.
        while len(closed) < len(tricklers) and time.time() < start + 10:
            for s in tricklers:
                if s in closed:
                    continue
                try:
                    if i < len(AMQP):
                        s.sendall(AMQP[i:i + 1])
                    s.settimeout(0.005)
                    chunk = s.recv(65536)
                    if chunk:
                        got[s] += chunk
                    else:
                        closed.add(s)
                except socket.timeout:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    closed.add(s)
            i += 1
            time.sleep(0.3)
        elapsed = time.time() - start
        assert len(closed) == len(tricklers), f"{len(tricklers) - len(closed)} tricklers still open after {elapsed:.1f} s"
        for s in tricklers:
            assert b"amqp:resource-limit-exceeded" in got[s] and b"handshake not finished" in got[s], got[s]
            s.close()
        # A normal client was not disturbed.
        tx = Sender(r.url, "queue.trickle", 100).start().join()
        assert tx.counts() == {"accepted": 100}, tx.counts()
        rx.join()
        assert rx.count == 100
    finally:
        assert r.stop() == 0, r.log()


def test_the_listen_backlog_is_the_configured_one():
    r = Router("Router.B", extra_listener="backlog = 3000\n")
    try:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{r.port}"], capture_output=True,
                             text=True, check=True).stdout.split()
        # For a listening socket ss shows the backlog as Send-Q.
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
        assert int(out[2]) == min(3000, somaxconn), out
    finally:
        assert r.stop() == 0, r.log()


# --- bad input: a clean, specific error for the offender only -----------------

def _sasl_frame(body):
    return _frame(0, body)[:5] + b"\x01" + _frame(0, body)[6:]


def test_sasl_garbage_ends_that_connection_and_no_other(router):
    other = Receiver(router.url, "queue.survivor").start()
    assert other.attached.wait(10)
    out = _raw(router, SASL + b"\x00\x00\x00\x10\x02\x01\x00\x00" + b"\xff" * 8)
    assert out.startswith(SASL), out
    assert b"ANONYMOUS" in out, "the mechanisms frame came first"
    wait_until(lambda: "protocol error" in router.log(), 5, "the error to be logged")
    _assert_router_still_works(router)
    assert not other.done.is_set(), "an innocent connection was closed"
    other.stop_requested.set()
    other.join()


def test_a_mechanism_the_listener_does_not_offer_gets_the_sasl_auth_outcome(router):
    # sasl-init(mechanism = :KERBEROS)
    init = b"\x00\x53\x41" + b"\xc0\x0b\x01\xa3\x08KERBEROS"
    out = _raw(router, SASL + _sasl_frame(init))
    assert out.startswith(SASL), out
    # sasl-outcome(code = auth (1))
    assert b"\x00\x53\x44\xc0\x03\x01\x50\x01" in out, out
    _assert_router_still_works(router)


def test_a_truncated_frame_at_end_of_stream_drops_only_that_connection(router):
    other = Receiver(router.url, "queue.survivor").start()
    assert other.attached.wait(10)
    s = socket.create_connection((router.host, router.port), timeout=5)
    # A frame header announcing 200 bytes, then 10 bytes and end of stream.
    s.sendall(AMQP + _open_frame() + b"\x00\x00\x00\xc8\x02\x00\x00\x00" + b"\x00" * 10)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    assert out.startswith(AMQP)
    wait_until(lambda: "connection dropped by peer" in router.log(), 5, "the drop to be logged")
    _assert_router_still_works(router)
    assert not other.done.is_set(), "an innocent connection was closed"
    other.stop_requested.set()
    other.join()


# --- an oversized multi-frame message ----------------------------------------

class _AbortCountingReceiver(Receiver):
    aborted = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.partial_seen = threading.Event()

    def on_delivery(self, event):
        # Proton dispatches the event to the handler's own handlers (which
        # read messages and call on_aborted) after this.
        if event.delivery.partial and not event.delivery.aborted:
            self.partial_seen.set()

    def on_aborted(self, event):
        self.aborted += 1


def _list8(*fields):
    body = b"".join(fields)
    return b"\xc0" + bytes([len(body) + 1, len(fields)]) + body


def _str8(text):
    return b"\xa1" + bytes([len(text)]) + text.encode()


def _oversized_raw_sender(router, address, frames, frame_payload=16000, after_first=None):
    """A raw AMQP sender that streams `frames` transfer frames of one
    delivery (more = true throughout) and never answers the router's
    detach: only the router can end that delivery. `after_first` is called
    once the first four frames are sent (well under any size limit), before
    the rest. Returns the socket (still open) and what the router wrote."""
    s = socket.create_connection((router.host, router.port), timeout=5)
    begin = b"\x00\x53\x11" + _list8(b"\x40", b"\x43", b"\x70\x00\x00\x03\xe8", b"\x70\x00\x00\x03\xe8")
    target = b"\x00\x53\x29" + _list8(_str8(address))
    attach = b"\x00\x53\x12" + _list8(_str8("big"), b"\x43", b"\x42", b"\x40", b"\x40", b"\x40",
                                      target, b"\x40", b"\x40", b"\x43")
    s.sendall(AMQP + _open_frame() + _frame(0, begin) + _frame(0, attach))
    got = b""
    deadline = time.time() + 10
    while b"\x00\x53\x13" not in got and time.time() < deadline:  # a flow: credit
        got += s.recv(65536)
    assert b"\x00\x53\x13" in got, got
    first = b"\x00\x53\x14" + _list8(b"\x43", b"\x43", b"\xa0\x01t", b"\x43", b"\x42", b"\x41")
    more = b"\x00\x53\x14" + _list8(b"\x43", b"\x40", b"\x40", b"\x40", b"\x40", b"\x41")
    size = frames * frame_payload
    data = b"\x00\x53\x75\xb0" + struct.pack(">I", size + 4096)  # announces more than is sent
    for i in range(frames):
        chunk = os.urandom(frame_payload)
        s.sendall(_frame(0, (first + data if i == 0 else more) + chunk))
        if i == 3 and after_first is not None:
            after_first()
    s.settimeout(5)
    deadline = time.time() + 10
    while b"amqp:link:message-size-exceeded" not in got and time.time() < deadline:
        try:
            got += s.recv(65536)
        except socket.timeout:
            break
    return s, got


def test_an_oversized_multi_frame_message_is_aborted_toward_the_consumer_whose_link_carries_on():
    r = Router("Router.O", extra_listener="max-message-size = 1048576\n")
    try:
        rx = _AbortCountingReceiver(r.url, "queue.big", expect=1, timeout=30).start()
        assert rx.attached.wait(10)
        # The consumer has part of the delivery before it grows too large
        # (a delivery aborted before a byte of it went out is not sent).
        big, got = _oversized_raw_sender(
            r, "queue.big", 80,
            after_first=lambda: rx.partial_seen.wait(10) or pytest.fail("no part of it reached the consumer"))
        assert b"amqp:link:message-size-exceeded" in got, "the sender's link is detached for size"
        # The consumer had frames of it: it is told the delivery is aborted
        # while the offending sender's connection is still open...
        wait_until(lambda: rx.aborted == 1, 10, "an aborted transfer at the consumer")
        # ... and its link carries on.
        tx = Sender(r.url, "queue.big", [Message(body=os.urandom(1000))], timeout=15).start().join()
        assert tx.counts() == {"accepted": 1}, tx.counts()
        rx.join()
        assert rx.count == 1 and not rx.timed_out
        big.close()
    finally:
        assert r.stop() == 0, r.log()


# --- memory after bursts of connections ---------------------------------------

def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def test_memory_returns_after_each_burst_of_connections():
    # 4 bursts of 500 (scripts/measure_bursts.py runs 8 of 2,000): without
    # giving freed heap pages back, RSS stayed at each burst's peak and
    # climbed burst after burst.
    r = Router("Router.Mem", extra_listener="idle-timeout-secs = 0\n")
    try:
        baseline = _rss_kib(r.proc.pid)
        peaks = []
        for burst in range(4):
            socks = []
            for _ in range(500):
                s = socket.create_connection((r.host, r.port), timeout=10)
                s.sendall(AMQP + _open_frame())
                socks.append(s)
            for s in socks:
                s.settimeout(10)
                got = b""
                while b"\x00\x53\x10" not in got:  # the router's open
                    chunk = s.recv(4096)
                    assert chunk, "connection closed before the router's open"
                    got += chunk
            peak = _rss_kib(r.proc.pid)
            peaks.append(peak)
            for s in socks:
                s.close()
            # At least a quarter of what the burst added goes back. glibc
            # returns only whole free pages, and how many stay pinned by
            # what outlives the burst varies from run to run: half, asked
            # until 2026-12-07, was missed once in a full suite run (it
            # passed alone). The peaks not climbing is the check below.
            settle_to = peak - (peak - baseline) // 4
            wait_until(lambda: _rss_kib(r.proc.pid) < settle_to, 15,
                       lambda: f"burst {burst + 1}: RSS {_rss_kib(r.proc.pid)} KiB, not back "
                       f"under {settle_to} KiB (baseline {baseline}, peak {peak}, "
                       f"peaks so far {peaks})")
        assert peaks[-1] <= peaks[0] * 1.2, f"peaks climb: {peaks} KiB"
    finally:
        assert r.stop() == 0, r.log()
