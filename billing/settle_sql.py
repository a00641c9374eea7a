"""Settlement's statements on PostgreSQL, written for a batch's CPU (issue 21).

A settler's batch runs on the machine that serves requests, so what it costs — in the settler
and in its PostgreSQL backend — is taken from them (measured with ``bench/settle_cost.py``,
README "Issue 21: what a settlement batch costs"). Here:

* rows go in by ``COPY`` (``rows_copy``): one statement per table and batch instead of one
  ``INSERT`` per row, each of which PostgreSQL parsed, planned and routed to its month's
  partition anew (the BEFORE INSERT triggers that claim a generation id or a ledger key fire
  for each copied row just as for an inserted one);
* the batch's holds are locked and marked settled or released in one statement
  (``HOLDS_SETTLE_SQL``), in primary-key order as before;
* the generation ids settled before are read without the ORM, and lists of ids are sent as one
  JSON text rather than as array literals.

Errors are Django's (``IntegrityError``, ``DataError``…), as from any cursor: the outbox tells a
draft the database refuses from a database that is down by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from django.db import connection

from billing.models import ReservationState

# Lock the batch's holds in primary-key order (the lock order of billing.settlement), then mark
# each open one settled (something to charge) or released, and return what settlement needs.
# The holds are found by their generation ids alone (a unique index): a condition on the state
# let the planner use the (state, expires_at) index too, which keeps an entry for every version
# of every hold (no update of the state is HOT) and cost ~2 ms a batch until a vacuum. The state
# is checked on the locked rows (PostgreSQL rechecks it on the latest version).
HOLDS_SETTLE_SQL = """
WITH locked AS (
    SELECT id FROM billing_reservation
    WHERE generation_id = ANY(ARRAY(SELECT json_array_elements_text(%(generations)s::json)))
    ORDER BY id
    FOR UPDATE
)
UPDATE billing_reservation AS hold
SET state = CASE
    WHEN hold.generation_id = ANY(ARRAY(SELECT json_array_elements_text(%(paid)s::json)))
    THEN %(settled)s ELSE %(released)s END
FROM locked
WHERE hold.id = locked.id AND hold.state IN (%(held)s, %(free)s)
RETURNING hold.id, hold.organization_id, hold.generation_id, hold.key_id, hold.amount,
          hold.key_window_start, hold.ancestor_windows
"""

_SETTLED_SQL = (
    "SELECT generation_id FROM billing_usagegeneration"
    " WHERE generation_id = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
)


def _json_list(values: Iterable[str]) -> str:
    # Lists of ids travel as one JSON text: psycopg's client-side array literal cost ~4 µs per
    # element in the settler (a regular expression each), the JSON text a fraction of that.
    return orjson.dumps(list(values)).decode()


def generations_settled(generation_ids: Sequence[str]) -> set[str]:
    """Which of ``generation_ids`` were settled before (claimed in ``UsageGeneration``)."""
    with connection.cursor() as cursor:
        cursor.execute(_SETTLED_SQL, [_json_list(generation_ids)])
        return {row[0] for row in cursor.fetchall()}


def holds_settle(generation_ids: Sequence[str], paid: Iterable[str]) -> list[tuple[Any, ...]]:
    """Lock the open holds of ``generation_ids`` and mark them settled (those in ``paid``) or
    released; returns (pk, organization, generation id, key, amount, key window start,
    ancestor windows) each."""
    params = {
        "generations": _json_list(generation_ids),
        "paid": _json_list(paid),
        "held": ReservationState.HELD.value,
        "free": ReservationState.FREE.value,
        "settled": ReservationState.SETTLED.value,
        "released": ReservationState.RELEASED.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(HOLDS_SETTLE_SQL, params)
        return list(cursor.fetchall())


def rows_copy(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """``COPY`` the rows into ``table`` (a constant of the caller, never input)."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    # Django's cursor wrapper does not wrap copy() (the psycopg cursor under it does it), so its
    # errors are made Django's here.
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row(row)


# Releases holds from one key spend window and counts their charges there, never below zero;
# returns whether the window held less than the holds (the release was clamped at zero).
_WINDOW_RELEASE_SQL = """
UPDATE billing_keyspendwindow AS w
SET reserved = GREATEST(w.reserved - %(held)s, 0), spent = w.spent + %(cost)s
FROM (SELECT reserved FROM billing_keyspendwindow
      WHERE key_id = %(key)s AND window_start IS NOT DISTINCT FROM %(start)s FOR UPDATE) AS before
WHERE w.key_id = %(key)s AND w.window_start IS NOT DISTINCT FROM %(start)s
RETURNING before.reserved < %(held)s
"""


def window_release(key_id: int, start: Any, held: Any, cost: Any) -> bool:
    """Release ``held`` from the key's window ``start`` and count ``cost`` there (PostgreSQL);
    whether that was clamped at zero."""
    with connection.cursor() as cursor:
        cursor.execute(
            _WINDOW_RELEASE_SQL, {"key": key_id, "start": start, "held": held, "cost": cost}
        )
        row = cursor.fetchone()
    return bool(row and row[0])
