"""One organization's stalling own host cannot take the whole own-host pool from the others.

Every organization's own hosts (a provider key's ``base_url``) share one pooled client per
process; an organization holds at most ``GATEWAY_TENANT_MAX_CONNECTIONS`` of its connections
(``routing.tenant_slots``) for the whole life of an answer, and gives each back when the answer
ends: read, failed upstream, or abandoned by the client mid-stream. A request waits for a slot
once (``GATEWAY_TENANT_SLOT_WAIT_SECONDS``): refused, its other own-host candidates are refused at
once."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

import httpx
import pytest

from routing.egress import tenant_http_client_reset, tenant_organizations_holding
from routing.gateway import streaming
from routing.gateway.attempts import TENANT_LIMIT
from routing.gateway.credentials import byok_cache_clear
from routing.models import Provider
from routing.services import provider_key_create
from tests.factories import funded_organization_make, key_make
from tests.routing.servers import LeavesWhen, ServerThread, gateway_idle, poll
from tests.routing.world import World, base_catalog, endpoint
from tests.security.raw_upstream import RawUpstream

CHUNK = {
    "id": "chatcmpl-stall",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}
    ],
}
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    + b"data: " + json.dumps(CHUNK).encode() + b"\n\n"
)  # fmt: skip


class StallingHost:
    """An organization's own host that answers a stream's head and first chunk, then either
    holds the connection without another byte (``stall``) or drops it (``drop``); ``head``: the
    answer's head alone, then nothing."""

    def __init__(self) -> None:
        self.mode = "stall"
        self.accepted = 0  # requests read
        self.closed_by_gateway = 0  # stalled connections the gateway closed
        self._lock = threading.Lock()
        self.raw = RawUpstream(self._answer)
        self.url = f"{self.raw.url()}/v1"

    def _answer(self, raw: RawUpstream, connection: socket.socket) -> None:
        with connection:
            raw.read_request(connection)
            with self._lock:
                self.accepted += 1
            connection.sendall(
                STREAM_HEAD if self.mode != "head" else STREAM_HEAD.split(b"data:")[0]
            )
            if self.mode == "drop":
                return  # the stream ends before the answer did: an upstream error
            connection.settimeout(0.05)
            while not raw.stopped.is_set():
                try:
                    if connection.recv(1024) == b"":
                        with self._lock:
                            self.closed_by_gateway += 1
                        return
                except TimeoutError:
                    continue
                except OSError:  # closed by ``stop``
                    return


@pytest.fixture
def host(world: World, settings: Any) -> Iterator[StallingHost]:
    """A's own host stalls; the own-host pool is small: 4 connections, 2 per organization, a 1 s
    wait for a slot (connecting, writing and the pool get 5 s: a loaded machine's Python host
    thread may be slow to accept); stalled streams are not timed out while the test runs."""
    with httpx.Client() as client:  # the platform's pool exists before the settings shrink
        assert _chat(client, world, world.key).status_code == 200
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # every host here listens on 127.0.0.1
    settings.GATEWAY_MAX_CONNECTIONS = 4
    settings.GATEWAY_TENANT_MAX_CONNECTIONS = 2
    settings.GATEWAY_CONNECT_TIMEOUT = 5.0
    settings.GATEWAY_TENANT_SLOT_WAIT_SECONDS = 1.0
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    tenant_http_client_reset()
    stalling = StallingHost()
    _own_host(world.organization, stalling.url)
    yield stalling
    stalling.raw.stop()
    tenant_http_client_reset()  # the next test's pool is built under its own settings


@pytest.fixture
def one_slot(host: StallingHost, settings: Any) -> StallingHost:
    """The stalling host, and one slot per organization."""
    settings.GATEWAY_TENANT_MAX_CONNECTIONS = 1
    tenant_http_client_reset()
    return host


def _own_host(
    organization: Any,
    base_url: str,
    provider: str = "fake-openai",
    secret: str = "sk-own-secret-7777",
) -> None:
    provider_key_create(organization=organization, provider=Provider.objects.get(slug=provider),
                        secret=secret, base_url=base_url)  # fmt: skip
    byok_cache_clear()


