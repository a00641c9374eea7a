"""Choices made on out-of-fold predictions: blend weight, shrinkage and the served policy table.

The policy table holds, for each tradeoff of ``TRADEOFF_GRID``, a λ and one offset per candidate;
the decision is ``argmax score + offset - λ · normalised cost`` (``router.choose``). Four
families of policies are scored on the out-of-fold rows, and each tradeoff takes the best one
within its cost budget:

- every single model (an offset that excludes all others), so the zero router's vertices are
  always on the curve and its AIQ can never fall below the zero router's on these rows;
- two-model mixes for each segment of the zero router's hull (cheaper model ``a``, dearer
  ``b``), ``b`` taking a share ``p`` of the prompts: by a hash of the prompt (``hashed``: the
  hull's own point in expectation, whatever the predictions are worth, so the curve gets
  intermediate points instead of jumps), or the prompts whose predicted gain
  ``score_b - score_a`` is in the top ``p`` (``mix``: above the hull when the heads carry
  signal; on noise, out-of-fold predictions are even anti-correlated with the labels);
- the full router ``score + bonus·[incumbent] - λ·cost`` over a wide λ sweep and a few bonuses;
- the same with each prompt's cluster-best model as the incumbent (``clusters.py``, fitted
  without the row's fold), up to a bonus that serves the per-cluster floor itself: a router
  whose heads miss a task's or a language's best model still reaches it.
Predicted-gain mixes, the router and the cluster policies must earn their place: their
out-of-fold gain over the hull at their cost, less 1.96 standard errors of that gain (paired per
row), must still beat what a hashed mix or a single model reaches within the budget.

Tradeoff 0 is "best quality": the policy with the highest out-of-fold score, or, when costs are
real (dataset or price list, not rank-based) and a single model costing at most half as much
is statistically tied with it (the paired 95% interval of the per-row score difference contains
0), the best policy that costs no more than that model: paying 28x for an insignificant gain is
not "best quality". The other tradeoffs walk down the out-of-fold efficient frontier from
that point to the cheapest model in even steps (of normalised quality and cost drop together),
so the curve has up to ``len(TRADEOFF_GRID)`` distinct points, whether it is steep or flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from training.learner import metrics
from training.learner.router import EXCLUDED, hashed_mix, utilities

BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
TRADEOFF_GRID = np.round(np.linspace(0.0, 1.0, 21), 4)
LAMBDA_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 1e2, 121)])
MIX_FRACTIONS = np.round(np.linspace(0.05, 0.95, 19), 4)
BONUS_STEPS = 5  # incumbent bonuses tried: 0 … the predictions' spread
TIE_Z = 1.96  # two-sided 95% interval for "statistically tied"
ROUTER_Z = TIE_Z  # a routed policy replaces the hull only with a significant (95%) gain
FAR_CHEAPER = 0.5  # a tied model replaces the best only when it costs at most half as much
MIN_SHRINK = 1e-3  # keeps the prompts' order within a pair mix when the heads carry no signal


def blend_weight(parts: np.ndarray, target: np.ndarray) -> float:
    """Weight of the linear head with the lowest out-of-fold squared error."""
    errors = [
        float(np.mean((w * parts[:, 0] + (1 - w) * parts[:, 1] - target) ** 2)) for w in BLEND_GRID
    ]
    return BLEND_GRID[int(np.argmin(errors))]


EXHAUSTIVE_BLENDS = 625  # joint blend grids up to this size are searched exhaustively


def _difference_error(errors: np.ndarray) -> float:
    """Mean over rows of the squared errors of every pairwise predicted difference:
    sum over j<k of (e_j - e_k)^2 = m · sum e_j^2 - (sum e_j)^2."""
    m = errors.shape[1]
    return float(np.mean(m * (errors**2).sum(axis=1) - errors.sum(axis=1) ** 2))


def blend_weights(parts: np.ndarray, target: np.ndarray) -> list[float]:
    """Each candidate's linear-head weight, chosen jointly on out-of-fold rows to predict the
    differences between candidates (what a routing decision compares) rather than each score
    alone. ``parts`` is (n, m, 2): linear head, LightGBM. A single candidate keeps its own
    squared-error choice. Exhaustive over the grid for a few candidates, else coordinate descent
    from the per-candidate choices. On RouteLLM's MMLU file (two models) the per-candidate
    choice gave APGR 0.678, the joint one 0.687."""
    m = target.shape[1]
    own = [blend_weight(parts[:, j], target[:, j]) for j in range(m)]
    if m < 2:
        return own
    grid = np.array(BLEND_GRID)
    # errors[j][g]: candidate j's per-row error with blend grid[g]
    errors = [
        [w * parts[:, j, 0] + (1 - w) * parts[:, j, 1] - target[:, j] for w in grid]
        for j in range(m)
    ]
    if len(grid) ** m <= EXHAUSTIVE_BLENDS:
        best = min(
            itertools.product(range(len(grid)), repeat=m),
            key=lambda combo: _difference_error(
                np.column_stack([errors[j][g] for j, g in enumerate(combo)])
            ),
        )
        return [float(grid[g]) for g in best]
    chosen = [int(np.argmin(np.abs(grid - w))) for w in own]
    for _ in range(2):
        for j in range(m):
            scores = []
            for g in range(len(grid)):
                trial = list(chosen)
                trial[j] = g
                scores.append(
                    _difference_error(np.column_stack([errors[k][t] for k, t in enumerate(trial)]))
                )
            chosen[j] = int(np.argmin(scores))
    return [float(grid[g]) for g in chosen]


@dataclass(frozen=True)
class Calibrated:
    """The heads' blend and shrinkage chosen on some out-of-fold rows, applied to every row."""

    predicted: np.ndarray  # (n, m) prior + shrink · (blended parts - prior)
    priors: np.ndarray  # (m,) mean score on the rows the choice was made on
    blends: list[float]
    shrinks: list[float]


