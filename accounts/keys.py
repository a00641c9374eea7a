"""API key minting and authentication: the reusable component the gateway calls on every request.

Keys are ``rh-live-…`` (inference) or ``rh-mgmt-…`` (management) followed by 32 random bytes,
url-safe base64. Only ``HMAC-SHA256(API_KEY_PEPPER, key)`` is stored, so a database dump holds
nothing that authenticates. Lookups go through a small in-process cache whose entries live
``API_KEY_CACHE_TTL`` seconds (1 s by default): a revoked key stops working in every worker within
that time without any broadcast, and a hot key costs one indexed query per worker per second.
In the gateway a miss is read on its own PostgreSQL connections (``key_lookup``), not the ORM;
the cache holds at most ``API_KEY_CACHE_MAX_ENTRIES`` keys.

A key acts with its creator's role (``key_role``), read live in the same query as the key: a
role change or a removal reaches every worker within the same ``API_KEY_CACHE_TTL``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from accounts.key_chain import LINEAGE_DEPTH_MAX
from accounts.key_lookup import key_lookup_available, key_row
from accounts.models import ROLE_RANK, ApiKey, KeyScope, Membership, Role
from billing.windows import LimitBound
from routerhub.domain import NotAuthenticated
from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead

SCOPE_PREFIXES = {KeyScope.INFERENCE: "rh-live-", KeyScope.MANAGE: "rh-mgmt-"}
DISPLAY_PREFIX_LENGTH = 16  # "rh-live-" + 8 characters of the secret
_LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class RateBound:
    """A key up a key's ``created_by_key`` lineage and its rate limits (a hierarchical rate;
    None: no limit). Every ancestor is one, limited or not: the root names the tree
    (``limits.key_tag``); only those with an rpm bound selects (``select_limits``)."""

    key_id: int
    prefix: str  # with the id, the key's rate-limit bucket (``limits.key_tag``)
    rpm: int | None
    tpm: int | None
    label: str  # its prefix and name, for a refusal (never its secret)


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    """What a request needs to know about its key; immutable and safe to share across tasks."""

    id: int
    organization_id: int
    organization_slug: str
    scope: str
    name: str
    prefix: str
    allowed_models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    limit: Decimal | None
    limit_reset: str | None
    expires_at: datetime | None
    prompt_logging: bool = False
    role: Role = Role.MEMBER  # what it may do, as its creator would (``key_role``)
    created_by_id: int | None = None
    # Router requests move toward cheaper models as the limit window fills (the key's own
    # setting or its organization's; routing.budget).
    budget_aware: bool = False
    # The limits of the keys it was made from (``created_by_key``, transitively): its spend
    # counts against each (``billing.key_windows``). Empty for a key a person made.
    ancestors: tuple[LimitBound, ...] = ()
    # Each of them with its rpm and tpm, root first: its requests and tokens count against each
    # limit, its selects in the select bucket of each one with an rpm (``select_limits``).
    rate_ancestors: tuple[RateBound, ...] = ()
    # Its rate-limit buckets, built on first use and kept with the cached key, not per request
    # (``routing.gateway.limits``, ``select_limits``); not part of its value, and a copy
    # (``dataclasses.replace``) starts empty.
    buckets: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def is_management(self) -> bool:
        return self.scope == KeyScope.MANAGE


@dataclass(frozen=True, slots=True)
class MintedKey:
    plaintext: str
    prefix: str
    digest: str


def key_digest(plaintext: str) -> str:
    pepper = settings.API_KEY_PEPPER.encode()
    return hmac.new(pepper, plaintext.encode(), hashlib.sha256).hexdigest()


def key_mint(*, scope: str) -> MintedKey:
    plaintext = SCOPE_PREFIXES[KeyScope(scope)] + secrets.token_urlsafe(32)
    return MintedKey(plaintext, plaintext[:DISPLAY_PREFIX_LENGTH], key_digest(plaintext))


# digest -> the key, or None for "no such active key"
_cache: TtlCache[str, AuthenticatedKey | None] = TtlCache(
    lambda: settings.API_KEY_CACHE_TTL, max_entries=settings.API_KEY_CACHE_MAX_ENTRIES
)


# "No such active key" answers, apart: a flood of random keys fills (and, full, empties) this
# one, never the cache of the keys that authenticate.
_unknown: TtlCache[str, None] = TtlCache(
    lambda: settings.API_KEY_CACHE_TTL, max_entries=settings.API_KEY_CACHE_MAX_ENTRIES
)


def key_cache_clear() -> None:
    _cache.clear()
    _unknown.clear()


def _store(digest: str, key: AuthenticatedKey | None) -> None:
    if key is None and _cache.get_stale(digest) is MISS:
        _unknown.put(digest, None)
    else:  # a key, or a known key now revoked (its entry must say so)
        _cache.put(digest, key)


def key_role(
    *, created_by_id: int | None, created_by_role: str | None, creator_role_now: str | None
) -> Role | None:
    """The role a key acts with: the lower of the role its creator made it with and the role its
    creator holds now, so a key never carries more authority than the person behind it. ``None``
    (the key authenticates nothing) once its creator left the organization, was deleted or was
    deactivated (``User.is_active`` false: no role now, as the lookups read it).

    A key with no recorded role (made before roles were recorded, or by the platform itself)
    acts with the member role, the least privilege: inference and reads only."""
    if created_by_id is None:
        return None if created_by_role is not None else Role.MEMBER
    if creator_role_now is None:
        return None
    recorded = Role(created_by_role or Role.MEMBER)
    return min(recorded, Role(creator_role_now), key=ROLE_RANK.__getitem__)


def _load(digest: str) -> AuthenticatedKey | None:
    """The ORM's read of a key (management API, dashboard, SQLite); the gateway's cache misses
    read it with ``key_lookup.key_row`` instead."""
    creator_role_now = Membership.objects.filter(
        user=OuterRef("created_by"), organization=OuterRef("organization"), user__is_active=True
    ).values("role")[:1]
    row = (
        ApiKey.objects.filter(digest=digest, revoked_at__isnull=True)
        .select_related("organization")
        .annotate(creator_role_now=Subquery(creator_role_now))
        .first()
    )
    if row is None:
        return None
    key = _key_from(
        {
            "id": row.pk,
            "organization_id": row.organization_id,
            "slug": row.organization.slug,
            "scope": row.scope,
            "name": row.name,
            "prefix": row.prefix,
            "allowed_models": row.allowed_models,
            "rpm": row.rpm,
            "tpm": row.tpm,
            "limit": row.limit,
            "limit_reset": row.limit_reset,
            "expires_at": row.expires_at,
            "prompt_logging": row.organization.prompt_logging,
            "created_by_id": row.created_by_id,
            "created_by_role": row.created_by_role,
            "creator_role_now": row.creator_role_now,
            "budget_aware": row.budget_aware or row.organization.budget_aware_routing,
            "ancestors": _ancestor_limits(row.created_by_key_id),
        }
    )
    now = timezone.now()
    if key is not None and (
        row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION
    ):
        # Written at most once a minute per key and worker; exact to the minute is enough.
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=now)
    return key


def _ancestor_limits(parent_id: int | None) -> list[list[Any]] | None:
    """``key_lookup.ANCESTOR_LIMITS_SQL`` through the ORM (the management API, the dashboard,
    SQLite): one query per ancestor, for a key a key made only; at most ``LINEAGE_DEPTH_MAX``
    of them, as the statement's walk (``key_chain.chain_up_sql``) reads."""
    limits: list[list[Any]] = []
    while parent_id is not None and len(limits) < LINEAGE_DEPTH_MAX:
        parent = ApiKey.objects.filter(pk=parent_id).values(*_ANCESTOR_FIELDS).first()
        if parent is None:
            break
        limits.append([parent[name] for name in _ANCESTOR_FIELDS[:-1]])
        parent_id = parent["created_by_key_id"]
    return limits or None


