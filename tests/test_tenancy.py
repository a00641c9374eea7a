"""Every /api/v1/ route with an object in its path answers 404 to another organization."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import KeyScope
from tests.factories import Tenants, key_client, key_make, session_client

pytestmark = pytest.mark.django_db

# How to make an object of the owner organization for each path parameter. A new route with a
# parameter not listed here fails this test until someone says how to make its object.
OwnerObjects = Callable[[Tenants], dict[str, Any]]
OBJECT_MAKERS: dict[str, OwnerObjects] = {}


def owner_object(*names: str) -> Callable[[OwnerObjects], OwnerObjects]:
    def register(maker: OwnerObjects) -> OwnerObjects:
        for name in names:
            OBJECT_MAKERS[name] = maker
        return maker

    return register


@owner_object("key_id")
def _owner_key(t: Tenants) -> dict[str, Any]:
    from accounts.models import ApiKey

    key_make(t.organization)
    return {"key_id": ApiKey.objects.filter(organization=t.organization).latest("pk").pk}


@owner_object("provider_key_id")
def _owner_provider_key(t: Tenants) -> dict[str, Any]:
    from routing.models import Provider
    from routing.services import provider_key_create

    provider, _ = Provider.objects.get_or_create(
        slug="tenancy-test",
        defaults={"name": "Tenancy", "api_style": "openai", "base_url": "http://127.0.0.1:9"},
    )
    key = provider_key_create(
        organization=t.organization, provider=provider, secret="sk-owner-secret-123"
    )
    return {"provider_key_id": key.pk}


@owner_object("dataset_id")
def _owner_dataset(t: Tenants) -> dict[str, Any]:
    from django.core.files.base import ContentFile

    from training.models import Dataset

    dataset = Dataset(organization=t.organization, name="owner data")
    dataset.file.save("owner.csv", ContentFile(b"prompt,a/score,b/score\nhi,1,0\n"), save=True)
    return {"dataset_id": dataset.pk}


@owner_object("slug", "number", "run_id")
def _owner_router_version_and_run(t: Tenants) -> dict[str, Any]:
    from training.models import Dataset, Router, RouterVersion, TrainingRun

    router = Router.objects.create(
        organization=t.organization, slug="owners-router", name="R", candidates=["a", "b"]
    )
    dataset = Dataset.objects.create(organization=t.organization, name="d", file="datasets/x.csv")
    version = RouterVersion.objects.create(router=router, number=1, dataset=dataset, candidates=["a", "b"],
                                           artifact_prefix="x", artifact_files={}, checksum="0" * 64)  # fmt: skip
    run = TrainingRun.objects.create(
        organization=t.organization, router=router, dataset=dataset, version=version
    )
    return {"slug": router.slug, "number": version.number, "run_id": run.pk}


def api_routes() -> Iterator[tuple[str, URLPattern]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif route.startswith("api/v1/"):
                yield route, pattern

    yield from walk(get_resolver().url_patterns, "")


def view_methods(pattern: URLPattern) -> list[str]:
    view_class = getattr(pattern.callback, "view_class", None) or getattr(
        pattern.callback, "cls", None
    )
    assert view_class is not None, f"{pattern} is not a class-based API view"
    return [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view_class, m)]


def parametrised_routes() -> list[tuple[str, URLPattern]]:
    return [(route, p) for route, p in api_routes() if p.pattern.converters]


def test_there_are_object_routes_to_check():
    assert any(route.startswith("api/v1/keys/") for route, _ in parametrised_routes())


@pytest.mark.parametrize("as_session", [False, True], ids=["management-key", "session"])
def test_outsider_gets_404_on_every_owner_object(tenants, as_session):
    outsider = (
        session_client(tenants.outsider, tenants.outsider_organization)
        if as_session
        else key_client(key_make(tenants.outsider_organization, scope=KeyScope.MANAGE))
    )
    if as_session:
        outsider.get("/dashboard/")
    csrf = {"HTTP_X_CSRFTOKEN": outsider.cookies["csrftoken"].value} if as_session else {}
    checked = []
    made: dict[OwnerObjects, dict[str, Any]] = {}
    for route, pattern in parametrised_routes():
        params = set(pattern.pattern.converters)
        missing = params - set(OBJECT_MAKERS)
        assert not missing, (
            f"tests/test_tenancy.py: add an owner_object maker for {missing} ({route})"
        )
        values: dict[str, Any] = {}
        for maker in {OBJECT_MAKERS[name] for name in params}:  # one object graph per maker
            if maker not in made:
                made[maker] = maker(tenants)
            values.update(made[maker])
        path = "/" + route
        for name in params:
            for form in (f"<int:{name}>", f"<str:{name}>", f"<slug:{name}>", f"<{name}>"):
                path = path.replace(form, str(values[name]))
        for method in view_methods(pattern):
            response = getattr(outsider, method)(path, {}, format="json", **csrf)
            assert response.status_code == 404, (
                f"{method.upper()} {path} gave {response.status_code}"
            )
            assert response.json()["error"]["type"] == "not_found"
            checked.append(f"{method} {route}")
    assert checked
