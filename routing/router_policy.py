"""The served policy of a router with a lifecycle experiment: which version serves a prompt (an
A/B split), whether the served choice explores, and the decision log entry that off-policy
evaluation reads (README "Router lifecycle").

- **A/B split**: a challenger version serves the prompts whose hash falls in its share
  (``sha256(router id, prompt)``: the same prompt always meets the same version, so a retried
  request is answered alike); the active version serves the rest.
- **Exploration** (``exploration_rate`` ε): the served model is the ranking's first with
  probability 1 - ε + ε/K and each other servable candidate with probability ε/K (K servable
  candidates); the log keeps that probability (the propensity) of the model that answered.
- **Shadow**: on ``shadow_share`` of the requests (at most ``ROUTER_SHADOW_MAX_PER_SECOND`` per
  process) the shadow version ranks the same candidates for the same prompt. It runs after the
  answer has gone to the client (``decision_log_entry``, called where the usage draft is
  finished), never before, and what it decides is only logged.

Routers without an experiment and with ε = 0 have no policy: their decisions carry no log and
pay nothing here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from training import serving
from training.serving import Router, RouterVersion

if TYPE_CHECKING:
    from routing.routers import RouterDecision, RouterRow

# Exploration and shadow sampling draw from this generator (not a secret: which model explores
# is not a security decision). Tests seed it to replay a run.
policy_rng = random.Random()


@dataclass(frozen=True, slots=True)
class ServingPolicy:
    """A router's lifecycle settings as serving reads them (cached with its row)."""

    exploration: float
    shadow: RouterVersion | None = None
    shadow_share: float = 0.0
    challenger: RouterVersion | None = None
    challenger_share: float = 0.0

    @property
    def versions(self) -> tuple[RouterVersion, ...]:
        """The versions besides the active one that deciding may use (loaded with the row)."""
        return tuple(v for v in (self.shadow, self.challenger) if v is not None)


@dataclass
class DecisionLog:
    """What a decision logs; filled in three steps: decided, served (``decision_explore``), then
    answered (``decision_log_entry``)."""

    router_id: int
    served_version: int
    exploration: float
    prompt: str
    tradeoff: float
    prices: dict[str, float] | None
    shadow: RouterVersion | None
    task: str | None = None  # the request's task: the shadow decides with it as served did
    greedy_model: str = ""
    servable: int = 0
    explored: bool = False


def version_copy(version: RouterVersion) -> RouterVersion:
    """An unsaved copy with what deciding needs (id, number, checksum, artifacts, candidates)."""
    return RouterVersion(
        pk=version.pk,
        number=version.number,
        checksum=version.checksum,
        artifact_files=version.artifact_files,
        candidates=version.candidates,
    )


def policy_of(router: Router) -> ServingPolicy | None:
    """The router's serving policy (``router`` with its shadow and challenger versions
    selected), or None when nothing but the active version's first choice is ever served."""
    shadow, challenger = router.shadow_version, router.challenger_version
    exploration = min(max(router.exploration_rate, 0.0), settings.ROUTER_EXPLORATION_MAX)
    if shadow is None and challenger is None and exploration == 0:
        return None
    return ServingPolicy(
        exploration=exploration,
        shadow=version_copy(shadow) if shadow is not None else None,
        shadow_share=min(max(router.shadow_share, 0.0), settings.ROUTER_SHADOW_MAX_SHARE),
        challenger=version_copy(challenger) if challenger is not None else None,
        challenger_share=min(max(router.challenger_share, 0.0), 1.0),
    )


def row_versions(row: RouterRow | None) -> list[RouterVersion]:
    """Every version deciding with ``row`` may use: the active one first, then the policy's."""
    if row is None or row.version is None:
        return []
    return [row.version, *(row.lifecycle.versions if row.lifecycle is not None else ())]


def versions_loaded(versions: list[RouterVersion]) -> bool:
    return all(serving.predictor_is_loaded(v) for v in versions)


def versions_load(versions: list[RouterVersion], *, warmup: bool = False) -> None:
    for version in versions:
        serving.predictor_for_version(version, warmup=warmup)