_ANCESTOR_FIELDS = (
    *("id", "limit", "limit_reset", "prefix", "name", "rpm", "tpm"),
    "created_by_key_id",
)


def key_label(prefix: str, name: str) -> str:
    """How a refusal names a key: its prefix and name, never its secret."""
    return f"{prefix}… ({name!r})"


def _ancestor_bounds(
    limits: str | list[list[Any]] | None,
) -> tuple[tuple[LimitBound, ...], tuple[RateBound, ...]]:
    """The ancestors' spend limits (those with one) and rate limits (all: ``RateBound``) of a
    key's row (``ANCESTOR_LIMITS_SQL``'s JSON text, or a list), each in key id order."""
    if not limits:
        return (), ()
    rows = orjson.loads(limits) if isinstance(limits, str) else limits
    spend, rate = [], []
    for key_id, limit, reset, prefix, name, rpm, tpm in sorted(rows):
        label = key_label(prefix, name)
        if limit is not None:
            spend.append(LimitBound(key_id, Decimal(limit), reset, label))
        rate.append(RateBound(key_id, prefix, rpm, tpm, label))
    return tuple(spend), tuple(rate)


async def _load_async(digest: str) -> AuthenticatedKey | None:
    """A cache miss in the gateway: one prepared statement on its own connections (no thread,
    no ORM); the ORM in a thread where there is no PostgreSQL."""
    if not key_lookup_available():
        return await sync_to_async(_load, thread_sensitive=False)(digest)
    row = await key_row(digest)
    return None if row is None else _key_from(row)


