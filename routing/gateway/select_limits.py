"""Router selects' rate-limit buckets, apart from the key's rpm (SDKs select before every call):
one per key, shared by ``select`` (both paths) and Not Diamond's ``modelSelect``, and one per
signed-in person for the selects a dashboard session makes; counted by ``routing.gateway.limits``.
A key made by a key counts its selects against the select buckets of every key with an rpm up its
lineage too, as its requests (``limits.key_buckets``): minting keys does not multiply a key's
selects. An ancestor without an rpm bounds none (the rpm-less key at the top of most trees)."""

from __future__ import annotations

from django.conf import settings

from accounts.keys import AuthenticatedKey
from routing.gateway.limits import Bucket, admit_chain, admit_sync, key_tag


def select_rpm(key: AuthenticatedKey) -> int:
    """The router selects a minute ``key`` may make (0: unlimited): ``ROUTER_SELECT_RPM_FACTOR``
    times its rpm, else ``ROUTER_SELECT_RPM_DEFAULT``."""
    return _select_rpm(key.rpm)


def _select_rpm(rpm: int | None) -> int:
    if rpm:
        return int(rpm * settings.ROUTER_SELECT_RPM_FACTOR)
    return int(settings.ROUTER_SELECT_RPM_DEFAULT)


async def rate_limit_admit_select(key: AuthenticatedKey) -> None:
    """Count one router select in the key's select buckets, or raise ``RateLimited``: it bounds
    a loop of selects, each a ranking and, for Not Diamond's modelSelect, a stored session."""
    await admit_chain(select_buckets(key), 0)


def select_admit_sync(key: AuthenticatedKey | None, *, user_id: int | None) -> None:
    """``rate_limit_admit_select`` for the DRF views (sync: no event loop). Without a key, the
    select of a signed-in person (``user_id``: a dashboard session) counts in a bucket of its
    own, ``ROUTER_SELECT_RPM_DEFAULT`` a minute: a script can drive a session as well as a key."""
    if key is not None:
        admit_sync(select_buckets(key))
    elif user_id is not None:
        rpm = int(settings.ROUTER_SELECT_RPM_DEFAULT)
        bucket = Bucket(
            f"{{user{user_id}}}:rlu",  # apart from every key's "{tree…}:rl…:<key id>:<prefix>"
            rpm,
            who="This account",
            counts="router selects",
            note=" (selects made signed in, counted per person)",
            metadata={"select_rpm": rpm},
        )
        admit_sync((bucket,))


def select_buckets(key: AuthenticatedKey) -> tuple[Bucket, ...]:
    """The key's select bucket (``select_rpm``) and those of the keys it was made from that have
    an rpm (nearest first), each its rpm times ``ROUTER_SELECT_RPM_FACTOR``. An ancestor without an
    rpm has none (0: ``admit_chain`` drops it): its ``ROUTER_SELECT_RPM_DEFAULT`` shared by every
    key made from it capped them all, the keys an rpm-less management key mints too, whatever
    their rpm. Built once per key and settings (``AuthenticatedKey.buckets``)."""
    settled = ("select", settings.ROUTER_SELECT_RPM_FACTOR, settings.ROUTER_SELECT_RPM_DEFAULT)
    buckets: tuple[Bucket, ...] | None = key.buckets.get(settled)
    if buckets is None:
        buckets = key.buckets[settled] = _select_buckets(key)
    return buckets


def _select_buckets(key: AuthenticatedKey) -> tuple[Bucket, ...]:
    rpm = select_rpm(key)
    own = Bucket(
        key_tag(key, "s"),
        rpm,
        counts="router selects",
        note=" (counted apart from its requests)",
        metadata={"select_rpm": rpm},
    )
    made_from = [
        Bucket(
            key_tag(key, "s", up),
            _select_rpm(up.rpm) if up.rpm else 0,
            counts="router selects",
            made_from=up.label,
        )
        for up in reversed(key.rate_ancestors)
    ]
    return (own, *made_from)
