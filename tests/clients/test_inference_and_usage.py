"""Inference through the client's configured ``openai`` SDK, then what the management API
says about it: the generation, feedback, usage (also as DataFrames) and retraining."""

from __future__ import annotations

from routerhub_client import RouterHub

from accounts.keys import key_cache_clear
from tests.clients.conftest import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, support_frame
from tests.routing.world import World


def _trained(manage: RouterHub) -> None:
    manage.routers.create("support", candidates=[CHEAP, DEAR])
    dataset = manage.datasets.upload(support_frame(), name="support")
    manage.routers.train_and_wait("support", dataset["id"], interval=0.05)


def test_openai_sdk_is_configured_for_the_gateway(inference: RouterHub, world: World) -> None:
    completion = inference.openai.chat.completions.create(
        model="test/gpt", messages=[{"role": "user", "content": "Say hi."}]
    )

    assert completion.id.startswith("gen-") and completion.model == "test/gpt"
    assert str(inference.openai.base_url) == f"{world.gateway_url}/v1/"
    sent = world.last_upstream("/chat/completions")
    assert sent["body"]["model"] == "gpt-4o-mini"


def test_generation_feedback_usage_and_retrain(
    manage: RouterHub, inference: RouterHub, world: World
) -> None:
    _trained(manage)
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    key_cache_clear()
    served = [
        inference.openai.chat.completions.create(
            model="router/support",
            messages=[{"role": "user", "content": prompt}],
            extra_body={"router": {"tradeoff": 0}},
        )
        for prompt in (MATH_PROMPT, PROSE_PROMPT, MATH_PROMPT + " Twice.")
    ]
    for completion in served:
        world.usage_record(completion.id)  # settled

    generation = inference.generations.get(served[1].id)
    feedback = [inference.feedback.create(c.id, 0, comment="wrong") for c in served]
    by_model = manage.usage.get(group_by="model")
    frame = manage.usage.dataframe(group_by="model")
    export = manage.usage.export_dataframe()
    retrain = manage.routers.retrain_from_feedback("support")
    retrained = manage.training_runs.wait(retrain["id"], interval=0.05)

    assert (generation["model"], generation["router"]) == (DEAR, "router/support")
    assert feedback[0] == {"generation_id": served[0].id, "score": 0.0, "comment": "wrong"}
    assert {g["group"] for g in by_model["results"]} == {CHEAP, DEAR}
    assert frame["requests"].sum() == 3 and frame["cost"].dtype.kind == "f"
    assert frame["cost"].sum() > 0
    assert len(export) == 3 and "gen-" in manage.usage.export_csv()
    assert retrain["feedback_rows"] == 3 and retrained["version"] == 2
