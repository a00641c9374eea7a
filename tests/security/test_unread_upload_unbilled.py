"""A request body the upstream never reads is not a request the provider had: the lean
transport says the request was written (``send_request_body.complete``) only once every byte
left its write buffer, and a body that stops going out fails with ``WriteTimeout`` within the
write timeout — a timed-out attempt that is not billed (``sent_trace``)."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from billing.models import UsageRecord
from tests.routing.servers import poll
from tests.routing.world import World
from tests.security.raw_upstream import RawUpstream, holds
from tests.security.test_timeouts_billed import _catalog


def test_an_upload_the_upstream_never_reads_is_not_billed(
    world: World, settings: Any, raw_servers: list[RawUpstream]
) -> None:
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 1.0
    server = RawUpstream(holds)  # accepts, never reads: the body fills the socket buffers
    server.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw_servers.append(server)
    _catalog(world, (f"{server.url()}/v1", "gpt-4o", "10"))
    image = {"url": "data:image/png;base64," + "A" * (16 * 1024 * 1024)}
    content = [
        {"type": "text", "text": "describe " * 2000},
        {"type": "image_url", "image_url": image},
    ]
    response = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/slow", "messages": [{"role": "user", "content": content}]},
        timeout=60,
    )
    assert response.status_code == 408, response.text
    assert "billed" not in response.json()["error"]["metadata"]["attempts"][0]
    record = poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())
    assert (record.status, record.cost, record.prompt_tokens) == ("failed", 0, 0)
