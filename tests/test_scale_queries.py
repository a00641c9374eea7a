"""Every dashboard page and every API list costs the same number of SQL queries for a large
organization as for a small one, and shows a bounded number of rows.

The pages and endpoints come from the URL resolver: a new one is measured without editing this
file, and one whose path names a new kind of object fails until ``tests/scale_world.py`` says
which object it is. Two organizations are built once for the module, one with ``SMALL`` and one
with ``LARGE`` objects of every kind (keys, members, invitations, provider keys, datasets,
routers and their versions, runs, events and drift checks, pipelines and versions, webhooks and
deliveries, usage records and steps, feedback, ledger entries, payments, daily rollups); each
one's owner also belongs to as many other organizations. Each URL is fetched once to warm the
caches, then measured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver

from billing.api import UsageGroupsPagination
from tests.factories import dashboard_client
from tests.rows_answered import RowsAnswered
from tests.scale_world import World, world_make
from training.views import DRIFT_CHECKS_SHOWN

pytestmark = [pytest.mark.django_db, pytest.mark.services]

SMALL, LARGE = 3, 120
# A page (API lists: 50 by default; dashboard pages: 25 or 50, menus 20 or 50) shows at most
# PAGE_CAP of one kind. A response may hold two such lists of one kind (the usage page's key
# menu and its rows' keys), so what fails is showing every one of the LARGE objects of a kind:
# LARGE is above two pages.
PAGE_CAP = 50
assert LARGE > 2 * PAGE_CAP
# Exports hold every row by design: they must stream (rows read and sent a chunk at a time).
EXPORTS = {"api/v1/usage/export.csv"}
# Routes not measured here, and why.
NOT_MEASURED = {
    "admin/": "Django's admin: staff only, its change lists page by list_per_page",
    "healthz": "no organization data",
    "readyz": "no organization data",
    "metrics": "process metrics, no organization data",
    "api/schema/": "the OpenAPI document, no organization data",
    "api/docs/": "the Swagger page, no organization data",
    "billing/stripe/webhook": "Stripe's POST-only webhook",
}
# Query parameters an endpoint needs to answer anything but a 400.
QUERY = {
    "api/v1/generation": ("id",),
    "api/v1/usage": ("group_by",),  # group_by=key: one group per key, as many as the keys
    "api/v1/pipelines/<slug:slug>/report": ("router",),
    "api/v1/credits/checkout/quote": ("amount",),
}
# Lists bounded by a page larger than PAGE_CAP: usage groups, UsageGroupsPagination.page_size
# a page (1,000: the LARGE organization's keys are one page, measured at the default page).
OWN_BOUNDS = {"api/v1/usage": UsageGroupsPagination.page_size}
# Statements that answer more than a page, and why that is bounded all the same.
READ_BOUNDS = {"dashboard/routers/<slug:slug>/": DRIFT_CHECKS_SHOWN}  # the drift chart's checks
READ_EXEMPT = {
    # One key per provider (a unique constraint): as many as the platform's providers, which the
    # worlds make one per provider key, not as many as the organization grows.
    ("dashboard/playground/", '"routing_providerkey"'),
    # The provider menu (a ModelChoiceField, read through QuerySet.iterator()): the platform's
    # enabled providers, which the worlds make one per provider key.
    ("dashboard/provider-keys/", '"routing_provider"'),
}
# GET routes that answer a signed-in owner with other than 200, and why; any other GET route
# must answer 200 (a POST-only route: 405 without GET in its Allow header).
NOT_200 = {
    "": (302, "the home page sends a signed-in person to the dashboard"),
    "accounts/login/": (302, "allauth sends a signed-in person on"),
    "accounts/signup/": (302, "allauth sends a signed-in person on"),
    "accounts/login/code/confirm/": (302, "no sign-in code is pending"),
    "accounts/reauthenticate/code/confirm/": (302, "no reauthentication code is pending"),
    "accounts/password/set/": (302, "the person has a password (allauth offers change)"),
    "api/v1/key": (400, "describes the calling API key: a session has none"),
    "api/v1/auth/key": (400, "describes the calling API key: a session has none"),
    # POST imports a UbiOps pipeline; GET reaches only a pipeline named "import" made before
    # the slug was reserved, and the worlds have none.
    "api/v1/pipelines/import": (404, "no pipeline is named 'import'"),
}
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")
_MARKER = re.compile(rb"sc([a-z]+)(\d{3})x")
# Links to one object each (``/dashboard/training-runs/17/``): a kind per path with its ids.
_LINK = re.compile(rb'href="(/[^"?#]*?/)(\d+)(/[^"?#]*)?"')


def _routes(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def measured_routes() -> list[str]:
    return [
        route
        for route in dict.fromkeys(_routes(get_resolver().url_patterns))
        if not any(route.startswith(skip) for skip in NOT_MEASURED)
        # allauth's one-time links from emails (confirm, reset): a token, no lists
        and "(?P<" not in route
    ]


def _url(route: str, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        name = match[1]
        assert name in world.path_values, (
            f"/{route}: say which object path parameter {name!r} names in tests/scale_world.py"
        )
        return world.path_values[name]

    return "/" + _CONVERTER.sub(value, route)


def _fetch(route: str, world: World) -> tuple[int, int, bytes, bool, list[tuple[int, str]]]:
    client = dashboard_client(world.owner, world.organization)
    url = _url(route, world)
    query = {name: world.query_values[name] for name in QUERY.get(route, ())}
    client.get(url, query)  # warm what is cached per process or organization
    answered = RowsAnswered()
    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(answered):
        response = client.get(url, query)
        content = b"".join(response.streaming_content) if response.streaming else response.content
    status = response.status_code
    if status == 405 and "GET" not in response.get("Allow", "GET"):
        status = 0  # a route that takes no GET: nothing to measure
    statements = [(rows, sql) for rows, sql in answered.statements]
    return status, len(queries), content, response.streaming, statements


def _shown(content: bytes) -> dict[str, int]:
    """Per kind of object, how many distinct ones the response shows; for JSON also the
    longest list anywhere in it."""
    shown: dict[str, set[bytes]] = {}
    for kind, index in _MARKER.findall(content):
        shown.setdefault(kind.decode(), set()).add(index)
    for before, index, after in _LINK.findall(content):
        shown.setdefault(f"{before.decode()}N{after.decode()}", set()).add(index)
    lengths = {kind: len(indexes) for kind, indexes in shown.items()}
    lengths["(table rows)"] = content.count(b"<tr")  # rows with no marker (versions, checks)
    try:
        data = json.loads(content)
    except ValueError:
        return lengths
    stack, longest = [data], 0
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            longest = max(longest, len(item))
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    lengths["(json list)"] = longest
    return lengths


@pytest.fixture(scope="module")
def worlds(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, World]]:
    from tests.conftest import require_postgres
    from tests.db_flush import flush_touched

    require_postgres()  # the usage tables' triggers and partitions, and the flush, are its own
    media = tmp_path_factory.mktemp("media")  # the held-out rows a cascade report reads
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=str(media)):
        try:
            yield world_make(SMALL), world_make(LARGE)
        finally:
            flush_touched()


@pytest.mark.parametrize("route", measured_routes())
def test_a_large_organization_costs_what_a_small_one_costs(
    route: str, worlds: tuple[World, World]
) -> None:
    small, large = worlds
    small_status, small_queries, _, _, _ = _fetch(route, small)
    large_status, large_queries, content, streamed, answered = _fetch(route, large)

    expected = NOT_200.get(route, (0 if small_status == 0 else 200, ""))[0]
    assert small_status == large_status == expected, (small_status, large_status, expected)
    # Equal, not "a few more": each page reads its rows in a fixed number of queries (a count
    # and a page; related rows joined or prefetched), whatever the organization holds.
    assert large_queries == small_queries, (
        f"{small_queries} queries with {SMALL} of each object, {large_queries} with {LARGE}"
    )
    if route in EXPORTS:
        assert streamed, "an export must stream its rows"
        return
    # No statement moves every one of the LARGE objects of a kind into Python, shown or not (a
    # page's statements answer a page; totals and groups are added up by the database).
    bound = max(OWN_BOUNDS.get(route, PAGE_CAP), READ_BOUNDS.get(route, 0)) + 1  # keyset: +1
    unbounded_reads = [
        (rows, sql[:160])
        for rows, sql in answered
        if rows > bound and not any(r == route and t in sql for r, t in READ_EXEMPT)
    ]
    assert unbounded_reads == [], f"statements answering more than {bound} rows"
    if route in OWN_BOUNDS:
        shown = _shown(content)["(json list)"]
        assert 0 < shown <= OWN_BOUNDS[route], f"{shown} groups on one page"
        return
    unbounded = {kind: n for kind, n in _shown(content).items() if n >= LARGE}
    assert unbounded == {}, f"lists without a bound (every one of {LARGE} shown): {unbounded}"


def test_every_gateway_route_is_measured_or_bounded_by_construction() -> None:
    """The lean ASGI app's routes are not in Django's resolver. Its only GET lists are the
    model catalog (``/v1/models``, ``/api/v1/models``: the platform's, rendered once per catalog
    revision, no organization rows) and a stored response's input items (one row read, paged by
    ``limit`` ≤ 100: ``tests/routing/test_gateway_responses_store.py``). A new GET route fails
    here until it is measured."""
    from routing.gateway.app import GATEWAY_ROUTES

    gets = {r.path for r in GATEWAY_ROUTES if "GET" in r.methods.split(", ")}

    assert gets == {
        "/v1/models",
        "/v1/models/{id}",  # one model of the cached catalog
        "/v1/responses/{id}",  # one row
        "/v1/responses/{id}/input_items",  # one row, paged
    }


def test_rows_fetched_through_a_server_side_cursor_are_counted() -> None:
    """``QuerySet.iterator()`` reads through a server-side cursor, whose ``rowcount`` is -1 (its
    rows are fetched later, a chunk at a time): a page iterating every row is still caught."""
    from accounts.models import Organization

    Organization.objects.bulk_create(
        Organization(name=f"iterated {i}", slug=f"iterated-{i}") for i in range(LARGE)
    )
    answered = RowsAnswered()

    with connection.execute_wrapper(answered):
        few = list(Organization.objects.order_by("pk")[:5])
        every = [o.name for o in Organization.objects.order_by("pk").iterator(chunk_size=20)]

    assert answered.rows == [len(few), len(every)]
    assert len(every) >= LARGE > PAGE_CAP + 1  # over the bound a page's statements must keep
