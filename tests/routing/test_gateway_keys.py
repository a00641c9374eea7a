"""Per-key enforcement on inference, and the request-level errors of API.md."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.utils import timezone

from accounts import key_lineage
from accounts.models import ApiKey, KeyScope
from tests.conftest import require_redis
from tests.routing.world import World

HELLO = {"model": "test/gpt", "messages": [{"role": "user", "content": "hello"}]}


def post(world: World, body: dict, key: str | None = None, **headers: str) -> httpx.Response:  # type: ignore[type-arg]
    auth = {"Authorization": f"Bearer {key or world.key}"} if key != "" else {}
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body, headers=auth | headers)


def test_every_response_carries_a_request_id_and_echoes_a_safe_one(world: World) -> None:
    ok = post(world, HELLO, **{"X-Request-Id": "client-chosen-id-42"})
    error = post(world, HELLO, key="rh-live-wrong")

    assert ok.headers["x-request-id"] == "client-chosen-id-42"
    assert len(error.headers["x-request-id"]) >= 8


def test_missing_and_revoked_keys_are_401(world: World) -> None:
    revoked = world.key_for()
    key_lineage.api_key_revoke(key=ApiKey.objects.get(prefix=revoked[:16]))

    missing = post(world, HELLO, key="")
    gone = post(world, HELLO, key=revoked)

    assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
    assert gone.status_code == 401


def test_expired_key_is_401(world: World) -> None:
    expired = world.key_for(expires_at=timezone.now() - timedelta(minutes=1))

    assert post(world, HELLO, key=expired).status_code == 401


def test_management_key_cannot_call_inference(world: World) -> None:
    management = world.key_for(scope=KeyScope.MANAGE)

    response = post(world, HELLO, key=management)

    assert response.status_code == 403
    assert "Management keys" in response.json()["error"]["message"]


def test_key_limited_to_some_models_gets_403_for_others(world: World) -> None:
    limited = world.key_for(allowed_models=["test/claude"])

    denied = post(world, HELLO, key=limited)
    allowed = post(world, HELLO | {"model": "test/claude"}, key=limited)

    assert denied.status_code == 403 and denied.json()["error"]["param"] == "model"
    assert allowed.status_code == 200


def test_rpm_limit_answers_429_with_retry_after(world: World) -> None:
    limited = world.key_for(rpm=2)

    statuses = [post(world, HELLO, key=limited) for _ in range(3)]

    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60
    assert statuses[-1].json()["error"]["type"] == "rate_limited"


def test_rpm_limit_is_shared_through_redis(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    if not world.redis_url:
        require_redis()
    settings.REDIS_URL = world.redis_url
    limited = world.key_for(rpm=1)

    statuses = [post(world, HELLO, key=limited).status_code for _ in range(2)]

    assert statuses == [200, 429]


def test_tpm_limit_counts_generated_tokens(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    limited = world.key_for(tpm=30)

    first = post(
        world,
        HELLO | {"messages": [{"role": "user", "content": "Tell me everything about tea"}]},
        key=limited,
    )
    second = post(world, HELLO, key=limited)

    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] >= 30
    assert second.status_code == 429


def test_no_credits_is_402_and_nothing_is_forwarded(world: World) -> None:
    from tests.factories import key_make, organization_make

    broke = key_make(organization_make(name="Broke"))

    response = post(world, HELLO, key=broke)

    assert (
        response.status_code == 402 and response.json()["error"]["type"] == "insufficient_credits"
    )
    assert world.upstream_requests() == []


def test_key_credit_limit_is_403_key_limit_reached(world: World) -> None:
    tiny = world.key_for(limit=Decimal("0.000001"), limit_reset="daily")

    response = post(world, HELLO, key=tiny)

    assert response.status_code == 403 and response.json()["error"]["type"] == "key_limit_reached"


def test_reservation_covers_the_default_max_tokens_sent_upstream(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_DEFAULT_MAX_TOKENS = 1000

    response = post(world, HELLO)

    assert response.status_code == 200
    assert world.last_upstream("/v1/chat/completions")["body"]["max_tokens"] == 1000


def test_unknown_model_and_unknown_router_are_404(world: World) -> None:
    unknown = post(world, HELLO | {"model": "nope/nothing"})
    router = post(world, HELLO | {"model": "router/no-such-router"})

    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    assert router.status_code == 404 and "No router" in router.json()["error"]["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "test/gpt"}, "messages"),
    ({"model": "test/gpt", "messages": [{"content": "no role"}]}, "messages"),
    (HELLO | {"max_tokens": 0}, "max_tokens"),
    (HELLO | {"stream": "yes"}, "stream"),
    (HELLO | {"provider": {"sort": "vibes"}}, "provider.sort"),
])  # fmt: skip
def test_malformed_requests_are_400_naming_the_parameter(
    world: World, body: dict, param: str
) -> None:  # type: ignore[type-arg]
    response = post(world, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_body_over_the_limit_is_413(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_MAX_BODY_BYTES = 1000

    response = post(world, HELLO | {"messages": [{"role": "user", "content": "x" * 2000}]})

    assert response.status_code == 413 and response.json()["error"]["type"] == "payload_too_large"


def test_unknown_gateway_route_is_404_in_the_error_format(world: World) -> None:
    response = httpx.get(f"{world.gateway_url}/v1/nothing-here")

    assert response.status_code == 404 and response.json()["error"]["code"] == 404


def test_openai_sdk_surfaces_gateway_errors(world: World) -> None:
    client = openai.OpenAI(
        base_url=f"{world.gateway_url}/v1",
        api_key=world.key_for(scope=KeyScope.MANAGE),
        max_retries=0,
    )

    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(**HELLO)