def calibrate(parts: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> Calibrated:
    """Blend weights and shrinkage chosen on ``rows`` of the out-of-fold ``parts`` (n, m, 2)
    against ``scores`` (n, m), and every row's predictions with them."""
    m = scores.shape[1]
    target = scores[rows]
    priors = target.mean(axis=0)
    blends = blend_weights(parts[rows], target)
    mixed = np.column_stack(
        [blends[j] * parts[:, j, 0] + (1 - blends[j]) * parts[:, j, 1] for j in range(m)]
    )
    shrinks = [shrinkage(mixed[rows, j], target[:, j], priors[j]) for j in range(m)]
    return Calibrated(priors + np.array(shrinks) * (mixed - priors), priors, blends, shrinks)


def shrinkage(predicted: np.ndarray, target: np.ndarray, prior: float) -> float:
    """Least-squares factor toward the prior: prior + s·(p - prior) ≈ target, s in
    [MIN_SHRINK, 1]."""
    centred = predicted - prior
    denominator = float(np.dot(centred, centred))
    if denominator <= 1e-12:
        return MIN_SHRINK
    return float(np.clip(np.dot(centred, target - prior) / denominator, MIN_SHRINK, 1.0))


@dataclass(frozen=True)
class Candidate:
    kind: str  # single | mix | router
    lam: float
    offsets: np.ndarray  # (m,)
    mix: np.ndarray  # (3,) hashed mix: a, b, b's share (NaN: none)
    picks: np.ndarray  # (n,) chosen model per out-of-fold row
    score: float
    cost: float
    merit: float  # score used to rank it within a budget (router: less one standard error)
    bonus: float  # added to each prompt's cluster-best model (0: none)


@dataclass(frozen=True)
class PolicyTable:
    tradeoffs: np.ndarray  # (T,)
    lambdas: np.ndarray  # (T,)
    offsets: np.ndarray  # (T, m)
    mixes: np.ndarray  # (T, 3)
    bonuses: np.ndarray  # (T,) cluster-best bonus
    kinds: list[str]  # which family each tradeoff's policy came from
    hull_models: list[int]  # the zero router's vertices on the out-of-fold rows, cheap to dear


def _hull_models(mean_scores: np.ndarray, mean_costs: np.ndarray) -> list[int]:
    hull = metrics.nondecreasing_hull(list(zip(mean_costs, mean_scores, strict=True)))
    models = []
    for cost, score in hull:
        same = np.nonzero((mean_costs == cost) & (mean_scores == score))[0]
        models.append(int(same[0]))
    return models


def _hull_value(
    hull: list[int], mean_scores: np.ndarray, mean_costs: np.ndarray, cost: float
) -> tuple[int, int, float]:
    """The hull segment (a, b) at ``cost`` and b's weight in the mix."""
    xs = mean_costs[hull]
    if len(hull) == 1 or cost <= xs[0]:
        return hull[0], hull[0], 0.0
    if cost >= xs[-1]:
        return hull[-1], hull[-1], 0.0
    k = int(np.searchsorted(xs, cost, side="right")) - 1
    a, b = hull[k], hull[k + 1]
    span = xs[k + 1] - xs[k]
    return a, b, float((cost - xs[k]) / span) if span > 0 else 0.0


NO_MIX = np.array([0.0, 0.0, np.nan])  # a candidate without a hashed mix


@dataclass(frozen=True)
class _Outcomes:
    """The out-of-fold rows a candidate policy is scored on, and the zero router's hull."""

    predicted: np.ndarray  # (n, m)
    scores: np.ndarray  # (n, m)
    costs: np.ndarray  # (n, m)
    norm: np.ndarray  # (m,) decision costs normalised to [0, 1]
    keys: np.ndarray  # (n,) router.mix_key
    incumbents: np.ndarray | None  # (n,) out-of-fold cluster-best model
    hull: list[int]
    mean_scores: np.ndarray
    mean_costs: np.ndarray

    def candidate(
        self,
        kind: str,
        lam: float,
        offsets: np.ndarray,
        mix: np.ndarray = NO_MIX,
        bonus: float = 0.0,
    ) -> Candidate:
        """The policy's picks on every row, their mean score and cost, and its merit."""
        n, m = self.scores.shape
        rows = np.arange(n)
        utility = utilities(self.predicted, self.norm, offsets, lam)
        if bonus:
            utility[rows, self.incumbents] += bonus
        if np.isnan(mix[2]):
            picks = np.argmax(utility - 1e-12 * self.norm, axis=1)  # ties go to the cheaper
        else:
            picks = np.argmax(hashed_mix(utility, mix, self.keys, list(range(m))), axis=1)
        got = self.scores[rows, picks]
        cost = float(self.costs[rows, picks].mean())
        score = float(got.mean())
        merit = score
        if kind in ("router", "mix", "cluster"):
            a, b, w = _hull_value(self.hull, self.mean_scores, self.mean_costs, cost)
            difference = got - ((1 - w) * self.scores[:, a] + w * self.scores[:, b])
            merit = (
                score - ROUTER_Z * float(difference.std(ddof=1)) / np.sqrt(n) if n > 1 else score
            )
        return Candidate(kind, lam, offsets, mix, picks, score, cost, merit, bonus)


def policy_table(
    predicted: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    decision_costs: np.ndarray,
    costs_known: bool,
    keys: np.ndarray,
    incumbents: np.ndarray | None = None,
) -> PolicyTable:
    """The served policy for every tradeoff, chosen on out-of-fold ``predicted`` (n, m).

    ``costs`` are the rows' costs (what a decision would have spent), ``decision_costs`` the
    per-model costs the decision rule uses at serving time (the same values, so the served
    curve is the one calibrated here), ``keys`` the rows' ``router.mix_key``, ``incumbents``
    each row's out-of-fold cluster-best model (``clusters.clusters_choose``).
    """
    norm = decision_costs / decision_costs.max() if decision_costs.max() > 0 else decision_costs
    mean_scores, mean_costs = scores.mean(axis=0), costs.mean(axis=0)
    hull = _hull_models(mean_scores, mean_costs)
    outcomes = _Outcomes(
        predicted, scores, costs, norm, keys, incumbents, hull, mean_scores, mean_costs
    )
    candidates = [*_fixed_candidates(outcomes), *_router_candidates(outcomes)]
    top = _best_quality(candidates, scores, np.arange(len(scores)), costs_known)
    cheapest = min((c for c in candidates if c.kind == "single"), key=lambda c: (c.cost, -c.score))
    frontier = _frontier(candidates, top)
    picked = _frontier_picks(frontier, top, cheapest, hull)
    chosen_all = [top, *(frontier[k] for k in picked[:-1]), cheapest]
    return PolicyTable(
        tradeoffs=TRADEOFF_GRID.copy(),
        lambdas=np.array([c.lam for c in chosen_all]),
        offsets=np.vstack([c.offsets for c in chosen_all]),
        mixes=np.vstack([c.mix for c in chosen_all]),
        bonuses=np.array([c.bonus for c in chosen_all]),
        kinds=[c.kind for c in chosen_all],
        hull_models=hull,
    )


def _fixed_candidates(outcomes: _Outcomes) -> Iterator[Candidate]:
    """Every single model, then the predicted-gain and hashed mixes along the hull."""
    m = outcomes.scores.shape[1]
    for j in range(m):
        offsets = np.full(m, -EXCLUDED)
        offsets[j] = 0.0
        yield outcomes.candidate("single", 0.0, offsets)
    for a, b in itertools.pairwise(outcomes.hull):
        gain = outcomes.predicted[:, b] - outcomes.predicted[:, a]
        for fraction in MIX_FRACTIONS:
            offsets = np.full(m, -EXCLUDED)
            offsets[a] = 0.0
            offsets[b] = -float(np.quantile(gain, 1.0 - fraction))
            yield outcomes.candidate("mix", 0.0, offsets)
            offsets = np.full(m, -EXCLUDED)
            offsets[[a, b]] = 0.0
            yield outcomes.candidate(
                "hashed", 0.0, offsets, np.array([a, b, fraction], dtype=np.float64)
            )


def _router_candidates(outcomes: _Outcomes) -> Iterator[Candidate]:
    """The full router over the λ sweep and incumbent bonuses, then its cluster-best form."""
    m = outcomes.scores.shape[1]
    predicted, incumbents = outcomes.predicted, outcomes.incumbents
    incumbent = int(np.argmax(outcomes.mean_scores))
    spread = float(np.ptp(predicted)) if predicted.size else 0.0
    for bonus in np.linspace(0.0, spread, BONUS_STEPS):
        offsets = np.zeros(m)
        offsets[incumbent] = bonus
        for lam in LAMBDA_GRID:
            yield outcomes.candidate("router", float(lam), offsets.copy())
    if incumbents is not None and len(np.unique(incumbents)) > 1:
        # Each prompt's cluster-best model as the incumbent; the largest bonus is the
        # per-cluster floor itself (clusters.py).
        for bonus in [*np.linspace(0.0, spread, BONUS_STEPS)[1:], EXCLUDED]:
            for lam in LAMBDA_GRID:
                yield outcomes.candidate("cluster", float(lam), np.zeros(m), bonus=float(bonus))


def _frontier(candidates: list[Candidate], top: Candidate) -> list[Candidate]:
    """The efficient frontier below the tradeoff-0 point: cheaper policies, each better than
    every policy cheaper than it."""
    frontier: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (c.cost, -c.merit)):
        if candidate.cost > top.cost:
            break
        if not frontier or candidate.merit > frontier[-1].merit:
            frontier.append(candidate)
    return frontier


