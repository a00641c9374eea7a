"""Router lifecycle end to end (gateway, fake upstream, PostgreSQL): a shadow version decides
beside the active one without changing what is served; the promotion rule promotes a better
shadow on simulated feedback and not a worse one; rollback and every change are audited; an A/B
split serves both versions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Role
from billing.models import UsageDecision
from routing import router_policy
from routing.feedback import feedback_record
from routing.routers import router_cache_clear
from routing.tasks import routers_promote_if_better
from tests.factories import member_add
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, chat, train_router
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload
from training.models import Router, RouterEvent
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.usefixtures("eager_celery", "media", "fast_router_reload")

# What a served answer scores (the simulated feedback): the synthetic data's success rates.
TRUTH = {("math", CHEAP): 0.95, ("math", DEAR): 0.55, ("prose", CHEAP): 0.35, ("prose", DEAR): 0.95}
WORDS = ["river", "forest", "lantern", "harbour", "meadow", "violin", "garden", "comet"]


def prompts(count: int) -> list[tuple[str, str]]:
    """(kind, prompt): a third arithmetic, the rest writing, as in the training data."""
    out = []
    for i in range(count):
        if i % 3 == 0:
            out.append(("math", f"Compute {11 + i} + {7 + i % 5} * {2 + i % 7}."))
        else:
            word = WORDS[i % len(WORDS)]
            out.append(("prose", f"Write a short poem about the {word} at dawn. (#{2000 + i})"))
    return out


def train_small_version(manage: APIClient, *, swapped: bool = False) -> None:
    """Version 2, trained on 30 rows: too few to learn the prompts as well as version 1. Or
    (``swapped``) on data where each model is right where the other one was."""
    first, second = (DEAR, CHEAP) if swapped else (CHEAP, DEAR)
    frame = synthetic_frame(rows=120 if swapped else 30, seed=3).rename(
        columns=lambda c: c.replace("math-model", first).replace("prose-model", second)
    )
    dataset = upload(manage, csv_bytes(frame), filename="small.csv").json()
    run = manage.post("/api/v1/routers/support/train", {"dataset": dataset["id"]}, format="json")
    assert manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()["status"] == "succeeded"


def lifecycle(manage: APIClient, **changes: Any) -> dict[str, Any]:
    response = manage.patch("/api/v1/routers/support/lifecycle", changes, format="json")
    assert response.status_code == 200, response.json()
    router_cache_clear()  # the gateway would see it within ROUTER_CACHE_TTL; tests need it now
    return dict(response.json())


def experiment_start(world: World, **changes: Any) -> APIClient:
    """Version 1 serving, version 2 (30 rows) trained, and the experiment ``changes`` start."""
    manage, _ = train_router(world)
    train_small_version(manage)
    lifecycle(manage, **changes)
    return manage


def dashboard_admin(world: World) -> tuple[Client, str]:
    client, admin = Client(), member_add(world.organization, Role.ADMIN)
    client.force_login(admin)
    return client, admin.email


def serve_with_feedback(world: World, count: int) -> list[Any]:
    """``count`` routed requests, each answered with the feedback its served model earns."""
    completions = []
    for kind, prompt in prompts(count):
        completion = chat(world, prompt, extra_body={"router": {"tradeoff": 0}})
        world.usage_record(completion.id)
        feedback_record(
            organization_id=world.organization.pk,
            generation_id=completion.id,
            score=TRUTH[(kind, completion.model)],
            key_id=None,
        )
        completions.append(completion)
    return completions


def test_a_shadow_decides_beside_the_active_version_without_changing_what_is_served(
    world: World,
) -> None:
    manage, _ = train_router(world)
    train_small_version(manage, swapped=True)  # decides the opposite of version 1
    asked = prompts(6)
    before = [chat(world, p, extra_body={"router": {"tradeoff": 0}}) for _, p in asked]

    lifecycle(manage, shadow_version=2, shadow_share=1.0)
    after = [chat(world, p, extra_body={"router": {"tradeoff": 0}}) for _, p in asked]

    assert [c.model for c in after] == [c.model for c in before]
    assert [c.model_extra["routing"] for c in after] == [
        c.model_extra["routing"] | {"latency_ms": a.model_extra["routing"]["latency_ms"]}
        for c, a in zip(before, after, strict=True)
    ]
    for completion in after:
        world.usage_record(completion.id)
    logs = {d.generation_id: d for d in UsageDecision.objects.all()}
    assert set(logs) == {c.id for c in after}  # nothing logged without a policy
    math = logs[after[0].id]
    assert (math.served_version, math.served_model, math.propensity) == (1, CHEAP, 1.0)
    assert (math.shadow_version, math.shadow_model) == (2, DEAR)  # decided, never served
    prose = logs[after[1].id]
    assert (prose.served_model, prose.shadow_model) == (DEAR, CHEAP)
    assert set(orjson.loads(math.predicted)) == {CHEAP, DEAR}


def test_an_experiment_reports_before_its_first_decision_with_null_estimates(
    world: World,
) -> None:
    manage = experiment_start(world, shadow_version=2, shadow_share=0.2)

    response = manage.get("/api/v1/routers/support/experiment")

    assert response.status_code == 200  # was a 500: NaN and Infinity are not JSON
    report = response.json()
    assert (report["experiment"], report["decisions_logged"]) == ("shadow", 0)
    nothing = {"estimate": None, "low": None, "high": None, "n": 0}
    assert report["difference"]["score"] == nothing
    assert report["versions"][0]["cost"] == nothing
    assert report["verdict"] == {"better": False, "reason": "0 of 500 decisions"}


def test_a_better_shadow_is_promoted_a_worse_one_is_not_and_rollback_is_audited(
    world: World,
) -> None:
    router_policy.policy_rng.seed(19)
    manage, _ = train_router(world)  # version 1: 180 rows, tells arithmetic from writing
    train_small_version(manage)  # version 2: 30 rows
    rule = {"promotion": "if_better", "promotion_min_decisions": 50, "exploration_rate": 0.5}
    lifecycle(manage, shadow_version=2, shadow_share=1.0, **rule)
    serve_with_feedback(world, 60)

    assert routers_promote_if_better() == []
    worse = manage.get("/api/v1/routers/support/experiment").json()
    assert worse["experiment"] == "shadow" and worse["decisions_with_feedback"] == 60
    assert worse["difference"]["score"]["high"] < 0, worse  # the small version is worse
    assert worse["verdict"]["better"] is False
    assert Router.objects.get(slug="support").active_version.number == 1

    manage.post("/api/v1/routers/support/versions/2/activate")
    router_cache_clear()
    webhook_endpoint_create(
        created_by=None,
        organization=world.organization,
        url="http://127.0.0.1:9/hook",
        events=["router.promoted"],
    )
    lifecycle(manage, shadow_version=1)
    serve_with_feedback(world, 60)
    better = manage.get("/api/v1/routers/support/experiment").json()
    [promoted] = routers_promote_if_better()

    router = Router.objects.select_related("active_version").get(pk=promoted)
    assert router.active_version.number == 1 and router.shadow_version is None
    assert better["difference"]["score"]["low"] > 0 and better["verdict"]["better"], better
    event = RouterEvent.objects.get(router=router, kind="promoted")
    assert (event.actor, event.from_version, event.to_version) == ("rule:promotion", 2, 1)
    assert event.evidence["difference"]["score"] == better["difference"]["score"]
    [hook] = WebhookDelivery.objects.filter(event_type="router.promoted")
    assert hook.payload["data"]["router"] == "support"
    assert (hook.payload["data"]["from_version"], hook.payload["data"]["to_version"]) == (2, 1)

    rolled = manage.post("/api/v1/routers/support/rollback")
    router_cache_clear()

    assert rolled.status_code == 200 and rolled.json()["active_version"] == 2
    log = manage.get("/api/v1/routers/support/events").json()["results"]
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in log[:2]] == [
        ("rolled_back", 1, 2),
        ("promoted", 2, 1),
    ]
    assert log[0]["actor"].startswith("key:")
    assert chat(world, prompts(1)[0][1]).model_extra["routing"]["version"] == 2
    client, email = dashboard_admin(world)
    clicked = client.post("/dashboard/routers/support/rollback", follow=True).content.decode()
    assert "Rolled back: version 1 serves" in clicked  # undoes the rollback above
    event = RouterEvent.objects.filter(kind="rolled_back").first()
    assert (event.from_version, event.to_version, event.actor) == (2, 1, f"user:{email}")


def test_an_ab_split_serves_both_versions_and_reports_each_on_its_own_traffic(
    world: World,
) -> None:
    manage = experiment_start(world, challenger_version=2, challenger_share=0.5)

    served = serve_with_feedback(world, 24)

    versions = [c.model_extra["routing"]["version"] for c in served]
    assert set(versions) == {1, 2}
    again = chat(world, prompts(24)[5][1], extra_body={"router": {"tradeoff": 0}})
    assert again.model_extra["routing"]["version"] == versions[5]  # the prompt keeps its arm
    world.usage_record(again.id)
    report = manage.get("/api/v1/routers/support/experiment").json()
    assert report["experiment"] == "ab" and report["method"] == "on_policy"
    counts = {v["version"]: v["decisions"] for v in report["versions"]}
    assert counts == {1: versions.count(1), 2: versions.count(2)}
    page = dashboard_admin(world)[0].get("/dashboard/routers/support/lifecycle").content.decode()
    assert "A/B split: version 2 serves 0.5 of prompts" in page and "<svg" in page
    assert "25 decision(s) logged, 24 with feedback" in page  # the repeated prompt has none
    both = manage.patch("/api/v1/routers/support/lifecycle", {"shadow_version": 2}, format="json")
    assert both.status_code == 409  # one experiment at a time


def test_the_decision_log_keeps_the_task_a_request_named(world: World) -> None:
    manage, _ = train_router(world)
    lifecycle(manage, exploration_rate=0.05)  # a policy: its decisions are logged
    math = prompts(1)[0][1]

    named = chat(world, math, extra_body={"router": {"tradeoff": 0, "task": " arithmetic "}})
    unnamed = chat(world, math, extra_body={"router": {"tradeoff": 0}})

    for completion in (named, unnamed):
        world.usage_record(completion.id)
    logs = {d.generation_id: d.task_hint for d in UsageDecision.objects.all()}
    assert logs == {named.id: "arithmetic", unnamed.id: ""}  # trimmed, as decided with
