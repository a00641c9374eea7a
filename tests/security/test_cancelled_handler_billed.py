"""A request whose handler the server itself cancels (its shutdown, a deadline of its own) while a
provider has its prompt is billed as if its client had left at that moment: the prompt a provider
had (estimated), what a stream generated, a pipeline's calls. The provider bills them whoever
stopped the request.

Before, only the client leaving billed them: a cancelled handler's record was settled at 0 (a
stream cut mid-answer too), the platform paying the provider.

Each request is stopped twice at the same point — once by its client leaving, once by the server
cancelling its handler (``tests.routing.servers.LeavesWhen``, on the gateway's own event loop) —
and the two records must charge the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from accounts.models import KeyScope
from billing.models import CreditAccount, LedgerEntry, Reservation, UsageRecord, UsageStep
from billing.outbox import usage_outbox_drain
from routerhub.ttl_cache import _RefreshAhead, refresh_ahead_enable
from tests.factories import key_client
from tests.routing.servers import LeavesWhen, ServerThread, poll
from tests.routing.world import World, base_catalog, endpoint, model

PROMPT = "Summarise the history of tea in every region where it is grown. " * 400
_CHAT = {"messages": [{"role": "user", "content": PROMPT}]}


def _catalog(world: World, upstream: str) -> None:
    """``test/slow``: a dear model whose provider behaves as ``upstream`` says."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/slow"))
    data["endpoints"].append(endpoint("test/slow", "fake-openai-b", upstream, "15", "75"))
    world.catalog(data)


def _stopped(
    world: World,
    leaving: tuple[ServerThread, LeavesWhen],
    body: dict[str, Any],
    when: Callable[[World, LeavesWhen], bool],
    *,
    cancels: bool,
) -> UsageRecord:
    """POST ``body`` to chat, stop it once ``when(world, app)`` holds (the client leaves, or with
    ``cancels`` the server cancels its handler) and return its usage record."""
    server, app = leaving
    app.gone, app.cancels = (lambda: when(world, app)), cancels
    world.fake.requests.clear()
    before = set(UsageRecord.objects.values_list("generation_id", flat=True))
    try:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {world.key}"},
            json=body,
            timeout=30,
        ) as answer:
            assert answer.status_code in (200, 499)  # a stream that started, or nobody answered
            answer.read()
    except httpx.RemoteProtocolError:
        pass  # a stream cut mid-answer
    return poll(lambda: UsageRecord.objects.exclude(generation_id__in=before).first())


def _provider_has(count: int) -> Callable[[World, LeavesWhen], bool]:
    """Once the provider has received ``count`` calls (the last one unanswered)."""
    return lambda world, _app: len(world.upstream_requests("/v1/")) == count


def _content_relayed(_world: World, app: LeavesWhen) -> bool:
    """Once the client has been sent the stream's first content."""
    return b'"content":"' in bytes(app.sent).replace(b'"content":""', b"")


_KINDS: dict[str, tuple[str, dict[str, Any], Callable[[World, LeavesWhen], bool]]] = {
    "chat": ("gpt-4o@timeout", {"model": "test/slow", **_CHAT}, _provider_has(1)),
    "stream": ("gpt-4o@timeout", {"model": "test/slow", "stream": True, **_CHAT}, _provider_has(1)),
    "stream_relaying": (
        "gpt-4o@hang_after=2", {"model": "test/slow", "stream": True, **_CHAT}, _content_relayed
    ),
    "pipeline": ("gpt-4o@timeout", {"model": "pipeline/left", **_CHAT}, _provider_has(2)),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(_KINDS))
