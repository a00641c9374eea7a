"""A cascade's pre-call gate (issue 17): the organization's trained router predicts the cheap
model's score on the prompt, and a prompt it scores low skips straight to the strong model."""

from __future__ import annotations

import openai
import pytest

from billing.models import UsageStep
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, train_router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def ask(world: World, prompt: str) -> openai.types.chat.ChatCompletion:
    client = world.openai_client()
    return client.chat.completions.create(
        model="pipeline/predicted", messages=[{"role": "user", "content": prompt}]
    )


def test_pre_call_gate_skips_the_cheap_model_on_prompts_its_router_scores_low(
    world: World,
) -> None:
    manage, _ = train_router(world)
    pre_gate = {"type": "router_score", "router": "support", "min_score": 0.5}
    created = manage.post("/api/v1/pipelines", {"slug": "predicted", "kind": "cascade", "steps": [
        {"model": CHEAP, "pre_gate": pre_gate}, {"model": DEAR}]}, format="json")  # fmt: skip
    assert created.status_code == 201, created.json()

    prose = ask(world, PROSE_PROMPT)
    math = ask(world, MATH_PROMPT)

    skipped, served = prose.model_extra["pipeline"]["steps"]
    assert (skipped["model"], skipped["status"], skipped["gate"]) == (
        CHEAP,
        "skipped",
        "predicted_fail",
    )
    assert skipped["predicted_score"] < 0.5 and skipped["cost"] == 0
    assert prose.model == served["model"] == DEAR
    assert math.model == CHEAP
    assert [s["status"] for s in math.model_extra["pipeline"]["steps"]] == ["succeeded"]
    # Only the calls made reached the upstream: one per request.
    assert [r["body"]["model"] for r in world.upstream_requests()] == [
        "claude-sonnet-4-5",
        "gpt-4o-mini",
    ]
    world.usage_record(prose.id)
    children = UsageStep.objects.filter(generation_id=prose.id).order_by("step")
    assert [(c.status, c.gate) for c in children] == [
        ("skipped", "predicted_fail"),
        ("succeeded", "none"),
    ]
