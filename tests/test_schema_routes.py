"""The OpenAPI schema, README's "Platform endpoints" table and the gateway's routes agree.

``tests/clients/test_endpoint_coverage.py`` checks the schema against the Python client; these
check the other sides a newcomer reads: every schema operation is in README's table and every
``/api`` row of the table is a schema operation (the table once left out a dozen: rollback,
lifecycle, experiment, events, drift, webhooks, ``auth/key``); no schema operation is one the
gateway's ASGI app answers before Django (the schema would document a view that never runs); and
the schema's description names every gateway route (``/v1/*``, OpenRouter's ``/api/v1/*``),
which are not its operations: each route of the tables the gateway dispatches by (``_route``
matches no other path by prefix but the ``/api/`` forwarding), and every route it names is one the
gateway's ``_route`` answers with that method.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from routerhub.errors import ApiError
from routerhub.schema import gateway_routes
from routing.gateway import app, listing, openrouter
from routing.gateway.openrouter import openrouter_route

README = Path(__file__).resolve().parents[1] / "README.md"
METHODS = ("get", "post", "put", "patch", "delete")
ROUTE = re.compile(
    r"`((?:GET|POST|PUT|PATCH|DELETE)(?:, (?:GET|POST|PUT|PATCH|DELETE))*) (/[^`?\s]*)"
)
# Not an operation: the cancel view inherits GET from the run's detail view (the same answer).
NOT_OPERATIONS = {("GET", "/api/v1/training-runs/{}/cancel")}


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/"))


def schema() -> dict:  # type: ignore[type-arg]
    return SchemaGenerator().get_schema(request=None, public=True)


def schema_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), _normal(path))
        for path, item in schema()["paths"].items()
        for method in item
        if method in METHODS
    } - NOT_OPERATIONS


def routes_named(text: str) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every `METHOD[, METHOD] /path` in ``text`` (query dropped)."""
    return {
        (method, _normal(path))
        for methods, path in ROUTE.findall(text)
        for method in methods.split(", ")
    }


def readme_platform_table() -> set[tuple[str, str]]:
    readme = README.read_text()
    start = readme.index("\nPlatform endpoints:\n")
    table = readme[start : readme.index("\n\n", start + len("\nPlatform endpoints:\n\n"))]
    return {(m, p) for m, p in routes_named(table) if p.startswith("/api/")}


def test_the_route_parser_reads_several_methods_and_drops_queries() -> None:
    text = "| `GET, PATCH /api/v1/x/{id}` · `GET /api/v1/usage?start=` |"
    assert routes_named(text) == {
        ("GET", "/api/v1/x/{}"),
        ("PATCH", "/api/v1/x/{}"),
        ("GET", "/api/v1/usage"),
    }


def test_readmes_platform_table_lists_every_schema_operation_and_no_other() -> None:
    operations, listed = schema_operations(), readme_platform_table()
    assert len(operations) > 50
    assert not operations - listed, f"in the schema, not in README: {sorted(operations - listed)}"
    assert not listed - operations, f"in README, not in the schema: {sorted(listed - operations)}"


def test_no_schema_operation_is_answered_by_the_gateway_instead() -> None:
    shadowed = [
        path
        for path, item in schema()["paths"].items()
        if openrouter_route({"path": re.sub(r"\{[^}]*\}", "x", path)}) or path.startswith("/v1/")
    ]
    assert not shadowed, f"documented, but the gateway answers them before Django: {shadowed}"


def _gateway_table_routes() -> set[str]:
    """``METHOD /path`` of the gateway's routes read from the tables it dispatches by, not from
    ``gateway_routes()``: ``app._EXACT`` and ``app._TEMPLATED`` (what ``_route`` reads),
    OpenRouter's inference paths, its model listing and ``_ENDPOINTS`` (its one named group is a
    model id, ``{author}/{slug}``)."""
    endpoints = re.sub(r"\(\?P<\w+>[^)]*\)", "{author}/{slug}", openrouter._ENDPOINTS.pattern)
    return {
        *(f"{methods} {path}" for path, (methods, _) in app._EXACT.items()),
        *(f"{methods} {prefix}{{id}}{suffix}" for prefix, suffix, methods, _ in app._TEMPLATED),
        *(f"POST {openrouter._PREFIX}{path}" for path in openrouter._INFERENCE),
        f"GET {openrouter._PREFIX}/models",
        f"GET {endpoints}",
    }


def _route_prefixes() -> set[str]:
    """The paths ``app._route`` matches by a prefix written in its code
    (``path.startswith("/…/")``) rather than through its route table."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(app._route)))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and ast.unparse(node.func) == "path.startswith"
        and isinstance(node.args[0], ast.Constant)
    }


def test_the_schema_names_every_gateway_route_it_leaves_out() -> None:
    description = schema()["info"]["description"]
    named = set(re.findall(r"^- `([^`]+)`$", description, re.MULTILINE))
    routes = _gateway_table_routes()
    assert {
        "POST /v1/chat/completions",
        "GET, DELETE /v1/responses/{id}",
        "GET /v1/models/{id}",
        "GET /api/v1/models/{author}/{slug}/endpoints",
    } <= routes
    assert not routes - named, f"the schema's description does not name {sorted(routes - named)}"
    # Every other path goes through the table: the one prefix in ``_route``'s code is the
    # ``/api/`` forwarding (OpenRouter's, in its tables above, or the router select's).
    assert _route_prefixes() == {"/api/"}
    assert set(gateway_routes()) == named


class _Reached(Exception):
    """A handler got the request: the gateway answers this method and path."""


class _Request:
    def __init__(self, method: str, path: str) -> None:
        self.method, self.path, self.scope = method, path, {"path": path, "method": method}

    def __getattr__(self, name: str) -> Any:
        raise _Reached(name)


def _routed(method: str, path: str) -> str:
    """What ``app._route`` does with ``method path`` before any handler's own work."""
    try:
        asyncio.run(app._route(_Request(method, path)))  # type: ignore[arg-type]
    except _Reached:
        return "answered"
    except ApiError as error:
        return str(error.status)
    return "answered"


def test_every_route_the_description_names_is_answered_by_the_gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def reached() -> None:
        raise _Reached("catalog")

    monkeypatch.setattr(listing, "catalog_get", reached)
    monkeypatch.setattr(openrouter, "catalog_get", reached)
    assert _routed("GET", "/v1/no-such-route") == "404"  # the check can fail
    assert _routed("POST", "/v1/models/a") == "405"
    assert _routed("POST", "/v1/responses/r") == "405"
    assert _routed("DELETE", "/v1/responses/r/input_items") == "405"
    unanswered = []
    for route in gateway_routes():
        methods, path = route.rsplit(" ", 1)
        concrete = re.sub(r"\{[^}]*\}", "x", path)
        for method in methods.split(", "):
            result = _routed(method, concrete)
            if path.startswith("/api/") and not openrouter.openrouter_route({"path": concrete}):
                result = "not OpenRouter's"  # Django's, or model_select's: not this route
            if result != "answered":
                unanswered.append(f"{method} {concrete}: {result}")
    assert not unanswered, f"the description names routes the gateway does not answer: {unanswered}"
