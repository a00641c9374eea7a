"""`POST /api/v1/routers/{slug}/select` from the lean gateway app answers exactly as the DRF view.

One matrix of requests goes, over real HTTP, to the production application (which hands keyed
JSON calls of select to the gateway) and to Django alone (the DRF view); status, body and the
headers a client reads must match, and the keyed JSON cases must really have been served lean.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from accounts.models import ApiKey, KeyScope
from tests.factories import key_client, key_make, organization_make
from tests.routing.servers import ServerThread
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, train_router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

LIMIT = 64 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE here: an oversize body stays cheap to send
JSON_TYPE = "application/json"
COMPARED_HEADERS = ("content-type", "x-request-id", "www-authenticate", "retry-after")


@pytest.fixture(scope="session")
def drf_server() -> Iterator[ServerThread]:
    """Django alone, without the gateway in front: every request reaches the DRF view."""
    from routerhub.asgi import django_application

    server = ServerThread(django_application, lifespan="off").start()
    yield server
    server.stop()


@pytest.fixture
def connection_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django under ASGI runs each request in a thread of its own, whose persistent database
    connection outlives it until the garbage collector finds it: close it at the end of each
    request, so the matrix's ~120 Django requests stay within a shared server's connections."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@dataclass
class Case:
    body: bytes = b""
    slug: str = "support"
    key: str = "inference"  # a name in the keys fixture, or a raw Authorization header value
    headers: dict[str, str] = field(default_factory=dict)
    lean: bool = True  # the production app serves it from the gateway (else it falls to DRF)
    method: str = "POST"
    suffix: str = ""


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


MESSAGES = [{"role": "user", "content": MATH_PROMPT}]
CASES = {
    # answered
    "messages": Case(body(messages=MESSAGES, tradeoff=0)),
    "prompt-named-tradeoff": Case(body(prompt=MATH_PROMPT, tradeoff="cost")),
    "default-tradeoff": Case(body(messages=MESSAGES)),
    "management-key": Case(body(messages=MESSAGES, tradeoff=0.3), key="manage"),
    "candidates": Case(body(messages=MESSAGES, candidates=[DEAR])),
    "content-parts": Case(body(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])),
    "number-prompt": Case(body(prompt=5)),
    "platform-heuristic": Case(body(prompt="hi", tradeoff="quality"), slug="auto"),
    "extra-fields-and-unicode": Case(body(prompt="¿Cuánto es 2+2? 🙂", model="ignored", n=3)),
    "candidate-with-spaces": Case(body(prompt="hi", candidates=[f" {CHEAP} "])),
    "whitespace-prompt": Case(body(prompt="   ", tradeoff=1)),
    "null-in-message": Case(body(messages=[{"role": "user", "content": None, "name": ""}])),
    "big-integer-tradeoff": Case(b'{"prompt": "hi", "tradeoff": 123456789012345678901234567890}'),
    "charset-and-accept": Case(body(prompt="hi"), headers={"Content-Type": "application/json; charset=utf-8",
                                                             "Accept": "application/json"}),
    # not found
    "unknown-slug": Case(body(messages=MESSAGES), slug="nope"),
    "other-tenants-router": Case(body(messages=MESSAGES), slug="theirs"),
    "untrained": Case(body(messages=MESSAGES), slug="fresh"),
    "unknown-slug-bad-body": Case(b"{not json", slug="nope"),
    # keys
    "revoked-key": Case(body(messages=MESSAGES), key="revoked"),
    "expired-key": Case(body(messages=MESSAGES), key="expired"),
    "not-a-routerhub-key": Case(body(messages=MESSAGES), key="Bearer sk-something"),
    "unknown-key": Case(body(messages=MESSAGES), key="Bearer rh-live-unknown"),
    "basic-scheme": Case(body(messages=MESSAGES), key="Basic dXNlcjpwYXNz"),
    "bearer-without-token": Case(body(messages=MESSAGES), key="Bearer"),
    # malformed bodies
    "truncated-json": Case(b'{"messages": '),
    "invalid-utf8": Case(b'{"prompt": "r\xff\xfe"}'),
    "nan-literal": Case(b'{"prompt": "hi", "tradeoff": NaN}'),
    "byte-order-mark": Case(b'\xef\xbb\xbf{"prompt": "hi"}'),
    "nested-10k": Case(b'{"prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    "array-body": Case(b"[1, 2]"),
    "null-body": Case(b"null"),
    "empty-body": Case(b""),
    "no-prompt": Case(body(tradeoff=0)),
    "messages-not-a-list": Case(body(messages="hi")),
    "messages-empty": Case(body(messages=[])),
    "messages-not-objects": Case(body(messages=[1])),
    "messages-null": Case(body(messages=None)),
    "blank-prompt": Case(body(prompt="")),
    "nul-in-prompt": Case(body(prompt="a\x00b")),
    "lone-surrogate-prompt": Case(b'{"prompt": "a\\ud800b"}'),
    "blank-candidate": Case(body(prompt="hi", candidates=[CHEAP, " "])),
    "null-tradeoff": Case(body(prompt="hi", tradeoff=None)),
    "unknown-candidate": Case(body(prompt="hi", candidates=["x/unknown"])),
    "no-candidates": Case(body(prompt="hi", candidates=[])),
    "huge-integer-candidate": Case(b'{"prompt": "hi", "candidates": [123456789012345678901234567890]}'),
    "oversize": Case(body(prompt="x" * (LIMIT + 1))),
    # bad tradeoff
    "tradeoff-too-big": Case(body(prompt="hi", tradeoff=3)),
    "tradeoff-infinite": Case(b'{"prompt": "hi", "tradeoff": 1e400}'),
    "tradeoff-negative": Case(body(prompt="hi", tradeoff=-0.1)),
    "tradeoff-word": Case(body(prompt="hi", tradeoff="cheapest")),
    "tradeoff-boolean": Case(body(prompt="hi", tradeoff=True)),
    "tradeoff-list": Case(body(prompt="hi", tradeoff=[0.5])),
    # what the gateway leaves to Django: still one answer
    "no-key": Case(body(messages=MESSAGES), key="", lean=False),
    "form-body": Case(b"prompt=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}, lean=False),
    "text-body": Case(body(prompt="hi"), headers={"Content-Type": "text/plain"}, lean=False),
    "html-accept": Case(body(prompt="hi"), headers={"Accept": "application/xml"}, lean=False),
    "get": Case(method="GET", lean=False),
    "trailing-slash": Case(body(prompt="hi"), suffix="/", lean=False),
}  # fmt: skip


@pytest.fixture
def keys(world: World) -> dict[str, str]:
    from django.utils import timezone

    revoked = key_make(world.organization, name="revoked")
    ApiKey.objects.filter(name="revoked").update(revoked_at=timezone.now())
    return {
        "inference": world.key,
        "manage": key_make(world.organization, scope=KeyScope.MANAGE),
        "revoked": revoked,
        "expired": key_make(world.organization, expires_at=timezone.now()),
    }


def send(base_url: str, case: Case, keys: dict[str, str], request_id: str) -> httpx.Response:
    headers = {"Content-Type": JSON_TYPE, "X-Request-Id": request_id} | case.headers
    if case.key in keys:
        headers["Authorization"] = f"Bearer {keys[case.key]}"
    elif case.key:
        headers["Authorization"] = case.key
    return httpx.request(
        case.method,
        f"{base_url}/api/v1/routers/{case.slug}/select{case.suffix}",
        content=case.body,
        headers=headers,
        timeout=30,
    )


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    try:
        data = response.json()
    except ValueError:
        data = response.text
    if isinstance(data, dict) and "latency_ms" in data:
        assert isinstance(data.pop("latency_ms"), float)  # measured: differs between two calls
    return response.status_code, data, {h: response.headers.get(h) for h in COMPARED_HEADERS}


@pytest.fixture
def served_lean(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The request ids the lean handler answered: the gateway's app calls
    ``model_select.router_select`` for what it serves itself and hands the rest to Django (both
    answer with the same security headers, so no header tells them apart)."""
    from routing.gateway import model_select

    served: list[str | None] = []
    handler = model_select.router_select

    async def spy(req: Any) -> None:
        served.append(req.headers.get("x-request-id"))
        await handler(req)

    monkeypatch.setattr(model_select, "router_select", spy)
    return served


