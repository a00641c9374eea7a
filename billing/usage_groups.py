"""One page of ``GET /api/v1/usage``'s groups, added up, ordered and cut by the database.

The groups of a range come from several queries (``rollups.usage_parts``: whole days from the
rollups, the partial days at the range's edges from the records; with ``group_by=key``, keys
named alike are one group). ``UsageGroups`` is what the paginator pages: its ``count()`` is one
statement answering one row, and a slice one statement answering the slice's rows (``ORDER BY``
group, ``LIMIT``/``OFFSET``), so a page moves to Python and renders its own groups only, however
many the range holds (measured in rows fetched: ``tests/test_scale_pages.py``). The database
still adds up the range's rows for both statements.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from accounts.models import ApiKey
from billing.charts import OTHER_MODELS
from billing.rollups import MEASURES, usage_parts
from billing.selectors import DELETED_KEY, UsageFilter
from routerhub.money import ZERO, money

_TEXT_GROUPS = {"key", "model", "provider", "router"}


class UsageGroups:
    """The organization's usage groups in the range, in group order (keys by name, days by date,
    the rest by text in code point order); sliced, each row is ``{"group", *MEASURES}``."""

    def __init__(self, *, organization_id: int, filters: UsageFilter, group_by: str) -> None:
        parts = usage_parts(organization_id=organization_id, filters=filters, dims=(group_by,))
        self._group_by = group_by
        self._sql, self._params = _grouped_sql(parts, group_by)

    def count(self) -> int:
        if not self._sql:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({self._sql}) counted", self._params)  # noqa: S608
            (count,) = cursor.fetchone()
            return int(count)

    def __getitem__(self, page: slice) -> list[dict[str, Any]]:
        start, stop = page.start or 0, page.stop
        if not self._sql or stop is None or stop <= start:
            return []
        collate = ' COLLATE "C"' if self._group_by in _TEXT_GROUPS else ""
        if connection.vendor != "postgresql":
            collate = ""  # SQLite compares text by its UTF-8 bytes: code point order already
        # PostgreSQL reads an output column's name in ORDER BY only bare, not under COLLATE.
        sql = f"SELECT * FROM ({self._sql}) grouped ORDER BY g{collate} LIMIT %s OFFSET %s"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql, [*self._params, stop - start, start])
            rows = cursor.fetchall()
        return [{"group": row[0]} | _measures(row[1:]) for row in rows]


def _union_sql(parts: list[Any], dims: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The rows of ``parts`` as one statement: ``g_<dim>`` of each of ``dims`` and ``MEASURES``
    ("" when none)."""
    selects, params = [], []
    for index, part in enumerate(parts):
        sql, part_params = part.query.sql_with_params()
        names = [f"p{index}.g_{dim} AS g_{dim}" for dim in dims]
        columns = ", ".join(names + [f"p{index}.{name}" for name in MEASURES])
        # Names are this module's constants and validated dimensions; values are parameters.
        selects.append(f"SELECT {columns} FROM ({sql}) p{index}")  # noqa: S608
        params += list(part_params)
    return " UNION ALL ".join(selects), params


def _grouped_sql(parts: list[Any], group_by: str) -> tuple[str, list[Any]]:
    """``SELECT g, <measures> … GROUP BY g`` over the union of ``parts`` ("" when none)."""
    union, params = _union_sql(parts, (group_by,))
    if not union:
        return "", []
    group = f"u.g_{group_by}"  # its parameters come first: it comes first in the statement
    if group_by == "key":  # a group per name: keys named alike are one, as on the Keys page
        keys = connection.ops.quote_name(ApiKey._meta.db_table)
        union = f"{union}) u LEFT JOIN {keys} k ON k.id = u.g_key"
        group = "COALESCE(k.name, %s)"
        params.insert(0, DELETED_KEY)
    else:
        union = f"{union}) u"
    sums = ", ".join(f"SUM(u.{name})" for name in MEASURES)
    return f"SELECT {group} AS g, {sums} FROM ({union} GROUP BY 1", params  # noqa: S608


def spend_by_day_top_models(
    *, organization_id: int, since: datetime, top: int
) -> list[dict[str, Any]]:
    """``{"day", "model", "cost"}`` per day since ``since`` for the ``top`` costliest models of
    the range, the others added up as model ``OTHER_MODELS``: at most ``top + 1`` rows a day,
    however many models the organization used (the usage chart's input)."""
    parts = usage_parts(organization_id=organization_id, filters=UsageFilter(start=since),
                        dims=("day", "model"))  # fmt: skip
    union, params = _union_sql(parts, ("day", "model"))
    if not union:
        return []
    # Built of ``_union_sql``'s statement and constants; values are parameters.
    costliest = f"SELECT g_model, SUM(cost) FROM ({union}) v GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s"  # noqa: S608
    named = "CASE WHEN t.g_model IS NULL THEN %s ELSE u.g_model END"
    joined = f"({union}) u LEFT JOIN ({costliest}) t ON t.g_model = u.g_model"
    sql = f"SELECT u.g_day, {named}, SUM(u.cost) FROM {joined} GROUP BY 1, 2"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [OTHER_MODELS, *params, *params, top])
        rows = cursor.fetchall()
    return [{"day": _day(day), "model": model, "cost": _measures((0, 0, 0, cost, 0))["cost"]}
            for day, model, cost in rows]  # fmt: skip


def _day(value: Any) -> date:
    return date.fromisoformat(value[:10]) if isinstance(value, str) else value  # SQLite: text


def _measures(values: tuple[Any, ...]) -> dict[str, Any]:
    requests, prompt, completion, cost, cache_write = values
    if cost is not None and not isinstance(cost, Decimal):
        cost = Decimal(str(cost))  # SQLite's SUM of a decimal column is a float
    return {
        "requests": int(requests or 0),
        "prompt_tokens": int(prompt or 0),
        "completion_tokens": int(completion or 0),
        "cost": money(cost) if cost is not None else ZERO,
        "cache_write_tokens": int(cache_write or 0),
    }
