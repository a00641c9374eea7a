"""A provider at the socket level, for what the fake upstream cannot do: accept a connection and
never read it, read a request and never answer, or refuse one slowly (its error trickling in)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Handler = Callable[["RawUpstream", socket.socket], None]
MAX_REQUEST_BYTES = 4 * 1024 * 1024


class RawUpstream:
    """A TCP server on a free local port calling ``handler`` with each connection in a thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.bodies: list[bytes] = []  # the requests' bodies it read
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self.handler, args=(self, connection), daemon=True).start()

    def read_request(self, connection: socket.socket) -> bytes:
        """One request's body (read to its Content-Length, at most ``MAX_REQUEST_BYTES``)."""
        data = b""
        while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST_BYTES:
            chunk = connection.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = min(int(value), MAX_REQUEST_BYTES)
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        self.bodies.append(body)
        return body

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for connection in self._connections:
            connection.close()


def holds(server: RawUpstream, connection: socket.socket) -> None:
    """Accepts the connection and never reads from it (nor, over TLS, completes a handshake)."""
    server.stopped.wait()


def reads_and_hangs(server: RawUpstream, connection: socket.socket) -> None:
    """Reads the whole request and never answers."""
    server.read_request(connection)
    server.stopped.wait()


def refuses_slowly(status: int) -> Handler:
    """Reads the request, sends ``status``'s head at once and then its error body a byte at a
    time, slower than any client waits."""

    def handler(server: RawUpstream, connection: socket.socket) -> None:
        server.read_request(connection)
        body = b'{"error": {"message": "overloaded, try again later"}}'
        head = (
            b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        )
        try:
            connection.sendall(head % (status, len(body)))
            for byte in body:
                connection.sendall(bytes([byte]))
                if server.stopped.wait(0.5):
                    return
        except OSError:
            return  # the gateway closed the connection

    return handler


def fails_prompts_with(marker: bytes) -> Handler:
    """Answers a request whose body holds ``marker`` with a 503 at once; reads and holds others."""

    def handler(server: RawUpstream, connection: socket.socket) -> None:
        body = server.read_request(connection)
        if marker in body:
            error = b'{"error": {"message": "overloaded"}}'
            connection.sendall(
                b"HTTP/1.1 503 Unavailable\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(error), error)
            )
            connection.close()
            return
        server.stopped.wait()

    return handler
