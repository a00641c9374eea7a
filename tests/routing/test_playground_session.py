"""The dashboard playground's endpoint: the session's person, through the gateway's own path.

Requests go over real HTTP to the whole ASGI app, with a signed-in session cookie and the CSRF
token of the playground page, as the browser sends them.
"""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import orjson
import pytest
from django.conf import settings
from django.test import Client

from accounts.models import ApiKey, Membership, Role
from billing.models import LedgerEntry, UsageRecord
from tests.factories import member_add, organization_make
from tests.routing.world import World

HELLO = {"model": "test/gpt", "messages": [{"role": "user", "content": "hello"}]}
CHAT = "/dashboard/playground/chat"


def session(world: World, role: Role = Role.MEMBER) -> tuple[httpx.Client, Membership]:
    """A browser-like client signed in as a new ``role`` of the world's organization."""
    user = member_add(world.organization, role=role)
    django = Client()
    django.force_login(user)
    store = django.session
    store["current_organization_id"] = world.organization.pk
    store.save()
    cookie = django.cookies[settings.SESSION_COOKIE_NAME].value
    cookies = {settings.SESSION_COOKIE_NAME: cookie}
    http = httpx.Client(base_url=world.gateway_url, cookies=cookies, timeout=30)
    page = http.get("/dashboard/playground/")
    assert page.status_code == 200
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match
    http.headers["X-CSRFToken"] = match.group(1)
    return http, Membership.objects.get(user=user, organization=world.organization)


def test_a_member_chats_billed_like_an_api_request_with_a_key_of_their_role(world: World) -> None:
    http, membership = session(world, Role.MEMBER)

    answer = http.post(CHAT, json=HELLO)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"]
    assert answer.headers["x-generation-id"] == body["id"]
    record = world.usage_record(body["id"])
    key = ApiKey.objects.get(pk=record.key_id)
    assert key.is_playground and key.created_by_id == membership.user_id
    assert key.created_by_role == Role.MEMBER and key.rpm == settings.PLAYGROUND_RPM
    assert record.cost > 0 and Decimal(str(body["usage"]["cost"])) == record.cost
    charge = LedgerEntry.objects.get(idempotency_key=f"usage:{body['id']}")
    assert charge.amount == -record.cost
    # The next request reuses the same key.
    assert http.post(CHAT, json=HELLO).status_code == 200
    assert ApiKey.objects.filter(is_playground=True).count() == 1


def test_streaming_relays_events_and_records_the_trace(world: World) -> None:
    http, _ = session(world)

    with http.stream("POST", CHAT, json=HELLO | {"stream": True}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line for line in answer.iter_lines() if line.startswith("data: ")]

    assert events[-1] == "data: [DONE]"
    first = orjson.loads(events[0][6:])
    record = world.usage_record(first["id"])
    assert record.streamed and record.status == "succeeded"


def test_without_the_csrf_token_nothing_is_sent_or_billed(world: World) -> None:
    http, _ = session(world)
    del http.headers["X-CSRFToken"]

    refused = http.post(CHAT, json=HELLO)

    assert refused.status_code == 403
    assert not world.upstream_requests("/chat/completions")
    assert not UsageRecord.objects.exists()


def test_a_form_post_is_refused_with_415_before_anything_is_sent(world: World) -> None:
    http, _ = session(world)

    refused = http.post(CHAT, data={"model": "test/gpt"})

    assert refused.status_code == 415 and "application/json" in refused.json()["error"]["message"]
    assert not world.upstream_requests("/chat/completions")


def test_signed_out_is_401_and_a_removed_member_cannot_spend(world: World) -> None:
    assert httpx.post(f"{world.gateway_url}{CHAT}", json=HELLO).status_code in (401, 403)
    http, membership = session(world)
    served = http.post(CHAT, json=HELLO)
    assert served.status_code == 200
    world.usage_record(served.json()["id"])  # settled after the answer: wait before counting
    membership.delete()  # the key acts with its creator's current role: none now

    refused = http.post(CHAT, json=HELLO)

    assert refused.status_code in (401, 403), refused.text
    assert UsageRecord.objects.count() == 1


@pytest.mark.usefixtures("one_rate_limit_window")  # across a minute's end: the flake it had
def test_the_playground_key_is_rate_limited_like_any_key(world: World) -> None:
    """Both requests count in one rate-limit window. Leftover Redis counters cannot matter: the
    counters are named by the key's random prefix."""
    http, _ = session(world)
    assert http.post(CHAT, json=HELLO).status_code == 200
    ApiKey.objects.filter(is_playground=True).update(rpm=1)
    from accounts.keys import key_cache_clear

    key_cache_clear()

    limited = http.post(CHAT, json=HELLO)

    assert limited.status_code == 429, limited.text
    assert limited.json()["error"]["type"] == "rate_limited"
    assert "retry-after" in limited.headers


def test_the_generation_page_is_tenant_isolated(world: World) -> None:
    http, _ = session(world)
    generation = http.post(CHAT, json=HELLO).json()["id"]
    world.usage_record(generation)
    outsider = Client()
    outsider.force_login(organization_make().memberships.get().user)

    own = http.get(f"/dashboard/generations/{generation}/")
    foreign = outsider.get(f"/dashboard/generations/{generation}/")

    assert own.status_code == 200 and "test/gpt" in own.text and generation in own.text
    assert foreign.status_code == 404
    assert outsider.get("/dashboard/generations/gen-none/").status_code == 404
