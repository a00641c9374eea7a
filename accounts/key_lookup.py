"""A key-cache miss on the gateway's own asynchronous PostgreSQL connections (issue 21).

Through Django a miss cost a hop to a worker thread (``sync_to_async``) and the ORM's query
building and model instances; with many keys each used rarely (the normal case of a service
with many organizations) most requests miss, and that was most of their cost (README, "100,000
keys"). Here it is a server-side prepared statement on ``billing.pg_async``'s connections that
returns exactly what a request needs: the key, its organization's slug and flags, its limits
and its creator's role now. Its ``last_used_at`` is written in the same statement, at most once a
minute per key (only for a key that authenticates, as the ORM path does). Known and unknown keys
cost the same, as before.

Misses are read in groups: at most ``_READERS`` statements per event loop read keys at a time
(half the gateway's connections: a flood of unknown keys cannot take the connections credit
holds need), and the misses that arrive while they run are read together by the next one (up
to ``_GROUP`` digests), each digest once however many requests wait for it. An idle worker's
miss is read at once, alone.

Rows the request path reads must not be in a transaction of Django's own connection: under
pytest, tests that use it run with ``transaction=True`` (a key made in an open test transaction
is invisible here, as it is to every other worker). Without PostgreSQL (``make run`` on SQLite)
the caller uses the ORM in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from django.conf import settings
from django.db import OperationalError, connections

from accounts.key_chain import chain_up_sql
from billing import pg_async

logger = logging.getLogger(__name__)

_GROUP = 64  # digests one statement reads at most
# Digests waiting for a reader at most; past it a miss is refused (a 503) instead of queueing
# behind a flood of unknown keys without bound.
QUEUED_MAX = 16 * _GROUP

# The key's ancestors (``created_by_key``, transitively), every one, as one JSON text ``[[id, limit,
# limit_reset, prefix, name, rpm, tpm], ...]``: its spend counts in their limit windows too
# (``billing.key_windows``), its requests and tokens in their rpm and tpm, its router selects in the
# select buckets of those with an rpm (``select_limits``); the first (the smallest id) is the
# lineage's root, its rate counters' hash tag (``routing.gateway.limits``), so the rpm-less ones are
# read too. Evaluated only for a key a key made: for every other key (all keys a person made) the
# CASE reads nothing more. The walk is ``key_chain.chain_up_sql``. Revoked ancestors need no filter:
# a revocation revokes the keys made from it. ``{parent}`` is the outer row's ``created_by_key_id``.
ANCESTOR_LIMITS_SQL = """CASE WHEN {parent} IS NULL THEN NULL ELSE (
    {chain}
    SELECT json_agg(json_build_array(p.id, p."limit"::text, p.limit_reset, p.prefix, p.name,
                                     p.rpm, p.tpm) ORDER BY p.id)::text
      FROM up JOIN accounts_apikey p ON p.id = up.id) END""".replace(
    "{chain}", chain_up_sql("{parent}", level=1)
)

# The active (not revoked) keys among the digests; each creator's membership role read live
# (none for a creator an operator deactivated: ``User.is_active`` false, as for one who left).
# The UPDATE touches only a key that authenticates (``keys.key_role``: a recorded creator still
# a member, or no creator and no recorded role) whose last use is unknown or over a minute old.
_SQL = """
WITH k AS (
  SELECT a.digest, a.id, a.organization_id, o.slug, a.scope, a.name, a.prefix,
         a.allowed_models, a.rpm, a.tpm, a."limit", a.limit_reset, a.expires_at,
         o.prompt_logging, a.created_by_id, a.created_by_role,
         (SELECT m.role FROM accounts_membership m JOIN accounts_user u ON u.id = m.user_id
           WHERE m.user_id = a.created_by_id AND m.organization_id = a.organization_id
             AND u.is_active
           LIMIT 1) AS creator_role_now,
         a.budget_aware OR o.budget_aware_routing AS budget_aware,
         {ancestors} AS ancestors,
         a.last_used_at
    FROM accounts_apikey a JOIN accounts_organization o ON o.id = a.organization_id
   WHERE a.digest = ANY(%(digests)s::varchar[]) AND a.revoked_at IS NULL
), touched AS (
  UPDATE accounts_apikey SET last_used_at = now()
   WHERE id IN (
     SELECT a.id FROM accounts_apikey a JOIN k ON k.id = a.id
      WHERE (k.last_used_at IS NULL OR k.last_used_at < now() - interval '60 seconds')
        AND ((k.created_by_id IS NULL AND k.created_by_role IS NULL)
             OR k.creator_role_now IS NOT NULL)
      ORDER BY a.id
      FOR NO KEY UPDATE OF a SKIP LOCKED)
)
SELECT digest, id, organization_id, slug, scope, name, prefix, allowed_models, rpm, tpm,
       "limit", limit_reset, expires_at, prompt_logging, created_by_id, created_by_role,
       creator_role_now, budget_aware, ancestors
  FROM k