def _chat(client: httpx.Client, world: World, key: str) -> httpx.Response:
    return client.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


class StreamingClient:
    """One of A's clients, streaming: it reads up to the first chunk and, if ``hold``, keeps its
    connection without reading on until ``finish`` (then leaves mid-stream), else reads to the
    end. ``outcome``: (status, the data lines read, or the error body). ``gateway``: the
    gateway's URL (the world's by default)."""

    def __init__(self, world: World, *, hold: bool = True, gateway: str = "") -> None:
        self.world, self.hold, self.leave = world, hold, threading.Event()
        self.gateway = gateway or world.gateway_url
        self.outcome: tuple[int, Any] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        body = {
            "model": "test/gpt",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        url = f"{self.gateway}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {self.world.key}"}
        with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
            if response.status_code != 200:
                self.outcome = (response.status_code, json.loads(response.read()))
                return
            lines = (line for line in response.iter_lines() if line.startswith("data:"))
            first = next(lines)
            if self.hold:
                self.outcome = (200, [first])
                self.leave.wait(30)
                return  # closing the unread stream: the client leaves mid-stream
            self.outcome = (200, [first, *lines])

    def answered(self) -> tuple[int, Any]:
        poll(lambda: self.outcome)
        assert self.outcome is not None
        return self.outcome

    def finish(self) -> None:
        self.leave.set()
        self.thread.join(30)


def _held_and_refused(world: World, gateway: str = "") -> tuple[int, tuple[int, Any]]:
    """A stream of A's that takes its one slot and holds it, and meanwhile one more request: the
    held stream's status and the other's outcome."""
    held = StreamingClient(world, gateway=gateway)
    try:
        status = held.answered()[0]
        return status, StreamingClient(world, gateway=gateway).answered()
    finally:
        held.finish()


def test_a_stalling_organization_cannot_take_the_own_host_pool_from_another(
    world: World, host: StallingHost
) -> None:
    other = funded_organization_make("5")
    _own_host(other, f"{world.fake_url}/v1")  # B's own host answers at once
    streams = [StreamingClient(world) for _ in range(4)]  # as many as the pool has connections

    def refused() -> int:
        return sum(1 for s in streams if s.outcome and s.outcome[0] != 200)

    # Every connection A may take is held by its stalled streams (on the old code: all four).
    poll(lambda: host.accepted == 4 or (host.accepted == 2 and refused() == 2))
    try:
        with httpx.Client() as client:
            served = _chat(client, world, key_make(other))
        outcomes = [s.answered() for s in streams]
    finally:
        for stream in streams:
            stream.finish()

    assert served.status_code == 200, served.text
    assert world.last_upstream("/v1/chat/completions")["headers"]["authorization"] == "***7777"
    assert sorted(status for status, _ in outcomes) == [200, 200, 429, 429]
    error = next(body for status, body in outcomes if status == 429)["error"]
    assert error["type"] == "rate_limited"
    assert "GATEWAY_TENANT_MAX_CONNECTIONS" in error["message"]
    assert error["metadata"]["attempts"][0]["error"] == "tenant_connection_limit"
    poll(lambda: host.closed_by_gateway == 2)  # the clients left: the gateway hung up on A's host
    poll(lambda: tenant_organizations_holding() == 0)  # and forgot the organizations


def test_a_slot_comes_back_when_the_client_leaves_mid_stream(
    world: World, one_slot: StallingHost
) -> None:
    host = one_slot
    first = StreamingClient(world)
    assert first.answered()[0] == 200
    first.finish()
    poll(lambda: host.closed_by_gateway == 1)

    second_status, (third_status, third_body) = _held_and_refused(world)

    assert second_status == 200  # the slot the first stream held came back when its client left
    assert third_status == 429, third_body  # and there is one: the second holds it
    poll(lambda: tenant_organizations_holding() == 0)