def _frontier_picks(
    frontier: list[Candidate], top: Candidate, cheapest: Candidate, hull: list[int]
) -> list[int]:
    """The frontier policy each tradeoff after 0 serves (indices into ``frontier``)."""
    # Where each frontier policy lies between the tradeoff-0 point (0) and the cheapest model
    # (1): the mean of its normalised quality drop and cost drop, so points spread along the
    # curve whether it is steep (quality falls fast) or flat (cost falls fast).
    q_span = max(top.merit - cheapest.merit, 1e-12)
    c_span = max(top.cost - cheapest.cost, 1e-12)
    position = [
        0.5 * (top.merit - c.merit) / q_span + 0.5 * (top.cost - c.cost) / c_span for c in frontier
    ]
    picked: list[int] = []
    for tradeoff in TRADEOFF_GRID[1:]:
        # The first policy, going down the frontier from the top, at or past the tradeoff.
        reached = [k for k, u in enumerate(position) if u >= float(tradeoff) - 1e-9]
        picked.append(max(reached) if reached else len(frontier) - 1)
    # Every vertex of the zero router's hull on the frontier takes the slot nearest to it (the
    # order stays monotone), so the curve's own hull contains the zero router's.
    for k, candidate in enumerate(frontier):
        if candidate.kind == "single" and int(np.argmax(candidate.offsets)) in hull:
            slot = int(np.argmin([abs(p - k) for p in picked[:-1]])) if len(picked) > 1 else None
            if slot is not None and k not in picked:
                picked[slot] = k
    return picked


def _best_quality(
    candidates: list[Candidate], scores: np.ndarray, rows: np.ndarray, costs_known: bool
) -> Candidate:
    """The best policy by merit, unless a single model costing at most half as much is
    statistically tied with it: then the best policy costing no more than that model."""
    best = max(candidates, key=lambda c: (c.merit, -c.cost))
    if not costs_known:
        return best
    reference = scores[rows, best.picks]
    tied = []
    for candidate in candidates:
        if candidate.kind != "single" or candidate.cost > FAR_CHEAPER * best.cost:
            continue
        difference = scores[rows, candidate.picks] - reference
        error = float(difference.std(ddof=1)) / np.sqrt(len(rows)) if len(rows) > 1 else 0.0
        if difference.mean() + TIE_Z * error >= 0:
            tied.append(candidate)
    if not tied:
        return best
    cheaper = max(tied, key=lambda c: (c.merit, -c.cost))
    return max(
        (c for c in candidates if c.cost <= cheaper.cost * (1 + 1e-9)),
        key=lambda c: (c.merit, -c.cost),
    )
