"""A key-cache miss on the gateway's own asynchronous PostgreSQL connections (issue 21).

Through Django a miss cost a hop to a worker thread (``sync_to_async``) and the ORM's query
building and model instances; with many keys each used rarely (the normal case of a service
with many organizations) most requests miss, and that was most of their cost (README, "100,000
keys"). Here it is one server-side prepared statement on ``billing.pg_async``'s connections that
returns exactly what a request needs: the key, its organization's slug and flags, its limits
and its creator's role now. Its ``last_used_at`` is written in the same statement, at most once a
minute per key (only for a key that authenticates, as the ORM path does). Known and unknown keys
cost the same one statement, as before.

Rows the request path reads must not be in a transaction of Django's own connection: under
pytest, tests that use it run with ``transaction=True`` (a key made in an open test transaction
is invisible here, as it is to every other worker). Without PostgreSQL (``make run`` on SQLite)
the caller uses the ORM in a thread.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from billing.pg_async import pg_fetchone

# One row for an active (not revoked) key; its creator's membership role read live. The UPDATE
# runs only for a key that authenticates (``keys.key_role``: a recorded creator still a member,
# or no creator and no recorded role) whose last use is unknown or over a minute old.
_SQL = """
WITH k AS (
  SELECT a.id, a.organization_id, o.slug, a.scope, a.name, a.prefix, a.allowed_models,
         a.rpm, a.tpm, a."limit", a.limit_reset, a.expires_at, o.prompt_logging,
         a.created_by_id, a.created_by_role,
         (SELECT m.role FROM accounts_membership m
           WHERE m.user_id = a.created_by_id AND m.organization_id = a.organization_id
           LIMIT 1) AS creator_role_now,
         a.budget_aware OR o.budget_aware_routing AS budget_aware,
         a.last_used_at
    FROM accounts_apikey a JOIN accounts_organization o ON o.id = a.organization_id
   WHERE a.digest = %(digest)s AND a.revoked_at IS NULL
), touched AS (
  UPDATE accounts_apikey SET last_used_at = now() FROM k
   WHERE accounts_apikey.id = k.id
     AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds')
     AND ((k.created_by_id IS NULL AND k.created_by_role IS NULL)
          OR k.creator_role_now IS NOT NULL)
)
SELECT id, organization_id, slug, scope, name, prefix, allowed_models, rpm, tpm, "limit",
       limit_reset, expires_at, prompt_logging, created_by_id, created_by_role,
       creator_role_now, budget_aware
  FROM k
"""

# Index of each column in a row of ``_SQL``.
COLUMNS = [
    "id",
    "organization_id",
    "slug",
    "scope",
    "name",
    "prefix",
    "allowed_models",
    "rpm",
    "tpm",
    "limit",
    "limit_reset",
    "expires_at",
    "prompt_logging",
    "created_by_id",
    "created_by_role",
    "creator_role_now",
    "budget_aware",
]


class _Counts:
    statements = 0  # key rows read here, in this process (tests and the benchmark read it)


def key_lookup_available() -> bool:
    """True where the gateway's own connections can read keys (PostgreSQL)."""
    return connections["default"].vendor == "postgresql"


def key_lookup_count() -> int:
    return _Counts.statements


async def key_row(digest: str) -> dict[str, Any] | None:
    """The active key stored under ``digest`` and what a request needs of it, or None."""
    _Counts.statements += 1
    row = await pg_fetchone(_SQL, {"digest": digest})
    return None if row is None else dict(zip(COLUMNS, row, strict=True))
