"""The stream finalizer and the disconnect path racing: a stream billed as answered is settled
once, as answered, even when its client leaves during the answer's last write.

``exchange._until_disconnect`` bills a request the client left (``aborted``, what was
generated) only when nothing billed it before (``Exchange.billed``): the stream's finalizer
bills the whole answer (``succeeded``) and then writes the usage chunk and ``[DONE]``; a client
that leaves during that write must not have the outcome re-billed as abandoned. Driven
deterministically: the gateway is served through an ASGI wrapper whose last write (the one
carrying ``[DONE]``) never completes and whose ``receive`` reports the client gone at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from billing.models import LedgerEntry, Reservation, UsageRecord
from tests.routing.servers import ServerThread, leaving_receive, poll
from tests.routing.world import World


class LeavesDuringLastWrite:
    """The gateway's ASGI app behind a client that leaves while the last chunk is written."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        last_write = asyncio.Event()  # the client is there until the last write starts

        async def client_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and b"[DONE]" in message.get("body", b""):
                last_write.set()
                await asyncio.Event().wait()  # the client is gone: this write never completes
            await send(message)

        await self.app(scope, leaving_receive(receive, last_write.wait), client_send)


@pytest.fixture(scope="module")
def leaving_gateway() -> Iterator[ServerThread]:
    from routerhub.asgi import application

    server = ServerThread(LeavesDuringLastWrite(application), lifespan="off").start()
    yield server
    server.stop()


def _stream(url: str, key: str, body: dict[str, Any]) -> bytes:
    """POST a streamed request and read what comes before the connection ends."""
    got = b""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers,
                      timeout=30) as response:  # fmt: skip
        assert response.status_code == 200
        try:
            for chunk in response.iter_bytes():
                got += chunk
        except httpx.HTTPError:  # the server ended the response without its last chunk
            pass
    return got


def test_a_client_leaving_during_the_last_write_leaves_the_answer_billed_once_as_answered(
    world: World, leaving_gateway: ServerThread
) -> None:
    body = {
        "model": "test/gpt",
        "messages": [{"role": "user", "content": "Count to five"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    got = _stream(leaving_gateway.url, world.key, body)
    assert b"data: " in got and b"[DONE]" not in got  # the answer came, its last write did not
    generation_id = poll(
        lambda: Reservation.objects.values_list("generation_id", flat=True).first()
    )
    record = world.usage_record(generation_id)

    # The same stream through the ordinary gateway, read to its end: what the answer costs
    # when nobody leaves.
    complete = _stream(world.gateway_url, world.key, body)
    assert complete.endswith(b"data: [DONE]\n\n")
    reference = world.usage_record(orjson.loads(complete.split(b"\n\n")[0][6:])["id"])
    assert (record.status, record.error_type) == ("succeeded", "")
    assert record.streamed and "usage_estimated" not in record.flag_list
    assert (record.prompt_tokens, record.completion_tokens, record.cost) == (
        reference.prompt_tokens, reference.completion_tokens, reference.cost,
    )  # fmt: skip
    assert UsageRecord.objects.filter(generation_id=generation_id).count() == 1
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=generation_id).state == "settled"
