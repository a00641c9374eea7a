"""How many rows each SQL statement answered, for the tests that bound them.

A statement's ``rowcount`` tells its rows when the whole result comes back at once. A
server-side cursor (``QuerySet.iterator()`` on PostgreSQL) answers ``-1`` there: its rows come
later, a chunk per ``fetchmany``. So the rows of such a statement are counted as the cursor
fetches them; read the counts once the block that ran the statements is done."""

from __future__ import annotations

from typing import Any


class RowsAnswered:
    """An execute wrapper (``connection.execute_wrapper(RowsAnswered())``): ``statements`` holds
    ``[rows answered, sql]`` for each statement run, in order."""

    def __init__(self) -> None:
        self.statements: list[list[Any]] = []

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        result = execute(sql, params, many, context)
        cursor = context["cursor"]  # Django's CursorWrapper; its fetches reach the driver's
        counted = [max(cursor.rowcount, 0), sql]
        self.statements.append(counted)
        if cursor.rowcount == -1:  # rows fetched later (a server-side cursor), or none at all
            for name in ("fetchone", "fetchmany", "fetchall"):
                setattr(cursor, name, _counting(getattr(cursor, name), counted))
        return result

    @property
    def rows(self) -> list[int]:
        return [rows for rows, _ in self.statements]


def _counting(fetch: Any, counted: list[Any]) -> Any:
    def fetched(*args: Any, **kwargs: Any) -> Any:
        rows = fetch(*args, **kwargs)
        if isinstance(rows, list):
            counted[0] += len(rows)
        elif rows is not None:
            counted[0] += 1  # fetchone's row
        return rows

    return fetched
