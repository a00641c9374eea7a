"""The OpenAPI schema, README's "Platform endpoints" table and the gateway's routes agree.

``tests/clients/test_endpoint_coverage.py`` checks the schema against the Python client; these
check the other sides a newcomer reads: every schema operation is in README's table and every
``/api`` row of the table is a schema operation (the table once left out a dozen: rollback,
lifecycle, experiment, events, drift, webhooks, ``auth/key``); no schema operation is one the
gateway's ASGI app answers before Django (the schema would document a view that never runs); and
the schema's description names every gateway route (``/v1/*``, OpenRouter's ``/api/v1/*``),
which are not its operations.
"""

from __future__ import annotations

import re
from pathlib import Path

from drf_spectacular.generators import SchemaGenerator

from routerhub.schema import gateway_routes
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


def test_the_schema_names_every_gateway_route_it_leaves_out() -> None:
    description = schema()["info"]["description"]
    routes = gateway_routes()
    assert {"POST /v1/chat/completions", "POST /v1/messages", "GET /v1/models"} <= set(routes)
    assert {"POST /api/v1/chat/completions", "GET /api/v1/models"} <= set(routes)
    missing = [route for route in routes if f"`{route}`" not in description]
    assert not missing, f"the schema's description does not name {missing}"
