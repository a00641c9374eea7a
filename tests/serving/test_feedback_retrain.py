"""Feedback on routed requests becomes a new dataset version and a retrained router in one click."""

from __future__ import annotations

import pytest

from accounts.keys import key_cache_clear
from accounts.models import KeyScope
from billing.models import UsageRecord
from tests.factories import key_client, key_make
from tests.routing.world import World
from tests.serving.test_router_serving import MATH_PROMPT, PROSE_PROMPT, chat, train_router
from training.models import Dataset, RouterVersion

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def test_feedback_retrains_the_router_when_prompts_are_kept(world: World) -> None:
    manage, _ = train_router(world)
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    key_cache_clear()
    served = [
        chat(world, prompt) for prompt in (MATH_PROMPT, PROSE_PROMPT, MATH_PROMPT + " Twice.")
    ]
    inference = key_client(world.key)
    for completion in served:
        world.usage_record(completion.id)
        inference.post(
            "/api/v1/feedback", {"generation_id": completion.id, "score": 0}, format="json"
        )
    assert UsageRecord.objects.get(generation_id=served[1].id).prompt.endswith(PROSE_PROMPT)

    response = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["feedback_rows"] == 3 and body["status"] == "queued"
    # Tasks are eager here: the build (then the training) ran when the request committed; on a
    # worker they run after it answered (test_feedback_worker.py).
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "ready" and dataset.rows == 180 + 3
    run = manage.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "succeeded"
    assert RouterVersion.objects.filter(router__slug="support").count() == 2


def test_retrain_from_feedback_explains_what_is_missing(world: World) -> None:
    manage, _ = train_router(world)

    without_logging = manage.post("/api/v1/routers/support/retrain-from-feedback")
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    without_feedback = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert without_logging.status_code == 400
    assert "Turn on prompt logging" in without_logging.json()["error"]["message"]
    assert without_feedback.status_code == 400
    assert "No feedback yet" in without_feedback.json()["error"]["message"]


def test_members_cannot_retrain(world: World) -> None:
    train_router(world)
    inference = key_client(key_make(world.organization, scope=KeyScope.INFERENCE))

    response = inference.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 403


def test_dashboard_button_explains_when_there_is_nothing_to_learn_from(world: World) -> None:
    from django.test import Client

    from accounts.models import Role
    from tests.factories import member_add

    train_router(world)
    admin = member_add(world.organization, Role.ADMIN)
    client = Client()
    client.force_login(admin)

    page = client.post("/dashboard/routers/support/retrain-from-feedback", follow=True)

    assert page.status_code == 200
    assert "Turn on prompt logging" in page.content.decode()
    assert "Retrain with feedback" in page.content.decode()