def ab_share_point(router_id: int, prompt: str) -> float:
    """Where a prompt falls in [0, 1) for the router's A/B split (stable across processes)."""
    digest = hashlib.sha256(f"{router_id}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def serving_version(
    active: RouterVersion, policy: ServingPolicy | None, router_id: int, prompt: str
) -> RouterVersion:
    """The version that ranks for this prompt: the challenger on its share, else the active."""
    if policy is None or policy.challenger is None:
        return active
    if ab_share_point(router_id, prompt) < policy.challenger_share:
        return policy.challenger
    return active


def decision_log_new(
    row: RouterRow,
    served: RouterVersion,
    prompt: str,
    tradeoff: float,
    prices: dict[str, float] | None,
    task: str | None = None,
) -> DecisionLog | None:
    """The log of a decision by ``served`` for ``row``'s router (for a request naming ``task``),
    with the shadow sampled (``shadow_share``), or None when the router has no policy."""
    policy = row.lifecycle
    if policy is None:
        return None
    shadow = policy.shadow
    if shadow is not None and policy_rng.random() >= policy.shadow_share:
        shadow = None
    return DecisionLog(
        router_id=row.router_id,
        served_version=served.number,
        exploration=policy.exploration,
        prompt=prompt,
        tradeoff=tradeoff,
        prices=prices,
        shadow=shadow,
        task=task,
    )


def decision_explore(decision: RouterDecision) -> RouterDecision:
    """The decision as served: with probability ε its first model swapped for a uniformly drawn
    candidate (of those the gateway can call: call this after ``restricted_to``)."""
    log = decision.log
    if log is None or not decision.ranked:
        return decision
    log.greedy_model, log.servable = decision.ranked[0].model, len(decision.ranked)
    if log.exploration <= 0 or policy_rng.random() >= log.exploration:
        return decision
    pick = policy_rng.randrange(len(decision.ranked))
    log.explored = pick != 0
    ranked = [decision.ranked[pick], *(c for i, c in enumerate(decision.ranked) if i != pick)]
    return dataclasses.replace(decision, ranked=ranked)


def propensity(log: DecisionLog, model: str) -> float:
    """P(``model`` is served) under the served policy, for the candidates the gateway could call."""
    uniform = log.exploration / log.servable
    return (1.0 - log.exploration if model == log.greedy_model else 0.0) + uniform


class _RateCap:
    """At most ``ROUTER_SHADOW_MAX_PER_SECOND`` shadow decisions per second in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._second = 0
        self._count = 0

    def admit(self) -> bool:
        now = int(time.monotonic())
        with self._lock:
            if now != self._second:
                self._second, self._count = now, 0
            if self._count >= settings.ROUTER_SHADOW_MAX_PER_SECOND:
                return False
            self._count += 1
            return True


_shadow_cap = _RateCap()


def _shadow_choice(log: DecisionLog, models: list[str]) -> str:
    """The shadow version's first choice among ``models`` (~1 ms of numpy), or "" when capped;
    with the request's task hint where the shadow has a row for it (as serving decides)."""
    if log.shadow is None or not _shadow_cap.admit():
        return ""
    predictor = serving.predictor_for_version(log.shadow)
    task_row = predictor.task_row(log.task, log.tradeoff)[0]
    ranked = predictor.rank(log.prompt, log.tradeoff, models, log.prices, None, task_row)
    return ranked[0].model if ranked else ""


def decision_log_entry(decision: RouterDecision | None, served_model: str) -> dict[str, Any] | None:
    """The ``UsageDecision`` fields of a request that ``served_model`` answered (after the
    answer went out: this is where the shadow decides), or None when nothing is logged."""
    log = decision.log if decision is not None else None
    if log is None or not log.servable or not served_model:
        return None
    models = [c.model for c in decision.ranked] if decision is not None else []
    shadow_model = _shadow_choice(log, models)
    return {
        "router_id": log.router_id,
        "served_version": log.served_version,
        "served_model": served_model,
        "greedy_model": log.greedy_model,
        # A request that fell back down the ranking was not served by the policy's draw: logged
        # with propensity 0, it is left out of the estimates.
        "propensity": propensity(log, served_model) if models[:1] == [served_model] else 0.0,
        "shadow_version": log.shadow.number if shadow_model and log.shadow else None,
        "shadow_model": shadow_model,
        "predicted": {
            c.model: [c.score, c.expected_cost] for c in (decision.ranked if decision else [])
        },
        "task_hint": log.task or "",  # as the request named it (a feedback retrain reads it)
    }