def test_a_slot_comes_back_after_the_upstream_fails(world: World, one_slot: StallingHost) -> None:
    host = one_slot
    host.mode = "drop"  # the stream's first chunk, then the connection closes
    for _ in range(2):
        dropped = StreamingClient(world, hold=False)
        status, lines = dropped.answered()
        assert status == 200 and "failed mid-stream" in lines[-2], lines
    with httpx.Client() as client:
        whole = _chat(client, world, world.key)  # a stream's head is no whole answer: 502
    assert whole.status_code == 502, whole.text
    assert host.accepted == 3

    host.mode = "stall"
    held_status, (refused_status, refused_body) = _held_and_refused(world)

    assert held_status == 200  # no failure kept the one slot
    assert refused_status == 429, refused_body
    poll(lambda: tenant_organizations_holding() == 0)


def _running(code: CodeType) -> bool:
    """Whether a task of the running loop is inside a call of ``code`` (on its await chain)."""
    for task in asyncio.all_tasks():
        awaited: Any = task.get_coro()
        while awaited is not None:
            if getattr(awaited, "cr_code", None) is code:
                return True
            awaited = getattr(awaited, "cr_await", None)
    return False


def test_a_slot_comes_back_when_the_client_leaves_before_the_first_chunk(
    world: World, one_slot: StallingHost, leaving: tuple[ServerThread, LeavesWhen]
) -> None:
    host, (server, app) = one_slot, leaving
    host.mode = "head"  # a 200 and its headers, then not one chunk: the stream is still opening
    # The client leaves once the gateway has the answer's head and waits for its first chunk:
    # an answer open, its slot held, and no stream started to the client yet.
    app.gone = lambda: host.accepted == 1 and _running(streaming._first_content.__code__)
    body = {"model": "test/gpt", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        left = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {world.key}"})  # fmt: skip
    finally:
        app.gone = lambda: False
    assert left.status_code == 499, left.text  # the gateway answered nobody
    gateway_idle()  # the gateway has given up the request the client left

    host.mode = "stall"
    held_status, (refused_status, refused_body) = _held_and_refused(world, server.url)

    assert held_status == 200  # the opening stream's slot came back when its client left
    assert refused_status == 429, refused_body
    assert host.accepted == 2  # the refused request never reached the host
    poll(lambda: tenant_organizations_holding() == 0)


class _OnRefusal(logging.Handler):
    """Calls ``then`` when the gateway logs an attempt refused a slot (its first)."""

    def __init__(self, then: Callable[[], None]) -> None:
        super().__init__(logging.INFO)
        self.then = then

    def emit(self, record: logging.LogRecord) -> None:
        if TENANT_LIMIT in record.getMessage():
            self.then()


def test_a_request_refused_its_slot_does_not_wait_again_for_another_own_host(
    world: World, one_slot: StallingHost
) -> None:
    host = one_slot
    catalog = base_catalog(world.fake_url)  # test/gpt on a second provider, after the first
    catalog["endpoints"].append(endpoint("test/gpt", "fake-openai-b", "gpt-4o-mini", "5", "10"))
    world.catalog(catalog)
    _own_host(world.organization, f"{world.fake_url}/v1", "fake-openai-b", "sk-own-second-8888")
    held = StreamingClient(world)  # the first candidate: the stalling host, the one slot held
    assert held.answered()[0] == 200
    # Once the first candidate is refused, the held stream's client leaves and its slot comes
    # back: a second wait for the second candidate would get it (the old code's).
    logger = logging.getLogger("routing.gateway.attempts")
    handler, level = _OnRefusal(held.leave.set), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with httpx.Client() as client:
            refused = _chat(client, world, world.key)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        held.finish()

    assert refused.status_code == 429, refused.text
    attempts = refused.json()["error"]["metadata"]["attempts"]
    assert [(a["provider"], a["error"]) for a in attempts] == [
        ("fake-openai", TENANT_LIMIT),
        ("fake-openai-b", TENANT_LIMIT),
    ]
    assert attempts[1]["detail"] == attempts[0]["detail"]  # refused at once, for the same reason
    assert host.accepted == 1  # the held stream alone
    sent = world.upstream_requests("/v1/chat/completions")
    assert [r for r in sent if r["headers"]["authorization"] == "***8888"] == []
    poll(lambda: tenant_organizations_holding() == 0)
