"""Keyset ("cursor") pagination, newest first, in API.md's envelope ``{results, next, previous}``.

A page is the rows strictly before (``next``) or after (``previous``) the position of a row —
its ``(created_at, id)`` — so any page costs one index range scan of ``limit`` rows however deep
it is, and rows inserted meanwhile neither repeat nor shift rows between pages (an offset page
moves by one for every newer row). There is no ``count``: counting is the cost this avoids.
The cursor is opaque to clients (base64 of the position and a direction).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from routerhub.errors import BadRequest
from routerhub.text import decimal_number

CURSOR_PARAM = "cursor"
LIMIT_PARAM = "limit"


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: int
    backwards: bool = False  # rows after (newer than) this position: the previous page

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id, int(self.backwards)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        invalid = BadRequest(
            "Invalid cursor: pass the `next` or `previous` URL of a page as it is.",
            param=CURSOR_PARAM,
        )
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            at, pk, backwards = json.loads(base64.urlsafe_b64decode(padded.encode()))
            created_at = datetime.fromisoformat(at)
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise invalid from exc
        # Only what ``encode`` writes: an id as a bigint (``1e400`` was an OverflowError, a 500)
        # and an aware time (a naive one was compared in the server's zone, with a warning).
        if type(pk) is not int or not 0 <= pk < 2**63 or created_at.tzinfo is None:
            raise invalid
        return cls(created_at, pk, bool(backwards))


def keyset_page(
    rows: QuerySet[Any], position: Position | None, limit: int
) -> tuple[list[Any], bool]:
    """Up to ``limit`` rows of ``rows`` (newest first) on one side of ``position``, and whether
    there are more beyond them (one extra row is fetched to know)."""
    if position is not None:
        at, pk = position.created_at, position.id
        if position.backwards:  # newer rows, nearest first, then shown newest first
            side = Q(created_at__gt=at) | Q(created_at=at, id__gt=pk)
            rows = rows.filter(side, created_at__gte=at).order_by("created_at", "id")
        else:
            side = Q(created_at__lt=at) | Q(created_at=at, id__lt=pk)
            rows = rows.filter(side, created_at__lte=at).order_by("-created_at", "-id")
    else:
        rows = rows.order_by("-created_at", "-id")
    page = list(rows[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    if position is not None and position.backwards:
        page.reverse()
    return page, more


@dataclass(frozen=True)
class KeysetPage:
    """A dashboard page: its rows and the cursors of the pages beside it (``pager.html``)."""

    object_list: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def _keyset_page(rows: QuerySet[Any], position: Position | None, limit: int) -> KeysetPage:
    page, more = keyset_page(rows, position, limit)
    backwards = position is not None and position.backwards
    has_next = more if not backwards else True
    has_previous = position is not None and (more if backwards else True)

    def cursor_at(row: Any, back: bool) -> str:
        return Position(row.created_at, int(row.pk), back).encode()

    return KeysetPage(
        page,
        cursor_at(page[-1], False) if page and has_next else None,
        cursor_at(page[0], True) if page and has_previous else None,
    )


def keyset_page_for(rows: QuerySet[Any], cursor: str | None, limit: int) -> KeysetPage:
    """The page of ``rows`` at ``cursor`` for a dashboard; a cursor that does not decode (an old
    or hand-edited link) shows the first page."""
    try:
        position = Position.decode(cursor) if cursor else None
    except BadRequest:
        position = None
    return _keyset_page(rows, position, limit)


class KeysetPagination(BasePagination):
    """DRF pagination over a queryset of rows with ``created_at`` and ``id``, newest first."""

    default_limit = 50
    max_limit = 500

    def paginate_queryset(
        self, queryset: QuerySet[Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any]:
        assert isinstance(queryset, QuerySet), "keyset pagination pages a queryset"
        self.request = request
        cursor = request.query_params.get(CURSOR_PARAM)
        position = Position.decode(cursor) if cursor else None
        self.page = _keyset_page(queryset, position, self._limit(request))
        return self.page.object_list

    def _limit(self, request: Request) -> int:
        value = request.query_params.get(LIMIT_PARAM)
        if value is None:
            return self.default_limit
        limit = decimal_number(value)
        if not limit:
            raise BadRequest("limit must be a positive integer.", param=LIMIT_PARAM)
        return min(limit, self.max_limit)

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), "page")
        return str(replace_query_param(url, CURSOR_PARAM, cursor))

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "results": data,
                "next": self._link(self.page.next_cursor),
                "previous": self._link(self.page.previous_cursor),
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results", "next", "previous"],
            "properties": {"results": schema, "next": link, "previous": link},
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": CURSOR_PARAM,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "Opaque position from a page's `next` or `previous` URL.",
            },
            {
                "name": LIMIT_PARAM,
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
                "description": "Rows per page (default 50).",
            },
        ]
