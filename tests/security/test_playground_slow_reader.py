"""A slow browser on the playground holds at most ``RELAY_MESSAGES_MAX`` messages of the answer
in the server: the gateway's ``send`` waits for room, so its upstream read waits too (as an
ASGI server's ``send`` does on ``/v1``). Before, the relay was an unbounded ``asyncio.Queue``:
the gateway put the whole answer (up to ``GATEWAY_MAX_RESPONSE_BYTES``) into memory per
connection while the browser read its first event.

The playground's relay runs here on the test's own event loop (the gateway's request path, its
database connections and the fake upstream are real); the browser is the test reading the
response's content one event at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from accounts.keys import key_authenticate_digest
from accounts.models import Membership, Role
from routing import playground
from routing.gateway.app import gateway_app
from tests.factories import member_add
from tests.routing.world import World

BOUND = 4
STREAM = {"model": "test/gpt", "stream": True,
          "messages": [{"role": "user", "content": "Tell me everything about tea and coffee"}]}  # fmt: skip


class _Counted:
    """The gateway's messages: how many it handed to the relay, and whether a send waits."""

    def __init__(self) -> None:
        self.sent = 0
        self.waiting = False
        self.finished = False


def _counting(counted: _Counted, app: Any) -> Any:
    async def gateway(scope: Any, receive: Any, send: Any) -> None:
        async def counted_send(message: Any) -> None:
            counted.waiting = True
            await send(message)
            counted.waiting = False
            counted.sent += 1

        try:
            await app(scope, receive, counted_send)
        finally:
            counted.finished = True

    return gateway


def _playground_key(world: World) -> Any:
    user = member_add(world.organization, role=Role.MEMBER)
    member = Membership.objects.get(user=user, organization=world.organization)
    return key_authenticate_digest(playground.playground_key(member).digest)


async def _slowly_read(key: Any, counted: _Counted) -> tuple[int, int, list[bytes]]:
    response = await playground.gateway_call(key, orjson.dumps(STREAM), request_id="")
    assert isinstance(response.streaming_content, AsyncIterator)
    content = aiter(response.streaming_content)
    parts = [await anext(content)]  # the browser reads one event, then stalls
    for _ in range(500):  # until the gateway waits for room, or has sent everything
        if counted.waiting or counted.finished:
            break
        await asyncio.sleep(0.01)
    sent_while_stalled = counted.sent
    parts += [part async for part in content]  # the browser reads on, to the end
    while not counted.finished:
        await asyncio.sleep(0.01)
    response.close()
    return sent_while_stalled, counted.sent, parts


def test_a_slow_browser_holds_a_bounded_part_of_the_answer(world: World, monkeypatch: Any) -> None:
    monkeypatch.setattr(playground, "RELAY_MESSAGES_MAX", BOUND, raising=False)
    counted = _Counted()
    monkeypatch.setattr(playground, "gateway_app", _counting(counted, gateway_app))
    key = _playground_key(world)

    stalled, total, parts = asyncio.run(_slowly_read(key, counted))

    # The start, the one event read, BOUND waiting in the queue; the one being sent waits.
    assert total > BOUND + 4, f"the answer is too short to show the bound: {total} messages"
    assert stalled <= 2 + BOUND, f"{stalled} of {total} messages were taken while one was read"
    text = b"".join(parts).decode()
    assert text.rstrip().endswith("data: [DONE]")
    generation_id = orjson.loads(text.split("data: ", 2)[1].split("\n", 1)[0])["id"]
    assert world.usage_record(generation_id).status == "succeeded"


async def _leave(key: Any, counted: _Counted, *, read_first: bool) -> str:
    response = await playground.gateway_call(key, orjson.dumps(STREAM), request_id="")
    generation_id = response["x-generation-id"]
    if read_first:  # the browser reads one event and leaves: the relay ends
        assert isinstance(response.streaming_content, AsyncIterator)
        content = response.streaming_content
        await anext(content)
        await content.aclose()  # type: ignore[attr-defined]
    response.close()  # as Django does, the body never read when the browser left before it
    for _ in range(1000):  # the gateway must not wait for room no one will make
        if counted.finished:
            break
        await asyncio.sleep(0.01)
    return generation_id


@pytest.mark.parametrize("read_first", [True, False])
def test_a_browser_that_leaves_lets_the_gateway_settle(
    world: World, monkeypatch: Any, read_first: bool
) -> None:
    monkeypatch.setattr(playground, "RELAY_MESSAGES_MAX", BOUND, raising=False)
    counted = _Counted()
    monkeypatch.setattr(playground, "gateway_app", _counting(counted, gateway_app))
    key = _playground_key(world)

    generation_id = asyncio.run(_leave(key, counted, read_first=read_first))

    assert counted.finished
    assert world.usage_record(generation_id).status in {"aborted", "succeeded"}
