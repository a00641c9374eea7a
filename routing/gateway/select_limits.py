"""Router selects' rate-limit buckets, apart from the key's rpm (SDKs select before every call):
one per key, shared by ``select`` (both paths) and Not Diamond's ``modelSelect``, and one per
signed-in person for the selects a dashboard session makes; counted by ``routing.gateway.limits``."""

from __future__ import annotations

from django.conf import settings

from accounts.keys import AuthenticatedKey
from routing.gateway.limits import Bucket, admit, admit_sync, key_tag


def select_rpm(key: AuthenticatedKey) -> int:
    """The router selects a minute ``key`` may make (0: unlimited): ``ROUTER_SELECT_RPM_FACTOR``
    times its rpm, else ``ROUTER_SELECT_RPM_DEFAULT``."""
    if key.rpm:
        return int(key.rpm * settings.ROUTER_SELECT_RPM_FACTOR)
    return int(settings.ROUTER_SELECT_RPM_DEFAULT)


async def rate_limit_admit_select(key: AuthenticatedKey) -> None:
    """Count one router select in the key's select bucket, or raise ``RateLimited``: it bounds a
    loop of selects, each a ranking and, for Not Diamond's modelSelect, a stored session."""
    await admit(_select_bucket(key), 0)


def select_admit_sync(key: AuthenticatedKey | None, *, user_id: int | None) -> None:
    """``rate_limit_admit_select`` for the DRF views (sync: no event loop). Without a key, the
    select of a signed-in person (``user_id``: a dashboard session) counts in a bucket of its
    own, ``ROUTER_SELECT_RPM_DEFAULT`` a minute: a script can drive a session as well as a key."""
    if key is not None:
        admit_sync(_select_bucket(key))
    elif user_id is not None:
        rpm = int(settings.ROUTER_SELECT_RPM_DEFAULT)
        admit_sync(
            Bucket(
                f"rlu:{user_id}",  # apart from every key's "rl…:<key id>:<prefix>"
                rpm,
                who="This account",
                counts="router selects",
                note=" (selects made signed in, counted per person)",
                metadata={"select_rpm": rpm},
            )
        )


def _select_bucket(key: AuthenticatedKey) -> Bucket:
    rpm = select_rpm(key)
    return Bucket(
        key_tag(key, "s"),
        rpm,
        counts="router selects",
        note=" (counted apart from its requests)",
        metadata={"select_rpm": rpm},
    )
