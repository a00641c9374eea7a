"""Inference through the client's configured ``openai`` SDK, then what the management API
says about it: the generation, feedback, usage (also as DataFrames) and retraining."""

from __future__ import annotations

import openai
import pytest
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


def test_the_clients_openai_sdk_meets_the_platform_keys_price_and_retention_rules(
    inference: RouterHub, world: World
) -> None:
    """``store``/``metadata`` never reach the platform's account; a tier it does not price is a
    400 the SDK raises (README, "Parameters that change the price or what the provider keeps").
    On the old code both were sent."""
    chat = inference.openai.chat.completions
    chat.create(model="test/gpt", messages=[{"role": "user", "content": "Say hi."}], store=True,
                metadata={"ticket": "T-1"}, service_tier="auto")  # fmt: skip
    sent = world.last_upstream("/chat/completions")["body"]
    assert "store" not in sent and "metadata" not in sent and sent["service_tier"] == "auto"

    with pytest.raises(openai.BadRequestError) as caught:
        chat.create(model="test/gpt", messages=[{"role": "user", "content": "Say hi."}],
                    service_tier="priority")  # fmt: skip
    assert caught.value.response.json()["error"]["param"] == "service_tier"
    assert len(world.upstream_requests("/chat/completions")) == 1


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


def test_usage_pages_followed_by_the_client_end_where_the_first_was_asked(world: World) -> None:
    from datetime import timedelta
    from decimal import Decimal

    import httpx
    from django.utils import timezone

    from accounts.models import KeyScope
    from billing.models import UsageRollupAllKeys
    from tests.factories import usage_served as _served

    yesterday = timezone.now().date() - timedelta(days=1)
    UsageRollupAllKeys.objects.bulk_create(  # what group_by=model reads
        UsageRollupAllKeys(organization=world.organization, day=yesterday, model=f"m/{i:04d}",
                           status="succeeded", requests=1, cost=Decimal("0.01"))
        for i in range(1001)
    )  # fmt: skip
    pages: list[str] = []

    def between_pages(response: httpx.Response) -> None:
        pages.append(str(response.request.url))
        if len(pages) == 1:  # a model first used while the client pages, sorting first
            _served(world.organization, None, "a-new/model", "0.001")

    http = httpx.Client(timeout=30, event_hooks={"response": [between_pages]})
    with RouterHub(base_url=world.gateway_url, api_key=world.key_for(scope=KeyScope.MANAGE),
                   max_retries=0, http_client=http) as manage:  # fmt: skip
        groups = [row["group"] for row in manage.usage.get(group_by="model")["results"]]

    # Each page was computed again: the new group pushed m/0999 onto the second page too.
    assert groups == [f"m/{i:04d}" for i in range(1001)]
    assert len(pages) == 2 and "end=" in pages[1]
