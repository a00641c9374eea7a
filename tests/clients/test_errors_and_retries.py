"""Typed errors from the real server, and the client's retry, wait and progress logic against
scripted responses (``httpx.MockTransport``)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import routerhub_client._http as client_http
from routerhub_client import (
    APIConnectionError,
    APITimeoutError,
    AsyncRouterHub,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RouterHub,
    ServiceUnavailableError,
    TrainingFailedError,
)

from tests.routing.world import World


def test_a_bad_key_is_an_authentication_error_with_the_request_id(world: World) -> None:
    client = RouterHub(base_url=world.gateway_url, api_key="rh-live-not-a-key", max_retries=0)

    with pytest.raises(AuthenticationError) as caught:
        client.keys.current()

    error = caught.value
    assert (error.status, error.type, error.param) == (401, "unauthorized", None)
    assert error.message and len(error.request_id or "") >= 8
    assert str(error).startswith("401 unauthorized:") and error.request_id in str(error)


def test_another_organizations_router_is_not_found(manage: RouterHub, world: World) -> None:
    from accounts.models import KeyScope
    from tests.factories import key_make, organization_make

    outsider = RouterHub(
        base_url=world.gateway_url,
        api_key=key_make(organization_make(), scope=KeyScope.MANAGE),
        max_retries=0,
    )
    manage.routers.create("private")

    with pytest.raises(NotFoundError) as caught:
        outsider.routers.get("private")

    assert caught.value.body["error"]["code"] == 404


def scripted(*responses: httpx.Response) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client answering each request with the next response, recording the requests."""
    remaining, seen = list(responses), []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return remaining.pop(0)

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def error(status: int, type_: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": status, "type": type_, "message": "busy", "param": None,
                      "metadata": {"scope": "key"}}}  # fmt: skip
    return httpx.Response(status, json=body, headers={"X-Request-Id": "req-12345678", **headers})


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(client_http, "pause", waited.append)
    return waited


def client_for(http: httpx.Client, retries: int = 2) -> RouterHub:
    return RouterHub(
        base_url="http://hub.test", api_key="rh-x", max_retries=retries, http_client=http
    )


def test_429_is_retried_after_the_retry_after_seconds(sleeps: list[float]) -> None:
    http, seen = scripted(
        error(429, "rate_limited", **{"Retry-After": "7"}), httpx.Response(200, json={"id": 1})
    )

    assert client_for(http).keys.current() == {"id": 1}
    assert sleeps == [7.0] and len(seen) == 2


def test_retry_after_as_an_http_date_is_honoured(sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    http, _ = scripted(
        error(503, "service_unavailable", **{"Retry-After": when}), httpx.Response(200, json={})
    )

    client_for(http).credits.get()

    assert 25 <= sleeps[0] <= 30


def test_without_retry_after_the_backoff_grows(sleeps: list[float]) -> None:
    http, seen = scripted(*(error(503, "service_unavailable") for _ in range(4)))

    with pytest.raises(ServiceUnavailableError) as caught:
        client_for(http, retries=3).credits.get()

    assert len(seen) == 4 and len(sleeps) == 3
    assert sleeps[0] <= 0.5 < sleeps[2] <= 2.0  # 0.5 s doubling, with jitter in [50 %, 100 %]
    assert caught.value.metadata == {"scope": "key"} and caught.value.request_id == "req-12345678"


def test_a_permanent_503_is_not_retried(sleeps: list[float]) -> None:
    http, seen = scripted(error(503, "no_provider_available", **{"x-should-retry": "false"}))

    with pytest.raises(ServiceUnavailableError):
        client_for(http).credits.get()

    assert len(seen) == 1 and sleeps == []


def test_the_last_429_surfaces_with_its_retry_after(sleeps: list[float]) -> None:
    http, _ = scripted(*(error(429, "rate_limited", **{"Retry-After": "2"}) for _ in range(3)))

    with pytest.raises(RateLimitError) as caught:
        client_for(http).credits.get()

    assert caught.value.retry_after == 2.0 and sleeps == [2.0, 2.0]


def test_other_errors_are_not_retried(sleeps: list[float]) -> None:
    http, seen = scripted(error(404, "not_found"))

    with pytest.raises(NotFoundError):
        client_for(http).routers.get("nope")

    assert len(seen) == 1 and sleeps == []


def test_connection_failures_are_retried_then_raised(sleeps: list[float]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))

    with pytest.raises(APIConnectionError):
        client_for(http).credits.get()

    assert len(sleeps) == 2


def test_a_post_that_may_have_arrived_is_not_sent_again(sleeps: list[float]) -> None:
    sent: list[str] = []

    def time_out(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        raise httpx.ReadTimeout("no answer", request=request)

    client = client_for(httpx.Client(transport=httpx.MockTransport(time_out)))

    with pytest.raises(APITimeoutError):
        client.keys.create("once")
    with pytest.raises(APITimeoutError):
        client.keys.current()

    assert sent == ["POST", "GET", "GET", "GET"]  # the GET is retried twice


def test_a_slow_server_is_a_timeout_error() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Silent(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(5)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = RouterHub(
        base_url=f"http://127.0.0.1:{server.server_port}",
        api_key="rh-x",
        timeout=0.2,
        max_retries=0,
    )
    try:
        with pytest.raises(APITimeoutError, match="ReadTimeout"):
            client.credits.get()
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def run_states(*states: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    remaining = [{"id": 9, **state} for state in states]
    return lambda request: httpx.Response(
        200, json=remaining.pop(0) if len(remaining) > 1 else remaining[0]
    )


def test_wait_reports_each_change_of_stage_and_progress(sleeps: list[float]) -> None:
    handler = run_states(
        {"status": "queued", "stage": "queued", "progress": 0},
        {"status": "running", "stage": "features", "progress": 0.2},
        {"status": "running", "stage": "features", "progress": 0.2},  # no change: not reported
        {"status": "running", "stage": "fitting", "progress": 0.6},
        {"status": "succeeded", "stage": "done", "progress": 1, "version": 3},
    )
    client = client_for(httpx.Client(transport=httpx.MockTransport(handler)))
    seen: list[Any] = []

    run = client.training_runs.wait(9, progress=seen.append, interval=0)

    assert run["version"] == 3
    assert [(s["stage"], s["progress"]) for s in seen] == [
        ("queued", 0), ("features", 0.2), ("fitting", 0.6), ("done", 1)
    ]  # fmt: skip


def test_wait_raises_when_the_run_fails(sleeps: list[float]) -> None:
    handler = run_states(
        {"status": "running", "stage": "fitting", "progress": 0.5},
        {"status": "failed", "stage": "failed", "progress": 0.5, "error": "out of memory"},
    )
    client = client_for(httpx.Client(transport=httpx.MockTransport(handler)))

    with pytest.raises(TrainingFailedError, match="out of memory") as caught:
        client.training_runs.wait(9, interval=0)

    assert caught.value.run["status"] == "failed"


def test_async_client_retries_and_raises_typed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(client_http, "pause_async", no_sleep)
    answers = [error(429, "rate_limited", **{"Retry-After": "3"}), error(404, "not_found")]
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: answers.pop(0)))
    client = AsyncRouterHub(base_url="http://hub.test", api_key="rh-x", http_client=http)

    with pytest.raises(NotFoundError) as caught:
        asyncio.run(client.routers.get("nope"))

    assert waited == [3.0] and caught.value.request_id == "req-12345678"
