"""`select` with the sentence-embedding featurizer on, and versions trained before it was turned on
serving exactly as they did (``ROUTER_EMBEDDINGS``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, train_router
from tests.serving.test_select_warm import train_second_version
from training.models import RouterVersion
from training.predictor import predictor_cache_clear, predictor_for_version

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def select(world: World, prompt: str, version: int | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{world.gateway_url}/api/v1/routers/support/select",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"prompt": prompt, "tradeoff": 0},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    answer = dict(response.json())
    assert version is None or answer["version"] == version
    return answer


def _scores(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(r["model"], r["score"]) for r in answer["ranked"]]


def test_select_serves_a_router_trained_with_embeddings(world: World, settings: Any) -> None:
    settings.ROUTER_EMBEDDINGS = "wordllama"

    train_router(world)

    assert select(world, MATH_PROMPT, version=1)["chosen"] == CHEAP
    assert select(world, PROSE_PROMPT, version=1)["chosen"] == DEAR
    version = RouterVersion.objects.get(router__slug="support", number=1)
    assert version.report["embeddings"] == "wordllama"
    assert predictor_for_version(version).router.featurizer.encoder is not None


def test_turning_embeddings_on_leaves_trained_versions_serving_unchanged(
    world: World, settings: Any
) -> None:
    settings.ROUTER_EMBEDDINGS = "off"
    manage, _ = train_router(world)
    before = [select(world, p, version=1) for p in (MATH_PROMPT, PROSE_PROMPT)]

    settings.ROUTER_EMBEDDINGS = "wordllama"
    predictor_cache_clear()  # as a restarted process with the new setting
    after = [select(world, p, version=1) for p in (MATH_PROMPT, PROSE_PROMPT)]
    train_second_version(manage)  # trained with the setting on, not activated

    assert [_scores(a) for a in after] == [_scores(b) for b in before]
    first, second = RouterVersion.objects.filter(router__slug="support").order_by("number")
    assert first.report["embeddings"] == "off" and second.report["embeddings"] == "wordllama"
    assert predictor_for_version(first).router.featurizer.encoder is None
    assert predictor_for_version(second).router.featurizer.encoder is not None
