"""``/api/v1/webhooks`` and the Webhooks page: admins only, the secret shown once and kept
encrypted, only subscribed and enabled endpoints receive an event."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import KeyScope
from tests.factories import key_client, key_make, tenants_make
from webhooks.models import WebhookEndpoint
from webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_secret,
    webhook_event_emit,
)

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/routerhub"


def test_the_secret_is_shown_once_and_stored_encrypted() -> None:
    tenants = tenants_make()
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    created = admin.post(
        "/api/v1/webhooks", {"url": URL, "events": ["router.drift"]}, format="json"
    )
    listed = admin.get("/api/v1/webhooks").json()["results"]
    endpoint = WebhookEndpoint.objects.get()

    secret = created.json()["secret"]
    assert created.status_code == 201 and secret.startswith("whsec_")
    assert "secret" not in listed[0] and listed[0]["secret_hint"] == secret[-4:]
    assert secret.encode() not in bytes(endpoint.secret_encrypted)
    assert webhook_endpoint_secret(endpoint) == secret


def test_members_cannot_see_or_manage_webhooks() -> None:
    tenants = tenants_make()
    member = key_client(
        key_make(tenants.organization, scope=KeyScope.MANAGE, created_by=tenants.member)
    )

    listing = member.get("/api/v1/webhooks")
    creating = member.post(
        "/api/v1/webhooks", {"url": URL, "events": ["router.drift"]}, format="json"
    )

    assert (listing.status_code, creating.status_code) == (403, 403)


def test_unknown_events_are_refused() -> None:
    tenants = tenants_make()
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    response = admin.post(
        "/api/v1/webhooks", {"url": URL, "events": ["router.exploded"]}, format="json"
    )

    assert response.status_code == 400


def test_only_enabled_subscribed_endpoints_get_an_event(
    django_capture_on_commit_callbacks: Any,
) -> None:
    tenants = tenants_make()
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))
    ids = [
        admin.post("/api/v1/webhooks", {"url": URL, "events": events}, format="json").json()["id"]
        for events in (["router.drift"], ["training.finished"], ["router.drift"])
    ]
    admin.patch(f"/api/v1/webhooks/{ids[2]}", {"enabled": False}, format="json")

    with django_capture_on_commit_callbacks(execute=False) as queued:
        deliveries = webhook_event_emit(tenants.organization.pk, "router.drift", {"score": 0.4})

    assert [d.endpoint_id for d in deliveries] == [ids[0]] and len(queued) == 1


def test_the_page_creates_an_endpoint_and_shows_its_secret_once() -> None:
    tenants = tenants_make()
    client = Client()
    client.force_login(tenants.admin)
    member = Client()
    member.force_login(tenants.member)

    created = client.post("/dashboard/webhooks/", {"url": URL, "events": ["training.failed"]})
    again = client.get("/dashboard/webhooks/")
    endpoint = WebhookEndpoint.objects.get()

    assert created.status_code == 200
    assert webhook_endpoint_secret(endpoint) in created.content.decode()
    assert webhook_endpoint_secret(endpoint) not in again.content.decode()
    assert URL in again.content.decode()
    assert member.get("/dashboard/webhooks/").status_code == 403


def test_the_page_shows_the_delivery_log(django_capture_on_commit_callbacks: Any) -> None:
    tenants = tenants_make()
    webhook_endpoint_create(
        created_by=None, organization=tenants.organization, url=URL, events=["training.failed"]
    )
    with django_capture_on_commit_callbacks(execute=False):
        [delivery] = webhook_event_emit(tenants.organization.pk, "training.failed", {"x": 1})
    client = Client()
    client.force_login(tenants.owner)

    page = client.get("/dashboard/webhooks/").content.decode()

    assert delivery.event_id in page and "pending" in page
