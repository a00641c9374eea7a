"""The served policy's pieces: exploration draws with the propensities it logs, the A/B split
is a stable function of the prompt, and the shadow's rate cap holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from routing import router_policy
from routing.router_policy import DecisionLog, ab_share_point, decision_explore, propensity
from routing.routers import RankedChoice, RouterDecision


def decision(exploration: float) -> RouterDecision:
    log = DecisionLog(
        router_id=1, served_version=1, exploration=exploration, prompt="p", tradeoff=0.5,
        prices=None, shadow=None,
    )  # fmt: skip
    ranked = [RankedChoice(m, 0.5, 0.001) for m in ("a", "b", "c", "d")]
    return RouterDecision("router/r", 1, ranked, 0.1, "trained", router_id=1, log=log)


def test_exploration_serves_each_model_as_often_as_its_logged_propensity() -> None:
    router_policy.policy_rng.seed(1)
    served = Counter()
    logs = []
    for _ in range(20_000):
        explored = decision_explore(decision(0.4))
        served[explored.chosen] += 1
        logs.append(explored.log)

    assert logs[0] is not None
    for model in "abcd":
        expected = propensity(logs[0], model)
        assert served[model] / 20_000 == pytest.approx(expected, abs=0.015)
    assert propensity(logs[0], "a") == pytest.approx(0.7)  # 1 - 0.4 + 0.4 / 4


def test_without_exploration_the_ranking_is_served_as_it_is() -> None:
    original = decision(0.0)

    served = decision_explore(original)

    assert served.ranked == original.ranked
    assert served.log is not None and propensity(served.log, "a") == 1.0
    assert "explored" not in served.as_routing()


def test_the_ab_split_point_is_stable_and_spreads_prompts_evenly() -> None:
    points = [ab_share_point(5, f"prompt {i}") for i in range(4_000)]

    assert ab_share_point(5, "prompt 1") == points[1]
    assert ab_share_point(6, "prompt 1") != points[1]  # each router splits on its own
    assert sum(p < 0.3 for p in points) / 4_000 == pytest.approx(0.3, abs=0.03)


def test_shadow_decisions_stop_at_the_per_second_cap(settings: Any) -> None:
    settings.ROUTER_SHADOW_MAX_PER_SECOND = 3
    cap = router_policy._RateCap()

    admitted = [cap.admit() for _ in range(10)]

    # All within one second on any machine would be 3; a second boundary may admit 3 more.
    assert admitted[:3] == [True, True, True] and sum(admitted) <= 6


def test_a_request_that_fell_back_is_logged_outside_the_estimates() -> None:
    served = decision_explore(decision(0.4))
    drawn_model = served.chosen
    other = next(c.model for c in served.ranked if c.model != drawn_model)

    drawn = router_policy.decision_log_entry(served, drawn_model)
    fell_back = router_policy.decision_log_entry(served, other)

    assert drawn is not None and served.log is not None
    assert drawn["propensity"] == propensity(served.log, drawn_model) > 0
    assert fell_back is not None and fell_back["propensity"] == 0.0  # not the policy's draw
    assert router_policy.decision_log_entry(served, "") is None  # nothing answered