@pytest.mark.usefixtures("connection_per_request")
def test_select_from_the_gateway_answers_every_case_like_the_drf_view(
    world: World,
    drf_server: ServerThread,
    keys: dict[str, str],
    settings: Any,
    served_lean: list[str | None],
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    train_router(world)
    manage = key_client(keys["manage"])
    manage.post("/api/v1/routers", {"slug": "fresh", "name": "Fresh", "candidates": [CHEAP, DEAR]},
                format="json")  # fmt: skip
    other = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    other.post("/api/v1/routers", {"slug": "theirs", "name": "Theirs", "candidates": [CHEAP, DEAR]},
               format="json")  # fmt: skip

    differences, wrongly_served = [], []
    for name, case in CASES.items():
        request_id = f"case-{name}"
        lean = send(world.gateway_url, case, keys, request_id)
        by_gateway = served_lean.count(request_id)
        drf = send(drf_server.url, case, keys, request_id)
        if comparable(lean) != comparable(drf):
            differences.append(
                f"{name}:\n  gateway {comparable(lean)}\n  drf     {comparable(drf)}"
            )
        if by_gateway != int(case.lean) or served_lean.count(request_id) != by_gateway:
            wrongly_served.append(name)

    assert not differences, "\n".join(differences)
    assert not wrongly_served
    statuses = {name: send(world.gateway_url, CASES[name], keys, "again").status_code
                for name in ("messages", "unknown-slug", "revoked-key", "oversize", "tradeoff-too-big")}  # fmt: skip
    assert statuses == {"messages": 200, "unknown-slug": 404, "revoked-key": 401, "oversize": 413,
                        "tradeoff-too-big": 400}  # fmt: skip


def test_the_server_boots_without_the_training_libraries() -> None:
    """Serving select from the gateway must not load pandas, scikit-learn or LightGBM into every
    worker at boot (~150 MB and ~1 s each): they load with the first router a worker serves."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    heavy = ("lightgbm", "pandas", "sklearn", "training.predictor")
    code = f"import sys, routerhub.asgi; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    booted = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "ROUTERHUB_ENV": "test"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert booted.stdout.strip().splitlines()[-1] == "[]", booted.stdout
