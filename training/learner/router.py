"""A trained router in memory: score heads per candidate and the cost-aware decision rule.

Each candidate's predicted score is a blend of a linear head on the TF-IDF vector and a LightGBM
model on the dense features (SVD + text statistics), shrunk toward the candidate's prior mean:
``prior + shrink · (blend · linear + (1 - blend) · lightgbm - prior)``. On RouteLLM's MMLU file
LightGBM alone recovered APGR ≈ 0.655 under 5-fold CV, the linear head alone ≈ 0.686 and the
blend ≈ 0.69, which is why both exist.

Decision: ``argmax_m  score_m + offset_m - λ · cost_m / max_k cost_k``. Costs are the
per-model mean costs the router was calibrated with (``mean_costs``), normalised by the most
expensive candidate, so only price ratios matter and the served decision is the one the report
evaluated. Each tradeoff of the table (0 = best quality … 1 = cheapest) has its own λ and
offsets, chosen on out-of-fold predictions (``calibration.policy_table``): an offset of
``-EXCLUDED`` takes a candidate out of that tradeoff's policy, which is how a single model or a
two-model mix along the zero router's hull is served. A mix may also split prompts by a hash of
their text (``mixes``: models a, b and b's share), which reaches the hull's own point whatever
the predictions are worth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from scipy import sparse

from training.learner.clusters import PromptClusters
from training.learner.featurizer import Featurizer
from training.learner.forest import Forest, forest_from_boosters
from training.learner.segments import PromptSegments
from training.learner.task_hint import TaskHint

KIND_BINARY = "binary"
KIND_REGRESSION = "regression"
KIND_CONSTANT = "constant"
EXCLUDED = 1e3  # offset magnitude that takes a candidate out of a policy (scores are O(1))


# Expected completion length when prices are per token and nothing better is known.
def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class ScoreHead:
    """Predicts one candidate's score from a prompt's features."""

    kind: str  # binary | regression | constant
    prior: float  # mean score on the training rows
    blend: float  # weight of the linear head (1 - blend goes to LightGBM)
    shrink: float  # 0 = always the prior, 1 = raw prediction
    coef: np.ndarray  # linear head weights over the TF-IDF vocabulary
    intercept: float
    booster: lgb.Booster | None

    def _linear(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(raw) if self.kind == KIND_BINARY else raw

    def raw_parts_many(self, tfidf: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
        """(n, 2): the linear head and the LightGBM prediction, before blending."""
        n = tfidf.shape[0]
        if self.kind == KIND_CONSTANT or self.booster is None:
            return np.full((n, 2), self.prior)
        linear = self._linear(np.asarray(tfidf @ self.coef).ravel() + self.intercept)
        boosted = np.asarray(self.booster.predict(dense, num_threads=1)).ravel()
        return np.column_stack([linear, boosted])

    def combine(self, parts: np.ndarray) -> np.ndarray:
        mixed = self.blend * parts[:, 0] + (1.0 - self.blend) * parts[:, 1]
        return self.prior + self.shrink * (mixed - self.prior)

    def predict_many(self, tfidf: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
        return self.combine(self.raw_parts_many(tfidf, dense))

    def predict_one(self, linear_raw: float, dense: np.ndarray) -> float:
        """Score of one prompt from its linear-head logit (or value) and dense features."""
        if self.kind == KIND_CONSTANT or self.booster is None:
            return self.prior
        linear = float(_sigmoid(linear_raw)) if self.kind == KIND_BINARY else linear_raw
        boosted = float(self.booster.predict(dense.reshape(1, -1), num_threads=1)[0])
        mixed = self.blend * linear + (1.0 - self.blend) * boosted
        return self.prior + self.shrink * (mixed - self.prior)


def mix_key(prompt: str) -> float:
    """A stable number in [0, 1) per prompt text: which side of a hashed mix it falls on."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def mix_keys(prompts: list[str]) -> np.ndarray:
    return np.array([mix_key(p) for p in prompts], dtype=np.float64)


def hashed_mix(
    utility: np.ndarray, mix: np.ndarray, keys: np.ndarray | float, indices: list[int]
) -> np.ndarray:
    """``utility`` (k,) or (n, k) with a hashed mix's winner lifted to the top: model ``b``
    for keys below its share, else ``a`` (when both are among ``indices``)."""
    a, b, share = int(mix[0]), int(mix[1]), float(mix[2])
    if np.isnan(share) or a not in indices or b not in indices:
        return utility
    lifted = np.array(utility, dtype=np.float64, copy=True)
    ia, ib = indices.index(a), indices.index(b)
    to_b = np.asarray(keys) < share
    lifted[..., ib] += np.where(to_b, EXCLUDED, 0.0)
    lifted[..., ia] += np.where(to_b, 0.0, EXCLUDED)
    return lifted


