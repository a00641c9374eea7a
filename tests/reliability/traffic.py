"""Many concurrent clients over real HTTP: chat completions and Anthropic messages, streamed or
not, some abandoned by the client; each outcome keeps what the client saw.

Every request carries its own token in the prompt (``rel-0042``) and its own ``X-Request-Id``,
so the usage record of any request — even one abandoned before an answer, which never learns
its generation id — is found by the prompt the organization opted to keep.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson

from tests.log_hygiene import prompt_register

TOKEN = re.compile(r"rel-\d{4}")


@dataclass(frozen=True)
class Call:
    index: int
    key: str  # the plaintext API key
    model: str
    anthropic: bool = False  # /v1/messages instead of /v1/chat/completions
    stream: bool = False
    # "": read the whole answer; "early": give up after abort_after_s, wherever the request is;
    # "waiting": give up once the upstream has the request (credit held, no answer yet);
    # "mid_stream": give up after the first content of the answer.
    abort: str = ""
    abort_after_s: float = 0.0
    max_tokens: int = 40

    @property
    def token(self) -> str:
        return f"rel-{self.index:04d}"

    @property
    def request_id(self) -> str:
        return f"reliability-{self.index:04d}"


@dataclass
class Outcome:
    call: Call
    status: int | None = None  # None: the client gave up before the status line
    request_id: str = ""
    generation_id: str = ""
    body: dict[str, Any] = field(default_factory=dict)  # a non-streamed answer or error body
    events: list[dict[str, Any]] = field(default_factory=list)  # a stream's data payloads
    finished: bool = False  # the whole answer arrived ([DONE] or message_stop)
    abandoned: bool = False  # the client went away first

    @property
    def error(self) -> dict[str, Any] | None:
        """The error object of a refused request, or the SSE error event of a failed stream."""
        if "error" in self.body:
            return dict(self.body["error"])
        found = [e["error"] for e in self.events if "error" in e]
        return dict(found[-1]) if found else None

    @property
    def cost(self) -> Decimal | None:
        """``usage.cost`` as the client was told it (the stream's last usage for streams)."""
        usages = [e["usage"] for e in self.events if isinstance(e.get("usage"), dict)]
        usage = usages[-1] if usages else self.body.get("usage")
        if not isinstance(usage, dict) or "cost" not in usage:
            return None
        return Decimal(str(usage["cost"]))

    @property
    def provider(self) -> str:
        heads = [e for e in self.events if "provider" in e]
        return str((heads[0] if heads else self.body).get("provider", ""))

    @property
    def fallbacks(self) -> list[dict[str, Any]]:
        heads = [e for e in self.events if "fallbacks" in e]
        return list((heads[0] if heads else self.body).get("fallbacks", []))


def _request(call: Call) -> tuple[str, dict[str, str], dict[str, Any]]:
    headers = {"X-Request-Id": call.request_id}
    if call.anthropic:
        headers["x-api-key"] = call.key
    else:
        headers["Authorization"] = f"Bearer {call.key}"
    prompt = f"Request {call.token}: count to ten."
    prompt_register(prompt)  # prompts must reach no log (tests/log_hygiene.py)
    body = {"model": call.model, "max_tokens": call.max_tokens, "stream": call.stream,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    if call.stream and not call.anthropic:
        body["stream_options"] = {"include_usage": True}  # the cost the client was told
    return ("/v1/messages" if call.anthropic else "/v1/chat/completions"), headers, body


class UpstreamWatch:
    """Which request tokens the fake upstream has received, polled in the background."""

    def __init__(self, client: httpx.AsyncClient, fake_url: str) -> None:
        self.client = client
        self.fake_url = fake_url
        self.seen: dict[str, asyncio.Event] = {}
        self.count = 0

    def event(self, token: str) -> asyncio.Event:
        return self.seen.setdefault(token, asyncio.Event())

    async def run(self) -> None:
        while True:
            response = await self.client.get(f"{self.fake_url}/_requests?after={self.count}")
            received = response.json()["requests"]
            self.count += len(received)
            for request in received:
                found = TOKEN.search(orjson.dumps(request.get("body")).decode())
                if found:
                    self.event(found.group()).set()
            await asyncio.sleep(0.05)


def _has_content(event: dict[str, Any]) -> bool:
    if event.get("type") == "content_block_delta":
        return True
    return any((c.get("delta") or {}).get("content") for c in event.get("choices") or [])


async def _post_until(
    client: httpx.AsyncClient, call: Call, give_up: Awaitable[Any]
) -> httpx.Response | None:
    """The response, or None when ``give_up`` came first (cancelling closes the connection)."""
    path, headers, body = _request(call)
    request = asyncio.ensure_future(client.post(path, json=body, headers=headers))
    waiter = asyncio.ensure_future(give_up)
    done, _ = await asyncio.wait({request, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if request in done:
        return request.result()
    request.cancel()
    with suppress(asyncio.CancelledError):
        await request
    return None


async def send(
    client: httpx.AsyncClient, call: Call, watch: UpstreamWatch | None = None
) -> Outcome:
    outcome = Outcome(call)
    path, headers, body = _request(call)
    if call.abort in ("early", "waiting"):
        if call.abort == "waiting":
            assert watch is not None, "aborts when the upstream has the request need a watch"
            give_up = watch.event(call.token).wait()
        else:
            give_up = asyncio.sleep(call.abort_after_s)
        response = await _post_until(client, call, give_up)
        if response is None:
            outcome.abandoned = True
            return outcome
        outcome.status, outcome.body, outcome.finished = response.status_code, response.json(), True
        outcome.request_id = response.headers.get("x-request-id", "")
        outcome.generation_id = str(outcome.body.get("id", ""))
        return outcome
    async with client.stream("POST", path, json=body, headers=headers) as response:
        outcome.status = response.status_code
        outcome.request_id = response.headers.get("x-request-id", "")
        outcome.generation_id = response.headers.get("x-generation-id", "")
        if not call.stream or response.status_code != 200:
            outcome.body, outcome.finished = orjson.loads(await response.aread()), True
            outcome.generation_id = outcome.generation_id or str(outcome.body.get("id", ""))
            return outcome
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                outcome.finished = True
                break
            event = orjson.loads(data)
            outcome.events.append(event)
            if event.get("type") == "message_stop":
                outcome.finished = True
                break
            if call.abort == "mid_stream" and _has_content(event):
                outcome.abandoned = True  # leaving the block closes the connection mid-stream
                break
    return outcome


async def fire(
    base_url: str, calls: list[Call], *, fake_url: str = "", timeout: float = 60
) -> list[Outcome]:
    """Send every call at once (one connection each); outcomes in the calls' order."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client,
        httpx.AsyncClient(timeout=timeout) as upstream_client,
    ):
        watch = UpstreamWatch(upstream_client, fake_url) if fake_url else None
        watching = asyncio.ensure_future(watch.run()) if watch else None
        try:
            return list(await asyncio.gather(*(send(client, call, watch) for call in calls)))
        finally:
            if watching is not None:
                watching.cancel()
                with suppress(asyncio.CancelledError):
                    await watching
