"""Tenant isolation generated from the OpenAPI schema: every operation, every kind of caller.

Every operation of ``/api/schema/`` is called with real objects of organization A in its path
(and required query), as: another organization's management key, inference key and session
(also a session that names A's organization), A's member and admin where the operation needs a
higher role (their sessions, and management keys they created, demoted or removed since), and
A's inference key where API.md allows only management keys. A new route is
covered as soon as it is in the schema; a new path parameter fails here until someone says how
to make its object (``owner_object``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from accounts import services
from accounts.models import ROLE_RANK, KeyScope, Membership, Organization, Role, User
from accounts.tenant_api import TenantAPIView
from tests.factories import Tenants, key_client, key_make, session_client

pytestmark = pytest.mark.django_db

# Written into the names of A's objects: no response to an outsider may contain it.
MARKER = "acme-private-marker"

# API.md, "Auth": the only platform operations an inference (rh-live-) key may call.
INFERENCE_OPERATIONS = {
    ("GET", "/api/v1/key"),
    ("GET", "/api/v1/auth/key"),  # the same key, in OpenRouter's envelope (README)
    ("GET", "/api/v1/generation"),
    ("POST", "/api/v1/routers/{slug}/select"),
    ("POST", "/api/v1/feedback"),
    # README "Where this release extends or changes API.md": RouteLLM's calibrate_threshold and
    # Not Diamond's model select, feedback and latency reports are inference-time calls, like
    # select and feedback (its SDK reports latency with the key it selects with).
    ("POST", "/api/v1/routers/{slug}/calibrate"),
    ("POST", "/api/notdiamond/v2/modelRouter/modelSelect"),
    ("POST", "/api/notdiamond/v2/report/metrics/feedback"),
    ("POST", "/api/notdiamond/v2/report/metrics/latency"),
}

# Required parameters that name no object: a harmless value.
PLAIN_VALUES: dict[str, str] = {"amount": "10"}

# Operations that name one of A's objects in their body rather than their path.
BODY_REFERENCES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("POST", "/api/v1/feedback"): lambda objects: {"generation_id": objects["id"], "score": 1},
}

# --- A's objects, one maker per path (or required query) parameter ---------------------------------

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

    key_make(t.organization, name=MARKER)
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
        organization=t.organization, provider=provider, secret="sk-owner-secret-123", name=MARKER
    )
    return {"provider_key_id": key.pk}


@owner_object("dataset_id")
def _owner_dataset(t: Tenants) -> dict[str, Any]:
    from django.core.files.base import ContentFile

    from training.models import Dataset

    dataset = Dataset(organization=t.organization, name=MARKER)
    dataset.file.save("owner.csv", ContentFile(b"prompt,a/score,b/score\nhi,1,0\n"), save=True)
    return {"dataset_id": dataset.pk}


@owner_object("slug", "number", "run_id")
def _owner_router_version_and_run(t: Tenants) -> dict[str, Any]:
    from training.models import Dataset, Router, RouterVersion, TrainingRun

    router = Router.objects.create(
        organization=t.organization, slug="owners-router", name=MARKER, candidates=["a", "b"]
    )
    dataset = Dataset.objects.create(
        organization=t.organization, name=MARKER, file="datasets/x.csv"
    )
    version = RouterVersion.objects.create(router=router, number=1, dataset=dataset, candidates=["a", "b"],
                                           artifact_prefix="x", artifact_files={}, checksum="0" * 64)  # fmt: skip
    run = TrainingRun.objects.create(
        organization=t.organization, router=router, dataset=dataset, version=version
    )
    _owner_pipeline(t, slug=router.slug)  # /api/v1/pipelines/{slug}: the same slug names both
    return {"slug": router.slug, "number": version.number, "run_id": run.pk}


@owner_object("pipeline_slug")
def _owner_pipeline(t: Tenants, slug: str = "owners-pipeline") -> dict[str, Any]:
    from routing.models import Pipeline
    from routing.pipeline_api import pipeline_version_add

    pipeline = Pipeline.objects.create(organization=t.organization, slug=slug, name=MARKER)
    steps = [{"model": "demo/small", "pre_gate": {"type": "router_score",
              "router": "owners-router", "min_score": 0.5}}, {"model": "demo/large"}]  # fmt: skip
    pipeline_version_add(pipeline, "cascade", steps)
    return {"pipeline_slug": pipeline.slug}


@owner_object("id", "generation_id")
def _owner_generation(t: Tenants) -> dict[str, Any]:
    from billing.models import UsageRecord

    record = UsageRecord.objects.create(
        organization=t.organization, generation_id="gen-owner-1", model=f"{MARKER}/model",
        status="succeeded", created_at=datetime.now(UTC),
    )  # fmt: skip
    return {"id": record.generation_id, "generation_id": record.generation_id}


@owner_object("webhook_id")
def _owner_webhook(t: Tenants) -> dict[str, Any]:
    from webhooks.services import webhook_endpoint_create

    created = webhook_endpoint_create(
        created_by=None,
        organization=t.organization,
        url=f"https://hooks.example.com/{MARKER}",
        events=["router.drift"],
        description=MARKER,
    )
    return {"webhook_id": created.endpoint.pk}


# --- the schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the schema's template, e.g. /api/v1/keys/{key_id}
    parameters: tuple[tuple[str, str, bool], ...]  # (name, in, required)
    body_format: str = "json"  # "multipart" when the operation accepts only form uploads

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def object_parameters(self) -> list[str]:
        return [
            name
            for name, where, required in self.parameters
            if where == "path" or (where == "query" and required and name in OBJECT_MAKERS)
        ]

    @property
    def names_an_object(self) -> bool:
        return bool(self.object_parameters) or (self.method, self.path) in BODY_REFERENCES


def schema_operations() -> list[Operation]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    schema = json.loads(response.content)
    operations = []
    for path, item in schema["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            parameters = {
                (p["name"], p["in"], bool(p.get("required")))
                for p in [*shared, *operation.get("parameters", [])]
            }
            media = set(operation.get("requestBody", {}).get("content", {}))
            body_format = "json" if not media or "application/json" in media else "multipart"
            operations.append(
                Operation(method.upper(), path, tuple(sorted(parameters)), body_format)
            )
    return operations


def fill(operation: Operation, objects: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL and query of ``operation`` aimed at A's objects; fails loudly on an unknown
    parameter so that a new route cannot go unchecked."""
    path, query = operation.path, {}
    for name, where, required in operation.parameters:
        if where == "path":
            assert name in OBJECT_MAKERS, (
                f"{operation}: add an owner_object maker for path parameter {name!r} in {__file__}"
            )
            path = path.replace("{" + name + "}", str(objects[name]))
        elif where == "query" and required:
            assert name in OBJECT_MAKERS or name in PLAIN_VALUES, (
                f"{operation}: say how to fill required query parameter {name!r} in {__file__}"
            )
            query[name] = objects[name] if name in OBJECT_MAKERS else PLAIN_VALUES[name]
    return path, query


