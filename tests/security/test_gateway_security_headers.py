"""Every ``/v1`` answer of the lean ASGI gateway carries the security headers Django's answers
carry (nosniff, Referrer-Policy, Cross-Origin-Opener-Policy, no framing; HSTS only over HTTPS when configured): JSON, a
streamed answer (which the ``openai`` SDK still reads as a stream) and errors, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.routing.world import World

CHAT = {"model": "test/gpt", "messages": [{"role": "user", "content": "Hi"}]}


def assert_secured(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"  # Django's default
    assert "strict-transport-security" not in response.headers  # plain HTTP, not configured


def test_json_streamed_and_error_answers_carry_the_security_headers(world: World) -> None:
    auth = {"Authorization": f"Bearer {world.key}"}
    with httpx.Client(base_url=world.gateway_url, headers=auth, timeout=10) as client:
        answered = client.post("/v1/chat/completions", json=CHAT)
        with client.stream("POST", "/v1/chat/completions", json=CHAT | {"stream": True}) as sse:
            streamed_body = sse.read()
        refused = client.post("/v1/chat/completions", json={"model": "test/gpt"})
        unauthorized = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=CHAT)
        models = client.get("/v1/models")

    assert answered.status_code == 200 and sse.status_code == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert b"data: [DONE]" in streamed_body
    assert refused.status_code == 400 and unauthorized.status_code == 401
    assert models.status_code == 200
    for response in (answered, sse, refused, unauthorized, models):
        assert_secured(response)
    sdk = world.openai_client()
    chunks = list(sdk.chat.completions.create(**CHAT, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_hsts_only_over_https_as_the_proxy_reports_it(world: World, settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    auth = {"Authorization": f"Bearer {world.key}"}

    plain = httpx.get(f"{world.gateway_url}/v1/models", headers=auth)
    proxied = httpx.get(
        f"{world.gateway_url}/v1/models", headers=auth | {"X-Forwarded-Proto": "https"}
    )

    assert "strict-transport-security" not in plain.headers
    assert proxied.headers["strict-transport-security"] == "max-age=3600"
    assert proxied.headers["x-content-type-options"] == "nosniff"


def test_no_opener_policy_when_the_setting_is_unset(settings: Any) -> None:
    from routing.gateway.http import _constant_headers, security_headers

    settings.SECURE_CROSS_ORIGIN_OPENER_POLICY = None
    _constant_headers.cache_clear()
    try:
        sent = dict(security_headers({"scheme": "http"}, {}))
    finally:
        _constant_headers.cache_clear()

    assert b"cross-origin-opener-policy" not in sent
    assert sent[b"x-content-type-options"] == b"nosniff"