def normalized_costs(costs: np.ndarray) -> np.ndarray:
    """Divide each row's costs by its most expensive candidate (all-zero rows stay zero)."""
    costs = np.asarray(costs, dtype=np.float64)
    top = costs.max(axis=-1, keepdims=True)
    return np.asarray(np.divide(costs, top, out=np.zeros_like(costs), where=top > 0))


def utilities(
    predicted: np.ndarray, norm_costs: np.ndarray, offsets: np.ndarray, lam: float
) -> np.ndarray:
    return np.asarray(predicted + offsets - lam * norm_costs)


def choose(
    predicted: np.ndarray, norm_costs: np.ndarray, offsets: np.ndarray, lam: float
) -> np.ndarray:
    """Index of the chosen candidate per row; ties go to the cheaper candidate."""
    utility = utilities(predicted, norm_costs, offsets, lam)
    # Break exact ties by cost: subtract a negligible multiple of the normalised cost.
    return np.asarray(np.argmax(utility - 1e-12 * norm_costs, axis=-1))


@dataclass(frozen=True)
class ChosenPolicy:
    """One tradeoff's policy restricted to some candidates, as one decision reads it: the
    arguments ``TrainedRouter.utilities`` derives on every call, derived once."""

    norm_costs: np.ndarray  # the candidates' mean costs over the dearest's
    offsets: np.ndarray
    lam: float
    bonus: float  # added to the prompt's cluster-best model (0: none)
    position: np.ndarray  # model index -> position among the candidates (-1: not one)
    mix: tuple[int, int, float] | None  # hashed mix: positions of a and b, and b's share
    mean_costs: np.ndarray  # the candidates' mean costs (ties go to the cheaper)


POLICY_CACHE_SIZE = 256  # (tradeoff, candidates) pairs a router keeps derived


