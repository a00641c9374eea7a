"""Numbered pages of a dashboard list (``page_links.html``): the organization's keys, members,
datasets, routers, … A page is one ``COUNT`` and one ``LIMIT``/``OFFSET`` query however many rows
the organization has, and shows at most ``PAGE_SIZE`` of them. (Lists that grow without end —
usage, the ledger — page by keyset instead: ``routerhub.keyset``.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PAGE_SIZE = 50


class Pageable(Protocol):
    """What pages like a queryset: a ``COUNT`` and a slice (``billing.usage_groups``)."""

    def count(self) -> int: ...

    def __getitem__(self, page: slice) -> Any: ...


@dataclass(frozen=True)
class DashboardPage:
    rows: list[Any]
    number: int
    num_pages: int
    count: int
    previous_url: str | None
    next_url: str | None

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


def _url(request: HttpRequest, param: str, number: int, pin: Mapping[str, str]) -> str:
    query = request.GET.copy()
    for name, value in {**pin, param: str(number)}.items():
        query[name] = value  # replaces: ``QueryDict.update`` would append
    return f"?{query.urlencode()}"


def dashboard_page(
    request: HttpRequest,
    rows: QuerySet[Any] | Pageable,
    *,
    param: str = "page",
    size: int = PAGE_SIZE,
    pin: Mapping[str, str] | None = None,
) -> DashboardPage:
    """The page of ``rows`` that ``?<param>=`` names; what is not a number (``²``, 5,000 digits)
    is the first page, a number out of range the last (Django's ``get_page``). The links to the
    pages beside it carry ``pin``'s parameters too (e.g. the ``end`` that fixes a range)."""
    # Django's paginator reads ``count()`` and one slice of either (its stubs want a sequence).
    page = Paginator(rows, size).get_page(request.GET.get(param))  # type: ignore[arg-type]
    number, pin = page.number, pin or {}
    return DashboardPage(
        rows=list(page.object_list),
        number=number,
        num_pages=page.paginator.num_pages,
        count=page.paginator.count,
        previous_url=_url(request, param, number - 1, pin) if page.has_previous() else None,
        next_url=_url(request, param, number + 1, pin) if page.has_next() else None,
    )
