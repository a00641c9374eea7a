"""RouteLLM and RouterBench metrics on inputs small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.learner import metrics

STRONG = np.array([1, 1, 0, 1])
WEAK = np.array([0, 1, 0, 0])
RATES = np.array([0.9, 0.1, 0.5, 0.7])


def test_routellm_curve_thresholds_at_quantile_edges() -> None:
    # Two bins: edges 0.1, 0.6 (median), 0.9. ">=" for all but the last edge, ">" for the last.
    curve = metrics.routellm_curve(RATES, STRONG, WEAK, num_results=2)
    assert curve.strong_percentage.tolist() == [0.0, 50.0, 100.0]
    assert curve.accuracy.tolist() == [25.0, 75.0, 75.0]
    assert (curve.weak_accuracy, curve.strong_accuracy) == (25.0, 75.0)


def test_apgr_is_the_area_between_weak_and_strong_lines() -> None:
    curve = metrics.routellm_curve(RATES, STRONG, WEAK, num_results=2)
    # AUC = 0.5*(25+75)/2 + 0.5*(75+75)/2 = 62.5; weak 25, strong 75 -> (62.5-25)/(75-25).
    assert metrics.routellm_apgr(curve) == pytest.approx(0.75)


def test_cpt_interpolates_the_strong_share_reaching_the_target() -> None:
    curve = metrics.routellm_curve(RATES, STRONG, WEAK, num_results=2)
    assert metrics.routellm_cpt(curve, 0.5) == pytest.approx(25.0)  # accuracy 50 at 25 %
    assert metrics.routellm_cpt(curve, 0.8) == pytest.approx(40.0)  # accuracy 65 at 40 %


def test_ten_bins_span_all_weak_to_all_strong() -> None:
    rng = np.random.default_rng(1)
    rates = rng.random(200)
    curve = metrics.routellm_curve(rates, rng.integers(0, 2, 200), rng.integers(0, 2, 200))
    assert len(curve.strong_percentage) == 11
    assert curve.strong_percentage[0] == 0.0 and curve.strong_percentage[-1] == 100.0


def test_a_perfect_router_recovers_three_quarters_when_half_the_rows_need_strong() -> None:
    # Perfect: accuracy climbs 50->100 over the first 50 % of strong calls, then stays at 100:
    # area 0.5*75 + 0.5*100 = 87.5 -> APGR 0.75. Backwards: 0.5*50 + 0.5*75 = 62.5 -> 0.25.
    strong = np.array([1] * 50 + [1] * 50)
    weak = np.array([0] * 50 + [1] * 50)
    perfect = metrics.routellm_curve(strong - weak + np.linspace(0, 0.01, 100), strong, weak)
    backwards = metrics.routellm_curve(weak - strong + np.linspace(0, 0.01, 100), strong, weak)
    assert metrics.routellm_apgr(perfect) == pytest.approx(0.75)
    assert metrics.routellm_apgr(backwards) == pytest.approx(0.25)


def test_hull_drops_points_under_the_upper_envelope() -> None:
    hull = metrics.nondecreasing_hull([(1, 0.5), (2, 0.9), (3, 0.8), (4, 1.0)])
    assert hull.tolist() == [[1.0, 0.5], [2.0, 0.9], [4.0, 1.0]]


def test_aiq_is_the_hull_area_over_the_cost_range() -> None:
    # 1*(0.5+0.9)/2 + 2*(0.9+1.0)/2 = 2.6, divided by the maximum cost 4.
    assert metrics.aiq([(1, 0.5), (2, 0.9), (3, 0.8), (4, 1.0)], 4.0) == pytest.approx(0.65)


def test_aiq_keeps_the_best_quality_flat_after_the_peak() -> None:
    assert metrics.aiq([(1, 0.9), (2, 0.5)], 2.0) == pytest.approx(0.45)


def test_cheapest_reaching_and_best_within_budget() -> None:
    curve = [(1.0, 0.6), (2.0, 0.8), (3.0, 0.9)]
    assert metrics.cheapest_reaching(curve, 0.8) == 2.0
    assert metrics.cheapest_reaching(curve, 0.95) is None
    assert metrics.best_quality_within(curve, 2.5) == 0.8
    assert metrics.best_quality_within(curve, 0.5) is None
