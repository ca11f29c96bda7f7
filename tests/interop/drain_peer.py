"""A tiny broker written with Qpid Proton (Python), run as its own process
by the link-routing tests: a queue per address, it accepts what it
receives, sends unsettled from the queue to receivers with credit, and
completes a receiver's drain (the Proton C example broker ignores drain).
It prints `listening on PORT` once listening and `flow ADDRESS CREDIT
DRAIN` for every flow on a sending link.

With a certificate directory (from `botectl certs`) it listens with TLS,
presenting server.pem.

    python drain_peer.py CONTAINER_ID PORT [CERT_DIR]"""

import collections
import sys

from proton import SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Peer(MessagingHandler):
    def __init__(self, container_id, port, certs=None):
        super().__init__(auto_accept=True)
        self.certs = certs
        self.container_id = container_id
        self.port = port
        self.queues = collections.defaultdict(collections.deque)

    def on_start(self, event):
        if self.certs:
            domain = SSLDomain(SSLDomain.MODE_SERVER)
            domain.set_credentials(f"{self.certs}/server.pem", f"{self.certs}/server-key.pem",
                                   None)
            event.container.listen(f"amqps://127.0.0.1:{self.port}", ssl_domain=domain)
        else:
            event.container.listen(f"127.0.0.1:{self.port}")
        print(f"listening on {self.port}", flush=True)

    def on_connection_init(self, event):
        event.connection.container = self.container_id

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            link.source.address = link.remote_source.address
        else:
            link.target.address = link.remote_target.address

    def _send(self, sender):
        q = self.queues[sender.source.address]
        while sender.credit > 0 and q:
            sender.send(q.popleft())
        if sender.drain_mode and not q:
            sender.drained()

    def on_link_flow(self, event):
        link = event.link
        if link.is_sender:
            print(f"flow {link.source.address} {link.credit} {int(link.drain_mode)}", flush=True)
            self._send(link)

    def on_sendable(self, event):
        self._send(event.sender)

    def on_message(self, event):
        address = event.link.target.address
        self.queues[address].append(event.message)
        for link in self._senders(event.connection, address):
            self._send(link)

    def _senders(self, connection, address):
        link = connection.link_head(0)
        while link:
            if link.is_sender and link.source.address == address:
                yield link
            link = link.next(0)


if __name__ == "__main__":
    Container(Peer(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)).run()