def _key_from(row: dict[str, Any]) -> AuthenticatedKey | None:
    """The key a row describes, or None when it authenticates nothing (``key_role``)."""
    role = key_role(
        created_by_id=row["created_by_id"],
        created_by_role=row["created_by_role"],
        creator_role_now=row["creator_role_now"],
    )
    if role is None:
        return None
    ancestors, rate_ancestors = _ancestor_bounds(row["ancestors"])
    return AuthenticatedKey(
        id=row["id"],
        organization_id=row["organization_id"],
        organization_slug=row["slug"],
        scope=row["scope"],
        name=row["name"],
        prefix=row["prefix"],
        allowed_models=tuple(row["allowed_models"] or ()),
        rpm=row["rpm"],
        tpm=row["tpm"],
        limit=row["limit"],
        limit_reset=row["limit_reset"],
        expires_at=row["expires_at"],
        prompt_logging=row["prompt_logging"],
        role=role,
        created_by_id=row["created_by_id"],
        budget_aware=bool(row["budget_aware"]),
        ancestors=ancestors,
        rate_ancestors=rate_ancestors,
    )


def _cached(plaintext: str) -> tuple[str, AuthenticatedKey | None, bool]:
    if not plaintext.startswith("rh-"):
        raise NotAuthenticated("API keys start with 'rh-'; check the Authorization header.")
    digest = key_digest(plaintext)
    key = _cache.get(digest)
    if key is MISS:
        return digest, None, _unknown.get(digest) is not MISS
    return digest, key, True


def _check(key: AuthenticatedKey | None) -> AuthenticatedKey:
    if key is None:
        raise NotAuthenticated("Invalid or revoked API key.")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise NotAuthenticated("This API key has expired.")
    return key


def key_authenticate(plaintext: str) -> AuthenticatedKey:
    """Resolve a presented key or raise ``NotAuthenticated``; cheap on the hot path."""
    digest, key, hit = _cached(plaintext)
    if not hit:
        key = _load(digest)
        _store(digest, key)
    return _check(key)


async def key_authenticate_async(plaintext: str) -> AuthenticatedKey:
    digest, key, hit = _cached(plaintext)
    if hit:
        if key is not None:
            refresh_ahead(_cache, digest, _load_async)
    else:
        key = await _load_async(digest)
        _store(digest, key)
    return _check(key)


def key_authenticate_digest(digest: str) -> AuthenticatedKey:
    """Resolve a key by its stored digest (the server's own calls, e.g. the dashboard
    playground's, which hold no plaintext); read live, with the same rules as a presented key."""
    return _check(_load(digest))


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthenticated("Missing API key: send 'Authorization: Bearer rh-…'.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("Malformed Authorization header: use 'Bearer <key>'.")
    return token.strip()
