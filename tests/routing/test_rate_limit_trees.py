"""The rate limits of a tree of keys beyond requests (``routing.gateway.limits``,
``select_limits``): router selects share the lineage's buckets, a chain's Redis keys share one
Cluster hash tag, a key without a tpm up its chain adds no tokens, an in-process refusal by an
ancestor counts nothing, the ORM lookup reads an ancestor with only an rpm, and a failed call
that was not the probe leaves the probe alone."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.keys import _load
from accounts.models import ApiKey
from routerhub.errors import RateLimited
from routing.gateway import limits, limits_redis
from routing.gateway.select_limits import rate_limit_admit_select, select_admit_sync
from tests.factories import key_make, organization_make
from tests.routing.test_rate_limit_backoff import _Clock
from tests.routing.test_rate_limit_lineage import a_key

pytestmark = pytest.mark.timeout(30)


def test_children_together_make_no_more_selects_than_their_parent(
    limiter: str, settings: Any
) -> None:
    """Old code: a select bucket per key, so each child had its own 2 (4 together)."""
    settings.ROUTER_SELECT_RPM_FACTOR = 2  # the parent's rpm 1: 2 selects a minute
    parent = a_key(rpm=1)
    first, second = a_key(rpm=1, made_by=parent), a_key(rpm=1, made_by=parent)

    async def run() -> list[bool]:
        outcomes = []
        for key in (first, second, second):
            try:
                await rate_limit_admit_select(key)
                outcomes.append(True)
            except RateLimited as refused:
                assert parent.prefix in refused.message
                assert refused.metadata["limited_on"] == "requests"
                outcomes.append(False)
        await limits.rate_limit_close()
        return outcomes

    outcomes = asyncio.run(run())
    with pytest.raises(RateLimited):
        select_admit_sync(first, user_id=None)  # the DRF path counts in the same buckets

    assert outcomes == [True, True, False]


def hash_tag(redis_key: str) -> str:
    """The part of a key Redis Cluster hashes: the first non-empty ``{…}``."""
    match = re.search(r"\{([^}]+)\}", redis_key)
    assert match is not None, redis_key
    return match.group(1)


def test_every_redis_key_of_a_chain_shares_one_hash_tag() -> None:
    """Under Redis Cluster (or a proxy) a script's keys must share a slot. Old code: a tag per
    bucket, so a key made by a key got CROSSSLOT and its requests were admitted uncounted."""
    root = a_key(rpm=9)
    middle = a_key(tpm=900, made_by=root)
    leaf = a_key(rpm=5, made_by=middle)
    chains = [limits.key_buckets(k) for k in (root, middle, leaf)]
    from routing.gateway.select_limits import select_buckets

    chains += [select_buckets(k) for k in (root, middle, leaf)]

    for chain in chains:
        keys, _ = limits_redis.lease_input(
            [(b.tag, b.rpm, b.tpm) for b in chain], 7, [(1, 1)] * len(chain), ttl=65
        )
        assert {hash_tag(k) for k in keys} == {hash_tag(chains[0][0].tag)}, keys
    # The root's own bucket is the same counter as the one its descendants take from.
    assert limits.key_buckets(leaf)[-1].tag == limits.key_buckets(root)[0].tag


def test_tokens_of_a_chain_without_a_tpm_build_nothing(
    limiter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code built the chain's buckets and took the lock for every answer of such a key."""
    child = a_key(rpm=5, made_by=a_key(rpm=9))

    def no_buckets(key: Any) -> Any:
        raise AssertionError("buckets built for a chain without a tpm")

    monkeypatch.setattr(limits, "key_buckets", no_buckets)
    asyncio.run(limits.rate_limit_add_tokens(child, 100))


def test_in_process_a_refusal_by_the_parent_counts_nothing_in_the_child(
    settings: Any, one_rate_limit_window: tuple[int, int]
) -> None:
    settings.REDIS_URL = ""
    parent = a_key(rpm=1)
    child = a_key(rpm=5, made_by=parent)
    window = one_rate_limit_window[0]

    async def run() -> None:
        await limits.rate_limit_admit(child, 3)
        for _ in range(2):
            with pytest.raises(RateLimited):
                await limits.rate_limit_admit(child, 3)

    asyncio.run(run())

    assert limits._local[(limits.key_tag(child, ""), window)] == [1, 3]


@pytest.mark.django_db
def test_the_orm_lookup_reads_an_ancestor_with_only_an_rpm() -> None:
    """``accounts.keys._ancestor_limits`` (the management API, the dashboard, SQLite)."""
    organization = organization_make()
    key_make(organization, name="parent", rpm=4)
    plaintext = key_make(organization, name="child")
    parent = ApiKey.objects.get(organization=organization, name="parent")
    child = ApiKey.objects.get(organization=organization, name="child")
    ApiKey.objects.filter(pk=child.pk).update(created_by_key=parent)

    key = _load(child.digest)

    assert plaintext and key is not None
    assert [(up.key_id, up.rpm, up.tpm) for up in key.rate_ancestors] == [(parent.pk, 4, None)]
    assert key.ancestors == ()  # no spend limit


def test_a_failed_call_that_was_not_the_probe_leaves_the_probe_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call that started before the outage fails (here refused) while the probe hangs. Old
    code: that failure cleared the probe, and the next caller probed beside it."""
    clock = _Clock()
    monkeypatch.setattr(limits_redis, "time", clock)
    limits_redis._Outage.since, limits_redis._Outage.retry_at = clock.now, clock.now
    probe = limits_redis.redis_turn()
    assert probe is not None and probe.probe is not None

    refused = limits_redis.redis_failed(
        RedisConnectionError("max number of clients reached"), limits_redis.RedisTurn()
    )
    second = limits_redis.redis_turn()
    limits_redis.redis_failed(RedisConnectionError("Connection refused"), probe)

    assert refused  # Redis is up: the caller counts in-process
    assert second is None  # old code: a second probe
    assert limits_redis._Outage.probing_since is None  # the probe's own failure ends it


def test_a_keys_buckets_are_built_once_per_cached_key(settings: Any) -> None:
    """The request path reuses the buckets kept with the key; a change of the select settings
    builds its select buckets anew, and a copy of the key (``dataclasses.replace``) its own."""
    import dataclasses

    from routing.gateway.select_limits import select_buckets

    key = a_key(rpm=5, made_by=a_key(rpm=9))
    assert limits.key_buckets(key) is limits.key_buckets(key)
    selects = select_buckets(key)
    assert select_buckets(key) is selects
    settings.ROUTER_SELECT_RPM_FACTOR = settings.ROUTER_SELECT_RPM_FACTOR * 2
    assert select_buckets(key)[0].rpm == 2 * selects[0].rpm
    copy = dataclasses.replace(key, allowed_models=("m",))
    assert copy.buckets == {} and limits.key_buckets(copy) == limits.key_buckets(key)
