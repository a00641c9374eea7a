"""router/auto: a documented heuristic until an operator trains it, then the trained router."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from django.core.management import CommandError, call_command

from tests.routing.world import World, base_catalog, endpoint, model, provider
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT
from tests.training.conftest import csv_bytes, synthetic_frame

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def auto(world: World, prompt: str, tradeoff: float) -> openai.types.chat.ChatCompletion:
    client = world.openai_client()
    return client.chat.completions.create(
        model="router/auto",
        messages=[{"role": "user", "content": prompt}],
        extra_body={"router": {"tradeoff": tradeoff}},
    )


def test_untrained_platform_router_ranks_by_price_among_capable_models(world: World) -> None:
    cheapest = auto(world, PROSE_PROMPT, tradeoff=1)
    dearest = auto(world, PROSE_PROMPT, tradeoff=0)

    routing = cheapest.model_extra["routing"]
    assert routing["strategy"] == "heuristic" and routing["version"] is None
    costs = [r["expected_cost"] for r in routing["ranked"]]
    assert costs == sorted(costs)
    assert cheapest.model == routing["ranked"][0]["model"]
    assert dearest.model_extra["routing"]["ranked"][0]["model"] == routing["ranked"][-1]["model"]


def test_operator_trains_router_auto_for_every_organization(
    world: World, tmp_path: Path, capsys
) -> None:
    frame = synthetic_frame(rows=180).rename(
        columns=lambda c: c.replace("math-model", CHEAP).replace("prose-model", DEAR)
    )
    path = tmp_path / "platform.csv"
    path.write_bytes(csv_bytes(frame))

    call_command("train_platform_router", dataset=path)

    assert "router/auto is now version 1" in capsys.readouterr().out
    math = auto(world, MATH_PROMPT, tradeoff=0)
    prose = auto(world, PROSE_PROMPT, tradeoff=0)
    assert math.model_extra["routing"]["strategy"] == "trained"
    assert (math.model, prose.model) == (CHEAP, DEAR)


def test_train_platform_router_explains_a_bad_dataset(world: World, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\nhi,there\n")

    with pytest.raises(CommandError, match=r"bad\.csv is invalid"):
        call_command("train_platform_router", dataset=path)


def test_router_auto_ranks_only_models_it_can_call_and_chosen_is_the_served_model(
    world: World,
) -> None:
    # The cheapest model of the catalog, on a provider whose platform key is not configured.
    data = base_catalog(world.fake_url)
    data["providers"].append(provider("keyless", "openai", world.fake_url, "KEYLESS_API_KEY"))
    data["models"].append(model("test/keyless"))
    data["endpoints"].append(endpoint("test/keyless", "keyless", "gpt-4o-mini", "0.01", "0.01"))
    world.catalog(data)

    reply = auto(world, PROSE_PROMPT, tradeoff=1)

    routing = reply.model_extra["routing"]
    ranked = [r["model"] for r in routing["ranked"]]
    assert "test/keyless" not in ranked
    assert routing["chosen"] == reply.model == ranked[0]
    assert set(ranked) == {"test/gpt", "test/claude", "test/gemini", "test/gemini-pro"}
