"""Every SQL statement Django runs in this process while a block runs, from any thread.

Django's ``CaptureQueriesContext`` watches one connection, and connections are per thread: the
gateway reads the database in worker threads (``sync_to_async``), so a request's statements
would go unseen. This wraps the cursor class every connection uses instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.utils import CursorWrapper


@contextmanager
def statements_everywhere() -> Iterator[list[str]]:
    """The SQL of every ``execute``/``executemany`` in the process while the block runs."""
    seen: list[str] = []
    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany

    def counted_execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        seen.append(sql)
        return execute(self, sql, params)

    def counted_executemany(self: CursorWrapper, sql: str, param_list: Any) -> Any:
        seen.append(sql)
        return executemany(self, sql, param_list)

    CursorWrapper.execute = counted_execute  # type: ignore[method-assign]
    CursorWrapper.executemany = counted_executemany  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        CursorWrapper.execute = execute  # type: ignore[method-assign]
        CursorWrapper.executemany = executemany  # type: ignore[method-assign]
