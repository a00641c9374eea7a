"""RouteLLM migration: a router trained on battles serves ``router-<slug>-<threshold>`` and splits
traffic between its strong and weak models as ``/calibrate`` says it will."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope
from routing.routellm import routellm_model_parse
from tests.factories import key_client, key_make
from tests.migration.arena import arena_battles
from tests.routing.world import World
from tests.training.conftest import csv_bytes
from tests.training.helpers import upload

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

WEAK, STRONG = "test/gpt", "test/claude"  # $1/$2 and $3/$15 per 1M tokens in the test catalog


def train_on_battles(world: World, slug: str = "arena") -> tuple[APIClient, list[str]]:
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    frame = arena_battles(STRONG, WEAK, rows=400)
    dataset = upload(manage, csv_bytes(frame), filename="battles.csv").json()
    assert manage.get(f"/api/v1/datasets/{dataset['id']}").json()["status"] == "ready"
    created = manage.post(
        "/api/v1/routers",
        {"slug": slug, "name": "Arena", "candidates": [WEAK, STRONG]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    run = manage.post(f"/api/v1/routers/{slug}/train", {"dataset": dataset["id"]}, format="json")
    finished = manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()
    assert finished["status"] == "succeeded", finished
    return manage, list(dict.fromkeys(frame["prompt"]))


def served(world: World, model: str, prompt: str, key: str | None = None) -> Any:
    client = openai.OpenAI(
        base_url=f"{world.gateway_url}/v1", api_key=key or world.key, max_retries=0
    )
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=8
    )


def test_router_threshold_calls_split_traffic_as_calibrated(world: World) -> None:
    manage, prompts = train_on_battles(world)  # once: each share calibrates the same version

    for share in (0.3, 0.7):
        calibration = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": share},
                                  format="json")  # fmt: skip
        assert calibration.status_code == 200, calibration.json()
        answer = calibration.json()
        assert (answer["strong_model"], answer["weak_model"]) == (STRONG, WEAK)
        assert answer["model"] == f"router-arena-{answer['threshold']}"
        completions = [served(world, answer["model"], prompt) for prompt in prompts]

        strong_share = sum(c.model == STRONG for c in completions) / len(completions)
        assert abs(strong_share - share) <= 0.03, (share, strong_share, answer)
        routing = completions[0].model_extra["routing"]
        assert routing["router"] == answer["model"] and routing["strategy"] == "routellm"
        assert {r["model"] for r in routing["ranked"]} == {STRONG, WEAK}
        record = world.usage_record(completions[0].id)
        assert record.router == answer["model"] and record.router_version == 1


def test_threshold_zero_always_calls_strong_and_one_mostly_weak(world: World) -> None:
    manage, prompts = train_on_battles(world)
    bad_share = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": 2}, format="json")
    assert bad_share.status_code == 400

    assert served(world, "router-arena-0", prompts[0]).model == STRONG
    assert served(world, "router-arena-1.0", prompts[0]).model == WEAK
    # The name becomes the usage record's router (80 characters): a longer one was served, then
    # refused by the database at settlement, its usage never recorded (the sweep took its hold).
    with pytest.raises(openai.BadRequestError, match="at most 80 characters"):
        served(world, "router-arena-0." + "0" * 80 + "5", prompts[0])
    # A key allowed the router may call it by its RouteLLM name; one allowed another may not.
    allowed = world.key_for(allowed_models=["router/arena"])
    elsewhere = world.key_for(allowed_models=["router/other"])

    assert served(world, "router-arena-0", prompts[0], key=allowed).model == STRONG
    with pytest.raises(openai.PermissionDeniedError):
        served(world, "router-arena-0", prompts[0], key=elsewhere)


def test_bad_thresholds_and_untrained_routers_are_clear_errors(world: World) -> None:
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    manage.post("/api/v1/routers", {"slug": "fresh", "name": "Fresh", "candidates": [WEAK, STRONG]},
                format="json")  # fmt: skip

    with pytest.raises(openai.BadRequestError) as above_one:
        served(world, "router-fresh-1.5", "hello")
    with pytest.raises(openai.NotFoundError) as untrained:
        served(world, "router-fresh-0.5", "hello")
    calibrate = manage.post("/api/v1/routers/fresh/calibrate", {"strong_share": 0.5},
                            format="json")  # fmt: skip

    assert "must be from 0 to 1" in str(above_one.value)
    assert "No trained router 'fresh'" in str(untrained.value)
    assert (
        calibrate.status_code == 404
        and "no trained version" in calibrate.json()["error"]["message"]
    )


def test_a_percentage_model_name_sends_that_share_to_the_strong_model(world: World) -> None:
    manage, prompts = train_on_battles(world)

    pct = manage.post("/api/v1/routers/arena/calibrate", {"strong_model_pct": 0.3},
                      format="json").json()  # fmt: skip
    both = manage.post("/api/v1/routers/arena/calibrate",
                       {"strong_share": 0.3, "strong_model_pct": 0.3}, format="json")  # fmt: skip
    digits = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": 0.123456789},
                         format="json").json()  # fmt: skip
    tiny = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": 1e-7},
                       format="json").json()  # fmt: skip
    completions = [served(world, "router-arena-30%", prompt) for prompt in prompts]
    by_threshold = [served(world, pct["model"], prompt).model for prompt in prompts]
    with pytest.raises(openai.BadRequestError, match="from 0 to 100"):
        served(world, "router-arena-130%", prompts[0])

    # RouteLLM's --strong-model-pct was a 400 (strong_share required) and router-arena-30% a
    # 400 (a threshold above 1).
    assert pct["share_model"] == "router-arena-30%" and pct["strong_share"] == 0.3
    assert both.status_code == 400
    # Every digit of the share (was rounded to 6 significant digits: router-arena-12.3457%).
    assert digits["share_model"] == "router-arena-12.3456789%"
    assert routellm_model_parse(digits["share_model"]).strong_share == 0.123456789
    assert tiny["share_model"] == "router-arena-0.00001%"
    assert routellm_model_parse(tiny["share_model"]).strong_share == 1e-7
    assert [c.model for c in completions] == by_threshold
    strong_share = sum(c.model == STRONG for c in completions) / len(completions)
    assert abs(strong_share - 0.3) <= 0.03
    assert completions[0].model_extra["routing"]["router"] == "router-arena-30%"
    assert world.usage_record(completions[0].id).router == "router-arena-30%"


def _cold_process() -> None:
    """This process as one that never calibrated: no rates or routers in memory."""
    from routing.routers import router_cache_clear
    from training import routellm_rates

    routellm_rates._calibrations.clear()
    router_cache_clear()


def test_a_percentage_name_serves_in_a_process_that_never_calibrated(world: World) -> None:
    from training.models import RouteLLMCalibration, RouterVersion

    manage, prompts = train_on_battles(world)
    RouteLLMCalibration.objects.all().delete()  # nor stored: the first call computes them
    _cold_process()

    cold = [served(world, "router-arena-30%", prompt).model for prompt in prompts[:40]]
    stored = RouteLLMCalibration.objects.get()
    threshold = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": 0.3},
                            format="json").json()["model"]  # fmt: skip
    by_threshold = [served(world, threshold, prompt).model for prompt in prompts[:40]]

    # Was a 400 "needs a router version with at least 2 candidates": the routing cache's copy
    # of the version (no report) was calibrated.
    assert cold == by_threshold and STRONG in cold and WEAK in cold
    assert stored.version_id == RouterVersion.objects.get().pk
    assert RouteLLMCalibration.objects.count() == 1  # calibrate read the stored rates


def test_percentage_names_outlive_the_dataset_and_follow_a_retrain(world: World) -> None:
    from training.models import RouteLLMCalibration, RouterVersion

    manage, prompts = train_on_battles(world)
    dataset_id = RouterVersion.objects.get().dataset_id
    manage.patch("/api/v1/routers/arena", {"auto_activate": True}, format="json")
    rerun = manage.post("/api/v1/routers/arena/train", {"dataset": dataset_id}, format="json")
    retrained = manage.get(f"/api/v1/training-runs/{rerun.json()['id']}").json()
    stored_at_training = sorted(
        RouteLLMCalibration.objects.values_list("version__number", flat=True)
    )
    _cold_process()
    after_retrain = served(world, "router-arena-30%", prompts[0])
    deleted = manage.delete(f"/api/v1/datasets/{dataset_id}")
    _cold_process()
    without_dataset = [served(world, "router-arena-30%", prompt) for prompt in prompts[:40]]
    calibration = manage.post("/api/v1/routers/arena/calibrate", {"strong_share": 0.3},
                              format="json")  # fmt: skip

    # Both versions' rates were stored when they were trained; a percentage name on the new
    # version and, once its dataset is deleted, on any version, needed a calibrate (then a 400).
    assert retrained["status"] == "succeeded", retrained
    assert stored_at_training == [1, 2]
    assert world.usage_record(after_retrain.id).router_version == 2
    assert deleted.status_code == 204, deleted.content
    assert {c.model for c in without_dataset} == {STRONG, WEAK}
    assert calibration.status_code == 200, calibration.json()
    assert calibration.json()["version"] == 2


@pytest.mark.parametrize("path", ["/v1", "/api/v1"])
def test_a_routellm_name_keeps_its_models_as_fallbacks_after_its_pair(
    world: World, path: str
) -> None:
    _, prompts = train_on_battles(world)
    client = openai.OpenAI(base_url=f"{world.gateway_url}{path}", api_key=world.key, max_retries=0)

    completion = client.chat.completions.create(
        model="router-arena-0.0",
        messages=[{"role": "user", "content": prompts[0]}],
        max_tokens=8,
        extra_body={"models": ["nobody/unknown-model", WEAK]},
    )

    # Was served by test/gpt unrouted: the RouteLLM name counted as unknown and was dropped.
    routing = completion.model_extra["routing"]
    assert completion.model == STRONG  # threshold 0: the strong model first
    assert routing["router"] == "router-arena-0.0" and routing["strategy"] == "routellm"
    assert world.usage_record(completion.id).router == "router-arena-0.0"