def test_a_handler_the_server_cancels_is_billed_as_a_client_leaving(
    world: World, settings, leaving: tuple[ServerThread, LeavesWhen], kind: str
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # the provider has it until the request stops
    upstream, body, when = _KINDS[kind]
    _catalog(world, upstream)
    if kind == "pipeline":  # a call answered, then one the provider has
        admin = key_client(world.key_for(scope=KeyScope.MANAGE))
        spec = {"slug": "left", "kind": "series", "steps": [{"model": "test/gpt"},
                                                             {"model": "test/slow"}]}  # fmt: skip
        assert admin.post("/api/v1/pipelines", spec, format="json").status_code == 201

    left = _stopped(world, leaving, body, when, cancels=False)
    cancelled = _stopped(world, leaving, body, when, cancels=True)

    assert cancelled.cost == left.cost > 0
    assert (left.status, left.error_type) == ("aborted", "client_disconnected")
    assert (cancelled.status, cancelled.error_type) == ("aborted", "server_cancelled")
    assert (cancelled.model, cancelled.prompt_tokens, cancelled.completion_tokens) == (
        left.model, left.prompt_tokens, left.completion_tokens,
    )  # fmt: skip
    assert cancelled.prompt_tokens > 1000
    assert "usage_estimated" in cancelled.flag_list
    if kind == "stream_relaying":
        assert cancelled.completion_tokens > 0  # what it generated, as well as its prompt
    if kind == "pipeline":
        steps = UsageStep.objects.filter(generation_id=cancelled.generation_id).order_by("step")
        assert [(s.status, s.cost > 0) for s in steps] == [("succeeded", True), ("cancelled", True)]
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{cancelled.generation_id}")
    assert entry.amount == -cancelled.cost
    assert Reservation.objects.get(generation_id=cancelled.generation_id).amount >= cancelled.cost


def _shut_down_with_a_request_under_way(world: World, body: dict[str, Any]) -> dict[str, Any]:
    """Serve the gateway's ASGI app (its lifespan included) on a loop of its own; POST ``body``,
    and once the provider has it do what uvicorn does at shutdown once its graceful timeout is
    over: cancel the request's handler, then run the lifespan's shutdown at once. Returns what
    held when the shutdown completed — after which a worker process exits."""
    from routerhub.asgi import application

    payload = orjson.dumps(body)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "headers": [(b"authorization", f"Bearer {world.key}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())],
    }  # fmt: skip
    seen: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        if not seen.get("read"):
            seen["read"] = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.Event().wait()  # the client stays
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        seen.setdefault("sent", []).append(message)

    async def run() -> None:
        to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan = asyncio.ensure_future(
            application({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put)
        )
        await to_app.put({"type": "lifespan.startup"})
        assert (await from_app.get())["type"] == "lifespan.startup.complete"
        handler = asyncio.ensure_future(application(scope, receive, send))
        while not world.upstream_requests("/v1/"):
            await asyncio.sleep(0.01)
        handler.cancel()  # uvicorn: "Cancel 1 running task(s), timeout graceful shutdown exceeded"
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        seen["handler_done"] = handler.done()
        await lifespan

    refreshing = _RefreshAhead.enabled  # the lifespan turns it off for the whole process
    try:
        asyncio.run(asyncio.wait_for(run(), timeout=25))
    finally:
        refresh_ahead_enable(refreshing)
    return seen


def test_a_handler_cancelled_at_shutdown_is_settled_before_the_shutdown_completes(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    """A worker shutting down cancels a request whose provider has its prompt, then shuts its
    app down: the shutdown waits for the cancelled handler to hand its usage over (billed as
    ``server_cancelled``). Before, billing was closed under the handler and the shutdown
    completed with it still settling: the process then exits, and the charge is lost."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # the provider has it until the request stops
    _catalog(world, "gpt-4o@timeout")
    before = set(UsageRecord.objects.values_list("generation_id", flat=True))

    seen = _shut_down_with_a_request_under_way(world, {"model": "test/slow", **_CHAT})

    assert seen["handler_done"]  # the shutdown waited for it (on this app's loop only)
    usage_outbox_drain(idle_ms=0)  # what the stopped settler left, as the beat task would
    record = poll(lambda: UsageRecord.objects.exclude(generation_id__in=before).first())
    assert (record.status, record.error_type) == ("aborted", "server_cancelled")
    assert record.prompt_tokens > 1000 and record.cost > 0
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{record.generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=record.generation_id).state == "settled"
    assert CreditAccount.objects.get(organization=world.organization).reserved == 0
