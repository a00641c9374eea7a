"""Through an HTTPS egress proxy, httpcore's ``CONNECT`` reuses the request's ``trace``
extension: the tunnel's own ``send_request_body.complete`` is not the provider's request being
written, so a TLS handshake that never ends behind the proxy stays free (``sent_trace``)."""

from __future__ import annotations

import socket
import threading
from typing import Any

import httpx
import pytest

from billing.models import UsageRecord
from tests.routing.servers import poll
from tests.security.raw_upstream import RawUpstream, holds
from tests.security.test_timeouts_billed import _catalog


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


def connect_proxy(server: RawUpstream, connection: socket.socket) -> None:
    """An HTTP proxy answering ``CONNECT host:port`` with a tunnel to that address."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(4096)
        if not chunk:
            return
        head += chunk
    server.bodies.append(head)
    host, port = head.split(b" ")[1].decode().rsplit(":", 1)
    target = socket.create_connection((host, int(port)))
    connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    threading.Thread(target=_pipe, args=(target, connection), daemon=True).start()
    _pipe(connection, target)


def test_tls_handshake_timeout_behind_a_proxy_is_free(
    world: Any, settings: Any, raw_servers: list[RawUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    from routing.gateway import upstream

    settings.GATEWAY_CONNECT_TIMEOUT = 0.5
    target, proxy = RawUpstream(holds), RawUpstream(connect_proxy)  # ``holds``: no TLS answer
    raw_servers += [target, proxy]
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setattr(upstream._State, "client", None)  # a client built with the proxy
    _catalog(world, (f"{target.url('https')}/v1", "gpt-4o", "10"))
    try:
        response = httpx.post(
            f"{world.gateway_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json={"model": "test/slow", "messages": [{"role": "user", "content": "hi " * 3000}]},
            timeout=30,
        )
    finally:
        upstream._State.client = None
    assert response.status_code == 408, response.text
    assert proxy.bodies and proxy.bodies[0].startswith(b"CONNECT "), "the tunnel was used"
    assert "billed" not in response.json()["error"]["metadata"]["attempts"][0]
    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert (record.cost, record.prompt_tokens, record.flags) == (0, 0, "")
