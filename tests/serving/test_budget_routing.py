"""Budget-aware routing through the real gateway and fake upstream: a key's router requests move
toward the cheaper model as its limit window fills, the limit is never passed, and the
``budget.threshold`` event is emitted once in the window."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from django.db.models import Sum

from accounts.keys import key_cache_clear
from accounts.models import ApiKey
from billing import window_spend
from billing.models import KeySpendWindow, UsageRecord
from routing.budget import budget_tradeoff
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, PROSE_PROMPT, train_router
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

LIMIT = Decimal("0.006")


def routed(client: openai.OpenAI, router: str = "router/support") -> dict[str, Any] | None:
    """One quality-leaning prose request: its ``routing``, or None once the key is refused."""
    try:
        completion = client.chat.completions.create(
            model=router,
            messages=[{"role": "user", "content": PROSE_PROMPT}],
            max_tokens=50,
            extra_body={"router": {"tradeoff": "quality"}},
        )
    except openai.PermissionDeniedError as refused:
        assert "limit" in str(refused)
        return None
    routing: dict[str, Any] = completion.model_extra["routing"]
    routing["generation_id"] = completion.id
    return routing


def until_refused(
    world: World, key: str, most: int, router: str = "router/support"
) -> list[dict[str, Any]]:
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=key, max_retries=0)
    decisions = []
    for _ in range(most):
        routing = routed(client, router)
        if routing is None:
            return decisions
        world.usage_record(routing["generation_id"])  # settled: the next hold sees its spend
        decisions.append(routing)
    pytest.fail(f"{most} requests and the key was never refused at its limit")


def test_a_budget_aware_key_moves_to_the_cheap_model_near_its_cap_and_never_passes_it(
    world: World,
) -> None:
    train_router(world)
    webhook_endpoint_create(
        created_by=None,  # nothing listens there: the delivery is queued, then retried
        organization=world.organization,
        url="http://127.0.0.1:9/hook",
        events=["budget.threshold"],
    )
    window_spend.window_spend_clear()
    key = world.key_for(limit=LIMIT, limit_reset="daily", budget_aware=True)

    decisions = until_refused(world, key, most=150)

    chosen = [d["chosen"] for d in decisions]
    budgets = [d["budget"] for d in decisions]
    assert chosen[0] == DEAR and budgets[0]["effective_tradeoff"] == 0
    assert chosen[-1] == CHEAP and budgets[-1]["effective_tradeoff"] > 0.5
    third = len(chosen) // 3
    assert chosen[:third].count(CHEAP) < chosen[-third:].count(CHEAP)
    for budget in budgets:
        assert budget["window"] == "daily" and Decimal(budget["limit"]) == LIMIT
        assert budget["requested_tradeoff"] == 0
        assert budget["effective_tradeoff"] == round(budget_tradeoff(0, budget["share"]), 4)
    assert budgets[-1]["share"] > budgets[0]["share"]
    # The cap holds: what the key was charged never passes its limit.
    key_id = ApiKey.objects.get(limit=LIMIT).pk
    spent = UsageRecord.objects.filter(key_id=key_id).aggregate(s=Sum("cost"))["s"]
    assert 0 < spent <= LIMIT
    assert KeySpendWindow.objects.get(key_id=key_id).spent == spent
    # budget.threshold: once in the window, at 80% of the limit (spent plus held).
    [delivery] = WebhookDelivery.objects.filter(event_type="budget.threshold")
    event = delivery.payload["data"]
    assert event["key_id"] == key_id and event["window"] == "daily"
    assert Decimal(event["spent"]) >= LIMIT * Decimal("0.8")


def test_a_key_that_did_not_opt_in_keeps_its_tradeoff_until_refused(world: World) -> None:
    window_spend.window_spend_clear()
    key = world.key_for(limit=Decimal("0.002"), limit_reset="daily")

    decisions = until_refused(world, key, most=60, router="router/auto")  # the heuristic

    assert len(decisions) > 1 and len({d["chosen"] for d in decisions}) == 1
    assert all("budget" not in d for d in decisions)


def test_the_organization_setting_makes_every_key_budget_aware(world: World) -> None:
    key = world.key_for(limit=Decimal("1"), limit_reset="monthly")
    world.organization.budget_aware_routing = True
    world.organization.save(update_fields=["budget_aware_routing"])
    key_cache_clear()
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=key, max_retries=0)

    routing = routed(client, "router/auto")

    assert routing is not None and routing["budget"]["window"] == "monthly"
    assert routing["budget"]["effective_tradeoff"] == 0  # an empty window changes nothing


@pytest.mark.parametrize(
    ("share", "effective"),
    [(0.0, 0.0), (0.5, 0.0), (0.6, 0.104), (0.7, 0.352), (0.8, 0.648), (0.9, 0.896), (1, 1)],
)
def test_the_documented_curve(share: float, effective: float) -> None:
    assert budget_tradeoff(0.0, share, start=0.5) == pytest.approx(effective)
    assert budget_tradeoff(0.5, share, start=0.5) == pytest.approx(0.5 + 0.5 * effective)
