"""The off-policy estimators on synthetic logs whose truth is known: a logging policy that
explores, a target policy it never fully follows, and rewards drawn from known means."""

from __future__ import annotations

import numpy as np
import pytest

from routing import ope

MEANS = np.array([[0.9, 0.3, 0.5], [0.2, 0.8, 0.4]])  # reward mean per (context, action)


def logged(n: int, epsilon: float, seed: int) -> dict[str, np.ndarray]:
    """Contexts 0/1 at random; the logging policy serves action 0 greedily and explores
    uniformly over the three actions with probability ``epsilon``."""
    rng = np.random.default_rng(seed)
    context = rng.integers(0, 2, n)
    explore = rng.random(n) < epsilon
    action = np.where(explore, rng.integers(0, 3, n), 0)
    propensity = np.where(action == 0, 1 - epsilon + epsilon / 3, epsilon / 3)
    reward = (rng.random(n) < MEANS[context, action]).astype(float)
    return {"context": context, "action": action, "propensity": propensity, "reward": reward}


def target(context: np.ndarray) -> np.ndarray:
    """The best action per context: its true value is (0.9 + 0.8) / 2."""
    return np.where(context == 0, 0, 1)


TRUE_TARGET_VALUE = 0.85
TRUE_LOGGING_GREEDY_VALUE = (0.9 + 0.2) / 2


def terms(log: dict[str, np.ndarray], chosen: np.ndarray, reward_model: np.ndarray) -> tuple:
    matches = log["action"] == chosen
    ips = ope.ips_terms(matches, log["propensity"], log["reward"])
    rows = np.arange(len(chosen))
    dr = ope.dr_terms(
        matches,
        log["propensity"],
        log["reward"],
        reward_model[rows, chosen],
        reward_model[rows, log["action"]],
    )
    return ips, dr


def test_ips_and_dr_estimate_a_policy_the_log_rarely_followed() -> None:
    log = logged(20_000, epsilon=0.3, seed=1)
    chosen = target(log["context"])
    wrong_model = np.full((len(chosen), 3), 0.5)  # DR stays unbiased with a useless model

    ips, dr = terms(log, chosen, wrong_model)

    for estimate in (ope.mean_interval(ips), ope.mean_interval(dr)):
        assert estimate.low < TRUE_TARGET_VALUE < estimate.high
        assert estimate.high - estimate.low < 0.1


def test_a_good_reward_model_narrows_the_doubly_robust_interval() -> None:
    log = logged(5_000, epsilon=0.3, seed=2)
    chosen = target(log["context"])
    good_model = MEANS[log["context"]]

    ips, dr = terms(log, chosen, good_model)

    ips_estimate, dr_estimate = ope.mean_interval(ips), ope.mean_interval(dr)
    assert dr_estimate.low < TRUE_TARGET_VALUE < dr_estimate.high
    assert dr_estimate.high - dr_estimate.low < 0.5 * (ips_estimate.high - ips_estimate.low)


def test_the_paired_difference_finds_the_better_policy_and_covers_the_truth() -> None:
    log = logged(3_000, epsilon=0.3, seed=3)
    rows = len(log["action"])
    model = np.full((rows, 3), 0.5)
    _, baseline = terms(log, np.zeros(rows, dtype=int), model)
    _, candidate = terms(log, target(log["context"]), model)

    difference = ope.paired_difference(baseline, candidate)

    truth = TRUE_TARGET_VALUE - TRUE_LOGGING_GREEDY_VALUE
    assert 0 < difference.low < truth < difference.high


def test_without_exploration_ips_sees_only_agreements() -> None:
    log = logged(2_000, epsilon=0.0, seed=4)
    chosen = target(log["context"])

    ips, _ = terms(log, chosen, np.zeros((len(chosen), 3)))

    # Context 1's best action is never served: IPS credits nothing there (why exploration).
    assert ope.mean_interval(ips).high < TRUE_TARGET_VALUE


def test_independent_difference_of_two_arms_covers_the_truth() -> None:
    rng = np.random.default_rng(5)
    baseline = (rng.random(4_000) < 0.6).astype(float)
    candidate = (rng.random(4_000) < 0.7).astype(float)

    difference = ope.independent_difference(baseline, candidate)

    assert difference.low < 0.1 < difference.high and difference.low > 0


def test_intervals_are_unbounded_until_there_are_two_terms() -> None:
    assert ope.mean_interval(np.array([])).n == 0
    single = ope.mean_interval(np.array([1.0]))
    assert single.value == 1.0 and single.low == -np.inf and single.high == np.inf
    assert ope.independent_difference(np.array([1.0]), np.array([0.0, 1.0])).low == -np.inf
    assert ope.mean_interval(np.array([0.0, 1.0])).as_dict()["estimate"] == pytest.approx(0.5)
