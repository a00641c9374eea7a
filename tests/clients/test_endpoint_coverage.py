"""Every operation of the server's OpenAPI schema has a client method: call each method once
against a recording transport and compare what was sent with the schema's paths."""

from __future__ import annotations

import re

import httpx
import pytest
from drf_spectacular.generators import SchemaGenerator
from routerhub_client import RouterHub

# The cancel view inherits GET from the run's detail view: the same answer as
# ``training_runs.get``, not an operation of its own. ``/api/v1/auth/key`` is OpenRouter's shape
# of ``GET /api/v1/key`` for OpenRouter's clients; this client reads it as ``keys.current``.
NOT_OPERATIONS = {
    ("GET", "/api/v1/training-runs/{run_id}/cancel"),
    ("GET", "/api/v1/auth/key"),
}


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
        if method in {"get", "post", "patch", "put", "delete"}
    } - NOT_OPERATIONS


def answer(request: httpx.Request) -> httpx.Response:
    """One body that satisfies every method's reading of it (pages, runs, datasets, routers)."""
    status = "succeeded" if "training-runs" in request.url.path else "ready"
    body = {"id": 1, "status": status, "version": 2, "active_version": 2, "next": None,
            "results": [{"number": 1}, {"number": 2}]}  # fmt: skip
    return httpx.Response(200, json=body)


def call_every_method(hub: RouterHub) -> None:
    hub.keys.current(), list(hub.keys.list()), hub.keys.create("k"), hub.keys.get(1)
    hub.keys.update(1, name="k2"), hub.keys.revoke(1)
    hub.credits.get(), hub.credits.quote("20"), hub.credits.checkout("20")
    list(hub.credits.receipts()), hub.credits.auto_topup(), hub.credits.auto_topup_update()
    list(hub.credits.ledger())
    hub.usage.get(), hub.usage.export_csv(), hub.generations.get("gen-1")
    hub.feedback.create("gen-1", 1)
    list(hub.provider_keys.list()), hub.provider_keys.create("p", "s")
    hub.provider_keys.delete(1)
    hub.datasets.upload(b"prompt\nhi\n", name="d"), hub.datasets.get(1)
    list(hub.datasets.list()), hub.datasets.delete(1)
    hub.routers.create("r"), hub.routers.get("r"), hub.routers.update("r", name="R")
    list(hub.routers.list()), hub.routers.delete("r"), hub.routers.train_and_wait("r", 1)
    list(hub.routers.versions("r")), hub.routers.report("r", 1), hub.routers.rollback("r")
    hub.routers.select("r", prompt="hi"), hub.routers.retrain_from_feedback("r")
    hub.routers.calibrate("r", 0.5), hub.routers.lifecycle("r"), hub.routers.activate("r", 1)
    hub.routers.lifecycle_update("r", shadow_version=2), hub.routers.experiment("r")
    list(hub.routers.events("r"))
    hub.pipelines.create("p", "cascade", []), hub.pipelines.get("p"), hub.pipelines.delete("p")
    list(hub.pipelines.list()), hub.pipelines.versions("p"), hub.pipelines.update("p", "series", [])
    hub.pipelines.report("p", router="r"), hub.pipelines.import_ubiops("p", {}, {})
    hub.training_runs.cancel(1)
    list(hub.routers.drift("r"))
    hub.webhooks.create("https://hooks.example.com", ["router.drift"]), hub.webhooks.get(1)
    hub.webhooks.update(1, enabled=False), hub.webhooks.delete(1), list(hub.webhooks.list())
    list(hub.webhooks.deliveries(1))


@pytest.mark.django_db
def test_the_client_calls_every_management_operation() -> None:
    sent: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return answer(request)

    http = httpx.Client(transport=httpx.MockTransport(record))
    call_every_method(RouterHub(base_url="http://hub.test", api_key="rh-x", http_client=http))

    operations = schema_operations()
    templates = {
        op: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", op[1]) + "$") for op in operations
    }
    called = {op for op, pattern in templates.items() for method, path in sent
              if method == op[0] and pattern.match(path)}  # fmt: skip
    assert operations - called == set(), "operations the client has no method for"
    assert len(operations) >= 37  # the schema generator saw the API
