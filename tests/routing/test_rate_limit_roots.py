"""A tree of keys is named by its root (``routing.gateway.limits.key_tag``) and its selects count
up the whole chain (``select_limits.select_buckets``), the keys read as the gateway reads them
(``accounts.key_lookup``'s statement, and the ORM's read)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accounts import keys
from accounts.key_chain import LINEAGE_DEPTH_MAX
from accounts.models import ApiKey, Organization
from routerhub.errors import RateLimited
from routing.gateway import limits
from routing.gateway.select_limits import rate_limit_admit_select
from tests.conftest import require_postgres
from tests.factories import key_make, organization_make
from tests.routing.test_rate_limit_lineage import admitted

pytestmark = [pytest.mark.timeout(30), pytest.mark.django_db(transaction=True)]


def _made(organization: Organization, name: str, by: str | None, **fields: Any) -> str:
    """A key named ``name`` made by the key named ``by``; its digest."""
    key_make(organization, name=name, **fields)
    key = ApiKey.objects.get(organization=organization, name=name)
    if by is not None:
        parent = ApiKey.objects.get(organization=organization, name=by)
        ApiKey.objects.filter(pk=key.pk).update(created_by_key=parent)
    return key.digest


def _read(digest: str) -> keys.AuthenticatedKey:
    """The key as the gateway's statement reads it, checked against the ORM's read."""
    require_postgres()
    key = asyncio.run(keys._load_async(digest))
    assert key is not None and key == keys._load(digest)
    return key


def test_an_ancestor_given_an_rpm_keeps_the_childs_count_for_the_minute(limiter: str) -> None:
    """Old code: the tag was the first ancestor with a rate limit, so the parent's new rpm moved
    the child's counters to a new tag and the child got its 2 requests again."""
    organization = organization_make()
    _made(organization, "parent", None)
    digest = _made(organization, "child", "parent", rpm=2)
    assert admitted(_read(digest), 2) == [None, None]

    ApiKey.objects.filter(organization=organization, name="parent").update(rpm=10)
    child = _read(digest)
    refused = admitted(child, 1)[0]

    assert [up.rpm for up in child.rate_ancestors] == [10]
    assert isinstance(refused, RateLimited) and "limited to 2 requests" in refused.message


def _selects(*made: keys.AuthenticatedKey) -> list[str]:
    """Each key's select in turn: "admitted", or the ``limited_by`` of its 429 ("" for its own)."""

    async def run() -> list[str]:
        outcomes = []
        for key in made:
            try:
                await rate_limit_admit_select(key)
                outcomes.append("admitted")
            except RateLimited as refused:
                outcomes.append(refused.metadata.get("limited_by", ""))
        await limits.rate_limit_close()
        return outcomes

    return asyncio.run(run())


def test_an_rpm_less_root_does_not_cap_the_selects_of_the_keys_made_from_it(
    limiter: str, settings: Any
) -> None:
    """The reviewer's scenario. Old code: the rpm-less root had a select bucket of
    ``ROUTER_SELECT_RPM_DEFAULT`` (2) that every key made from it shared, so ``a`` (rpm 5: 50
    selects) got 2, then a 429 naming the root, and ``b`` and ``c`` none."""
    settings.ROUTER_SELECT_RPM_FACTOR, settings.ROUTER_SELECT_RPM_DEFAULT = 10, 2
    organization = organization_make()
    _made(organization, "root", None)
    a = _read(_made(organization, "a", "root", rpm=5))
    b = _read(_made(organization, "b", "root"))
    c = _read(_made(organization, "c", "root"))

    assert _selects(a, a, a, a, a, b, b, c, c) == ["admitted"] * 9
    assert _selects(b) == [""]  # b's own default bucket, not the root's


def test_a_key_without_an_rpm_passes_its_childrens_selects_up_to_the_keys_with_one(
    limiter: str, settings: Any
) -> None:
    """The rpm-less middle key bounds no selects (each child has its own default), and the root
    above it, read through it by the lookup, bounds them all: its rpm 3 times factor 1. (This test
    asserted the middle key's default shared by its children: the rule the fix removed.)"""
    settings.ROUTER_SELECT_RPM_FACTOR, settings.ROUTER_SELECT_RPM_DEFAULT = 1, 2
    organization = organization_make()
    _made(organization, "root", None, rpm=3)
    _made(organization, "middle", "root")
    first = _read(_made(organization, "first", "middle"))
    second = _read(_made(organization, "second", "middle"))
    root = ApiKey.objects.get(organization=organization, name="root")

    outcomes = _selects(first, first, second, second)

    assert outcomes[:3] == ["admitted"] * 3
    assert outcomes[3].startswith(root.prefix)


def test_the_orm_reads_as_many_ancestors_as_the_statement() -> None:
    """Past ``LINEAGE_DEPTH_MAX`` (a guard: the API makes no deeper chain) both reads stop at the
    same ancestor. Old code: the ORM's loop had no bound, so it read all 10 and the statement 8."""
    organization = organization_make()
    _made(organization, "k0", None)
    for level in range(1, LINEAGE_DEPTH_MAX + 2):
        _made(organization, f"k{level}", f"k{level - 1}")
    deepest = _made(organization, "deepest", f"k{LINEAGE_DEPTH_MAX + 1}")

    key = _read(deepest)

    assert len(key.rate_ancestors) == LINEAGE_DEPTH_MAX
