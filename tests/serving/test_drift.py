"""Drift alerts on PostgreSQL and Redis: prompts routed by a trained router are sampled, their
features compared with the training prompts', and a shifted stream alerts once per episode
(webhook and email) while the unshifted stream never does."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from accounts.models import KeyScope, Role
from routerhub.redis_clients import redis_client
from routing.routers import router_decide, router_row
from tests.conftest import require_postgres, require_redis
from tests.factories import key_client, key_make, member_add, organization_make
from tests.training.conftest import csv_bytes, synthetic_frame
from training import drift_samples
from training.drift import drift_check_router
from training.models import Router, RouterDriftCheck
from training.serving import dataset_from_file, router_train_now
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

SHIFTED = [
    "SELECT name, total FROM orders_{i} JOIN customers USING (customer_id) WHERE total > {n} "
    "ORDER BY total DESC LIMIT 20; explain the query plan and suggest an index.",
    "Traceback (most recent call last): File 'worker_{i}.py', line {n}, in <module> KeyError: "
    "'customer_id' -- why does my Celery task fail and how do I fix it?",
    "Translate into German: the shipment #{i} of {n} pallets arrives on Tuesday at the north "
    "dock; please confirm the customs paperwork.",
]


def shifted_prompts(count: int) -> list[str]:
    return [SHIFTED[i % len(SHIFTED)].format(i=i, n=i * 37 % 1000) for i in range(count)]


def unshifted_prompts(count: int, seed: int) -> list[str]:
    return list(synthetic_frame(rows=count, seed=seed)["prompt"])


@pytest.fixture
def drifting(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every routed prompt sampled, flushed by the test itself (no background thread)."""
    require_postgres()
    require_redis()
    settings.DRIFT_SAMPLE_RATE = 1.0
    settings.DRIFT_MIN_SAMPLES = 150
    settings.DRIFT_THRESHOLD = 0.25
    monkeypatch.setattr(drift_samples, "_flusher_start", lambda: None)
    drift_samples._State.pending.clear()
    organization = organization_make(name="Drift Co")
    dataset = dataset_from_file(
        organization=organization,
        name="support.csv",
        content=csv_bytes(synthetic_frame(rows=180)),
        columns=None,
        maximize=True,
    )
    version = router_train_now(
        organization=organization, slug="support", name="Support", dataset=dataset, options={}
    )
    client = redis_client(django_settings.REDIS_URL)
    client.delete(drift_samples.drift_samples_key(version.pk))
    client.close()
    return organization


def route(organization: Any, prompts: list[str]) -> RouterDriftCheck | None:
    """Route ``prompts`` as the gateway does, store their samples, run one check."""
    row = router_row(organization.pk, "support")
    for prompt in prompts:
        router_decide(
            organization_id=organization.pk,
            model_id="router/support",
            prompt=prompt,
            tradeoff=None,
            candidates=None,
            catalog=None,
            row=row,
        )
    drift_samples.drift_samples_flush()
    return drift_check_router(Router.objects.select_related("active_version").get())


def test_a_shifted_stream_alerts_once_per_episode_and_the_unshifted_never(
    drifting: Any, mailoutbox: list[Any]
) -> None:
    organization = drifting
    admin = member_add(organization, Role.ADMIN)
    webhook_endpoint_create(
        created_by=None,
        organization=organization,
        url="https://hooks.example.com/x",
        events=["router.drift"],
    )

    too_few = route(organization, unshifted_prompts(100, seed=3))
    steady = [route(organization, unshifted_prompts(200, seed=seed)) for seed in (4, 5)]
    after_steady = (len(mailoutbox), WebhookDelivery.objects.count())
    shifted = route(organization, shifted_prompts(200))
    still_shifted = route(organization, shifted_prompts(200)[::-1])
    back = route(organization, unshifted_prompts(200, seed=6))

    assert too_few is None  # 100 samples wait for the next check
    assert all(c is not None and c.score < 0.25 and not c.alerted for c in steady)
    assert after_steady == (0, 0)
    assert shifted is not None and shifted.score > 0.25 and shifted.alerted
    assert still_shifted is not None and still_shifted.above_threshold
    assert not still_shifted.alerted
    assert back is not None and not back.above_threshold
    owner = organization.memberships.get(role=Role.OWNER).user
    assert sorted(m.to[0] for m in mailoutbox) == sorted([owner.email, admin.email])
    assert "drifted" in mailoutbox[0].subject
    assert "/dashboard/routers/support/" in mailoutbox[0].body
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.event_type == "router.drift"
    assert delivery.payload["data"]["score"] == shifted.score
    assert delivery.payload["data"]["router"] == "support"


def test_the_router_page_and_api_show_drift_with_a_retrain_suggestion(drifting: Any) -> None:
    organization = drifting
    route(organization, unshifted_prompts(200, seed=4))
    route(organization, shifted_prompts(200))
    admin = member_add(organization, Role.ADMIN)
    page_client = Client()
    page_client.force_login(admin)
    api = key_client(key_make(organization, scope=KeyScope.MANAGE))

    page = page_client.get("/dashboard/routers/support/").content.decode()
    checks = api.get("/api/v1/routers/support/drift").json()["results"]

    assert "drift-chart" in page and "Retrain with recent feedback" in page
    assert [(c["above_threshold"], c["alerted"]) for c in checks] == [(True, True), (False, False)]
    assert checks[0]["samples"] == 200 and checks[0]["version"] == 1
