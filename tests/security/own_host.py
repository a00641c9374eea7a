"""A tenant's own host that answers what a test tells it, for the tests of what the gateway
reads of an answer (``test_upstream_*_bounded``, the pipeline gate stalls): the organization's
provider key points ``test/own`` at it; and the one chat request those tests send."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from routing.models import Provider
from routing.services import provider_key_create
from tests.routing.servers import ServerThread
from tests.routing.world import World, endpoint, model

COMPLETION = {
    "id": "chatcmpl-own", "object": "chat.completion", "created": 1, "model": "own",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}  # fmt: skip


def stream_chunk(
    delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None
) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-own", "object": "chat.completion.chunk",
                            "created": 1, "model": "own",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


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


@contextmanager
def own_host_serving(world: World, settings: Any, app: Any) -> Iterator[None]:
    """``app`` serving ``test/own`` as the organization's own OpenAI-compatible host."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the host listens on 127.0.0.1
    server = ServerThread(app, lifespan="off").start()
    world.catalog({"models": [model("test/own")],
                   "endpoints": [endpoint("test/own", "fake-openai", "gpt-4o-mini")]})  # fmt: skip
    provider_key_create(organization=world.organization, provider=Provider.objects.get(slug="fake-openai"),
                        secret="sk-own-host-5151", base_url=f"{server.url}/v1")  # fmt: skip
    try:
        yield
    finally:
        server.stop()


def ask(world: World, *, stream: bool, model_id: str = "test/own") -> httpx.Response:
    """The chat request the tests send (``model_id``: the catalog's model for the host)."""
    body = {"model": model_id, "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "Say hello."}]}  # fmt: skip
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {world.key}"}, timeout=30)  # fmt: skip
