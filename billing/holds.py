"""Credit holds of concurrent gateway requests, several in one statement (group commit).

Every gateway request holds credits before it is forwarded: one statement that raises its
organization's ``held`` (``billing.models.CreditHold``, a row settlement does not write) and
inserts its reservation (``RESERVE_SQL``), on the worker's own
connections (``billing.pg_async``). Under load those statements queued twice: for the worker's
few connections, and in PostgreSQL for the one hold row each of them updates, so the cost
of a hold grew with the number of requests in flight. Here a request that finds no other hold
waiting for a connection leads: once it has a connection it holds for itself and for every
request that queued behind it meanwhile, in one statement (``BATCH_SQL``: per organization,
requests are granted in arrival order while their running sum fits the available credit; one
``UPDATE`` of each hold row, one insert of the reservations). Alone (concurrency 1) it runs
``RESERVE_SQL`` as before, so nobody waits for a batch to fill. A request a batch could not fit
is tried again alone by the caller, so a refusal is exactly the one statement's.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine
from typing import Any

import psycopg
from psycopg import AsyncConnection

from billing import pg_async

# A hold records no key window (``'[]'``: none, as every hold recorded since
# ``billing.key_windows`` says; NULL marks a hold taken before). The hold row is updated (and
# locked); the account row is read without a lock, from the
# statement's snapshot: ``balance + released`` never decreases (``billing.models.CreditHold``),
# so a settlement committing meanwhile can only make the check stricter, and a hold never
# waits for a settler's open transaction.
RESERVE_SQL = """
WITH held AS (
    UPDATE billing_credithold AS hold SET held = hold.held + %(amount)s
    FROM billing_creditaccount AS account
    WHERE hold.organization_id = %(organization)s AND account.organization_id = %(organization)s
        AND account.balance + account.released - hold.held >= %(amount)s
    RETURNING hold.organization_id
)
INSERT INTO billing_reservation
    (organization_id, generation_id, key_id, amount, key_window_start, ancestor_windows, state,
     created_at, expires_at)
SELECT organization_id, %(generation)s, %(key)s, %(amount)s, NULL, '[]', 'held', %(now)s,
    %(expires)s
FROM held
RETURNING id
"""

# The hold rows are locked in organization order, once each, and read after the lock; the
# account rows are read without a lock, as in ``RESERVE_SQL``.
BATCH_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(organizations)s::bigint[], %(generations)s::text[],
                         %(keys)s::bigint[], %(amounts)s::numeric[])
        WITH ORDINALITY AS w(organization_id, generation_id, key_id, amount, n)
),
accounts AS MATERIALIZED (
    SELECT hold.organization_id, account.balance + account.released - hold.held AS available
    FROM billing_credithold AS hold
    JOIN billing_creditaccount AS account ON account.organization_id = hold.organization_id
    WHERE hold.organization_id = ANY(%(organizations)s::bigint[])
    ORDER BY hold.organization_id
    FOR NO KEY UPDATE OF hold
),
granted AS (
    SELECT organization_id, generation_id, key_id, amount FROM (
        SELECT wanted.*, accounts.available, sum(wanted.amount)
            OVER (PARTITION BY wanted.organization_id ORDER BY wanted.n) AS running
        FROM wanted JOIN accounts USING (organization_id)
    ) AS ranked
    WHERE running <= available
),
held AS (
    UPDATE billing_credithold AS hold SET held = hold.held + totals.amount
    FROM (SELECT organization_id, sum(amount) AS amount FROM granted GROUP BY organization_id)
        AS totals
    WHERE hold.organization_id = totals.organization_id
    RETURNING hold.organization_id
)
INSERT INTO billing_reservation
    (organization_id, generation_id, key_id, amount, key_window_start, ancestor_windows, state,
     created_at, expires_at)
SELECT organization_id, generation_id, key_id, amount, NULL, '[]', 'held', %(now)s, %(expires)s
FROM granted WHERE organization_id IN (SELECT organization_id FROM held)
RETURNING generation_id
"""


class Held(enum.Enum):
    HELD = "held"
    REFUSED = "refused"  # alone: the balance does not cover it
    RETRY = "retry"  # in a batch that could not fit it: try it alone


Queued = list[tuple[dict[str, Any], "asyncio.Future[Held]"]]


class _Group:
    """One event loop's holds waiting for a connection, and who leads them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queued: Queued = []
        self.leader_waiting = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def hold(self, params: dict[str, Any]) -> Held:
        future: asyncio.Future[Held] = self.loop.create_future()
        self.queued.append((params, future))
        if not self.leader_waiting:
            self.leader_waiting = True
            await self._lead(future)
        return await future

    async def _lead(self, own: asyncio.Future[Held] | None) -> None:
        """Wait for a connection, then hold for everyone queued by then."""
        pool = pg_async.pool()
        try:
            connection = await pool.acquire()
        except BaseException as exc:
            self.leader_waiting = False
            if own is not None:
                own.cancel()  # this request went away (or timed out): nothing to hold for it
            queued, self.queued = [(p, f) for p, f in self.queued if not f.done()], []
            if isinstance(exc, asyncio.CancelledError) and queued:
                self.queued, self.leader_waiting = queued, True  # the others still want theirs
                self._background(self._lead(None))
            else:
                _fail(queued, exc)
            raise
        self.leader_waiting = False
        batch, self.queued = [(p, f) for p, f in self.queued if not f.done()], []
        if len(batch) > 1:
            # Shielded: the leader leaving must not cancel the statement the others wait for.
            await asyncio.shield(self._background(_hold_batch(pool, connection, batch)))
        else:
            await _hold_batch(pool, connection, batch)

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


async def _hold_batch(pool: Any, connection: AsyncConnection[Any], batch: Queued) -> None:
    """Run ``batch`` on ``connection``; each request learns its outcome (or the error) through
    its future."""
    try:
        outcomes = await _run(connection, [params for params, _ in batch])
    except BaseException as exc:
        if isinstance(exc, psycopg.OperationalError):
            pg_async.outage_seen(pool)
        _fail(batch, exc)
        if not isinstance(exc, Exception):
            raise
        return
    finally:
        pool.release(connection)
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():
            future.set_result(outcome)


def _fail(queued: Queued, exc: BaseException) -> None:
    """An error for each request queued; cancelled (shutdown) stays cancelled."""
    for _, future in queued:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()


async def _run(connection: AsyncConnection[Any], batch: list[dict[str, Any]]) -> list[Held]:
    if len(batch) == 1:
        cursor = await connection.execute(RESERVE_SQL, batch[0])
        return [Held.HELD if await cursor.fetchone() is not None else Held.REFUSED]
    cursor = await connection.execute(
        BATCH_SQL,
        {
            "organizations": [params["organization"] for params in batch],
            "generations": [params["generation"] for params in batch],
            "keys": [params["key"] for params in batch],
            "amounts": [params["amount"] for params in batch],
            "now": batch[0]["now"],
            "expires": batch[0]["expires"],
        },
    )
    held = {row[0] for row in await cursor.fetchall()}
    return [Held.HELD if params["generation"] in held else Held.RETRY for params in batch]


class _State:
    group: _Group | None = None


async def hold_grouped(params: dict[str, Any]) -> Held:
    """Hold one request's credits (``RESERVE_SQL``'s parameters), in one statement with the
    holds of the requests queued beside it."""
    loop = asyncio.get_running_loop()
    group = _State.group
    if group is None or group.loop is not loop:
        group = _State.group = _Group(loop)
    return await group.hold(params)