""".replace("{ancestors}", ANCESTOR_LIMITS_SQL.format(parent="a.created_by_key_id"))

# The name of each column of a row of ``_SQL`` after its digest.
COLUMNS = (
    *("id", "organization_id", "slug", "scope", "name", "prefix", "allowed_models", "rpm"),
    *("tpm", "limit", "limit_reset", "expires_at", "prompt_logging", "created_by_id"),
    *("created_by_role", "creator_role_now", "budget_aware", "ancestors"),
)

Row = dict[str, Any]


class _Reads:
    """This event loop's misses: waiting to be read, and read by at most ``readers`` tasks."""

    loop: asyncio.AbstractEventLoop | None = None
    waiting: dict[str, asyncio.Future[Row | None]] = {}  # digest -> its answer (read or queued)
    queued: list[str] = []
    readers: set[asyncio.Task[None]] = set()
    statements = 0  # statements run here, in this process (tests read it)


def key_lookup_available() -> bool:
    """True where the gateway's own connections can read keys (PostgreSQL)."""
    return connections["default"].vendor == "postgresql"


def key_lookup_count() -> int:
    return _Reads.statements


def _readers_max() -> int:
    return max(1, int(settings.GATEWAY_DB_CONNECTIONS) // 2)


async def key_row(digest: str) -> Row | None:
    """The active key stored under ``digest`` and what a request needs of it, or None.
    Raises Django's ``OperationalError`` (a 503) when the database cannot answer."""
    loop = asyncio.get_running_loop()
    if _Reads.loop is not loop:  # a new event loop (tests, a restarted server)
        _Reads.loop, _Reads.waiting, _Reads.queued, _Reads.readers = loop, {}, [], set()
    answer = _Reads.waiting.get(digest)
    if answer is None:
        if len(_Reads.queued) >= QUEUED_MAX:
            raise OperationalError("too many API keys are waiting to be checked; retry shortly")
        answer = _Reads.waiting[digest] = loop.create_future()
        _Reads.queued.append(digest)
        if len(_Reads.readers) < _readers_max():
            reader = loop.create_task(_read_queued())
            _Reads.readers.add(reader)
            reader.add_done_callback(_Reads.readers.discard)
    # Shielded: a request that goes away does not cancel the answer others wait for.
    return await asyncio.shield(answer)


async def _read_queued() -> None:
    try:
        while _Reads.queued:
            group, _Reads.queued[:_GROUP] = _Reads.queued[:_GROUP], []
            try:
                rows = await _fetchall({"digests": group})
            except (psycopg.Error, OSError, TimeoutError) as exc:  # a connect timeout too
                logger.warning(
                    "key lookup failed: %s (%s)", type(exc).__name__, getattr(exc, "sqlstate", None)
                )
                failed = OperationalError(f"key lookup unavailable: {type(exc).__name__}")
                for digest in group:
                    _answer(digest, None, failed)
                continue
            except BaseException as exc:
                # Cancelled (shutdown) or a bug: every request waiting on this reader is
                # answered, none is left hanging.
                error: BaseException = exc
                if not isinstance(exc, Exception):
                    error = OperationalError("key lookup cancelled")
                for digest in [*group, *_Reads.queued]:
                    _answer(digest, None, error)
                _Reads.queued.clear()
                if not isinstance(exc, Exception):
                    raise
                logger.warning("key lookup failed: %s", type(exc).__name__)
                return
            found = {row[0]: dict(zip(COLUMNS, row[1:], strict=True)) for row in rows}
            for digest in group:
                _answer(digest, found.get(digest), None)
    finally:
        # No longer a reader from the moment the queue is seen empty: a miss queued after it
        # starts a reader of its own (the done callback would run a moment too late).
        task = asyncio.current_task()
        if task is not None:
            _Reads.readers.discard(task)


def _answer(digest: str, row: Row | None, failed: BaseException | None) -> None:
    answer = _Reads.waiting.pop(digest, None)
    if answer is None or answer.done():
        return
    if failed is None:
        answer.set_result(row)
        return
    answer.set_exception(failed)
    answer.add_done_callback(lambda done: done.exception())  # retrieved, waiters or none


async def _fetchall(params: dict[str, Any]) -> list[tuple[Any, ...]]:
    _Reads.statements += 1
    current = pg_async.pool()
    connection = await current.acquire()
    try:
        cursor = await connection.execute(_SQL, params)
        return await cursor.fetchall()
    except psycopg.OperationalError:
        # A lost connection is an outage; a lock or statement timeout on a live one is not.
        if connection.closed or connection.broken:
            pg_async.outage_seen(current)
        raise
    finally:
        current.release(connection)
