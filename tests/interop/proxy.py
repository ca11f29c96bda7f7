"""A TCP proxy in the test process standing in for one inter-router link
(the Python twin of node/tests/support/proxy.rs): it listens on an
ephemeral port of 127.0.0.1 and forwards every connection to the real
listener. `cut()` closes both sockets of every proxied connection and
refuses new ones (the link stays down); `silence()` keeps the sockets open
but forwards nothing more, in either direction (only the hello timeout can
notice). `interrupt()` closes every proxied connection and refuses new ones
while the listener stays, so that `restore()` brings the link back on the
same port (the router's connector dials it again)."""

import socket
import threading

FORWARD, SILENT, CUT, DOWN = "forward", "silent", "cut", "down"


class LinkProxy:
    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.mode = FORWARD
        self.lock = threading.Lock()
        self.sockets = []
        self.forwarded = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener closed: cut
            with self.lock:
                if self.mode == CUT:
                    client.close()
                    return
                if self.mode == DOWN:
                    client.close()
                    continue
                if self.mode == SILENT:
                    self.sockets.append(client)  # a black hole
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.upstream))
                except OSError:
                    client.close()
                    continue
                for s in (client, server):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sockets += [client, server]
                self.forwarded += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.mode == FORWARD:
                try:
                    sink.sendall(data)
                except OSError:
                    break
            elif self.mode in (CUT, DOWN):
                break
            # SILENT: dropped
        if self.mode == FORWARD:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def silence(self):
        """Stops forwarding in both directions; the sockets stay open."""
        self.mode = SILENT

    def cut(self):
        """Closes both sockets of every connection and refuses new ones."""
        with self.lock:
            self.mode = CUT
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []
        self.listener.close()

    def interrupt(self):
        """Closes both sockets of every connection; new ones are refused
        (accepted and closed at once) until `restore()`."""
        with self.lock:
            self.mode = DOWN
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []

    def restore(self):
        """Forwards new connections again."""
        with self.lock:
            self.mode = FORWARD
