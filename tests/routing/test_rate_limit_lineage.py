"""A key made by a key counts its requests and tokens against that key's rpm and tpm too, and
against every key up its lineage (``routing.gateway.limits.key_buckets``): a management key
allowed 3 requests a minute cannot mint keys of 3 each and so make 3 per key. The chain is leased
in one Lua call over every bucket; an ancestor's 429 names it but not its limits; the chain is
read with the key in its one lookup statement (no query more per request)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from accounts.key_lookup import key_lookup_count
from accounts.keys import AuthenticatedKey, RateBound
from accounts.models import KeyScope
from routerhub.errors import RateLimited
from routerhub.redis_clients import redis_client
from routing.gateway import limits, limits_redis
from tests.conftest import require_redis
from tests.factories import key_client
from tests.routing.world import World

pytestmark = pytest.mark.timeout(30)
_ids = iter(range(10_000, 20_000))


def a_key(rpm: int | None = None, tpm: int | None = None,
          made_by: AuthenticatedKey | None = None) -> AuthenticatedKey:  # fmt: skip
    """A key (with the ancestors' rate bounds the lookup would read, nearest last)."""
    up: tuple[RateBound, ...] = ()
    if made_by is not None:
        parent = RateBound(made_by.id, made_by.prefix, made_by.rpm, made_by.tpm,
                           f"{made_by.prefix}… ('parent')")  # fmt: skip
        up = (*made_by.rate_ancestors, parent)
    return AuthenticatedKey(
        id=next(_ids), organization_id=1, organization_slug="o", scope="inference", name="k",
        prefix="rh-live-" + secrets.token_hex(4), allowed_models=(), rpm=rpm, tpm=tpm,
        limit=None, limit_reset=None, expires_at=None, rate_ancestors=up,
    )  # fmt: skip


def admitted(key: AuthenticatedKey, requests: int, prompt_tokens: int = 0,
             answer_tokens: int = 0) -> list[RateLimited | None]:  # fmt: skip
    async def run() -> list[RateLimited | None]:
        outcomes: list[RateLimited | None] = []
        for _ in range(requests):
            try:
                await limits.rate_limit_admit(key, prompt_tokens)
                await limits.rate_limit_add_tokens(key, answer_tokens)
                outcomes.append(None)
            except RateLimited as refused:
                outcomes.append(refused)
        await limits.rate_limit_close()
        return outcomes

    return asyncio.run(run())


def test_children_together_make_no_more_requests_than_their_parent(limiter: str) -> None:
    """Old code: each child had its own 3 a minute, the two together 6 (and the parent 3 more)."""
    parent = a_key(rpm=3)
    first, second = a_key(rpm=3, made_by=parent), a_key(rpm=3, made_by=parent)

    outcomes = admitted(first, 2) + admitted(second, 2)
    own = admitted(parent, 1)[0]

    assert [o is None for o in outcomes] == [True, True, True, False]
    assert own is not None and "limited to 3 requests" in own.message  # its own words
    refused = outcomes[-1]
    assert refused is not None and parent.prefix in refused.message


def test_a_grandchild_counts_against_every_key_up_its_lineage(limiter: str) -> None:
    root = a_key(rpm=2)
    middle = a_key(made_by=root)  # no limits of its own
    leaf = a_key(rpm=5, made_by=middle)

    outcomes = admitted(leaf, 3)

    assert [o is None for o in outcomes] == [True, True, False]
    assert outcomes[-1] is not None and root.prefix in outcomes[-1].message


def test_a_childs_tokens_count_against_its_parents_tpm(limiter: str) -> None:
    parent = a_key(tpm=100)
    child = a_key(tpm=1000, made_by=parent)

    # 10 prompt + 50 answer tokens each: the parent's 100 are past after the second.
    outcomes = admitted(child, 3, prompt_tokens=10, answer_tokens=50)

    assert [o is None for o in outcomes] == [True, True, False]
    assert outcomes[-1] is not None and outcomes[-1].metadata["limited_on"] == "tokens"


def test_an_ancestors_refusal_does_not_tell_its_limits(limiter: str) -> None:
    """Its rpm and what is left of it are what its whole tree used: a child's holder could
    watch its siblings' pace through them (as an ancestor's budget refusal hides them)."""
    parent = a_key(rpm=7, tpm=70_000)
    child = a_key(made_by=parent)
    refused = admitted(child, 8)[-1]

    assert refused is not None
    assert set(refused.headers) == {"Retry-After", "x-ratelimit-reset"}
    assert set(refused.metadata) == {"limited_by", "limited_on", "retry_after"}
    assert refused.metadata["limited_on"] == "requests"  # what ran out, not how much
    told = refused.message.replace(refused.metadata["limited_by"], "")
    assert "7" not in told.replace(str(refused.metadata["retry_after"]), "")
    assert refused.metadata["limited_by"].startswith(parent.prefix)


def test_a_refusal_by_an_ancestor_leases_nothing_from_the_key(
    settings: Any, one_rate_limit_window: tuple[int, int]
) -> None:
    """The chain is leased all or nothing in one script: a child refused by its spent parent
    takes none of its own quota (which its own later window-mates would miss)."""
    if not settings.REDIS_URL:
        require_redis()
    limits._leases.clear()
    parent = a_key(rpm=1)
    child = a_key(rpm=50, made_by=parent)
    admitted(parent, 1)  # the parent's one request this minute
    limits._leases.clear()  # another worker
    outcomes = admitted(child, 3)
    requests_key, _ = limits_redis.lease_keys(limits.key_tag(child, ""), one_rate_limit_window[0])
    client = redis_client()
    leased = int(client.get(requests_key) or 0)
    client.close()

    assert all(o is not None for o in outcomes)
    assert leased == 0


def post(world: World, key: str) -> httpx.Response:
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


@pytest.mark.parametrize("through", ["redis", "in-process"])
def test_over_http_children_of_a_management_key_share_its_rpm(
    world: World, settings: Any, through: str, one_rate_limit_window: tuple[int, int]
) -> None:
    """Real keys made through the API, the real gateway: the chain comes with each key in its
    one lookup statement and is cached with it (old code: four 200s, 2 per child)."""
    if through == "redis":
        if not world.redis_url:
            require_redis()
        settings.REDIS_URL = world.redis_url
    parent = world.key_for(scope=KeyScope.MANAGE, rpm=3)
    children = [
        key_client(parent).post("/api/v1/keys", {"name": name}, format="json").json()["key"]
        for name in ("a", "b")
    ]  # each takes its parent's rpm: 3
    lookups = key_lookup_count()

    statuses = [post(world, children[i % 2]).status_code for i in range(4)]
    refused = post(world, children[1])

    assert statuses == [200, 200, 200, 429]
    assert key_lookup_count() - lookups == 2  # one statement per key, its chain included
    error = refused.json()["error"]
    assert refused.status_code == 429 and parent[:16] in error["message"], refused.text
    assert parent not in refused.text
    assert "x-ratelimit-limit-requests" not in refused.headers
