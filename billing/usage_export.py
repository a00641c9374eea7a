"""The CSV export of usage records, streamed at constant memory however many rows it has.

Rows are read in keyset batches — the next ``BATCH_ROWS`` after the last ``(created_at, id)``
sent, each one short index range scan — so no query, cursor or transaction stays open between
chunks (a connection from the pool is held only while a batch is read), and each batch becomes
one chunk of CSV text. Rows are read as tuples, not model instances (most of the export's CPU).

Under ASGI the response gets an async iterator that reads each batch in a worker thread: Django
buffers a synchronous iterator *whole* before sending it under ASGI (``StreamingHttpResponse``
consumes it with ``list``), which is what made the export's memory grow with its size.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Q, QuerySet

from billing.models import UsageRecord
from routerhub.money import money_str

BATCH_ROWS = 2000
CSV_COLUMNS = [
    "id",
    "created_at",
    "model",
    "requested_model",
    "provider",
    "router",
    "router_version",
    "key_id",
    "key_name",
    "status",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "streamed",
    "is_byok",
    "flags",
]
_FIELDS = [
    "generation_id",
    "created_at",
    "model",
    "requested_model",
    "provider",
    "router",
    "router_version",
    "key_id",
    "key__name",
    "status",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "streamed",
    "is_byok",
    "flags",
]
_CREATED, _KEY_NAME, _COST = (_FIELDS.index(f) for f in ("created_at", "key__name", "cost"))


def _csv_text(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


class UsageCsv:
    """Batches of CSV text for ``records`` in ``(created_at, id)`` order, header first."""

    def __init__(self, records: QuerySet[UsageRecord]) -> None:
        self.records = records
        self.after: tuple[datetime, int] | None = None
        self.started = False

    def batch(self) -> str | None:
        """The next chunk of CSV text, or ``None`` when every row was sent."""
        if not self.started:
            self.started = True
            return _csv_text([CSV_COLUMNS])
        rows = self.records
        if self.after is not None:
            at, pk = self.after
            rows = rows.filter(
                Q(created_at__gt=at) | Q(created_at=at, id__gt=pk), created_at__gte=at
            )
        page = list(rows.order_by("created_at", "id").values_list("id", *_FIELDS)[:BATCH_ROWS])
        if not page:
            return None
        self.after = (page[-1][1 + _CREATED], page[-1][0])
        return _csv_text([_csv_row(row[1:]) for row in page])

    def chunks(self) -> Iterator[str]:
        while (chunk := self.batch()) is not None:
            yield chunk

    async def achunks(self) -> AsyncIterator[str]:
        """For ASGI: an async generator only (Django iterates anything that has ``__iter__``
        synchronously, and under ASGI that means buffering it whole first)."""
        read = sync_to_async(self.batch)
        while (chunk := await read()) is not None:
            yield chunk


# A cell a spreadsheet would read as a formula (CSV injection, OWASP): key names are people's
# text and a request's model names are its sender's. Quoted with a leading ', which spreadsheets
# show as text and hide. A plain number (a negative cost: "-0.50000000") is left a number.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _csv_cell(value: Any) -> Any:
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_STARTS)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value


def _csv_row(values: tuple[Any, ...]) -> list[Any]:
    row = list(values)
    row[_CREATED] = row[_CREATED].isoformat()
    row[_KEY_NAME] = row[_KEY_NAME] or ""
    row[_COST] = money_str(row[_COST])
    return [_csv_cell(value) for value in row]
