"""An organization may point its provider key at a host of its own, and that host may answer
anything: gigabytes, or a few kilobytes of gzip or zstd that decode to gigabytes, in the one
gateway process that serves every organization. Every answer is bounded once decoded
(``GATEWAY_MAX_RESPONSE_BYTES``, whole or streamed) and an encoding whose decoding has no bound
per read (zstd) is refused before any of it is read."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import zstandard

from routing.models import Provider
from routing.services import provider_key_create
from tests.routing.servers import ServerThread
from tests.routing.world import World, endpoint, model

LIMIT = 1024 * 1024
PADDING = 3 * LIMIT  # 3 MiB once decoded; ~3 KiB of gzip on the wire
COMPLETION = {
    "id": "chatcmpl-own", "object": "chat.completion", "created": 1, "model": "own",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}  # fmt: skip


def _chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-own", "object": "chat.completion.chunk",
                            "created": 1, "model": "own",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = (
    _chunk({"role": "assistant", "content": "Hello there."}, None)
    + _chunk({}, "stop", COMPLETION["usage"])
    + b"data: [DONE]\n\n"
)


class OwnHost:
    """An OpenAI-compatible host answering every chat request with ``answer`` (status 200)."""

    def __init__(self) -> None:
        self.answer: tuple[dict[str, str], bytes] = ({}, b"")
        self.accept_encodings: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.accept_encodings.append(dict(scope["headers"]).get(b"accept-encoding", b""))
        while (await receive()).get("more_body"):
            pass
        headers, body = self.answer
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def own_host(world: World, settings: Any) -> Iterator[OwnHost]:
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the host listens on 127.0.0.1
    settings.GATEWAY_MAX_RESPONSE_BYTES = LIMIT
    app = OwnHost()
    server = ServerThread(app, lifespan="off").start()
    world.catalog({"models": [model("test/own")],
                   "endpoints": [endpoint("test/own", "fake-openai", "gpt-4o-mini")]})  # fmt: skip
    provider_key_create(organization=world.organization, provider=Provider.objects.get(slug="fake-openai"),
                        secret="sk-own-host-5151", base_url=f"{server.url}/v1")  # fmt: skip
    try:
        yield app
    finally:
        server.stop()


def ask(world: World, *, stream: bool) -> httpx.Response:
    body = {"model": "test/own", "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip


def attempt_errors(response: httpx.Response) -> list[str]:
    attempts = response.json()["error"]["metadata"]["attempts"]
    return [f"{a['error']}: {a.get('detail', '')}" for a in attempts]


def test_a_small_answer_from_an_own_host_is_served_gzipped_or_not(
    world: World, own_host: OwnHost
) -> None:
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(COMPLETION))
    assert ask(world, stream=False).json()["choices"][0]["message"]["content"] == "Hello there."

    gzipped = gzip.compress(orjson.dumps(COMPLETION))
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"}, gzipped)
    assert ask(world, stream=False).json()["choices"][0]["message"]["content"] == "Hello there."

    own_host.answer = ({"content-type": "text/event-stream", "content-encoding": "gzip"},
                       gzip.compress(STREAM))  # fmt: skip
    streamed = ask(world, stream=True)
    assert streamed.status_code == 200 and "Hello there." in streamed.text


def test_a_gzip_bomb_answer_is_refused_past_the_limit(world: World, own_host: OwnHost) -> None:
    # Valid JSON: a completion followed by 3 MiB of spaces. Before, it was decoded whole into
    # memory and served (200); the padding could as well have been gigabytes.
    bomb = gzip.compress(orjson.dumps(COMPLETION) + b" " * PADDING)
    assert len(bomb) < 16 * 1024
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"}, bomb)

    response = ask(world, stream=False)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [
        f"malformed_response: the answer is larger than {LIMIT} bytes"
    ]


def test_a_streamed_answer_is_refused_past_the_limit(world: World, own_host: OwnHost) -> None:
    # 3 MiB of SSE comments (which carry nothing) before the answer, gzipped to a few KiB.
    padding = b": keep-alive\n\n" * (PADDING // 14)
    own_host.answer = ({"content-type": "text/event-stream", "content-encoding": "gzip"},
                       gzip.compress(padding + STREAM))  # fmt: skip

    response = ask(world, stream=True)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [f"stream_error: the answer is larger than {LIMIT} bytes"]


def test_a_zstd_answer_is_refused_before_it_is_decoded(world: World, own_host: OwnHost) -> None:
    # One zstd frame of a few bytes can declare gigabytes: nothing of it is decoded.
    packed = zstandard.ZstdCompressor().compress(orjson.dumps(COMPLETION))
    own_host.answer = ({"content-type": "application/json", "content-encoding": "zstd"}, packed)

    response = ask(world, stream=False)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [
        "malformed_response: the answer's Content-Encoding 'zstd' is not one RouterHub decodes"
    ]


def test_the_gateway_asks_upstreams_only_for_encodings_it_decodes(
    world: World, own_host: OwnHost
) -> None:
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(COMPLETION))

    assert ask(world, stream=False).status_code == 200
    assert own_host.accept_encodings == [b"gzip, deflate"]
