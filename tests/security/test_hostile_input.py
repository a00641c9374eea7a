"""Hostile input: oversized, lying, deeply nested, badly encoded or absurd requests get a clear
4xx in the error format of API.md (never a 500, a hang or a crash), over real HTTP."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.utils.html import escape

from accounts.models import KeyScope
from billing.api import KEY_ID_EXPECTED
from tests.factories import dashboard_client, key_client, key_make
from tests.routing.world import World

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
LIMIT = 64 * 1024  # GATEWAY_MAX_BODY_BYTES for these tests: big bodies stay cheap to send


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}], **extra}


def messages_body(**extra: Any) -> dict[str, Any]:
    return {"model": "test/gpt", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
            **extra}  # fmt: skip


def post(
    world: World, path: str, content: bytes | Iterator[bytes], **headers: str
) -> httpx.Response:
    return httpx.post(
        world.gateway_url + path,
        content=content,
        headers={"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}
        | headers,
        timeout=30,
    )


def refusals(world: World, path: str, cases: dict[str, bytes], status: int) -> list[str]:
    """Send every case (one server, one database: each case costs a request, not a test) and
    list those not answered with ``status`` in the error format."""
    wrong = []
    for name, content in cases.items():
        response = post(world, path, content)
        try:
            assert_error(response, status, anthropic=path == MESSAGES)
        except (AssertionError, ValueError, KeyError):
            wrong.append(f"{name}: {response.status_code} {response.text[:200]}")
    return wrong


def assert_error(response: httpx.Response, status: int, anthropic: bool = False) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    if anthropic:
        assert body["type"] == "error"
    error = body["error"]
    assert error["code"] == status and error["type"] and error["message"]
    assert response.headers["x-request-id"]
    return error


@pytest.fixture
def small_limit(settings: Any) -> None:
    settings.GATEWAY_MAX_BODY_BYTES = LIMIT


def big_body(size: int) -> bytes:
    return json.dumps(chat_body(padding="x" * size)).encode()


# --- body size -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_body_over_the_limit_is_413(world: World, small_limit: None, path: str) -> None:
    error = assert_error(post(world, path, big_body(LIMIT + 1)), 413, anthropic=path == MESSAGES)

    assert error["type"] == ("request_too_large" if path == MESSAGES else "payload_too_large")
    assert world.upstream_requests() == []


def test_chunked_body_over_the_limit_is_413(world: World, small_limit: None) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        body = big_body(LIMIT * 2)
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    assert_error(post(world, CHAT, chunks()), 413)
    assert world.upstream_requests() == []


def raw_exchange(world: World, head: bytes, body: bytes) -> bytes:
    host, port = world.gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        received = b""  # the server closes after its answer (Connection: close)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def request_head(world: World, length: int) -> bytes:
    return (
        f"POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {world.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def test_declared_length_over_the_limit_is_413_before_the_body_arrives(
    world: World, small_limit: None
) -> None:
    # Claims 1 GB, sends 20 bytes: answered from the header alone, without waiting for the rest.
    reply = raw_exchange(world, request_head(world, 1024**3), b'{"model": "test/gpt"}')

    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply


def test_declared_length_shorter_than_the_body_reads_only_what_was_declared(
    world: World, small_limit: None
) -> None:
    # Claims 10 bytes and sends a large body: the first 10 bytes are the request (not JSON).
    reply = raw_exchange(world, request_head(world, 10), big_body(LIMIT * 2))

    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert world.upstream_requests() == []


# --- malformed JSON --------------------------------------------------------------------------------


MALFORMED_BODIES = {
    "nested-100k-arrays": b'{"model": "test/gpt", "messages": %s}'
    % (b"[" * 100_000 + b"]" * 100_000),
    "nested-100k-objects": b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    "invalid-utf8": b'{"model": "test/gpt", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "lone-surrogate": b'{"model": "test/gpt", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "nan-literal": b'{"model": "test/gpt", "max_tokens": NaN, "messages": []}',
    "truncated": b'{"model": "test/gpt", "messages": [',
    "not-an-object": b"[1, 2, 3]",
    "empty": b"",
}


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_malformed_json_is_400(world: World, path: str) -> None:
    assert refusals(world, path, MALFORMED_BODIES, 400) == []
    assert world.upstream_requests() == []


# --- absurd values --------------------------------------------------------------------------------


ABSURD_CHAT = {
    "max-tokens-1e12-float": chat_body(max_tokens=1e12),
    "max-tokens-negative": chat_body(max_tokens=-5),
    "max-tokens-zero": chat_body(max_tokens=0),
    "max-tokens-fraction": chat_body(max_tokens=12.5),
    "max-tokens-string": chat_body(max_tokens="100"),
    "max-tokens-beyond-int64": chat_body(max_tokens=10**30),
    "n-huge": chat_body(n=10**15),
    "max-price-negative": chat_body(provider={"max_price": {"prompt": -1}}),
    "max-price-text": chat_body(provider={"max_price": {"prompt": "cheap"}}),
    "max-price-not-an-object": chat_body(provider={"max_price": [1, 2]}),
    "messages-not-objects": chat_body(messages=[1, "two"]),
    "content-a-number": chat_body(messages=[{"role": "user", "content": 5}]),
    "tools-not-objects": chat_body(tools=[1]),
    "temperature-text": chat_body(temperature="hot"),
    "models-not-strings": chat_body(models=[{"id": 1}]),
    "router-on-a-catalog-model": chat_body(router={"tradeoff": 2}),
    # Found by tests/security/test_inference_fuzz.py: each reached an adapter or the provider
    # and came back as a 500 (or, after a few, a 503 from the tripped circuit breaker).
    "tool-without-function": chat_body(tools=[{"type": "function"}]),
    "tool-name-not-a-string": chat_body(tools=[{"type": "function", "function": {"name": 5}}]),
    "tool-parameters-a-list": chat_body(
        tools=[{"type": "function", "function": {"name": "f", "parameters": [1]}}]
    ),
    "tool-choice-a-number": chat_body(tool_choice=5),
    "text-part-text-a-list": chat_body(
        messages=[{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]
    ),
    "image-part-without-url": chat_body(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]
    ),
    "tool-call-not-an-object": chat_body(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [1]}]
    ),
    "tool-call-arguments-an-object": chat_body(
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {}}}
                ],
            },
        ]
    ),
    "stop-a-number": chat_body(stop=5),
    "response-format-a-string": chat_body(response_format="json"),
    "json-schema-a-string": chat_body(response_format={"type": "json_schema", "json_schema": "x"}),
}


def test_absurd_chat_values_are_400(world: World) -> None:
    cases = {name: json.dumps(body).encode() for name, body in ABSURD_CHAT.items()}

    assert refusals(world, CHAT, cases, 400) == []
    assert world.upstream_requests() == []


ABSURD_MESSAGES = {
    "max-tokens-1e12-float": messages_body(max_tokens=1e12),
    "max-tokens-negative": messages_body(max_tokens=-1),
    "max-tokens-missing": {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]},
    "turns-not-objects": messages_body(messages=[1, "two"]),
    "content-a-number": messages_body(messages=[{"role": "user", "content": 5}]),
    "content-blocks-not-objects": messages_body(messages=[{"role": "user", "content": [1]}]),
    "metadata-not-an-object": messages_body(metadata="user-1"),
    "system-a-number": messages_body(system=5),
    "tools-not-objects": messages_body(tools=["calculator"]),
    "stop-sequences-a-number": messages_body(stop_sequences=5),
    "text-block-text-a-list": messages_body(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": ["a"]}]},
        ]
    ),
    "block-without-type": messages_body(messages=[{"role": "user", "content": [{"text": "a"}]}]),
    "tool-name-not-a-string": messages_body(tools=[{"name": 5, "input_schema": {}}]),
    "tool-schema-a-string": messages_body(tools=[{"name": "f", "input_schema": "x"}]),
}


def test_absurd_messages_values_are_400(world: World) -> None:
    cases = {name: json.dumps(body).encode() for name, body in ABSURD_MESSAGES.items()}

    assert refusals(world, MESSAGES, cases, 400) == []
    assert world.upstream_requests() == []


def test_huge_max_tokens_is_clamped_to_the_models_output_limit(world: World) -> None:
    # API.md: the hold covers max output tokens; a max_tokens above the model's limit is
    # clamped (what the provider would do), never reserved as 1e12 tokens.
    response = post(world, CHAT, json.dumps(chat_body(max_tokens=10**12)).encode())

    assert response.status_code == 200, response.text
    assert world.last_upstream(CHAT)["body"]["max_tokens"] == 8192


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_unknown_model_is_404(world: World, path: str) -> None:
    body = (chat_body if path == CHAT else messages_body)(model="nobody/no-such-model")

    error = assert_error(post(world, path, json.dumps(body).encode()), 404, path == MESSAGES)

    assert error["param"] == "model"


# --- the platform API --------------------------------------------------------------------------------


@pytest.fixture
def manager(tenants: Any) -> Any:
    return key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))


API_BODIES = {
    "nested-100k": b'{"slug": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "invalid-utf8": b'{"slug": "r\xff\xfe", "candidates": ["a", "b"]}',
    "nan-literal": b'{"slug": "r1", "default_tradeoff": NaN}',
    "infinite-tradeoff": b'{"slug": "r1", "default_tradeoff": 1e400}',
    "negative-tradeoff": b'{"slug": "r1", "default_tradeoff": -0.5}',
    "truncated": b'{"slug": ',
}


@pytest.mark.django_db
@pytest.mark.parametrize("body", list(API_BODIES.values()), ids=list(API_BODIES))
def test_api_refuses_malformed_json_with_400(manager: Any, body: bytes) -> None:
    response = manager.generic("POST", "/api/v1/routers", body, content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] == 400


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = {
    "infinite-id": '["2026-01-01T00:00:00+00:00", 1e400, 0]',
    "id-past-bigint": '["2026-01-01T00:00:00+00:00", 9223372036854775808, 0]',
    "id-as-text": '["2026-01-01T00:00:00+00:00", "12", 0]',
    "naive-time": '["2026-01-01T00:00:00", 1, 0]',
    "nested": "[" * 3000,
}


@pytest.mark.django_db
@pytest.mark.parametrize("raw", list(BAD_CURSORS.values()), ids=list(BAD_CURSORS))
def test_a_hand_made_cursor_is_a_400_naming_it(manager: Any, raw: str) -> None:
    response = manager.get("/api/v1/ledger", {"cursor": cursor_of(raw)})

    assert response.status_code == 400, response.content[:300]  # 1e400 was a 500
    assert response.json()["error"]["param"] == "cursor"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["9223372036854775808", "99999999999999999999", "0", "-1"])
def test_a_usage_key_filter_past_a_key_id_is_a_400_naming_it(
    manager: Any, tenants: Any, key: str
) -> None:
    api = manager.get("/api/v1/usage", {"key": key, "group_by": "model"})
    page = dashboard_client(tenants.owner, tenants.organization).get(
        "/dashboard/usage/", {"key": key}
    )

    assert api.status_code == 400, api.content[:300]  # past a bigint both were a 500
    assert api.json()["error"]["param"] == "key"
    assert api.json()["error"]["message"].endswith(KEY_ID_EXPECTED)
    assert page.status_code == 200 and escape(KEY_ID_EXPECTED) in page.content.decode()


@pytest.mark.django_db
def test_a_usage_model_filter_past_a_model_id_is_a_400_naming_it(
    manager: Any, tenants: Any
) -> None:
    longest = manager.get("/api/v1/usage", {"model": "m" * 200, "group_by": "model"})
    longer = manager.get("/api/v1/usage", {"model": "m" * 201, "group_by": "model"})
    export = manager.get("/api/v1/usage/export.csv", {"model": "m" * 10_000})
    page = dashboard_client(tenants.owner, tenants.organization).get(
        "/dashboard/usage/", {"model": "m" * 201}
    )

    assert longest.status_code == 200, longest.content[:300]
    for response in (longer, export):  # both were read whole into the query (a 200)
        assert response.status_code == 400, response.content[:300]
        assert response.json()["error"]["param"] == "model"
        assert "200 characters" in response.json()["error"]["message"]
    # The page leaves the filter out and says why, as for any filter it cannot use.
    assert page.status_code == 200 and "200 characters" in page.content.decode()


@pytest.mark.django_db
def test_api_body_over_the_upload_limit_is_refused(manager: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    body = json.dumps({"slug": "r1", "name": "x" * (LIMIT + 1)}).encode()

    response = manager.generic("POST", "/api/v1/routers", body, content_type="application/json")

    assert response.status_code == 413, response.content[:300]
    assert response.json()["error"]["type"] == "payload_too_large"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "prices",
    ['{"a": -1, "b": 1}', '{"a": 1e400, "b": 1}', '{"a": "free", "b": 1}', '{"a": true, "b": 1}'],
    ids=["negative", "infinite", "text", "boolean"],
)
def test_training_option_prices_must_be_finite_non_negative_numbers(
    manager: Any, tenants: Any, prices: str
) -> None:
    from training.models import Dataset, DatasetStatus, Router

    Router.objects.create(
        organization=tenants.organization, slug="r", name="r", candidates=["a", "b"]
    )
    dataset = Dataset.objects.create(
        organization=tenants.organization, name="d", file="datasets/x.csv", status=DatasetStatus.READY,
        rows=30, model_summary=[{"id": "a"}, {"id": "b"}],
    )  # fmt: skip
    # Raw JSON: 1e400 is a valid JSON number that Python reads as infinity.
    body = f'{{"dataset": {dataset.pk}, "options": {{"prices": {prices}}}}}'.encode()

    response = manager.generic(
        "POST", "/api/v1/routers/r/train", body, content_type="application/json"
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["param"] == "options.prices", response.content[:300]


@pytest.mark.django_db
@pytest.mark.parametrize("tradeoff", ["1e400", "-0.1", "1.5", '"cheapest"', "true", "[0.5]"])
def test_select_refuses_an_absurd_tradeoff(manager: Any, tradeoff: str) -> None:
    body = f'{{"prompt": "hi", "tradeoff": {tradeoff}}}'.encode()

    response = manager.generic(
        "POST", "/api/v1/routers/auto/select", body, content_type="application/json"
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["param"] == "tradeoff"


@pytest.mark.django_db
@pytest.mark.parametrize("cost", ["-0.01", "inf", "1e400", "NaN", "cheap"])
def test_dataset_with_an_absurd_cost_is_invalid_naming_the_column(
    manager: Any, settings: Any, django_capture_on_commit_callbacks: Any, cost: str
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.DATASET_MIN_ROWS = 2
    rows = [f"prompt {i},1,0,0.001,{cost if i == 1 else '0.002'}" for i in range(4)]
    content = "\n".join(["prompt,m1/score,m2/score,m1/cost,m2/cost", *rows]).encode()

    with django_capture_on_commit_callbacks(execute=True):
        created = manager.post(
            "/api/v1/datasets", {"file": SimpleUploadedFile("d.csv", content)}, format="multipart"
        )
    dataset = manager.get(f"/api/v1/datasets/{created.json()['id']}").json()

    assert dataset["status"] == "invalid", dataset
    assert dataset["errors"][0]["column"] == "m2/cost"
    assert dataset["errors"][0]["row"] == 2
