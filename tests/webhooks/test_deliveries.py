"""Webhook deliveries against a real local receiver: signed as README documents, retried with
backoff on 500 until they succeed or run out of attempts, and refused for private targets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from routerhub_client import verify_webhook_signature

from accounts.models import KeyScope
from tests.factories import key_client, key_make, tenants_make
from tests.webhooks.receiver import Receiver
from webhooks.delivery import webhook_deliveries_retry_due
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import webhook_event_emit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

README = Path(__file__).resolve().parents[2] / "README.md"
MakeReceiver = Callable[[list[int]], Receiver]


def documented_verifier() -> Callable[..., bool]:
    """The verification snippet of README "Webhooks", run as written (it never imports
    RouterHub: it is what a receiver copies)."""
    text = README.read_text()
    section = text[text.index("### Verifying webhook signatures") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    return namespace["verify_routerhub_signature"]  # type: ignore[no-any-return]


def endpoint_create(organization: Any, url: str, events: list[str]) -> tuple[Any, dict[str, Any]]:
    admin = key_client(key_make(organization, scope=KeyScope.MANAGE))
    response = admin.post("/api/v1/webhooks", {"url": url, "events": events}, format="json")
    assert response.status_code == 201, response.json()
    return admin, response.json()


def emit(organization: Any, capture: Any, event: str = "router.promoted") -> WebhookDelivery:
    with capture(execute=True):
        [delivery] = webhook_event_emit(organization.pk, event, {"router": "support", "version": 2})
    delivery.refresh_from_db()
    return delivery


def retry_due_later() -> list[tuple[int, int]]:
    return webhook_deliveries_retry_due(now=timezone.now() + timedelta(days=1))


def test_deliveries_are_signed_as_documented_and_retried_on_500(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tenants = tenants_make()
    receiver = receiver_factory([500, 500, 200])
    admin, created = endpoint_create(tenants.organization, receiver.url, ["router.promoted"])

    first = emit(tenants.organization, django_capture_on_commit_callbacks)
    not_yet = webhook_deliveries_retry_due()  # its backoff has not passed
    retries = [retry_due_later(), retry_due_later()]
    delivery = WebhookDelivery.objects.get(pk=first.pk)

    assert (first.status, first.attempts, first.response_code) == ("pending", 1, 500)
    assert first.next_retry_at is not None and first.last_attempt_at is not None
    assert (first.next_retry_at - first.last_attempt_at).total_seconds() == pytest.approx(30, abs=2)
    assert not_yet == [] and retries == [[(first.pk, 2)], [(first.pk, 3)]]
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    assert delivery.latency_ms is not None and delivery.next_retry_at is None
    assert len(delivery.response_excerpt) == 1024  # the answer is read up to the limit only
    verify = documented_verifier()
    assert len(receiver.received) == 3
    for request in receiver.received:
        header = request.headers["RouterHub-Signature"]
        assert verify(created["secret"], header, request.body)
        assert verify_webhook_signature(created["secret"], header, request.body)
        assert not verify(created["secret"], header, request.body + b" ")
        assert not verify("whsec_other", header, request.body)
    payload = json.loads(receiver.received[0].body)
    assert payload["type"] == "router.promoted" and payload["id"] == delivery.event_id
    assert payload["data"] == {"router": "support", "version": 2}
    log = admin.get(f"/api/v1/webhooks/{created['id']}/deliveries").json()["results"]
    assert [(d["status"], d["attempts"], d["response_code"]) for d in log] == [
        ("succeeded", 3, 200)
    ]


def test_an_old_signature_is_refused_by_the_documented_check(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tenants = tenants_make()
    receiver = receiver_factory([200])
    _, created = endpoint_create(tenants.organization, receiver.url, ["router.promoted"])
    emit(tenants.organization, django_capture_on_commit_callbacks)
    request = receiver.received[0]
    header = request.headers["RouterHub-Signature"]
    signed_at = int(header.split(",")[0].removeprefix("t="))

    verify = documented_verifier()

    assert verify(created["secret"], header, request.body, now=signed_at + 299)
    assert not verify(created["secret"], header, request.body, now=signed_at + 301)


def test_exhausted_retries_stop(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    tenants = tenants_make()
    receiver = receiver_factory([500])
    endpoint_create(tenants.organization, receiver.url, ["router.promoted"])

    first = emit(tenants.organization, django_capture_on_commit_callbacks)
    sweeps = [retry_due_later() for _ in range(5)]
    delivery = WebhookDelivery.objects.get(pk=first.pk)

    assert len(receiver.received) == 3
    assert [len(s) for s in sweeps] == [1, 1, 0, 0, 0]
    assert (delivery.status, delivery.attempts, delivery.next_retry_at) == ("failed", 3, None)


def test_a_4xx_answer_is_not_retried_and_a_dead_receiver_is(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any
) -> None:
    tenants = tenants_make()
    receiver = receiver_factory([410])
    endpoint_create(tenants.organization, receiver.url, ["router.promoted"])
    gone = emit(tenants.organization, django_capture_on_commit_callbacks)
    WebhookEndpoint.objects.update(url="http://127.0.0.1:9/closed")  # nothing listens (discard)

    unreachable = emit(tenants.organization, django_capture_on_commit_callbacks)

    assert (gone.status, gone.attempts, gone.response_code) == ("failed", 1, 410)
    assert (unreachable.status, unreachable.response_code) == ("pending", None)
    assert unreachable.error and unreachable.next_retry_at is not None


def test_private_targets_are_refused_when_not_allowed(
    receiver_factory: MakeReceiver, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    tenants = tenants_make()
    receiver = receiver_factory([200])
    endpoint_create(tenants.organization, receiver.url, ["router.promoted"])
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    refused = [
        admin.post("/api/v1/webhooks", {"url": url, "events": ["router.drift"]}, format="json")
        for url in (
            receiver.url,
            "http://169.254.169.254/latest",
            "http://[::1]:8080/",
            "http://[fec0::1]/hook",
        )
    ]
    delivery = emit(tenants.organization, django_capture_on_commit_callbacks)

    assert [r.status_code for r in refused] == [400, 400, 400, 400]
    assert all(r.json()["error"]["param"] == "url" for r in refused)
    assert receiver.received == []  # saved while allowed, refused at connection time
    assert delivery.status == "failed" and delivery.error.startswith("refused")