def view_of(url: str) -> Any:
    match = resolve(url)
    view_class = getattr(match.func, "view_class", None) or getattr(match.func, "cls", None)
    assert view_class is not None, f"{url} is not a class-based API view"
    return view_class


def required_role(operation: Operation, url: str) -> Role:
    return view_of(url).required_roles.get(operation.method, Role.MEMBER)


# --- callers ----------------------------------------------------------------------------------------


@dataclass
class Caller:
    client: APIClient
    headers: dict[str, str] = field(default_factory=dict)
    before: Callable[[], None] = lambda: None

    def call(self, operation: Operation, url: str, query: dict[str, Any], body: Any) -> Any:
        self.before()
        method = getattr(self.client, operation.method.lower())
        if operation.method == "GET":
            return method(url, query, **self.headers)
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return method(url, body, format=operation.body_format, **self.headers)


def browser(user: User, organization: Organization, *, claim: Organization | None = None) -> Caller:
    """A signed-in session sending CSRF like the dashboard. ``claim`` writes another organization
    into the session before every call, as a tampered cookie would."""
    client = session_client(user, organization)
    client.get("/dashboard/")
    caller = Caller(client, {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value})
    if claim is not None:

        def tamper() -> None:
            session = client.session
            session["current_organization_id"] = claim.pk
            session.save()

        caller.before = tamper
    return caller


@dataclass
class Sweep:
    tenants: Tenants
    objects: dict[str, Any]
    operations: list[Operation]
    failures: list[str] = field(default_factory=list)
    checked: int = 0

    def expect(self, caller: Caller, operation: Operation, status: int, error_type: str) -> None:
        url, query = fill(operation, self.objects)
        body = BODY_REFERENCES.get((operation.method, operation.path), lambda _: {})(self.objects)
        response = caller.call(operation, url, query, body)
        self.checked += 1
        if response.status_code != status:
            self.failures.append(f"{operation} -> {response.status_code}, expected {status}")
        elif response.json()["error"]["type"] != error_type:
            self.failures.append(f"{operation} -> error type {response.json()['error']['type']}")

    def expect_no_leak(self, caller: Caller, operation: Operation) -> None:
        url, query = fill(operation, self.objects)
        response = caller.call(operation, url, query, {})
        self.checked += 1
        content = b"".join(response.streaming_content) if response.streaming else response.content
        if response.status_code >= 500 or MARKER.encode() in content:
            self.failures.append(f"{operation} -> {response.status_code} {content[:200]!r}")

    def assert_clean(self) -> None:
        assert self.checked, "nothing was checked"
        assert not self.failures, "\n".join(self.failures)


