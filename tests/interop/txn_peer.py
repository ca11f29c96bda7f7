"""A tiny transactional broker written with Qpid Proton (Python), run as
its own process by the link-routing tests (the Proton C and Python example
brokers have no transaction coordinator): it answers a coordinator link's
declare with `declared` (a new transaction id) and its discharge with
`accepted`, and accepts messages on other links. It prints `listening on
PORT` once listening, then one line per event:

    declare TXN_ID
    message ADDRESS BODY STATE TXN_ID   (STATE 52 = transactional-state)
    discharge TXN_ID FAILED

    python txn_peer.py CONTAINER_ID PORT"""

import sys

from proton import Terminus
from proton.handlers import MessagingHandler
from proton.reactor import Container

DECLARED = 0x33
TRANSACTIONAL_STATE = 0x34


class Peer(MessagingHandler):
    def __init__(self, container_id, port):
        super().__init__(auto_accept=False)
        self.container_id = container_id
        self.port = port
        self.next_txn = 0

    def on_start(self, event):
        event.container.listen(f"127.0.0.1:{self.port}")
        print(f"listening on {self.port}", flush=True)

    def on_connection_init(self, event):
        event.connection.container = self.container_id

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            link.source.address = link.remote_source.address
        elif link.remote_target.type == Terminus.COORDINATOR:
            link.target.type = Terminus.COORDINATOR
            link.target.copy(link.remote_target)
        else:
            link.target.address = link.remote_target.address

    def on_message(self, event):
        d = event.delivery
        body = event.message.body
        if event.link.remote_target.type == Terminus.COORDINATOR:
            name = str(body.descriptor)
            if name in ("amqp:declare:list", "49"):
                self.next_txn += 1
                txn = f"txn-{self.next_txn}".encode()
                print(f"declare {txn.decode()}", flush=True)
                d.local.data = [txn]
                d.update(DECLARED)
            else:
                txn, failed = body.value[0], body.value[1]
                print(f"discharge {bytes(txn).decode()} {bool(failed)}", flush=True)
                d.update(d.ACCEPTED)
            d.settle()
            return
        state = d.remote_state
        data = d.remote.data if state == TRANSACTIONAL_STATE else None
        txn = bytes(data[0]).decode() if data else "-"
        print(f"message {event.link.target.address} {body} {state} {txn}", flush=True)
        d.update(d.ACCEPTED)
        d.settle()


if __name__ == "__main__":
    Container(Peer(sys.argv[1], int(sys.argv[2]))).run()