@dataclass
class TrainedRouter:
    """Everything needed to rank candidates for a prompt; built by the trainer or from artifacts."""

    models: list[str]
    featurizer: Featurizer
    heads: list[ScoreHead]
    mean_costs: np.ndarray  # per model: the costs every decision uses (see the module doc)
    tradeoffs: np.ndarray  # increasing, 0..1
    lambdas: np.ndarray  # λ for each tradeoff
    offsets: np.ndarray  # (tradeoffs, models): added to the predicted scores
    mixes: np.ndarray  # (tradeoffs, 3): hashed mix (a, b, b's share), share NaN when none
    # Prompt clusters and, per tradeoff, the bonus their best model gets (None: no clusters).
    clusters: PromptClusters | None = None
    cluster_bonus: np.ndarray | None = None
    # Task segments (segments.py): the incumbents instead of the clusters' when the training
    # data named tasks and they won out of fold; the bonus is ``cluster_bonus``.
    segments: PromptSegments | None = None
    # The task-hint blend (task_hint.py) a request naming its task decides with (None: none).
    task_hint: TaskHint | None = None
    _projection: np.ndarray | None = field(default=None, init=False, repr=False)
    _intercepts: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    _forest: Forest | None = field(default=None, init=False, repr=False)
    _forest_slot: list[int] | None = field(default=None, init=False, repr=False)
    _head_arrays: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _policies: dict[tuple[float, tuple[int, ...]], ChosenPolicy] = field(
        default_factory=dict, init=False, repr=False
    )

    def policy_index(self, tradeoff: float) -> int:
        """The table row serving ``tradeoff``: the nearest calibrated tradeoff."""
        clipped = min(max(float(tradeoff), 0.0), 1.0)
        return int(np.argmin(np.abs(self.tradeoffs - clipped)))

    def utilities(
        self,
        predicted: np.ndarray,
        tradeoff: float,
        keys: np.ndarray | float,
        indices: list[int] | None = None,
        incumbents: np.ndarray | int | None = None,
    ) -> np.ndarray:
        """What the decision maximises for predictions of the ``indices`` candidates (all by
        default), one prompt (k,) or many (n, k); ``keys`` are the prompts' ``mix_key``,
        ``incumbents`` their cluster-best models (``cluster_incumbents``)."""
        chosen = indices if indices is not None else list(range(len(self.models)))
        row = self.policy_index(tradeoff)
        norm = normalized_costs(self.mean_costs[chosen])
        utility = utilities(predicted, norm, self.offsets[row, chosen], float(self.lambdas[row]))
        bonus = 0.0 if self.cluster_bonus is None else float(self.cluster_bonus[row])
        if bonus and incumbents is not None:
            position = np.full(len(self.models), -1)
            position[chosen] = np.arange(len(chosen))
            column = position[np.asarray(incumbents)]
            lift = (np.arange(len(chosen)) == column[..., None]) & (column[..., None] >= 0)
            utility = utility + bonus * lift.reshape(np.shape(utility))
        return hashed_mix(utility, self.mixes[row], keys, chosen)

    def chosen_policy(self, tradeoff: float, indices: list[int]) -> ChosenPolicy:
        """The policy serving ``tradeoff`` for the ``indices`` candidates (cached)."""
        key = (tradeoff, tuple(indices))
        policy = self._policies.get(key)
        if policy is not None:
            return policy
        row = self.policy_index(tradeoff)
        position = np.full(len(self.models), -1)
        position[indices] = np.arange(len(indices))
        a, b, share = int(self.mixes[row, 0]), int(self.mixes[row, 1]), float(self.mixes[row, 2])
        mixed = not np.isnan(share) and a in indices and b in indices
        policy = ChosenPolicy(
            norm_costs=normalized_costs(self.mean_costs[indices]),
            offsets=self.offsets[row, indices],
            lam=float(self.lambdas[row]),
            bonus=0.0 if self.cluster_bonus is None else float(self.cluster_bonus[row]),
            position=position,
            mix=(indices.index(a), indices.index(b), share) if mixed else None,
            mean_costs=self.mean_costs[indices],
        )
        if len(self._policies) >= POLICY_CACHE_SIZE:
            self._policies.clear()
        self._policies[key] = policy
        return policy

    def utility_one(
        self,
        predicted: np.ndarray,
        policy: ChosenPolicy,
        key: float,
        incumbent: int | None,
    ) -> np.ndarray:
        """``utilities`` for one prompt under a ``chosen_policy``: the same arithmetic, with
        the lifts added to the one candidate they change."""
        utility = utilities(predicted, policy.norm_costs, policy.offsets, policy.lam)
        if policy.bonus and incumbent is not None and policy.position[incumbent] >= 0:
            utility[policy.position[incumbent]] += policy.bonus
        if policy.mix is not None:
            a, b, share = policy.mix
            utility[b if key < share else a] += EXCLUDED
        return utility

    def choose_many(
        self,
        predicted: np.ndarray,
        tradeoff: float,
        keys: np.ndarray,
        incumbents: np.ndarray | None = None,
    ) -> np.ndarray:
        """Chosen candidate per row of ``predicted`` (n, models); ties go to the cheaper."""
        utility = self.utilities(predicted, tradeoff, keys, None, incumbents)
        picks = np.argmax(utility - 1e-12 * normalized_costs(self.mean_costs), axis=-1)
        return np.asarray(picks, dtype=np.int64)

    def hint_applies(self, tradeoff: float) -> bool:
        """Whether a task hint decides at ``tradeoff``: only on the policy row of tradeoff 0,
        where its weight and rule were chosen (``task_hint.py``); elsewhere the version decides
        without it."""
        return self.task_hint is not None and self.policy_index(tradeoff) == self.policy_index(0.0)

    def choose_hinted_many(self, hinted: np.ndarray, tradeoff: float) -> np.ndarray:
        """Chosen candidate per row of predictions blended with a task hint (``task_hint.py``):
        ``score - λ · cost`` at the tradeoff's λ, without the policy's offsets, mixes and
        incumbent bonus (calibrated on the unhinted heads; the hint stands for the task-level
        structure they encode); ties go to the cheaper."""
        norm = normalized_costs(self.mean_costs)
        lam = float(self.lambdas[self.policy_index(tradeoff)])
        return np.asarray(np.argmax(hinted - lam * norm - 1e-12 * norm, axis=-1), dtype=np.int64)

    def cluster_incumbents(self, prompts: list[str]) -> np.ndarray | None:
        """Each prompt's cluster- or segment-best model (None without either)."""
        if self.segments is not None:
            return self.segments.incumbents_many(*self.featurizer.transform_many(prompts))
        if self.clusters is None:
            return None
        _, dense = self.featurizer.transform_many(prompts)
        return self.clusters.incumbents(dense)

    def predict_many(self, prompts: list[str]) -> np.ndarray:
        """(n, models) predicted scores for a batch of prompts."""
        tfidf, dense = self.featurizer.transform_many(prompts)
        return np.column_stack([head.predict_many(tfidf, dense) for head in self.heads])

    def predict_one(self, prompt: str, indices: list[int] | None = None) -> np.ndarray:
        """Predicted scores of the chosen candidates for one prompt (featurized once)."""
        return self.predict_one_with_incumbent(prompt, indices)[0]

    def predict_one_with_incumbent(
        self, prompt: str, indices: list[int] | None = None, incumbent_wanted: bool = True
    ) -> tuple[np.ndarray, int | None]:
        """``predict_one`` and the prompt's cluster- or segment-best model (None without, or
        when not ``incumbent_wanted``: a policy whose bonus is 0 never reads it)."""
        index, values = self.featurizer.tfidf(prompt)
        chosen = list(indices) if indices is not None else list(range(len(self.heads)))
        # The SVD projection and every linear head in one gather of the prompt's vocabulary
        # rows and one product: as ``Featurizer.transform`` then one head at a time, with the
        # rows read once (measured: ~40% less time than two gathers for a 4 KB prompt).
        projection = self._projection_by_term()
        both = values @ np.take(projection, index, axis=0)
        svd = self.featurizer.components.shape[0]
        dense = self.featurizer.dense_of(both[:svd], prompt)
        linear = both[svd:] + self._intercepts
        # All boosters' trees in one walk (training/learner/forest.py) instead of one
        # Booster.predict call per candidate, and the heads' blending as array arithmetic:
        # the same formula as ``ScoreHead.predict_one`` (tests check they agree).
        forest, slot = self._forest_of_heads()
        heads = self._head_arrays
        boosted = np.zeros(len(self.heads))
        if forest is not None:
            boosted[slot] = forest.predict(dense)
        linear = np.where(heads["binary"], _sigmoid(linear), linear)
        mixed = heads["blend"] * linear + (1.0 - heads["blend"]) * boosted
        scores = np.where(
            heads["constant"],
            heads["prior"],
            heads["prior"] + heads["shrink"] * (mixed - heads["prior"]),
        )
        incumbent = None
        if incumbent_wanted and self.segments is not None:
            incumbent = self.segments.incumbent_one(index, values, dense)
        elif incumbent_wanted and self.clusters is not None:
            incumbent = int(self.clusters.incumbents(dense)[0])
        return scores[chosen], incumbent

    def serving_form_use(self, forest: Forest | None, projection: np.ndarray) -> None:
        """Serve with a version's stored serving form (``serving_form.py``): the heads' forest
        and the projection as the first decision would build them, so it builds nothing."""
        self._forest, self._forest_slot = forest, self._heads_with_trees()
        self._head_arrays = self._heads_as_arrays()
        self._projection = projection
        self._intercepts = np.array([h.intercept for h in self.heads])

    def _heads_with_trees(self) -> list[int]:
        return [
            i for i, h in enumerate(self.heads) if h.booster is not None and h.kind != KIND_CONSTANT
        ]

    def _heads_as_arrays(self) -> dict[str, np.ndarray]:
        return {
            "binary": np.array([h.kind == KIND_BINARY for h in self.heads]),
            "constant": np.array(
                [h.kind == KIND_CONSTANT or h.booster is None for h in self.heads]
            ),
            "prior": np.array([h.prior for h in self.heads], dtype=np.float64),
            "blend": np.array([h.blend for h in self.heads], dtype=np.float64),
            "shrink": np.array([h.shrink for h in self.heads], dtype=np.float64),
        }

    def _forest_of_heads(self) -> tuple[Forest | None, list[int]]:
        if self._forest_slot is None:
            with_trees = self._heads_with_trees()
            boosters = [b for b in (self.heads[i].booster for i in with_trees) if b is not None]
            self._forest = forest_from_boosters(boosters) if boosters else None
            self._forest_slot = with_trees
            self._head_arrays = self._heads_as_arrays()
        return self._forest, self._forest_slot

    def _projection_by_term(self) -> np.ndarray:
        """(vocabulary, SVD components + models): the featurizer's projection next to each
        head's linear weights, float64 as in training."""
        if self._projection is None:
            self._projection = np.ascontiguousarray(
                np.hstack(
                    [self.featurizer.components.T, np.vstack([h.coef for h in self.heads]).T]
                ),
                dtype=np.float64,
            )
            self._intercepts = np.array([h.intercept for h in self.heads])
        return self._projection