@pytest.fixture
def sweep(tenants: Tenants) -> Sweep:
    objects: dict[str, Any] = {}
    for maker in dict.fromkeys(OBJECT_MAKERS.values()):  # one object graph per maker
        objects.update(maker(tenants))
    return Sweep(tenants, objects, schema_operations())


# --- the tests ------------------------------------------------------------------------------------


def test_every_api_route_is_in_the_schema():
    def walk(patterns: list[Any], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                for name in pattern.pattern.converters:
                    for form in (f"<int:{name}>", f"<str:{name}>", f"<slug:{name}>", f"<{name}>"):
                        route = route.replace(form, "{" + name + "}")
                yield "/" + route

    documented = {operation.path for operation in schema_operations()}
    routes = set(walk(get_resolver().url_patterns, ""))

    assert routes - documented == set()
    assert any(operation.object_parameters for operation in schema_operations())


def test_inference_keys_reach_exactly_the_operations_api_md_allows(sweep: Sweep):
    opened = set()
    for operation in sweep.operations:
        url, _ = fill(operation, sweep.objects)
        if getattr(view_of(url), "inference_key_allowed", False):
            opened.add((operation.method, operation.path))

    assert opened == INFERENCE_OPERATIONS


OUTSIDERS: dict[str, Callable[[Tenants], Caller]] = {
    "outsider-management-key": lambda t: Caller(
        key_client(key_make(t.outsider_organization, scope=KeyScope.MANAGE))
    ),
    "outsider-inference-key": lambda t: Caller(key_client(key_make(t.outsider_organization))),
    "outsider-session": lambda t: browser(t.outsider, t.outsider_organization),
    "outsider-session-naming-the-owner": lambda t: browser(
        t.outsider, t.outsider_organization, claim=t.organization
    ),
}


@pytest.mark.parametrize("outsider", list(OUTSIDERS))
def test_outsiders_get_404_on_every_operation_naming_an_owner_object(sweep: Sweep, outsider: str):
    caller = OUTSIDERS[outsider](sweep.tenants)
    inference_key = outsider == "outsider-inference-key"
    for operation in sweep.operations:
        if not operation.names_an_object:
            continue
        if inference_key and (operation.method, operation.path) not in INFERENCE_OPERATIONS:
            sweep.expect(caller, operation, 403, "forbidden")  # refused before lookup
        else:
            sweep.expect(caller, operation, 404, "not_found")
    sweep.assert_clean()


@pytest.mark.parametrize("outsider", list(OUTSIDERS))
def test_outsiders_never_see_owner_data_in_any_read(sweep: Sweep, outsider: str):
    caller = OUTSIDERS[outsider](sweep.tenants)
    for operation in sweep.operations:
        if operation.method == "GET" and not operation.names_an_object:
            sweep.expect_no_leak(caller, operation)
    sweep.assert_clean()


def management_key_of(user: User, organization: Organization) -> Caller:
    """A management key ``user`` created with their current role."""
    return Caller(key_client(key_make(organization, scope=KeyScope.MANAGE, created_by=user)))


# Who acts with a role of A: a person's session, and a management key acting with that person's
# role, checked against the very same required_roles (a key never outranks its creator).
WITH_ROLE: dict[str, Callable[[User, Organization], Caller]] = {
    "session": browser,
    "management-key": management_key_of,
}


@pytest.mark.parametrize("via", list(WITH_ROLE))
@pytest.mark.parametrize("role", [Role.MEMBER, Role.ADMIN])
def test_owner_organization_people_without_the_role_get_403(sweep: Sweep, role: Role, via: str):
    user = sweep.tenants.member if role == Role.MEMBER else sweep.tenants.admin
    caller = WITH_ROLE[via](user, sweep.tenants.organization)
    for operation in sweep.operations:
        url, _ = fill(operation, sweep.objects)
        if ROLE_RANK[required_role(operation, url)] > ROLE_RANK[role]:
            sweep.expect(caller, operation, 403, "forbidden")
    sweep.assert_clean()


def test_a_demoted_admins_management_key_acts_as_a_member(sweep: Sweep):
    organization = sweep.tenants.organization
    caller = management_key_of(sweep.tenants.admin, organization)
    membership = Membership.objects.get(user=sweep.tenants.admin, organization=organization)

    services.membership_set_role(
        organization=organization, membership_id=membership.pk, role=Role.MEMBER
    )

    for operation in sweep.operations:
        url, _ = fill(operation, sweep.objects)
        if ROLE_RANK[required_role(operation, url)] > ROLE_RANK[Role.MEMBER]:
            sweep.expect(caller, operation, 403, "forbidden")
    sweep.assert_clean()


@pytest.mark.parametrize("scope", [KeyScope.MANAGE, KeyScope.INFERENCE])
def test_a_removed_members_keys_get_401_on_every_operation(sweep: Sweep, scope: str):
    organization = sweep.tenants.organization
    admin = sweep.tenants.admin
    caller = Caller(key_client(key_make(organization, scope=scope, created_by=admin)))
    membership = Membership.objects.get(user=admin, organization=organization)

    services.membership_remove(organization=organization, membership_id=membership.pk)

    for operation in sweep.operations:
        sweep.expect(caller, operation, 401, "unauthorized")
    sweep.assert_clean()


def test_owner_inference_key_gets_403_on_every_management_operation(sweep: Sweep):
    caller = Caller(key_client(key_make(sweep.tenants.organization)))
    for operation in sweep.operations:
        if (operation.method, operation.path) not in INFERENCE_OPERATIONS:
            sweep.expect(caller, operation, 403, "forbidden")
    sweep.assert_clean()


# Operations a management key may not call, only a signed-in person (``people_only``): none
# today, a management key acts with its creator's role on every operation. A view that sets it
# is named here, and its 403 is then swept below.
PEOPLE_ONLY_OPERATIONS: set[tuple[str, str]] = set()


def test_owner_management_key_gets_403_on_people_only_operations(sweep: Sweep):
    caller = Caller(key_client(key_make(sweep.tenants.organization, scope=KeyScope.MANAGE)))
    people_only = {
        (operation.method, operation.path)
        for operation in sweep.operations
        if getattr(view_of(fill(operation, sweep.objects)[0]), "people_only", False)
    }

    for operation in sweep.operations:
        if (operation.method, operation.path) in people_only:
            sweep.expect(caller, operation, 403, "forbidden")

    assert people_only == PEOPLE_ONLY_OPERATIONS
    assert not sweep.failures, "\n".join(sweep.failures)


class PeopleOnlyView(TenantAPIView):
    """A stand-in for a people-only operation (none is, ``PEOPLE_ONLY_OPERATIONS``)."""

    people_only = True

    def get(self, request: Any) -> Response:
        return Response({"organization": self.organization.pk})


def test_a_people_only_view_refuses_a_management_key_and_serves_a_person(sweep: Sweep):
    tenants = sweep.tenants
    view = PeopleOnlyView.as_view()
    key = key_make(tenants.organization, scope=KeyScope.MANAGE)
    by_key = view(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {key}"))
    request = APIRequestFactory().get("/")
    request.session = SessionStore()
    force_authenticate(request, user=tenants.owner)
    by_person = view(request)

    assert by_key.status_code == 403, by_key.data
    assert "needs a signed-in person" in by_key.data["error"]["message"]
    assert by_person.status_code == 200, by_person.data
    assert by_person.data == {"organization": tenants.organization.pk}


# --- the gateway (/v1 is not in the platform schema) ---------------------------------------------

INFERENCE_PATHS = ["/v1/chat/completions", "/v1/messages", "/v1/responses"]


def gateway_post(world: Any, path: str, key: str, model: str) -> Any:
    import httpx

    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/responses":
        body = {"model": model, "max_output_tokens": 16, "input": "hi"}
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


@pytest.mark.parametrize("path", INFERENCE_PATHS)
def test_management_key_gets_403_on_inference(world: Any, path: str):
    response = gateway_post(world, path, world.key_for(scope=KeyScope.MANAGE), "test/gpt")

    assert response.status_code == 403, response.text
    error = response.json()["error"]
    # /v1/messages names its errors as Anthropic does, and keeps RouterHub's name beside it.
    assert error.get("routerhub_type", error["type"]) == "forbidden"
    if path == "/v1/messages":
        assert error["type"] == "permission_error"
    assert world.upstream_requests() == []


@pytest.mark.parametrize("path", INFERENCE_PATHS)
def test_another_organizations_router_is_indistinguishable_from_none(world: Any, path: str):
    from tests.factories import organization_make
    from training.models import Router

    Router.objects.create(organization=world.organization, slug="owners-router", name=MARKER,
                          candidates=["test/gpt", "test/claude"])  # fmt: skip
    outsider = key_make(organization_make())

    theirs = gateway_post(world, path, outsider, "router/owners-router")
    nobodys = gateway_post(world, path, outsider, "router/nobodys-router")

    assert theirs.status_code == nobodys.status_code == 404, theirs.text
    assert theirs.json()["error"]["message"] == nobodys.json()["error"]["message"].replace(
        "nobodys-router", "owners-router"
    )
    assert MARKER not in theirs.text


# --- the dashboard: every URL that names an object ----------------------------------------------

# Dashboard URL parameters that name no organization's object, with the reason.
NOT_TENANT_OBJECTS = {
    "token": "an invitation token is the invitee's proof; accepting it is the way into another org",
}


@owner_object("membership_id")
def _owner_membership(t: Tenants) -> dict[str, Any]:
    return {"membership_id": Membership.objects.get(organization=t.organization, user=t.member).pk}


@owner_object("invitation_id")
def _owner_invitation(t: Tenants) -> dict[str, Any]:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Invitation

    invitation = Invitation.objects.create(
        organization=t.organization, email=f"{MARKER}@example.com", token_digest="0" * 64,
        invited_by=t.owner, expires_at=timezone.now() + timedelta(days=7),
    )  # fmt: skip
    return {"invitation_id": invitation.pk}


@owner_object("payment_id")
def _owner_payment(t: Tenants) -> dict[str, Any]:
    from billing.models import Payment

    payment = Payment.objects.create(
        organization=t.organization, kind="checkout", amount="10", fee="1",
        failure_message=MARKER,
    )  # fmt: skip
    return {"payment_id": payment.pk}


def dashboard_routes() -> list[tuple[str, list[str]]]:
    """(route template, its parameters) of every page outside the API, admin and allauth that
    names something in its path."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, list[str]]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and pattern.pattern.converters:
                yield "/" + route, list(pattern.pattern.converters)

    skipped = ("/api/", "/admin/", "/accounts/")
    return [
        (route, names)
        for route, names in walk(get_resolver().url_patterns, "")
        if not route.startswith(skipped) and not set(names) & set(NOT_TENANT_OBJECTS)
    ]


def dashboard_url(route: str, names: list[str], objects: dict[str, Any]) -> str:
    for name in names:
        assert name in OBJECT_MAKERS, f"{route}: add an owner_object maker for {name!r}"
        route = re.sub(r"<(?:\w+:)?" + name + ">", str(objects[name]), route)
    return route


def test_the_dashboard_sweep_covers_every_page_naming_an_object():
    routes = {route for route, _ in dashboard_routes()}

    assert "/dashboard/keys/<int:key_id>/revoke" in routes
    assert "/billing/stripe/pay/<int:payment_id>" in routes
    assert len(routes) >= 10


@pytest.mark.parametrize(
    "outsider", ["outsider-session", "outsider-session-naming-the-owner"]
)  # fmt: skip
def test_outsiders_get_404_on_every_dashboard_page_naming_an_owner_object(
    sweep: Sweep, outsider: str
):
    caller = OUTSIDERS[outsider](sweep.tenants)
    failures = []
    for route, names in dashboard_routes():
        url = dashboard_url(route, names, sweep.objects)
        caller.before()
        response = caller.client.get(url)
        if response.status_code == 405:  # a form action: the dashboard posts it
            caller.before()
            response = caller.client.post(url, {"role": "member", "action": "remove"},
                                          **caller.headers)  # fmt: skip
        if response.status_code != 404 or MARKER.encode() in response.content:
            failures.append(f"{url} -> {response.status_code}")
    assert not failures, "\n".join(failures)


def test_the_owner_sees_every_dashboard_page_the_sweep_refuses_outsiders(sweep: Sweep):
    """The sweep's URLs name real objects: their owner's pages answer (forms aside)."""
    owner = browser(sweep.tenants.owner, sweep.tenants.organization)
    answered = 0
    for route, names in dashboard_routes():
        response = owner.client.get(dashboard_url(route, names, sweep.objects))
        if response.status_code != 405:
            assert response.status_code == 200, route
            answered += 1

    assert answered >= 5
