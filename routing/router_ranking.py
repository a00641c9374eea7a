"""How a router ranks: ``trained_decision`` orders a router's candidates by its served version's
predicted ``score - λ·cost`` for the prompt, ``heuristic_decision`` is ``router/auto`` before it is
trained (capability fit, then price). ``routing.routers`` finds the row and calls one of them;
both return a ``RouterDecision``, the gateway's ``routing`` object.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from routerhub.domain import InvalidInput, NotFound
from routing import router_policy as policy
from routing.gateway.catalog_cache import CatalogSnapshot, ModelInfo
from training import serving
from training.serving import DEFAULT_OUTPUT_TOKENS, estimated_tokens, text_tokens

if TYPE_CHECKING:
    from routing.routers import RouterRow

PLATFORM_ROUTER_SLUG = "auto"  # router/auto: the platform router, heuristic until trained


@dataclass(frozen=True, slots=True)
class RankedChoice:
    model: str
    score: float | None
    expected_cost: float | None
    bias: float | None = None  # the feedback calibration added to ``score`` (None: none yet)


@dataclass(frozen=True)
class RouterDecision:
    router: str  # "router/<slug>"
    version: int | None
    ranked: list[RankedChoice]
    latency_ms: float
    strategy: str  # "trained" or "heuristic"
    router_id: int | None = None  # recorded on the usage record: feedback joins on it
    budget: dict[str, Any] | None = None  # routing.budget of a budget-aware key
    log: policy.DecisionLog | None = None  # what the decision log keeps (router_policy)
    # the request's task hint: {"task": trimmed, "applied": the label decided with or None,
    # "reason": why None (else None)}
    task_hint: dict[str, str | None] | None = None

    @property
    def chosen(self) -> str:
        return self.ranked[0].model

    @property
    def models(self) -> list[str]:
        return [choice.model for choice in self.ranked]

    def restricted_to(self, servable: set[str]) -> RouterDecision:
        """The same decision ranking only ``servable`` models (those the gateway can call)."""
        return dataclasses.replace(self, ranked=[c for c in self.ranked if c.model in servable])

    def as_routing(self) -> dict[str, Any]:
        """The response's ``routing`` object of API.md."""
        routing: dict[str, Any] = {
            "router": self.router,
            "version": self.version,
            "chosen": self.chosen,
            "strategy": self.strategy,
            "ranked": [_ranked_json(c) for c in self.ranked],
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.log is not None and self.log.explored:
            routing["explored"] = True
        if self.task_hint is not None:
            routing["task_hint"] = self.task_hint
        return routing if self.budget is None else routing | {"budget": self.budget}

    def as_selection(self) -> tuple[dict[str, Any], dict[str, str]]:
        """``POST /api/v1/routers/{slug}/select``'s body and headers: ``task_hint`` when the
        request named a task, and ``x-routerhub-dropped: task`` when it was decided without."""
        routing = self.as_routing()
        keys = ("chosen", "version", "ranked", "latency_ms", "strategy", "task_hint")
        body = {k: routing[k] for k in keys if k in routing}
        dropped = self.task_hint is not None and self.task_hint["applied"] is None
        return body, {"x-routerhub-dropped": "task"} if dropped else {}


def _ranked_json(choice: RankedChoice) -> dict[str, Any]:
    ranked = {"model": choice.model, "score": choice.score, "expected_cost": choice.expected_cost}
    return ranked if choice.bias is None else ranked | {"bias": choice.bias}


# --- decisions ---------------------------------------------------------------------------------


def blended_prices(catalog: CatalogSnapshot, models: list[str], prompt: str) -> dict[str, float]:
    """USD per 1M tokens such that the predictor's expected cost is this prompt's input cost
    plus a typical completion at the cheapest endpoint's prices."""
    prompt_tokens = text_tokens(prompt)
    tokens = estimated_tokens(prompt)
    prices: dict[str, float] = {}
    for model in models:
        info = catalog.models.get(model)
        if info is None or not info.endpoints:
            continue
        cost = min(
            e.prices.prompt * Decimal(prompt_tokens) + e.prices.completion * DEFAULT_OUTPUT_TOKENS
            for e in info.endpoints
        )
        prices[model] = float(cost) / tokens * 1e6
    return prices


def trained_decision(
    row: RouterRow,
    name: str,
    prompt: str,
    tradeoff: float,
    candidates: list[str],
    catalog: CatalogSnapshot | None,
    started: float,
    task: str | None = None,
) -> RouterDecision:
    """Rank ``candidates`` with the version ``row`` serves this prompt (its active one, or a
    lifecycle policy's shadow or challenger), prices blended for the prompt when a catalog is
    given, the active version's feedback calibration added to its scores; a ``task`` the
    version has a hint row for (its own or its parent's) blends that task's means in."""
    assert row.version is not None
    version = policy.serving_version(row.version, row.lifecycle, row.router_id, prompt)
    predictor = serving.predictor_for_version(version)
    prices = blended_prices(catalog, candidates, prompt) if catalog is not None else None
    bias = row.bias if version.number == row.version.number else {}  # learned on the active one
    task_row, applied, reason = predictor.task_row(task, tradeoff)
    ranked = predictor.rank(prompt, tradeoff, candidates, prices or None, bias or None, task_row)
    if not ranked:
        raise InvalidInput(
            f"None of the candidates were trained in {name} v{version.number}.",
            param="router.candidates",
        )
    serving.drift_sample_observe(row.version, prompt)
    return RouterDecision(
        router=name,
        version=version.number,
        ranked=[
            RankedChoice(r.model, r.score, r.expected_cost, bias.get(r.model, 0.0))
            if bias
            else RankedChoice(r.model, r.score, r.expected_cost)
            for r in ranked
        ],
        latency_ms=(time.perf_counter() - started) * 1000,
        strategy="trained",
        router_id=row.router_id,
        log=policy.decision_log_new(row, version, prompt, tradeoff, prices or None, task),
        task_hint=None if task is None else {"task": task, "applied": applied, "reason": reason},
    )


def heuristic_decision(
    catalog: CatalogSnapshot,
    tradeoff: float,
    candidates: list[str] | None,
    prompt: str,
    started: float,
    task: str | None = None,
) -> RouterDecision:
    """``router/auto`` before it is trained: capability fit (the gateway's plan drops models that
    cannot serve the request), then price — dearest first when quality matters more."""
    pool: list[ModelInfo] = [
        info
        for model_id, info in catalog.models.items()
        if info.endpoints
        and not info.is_embedding  # a router answers chat; embedding models cannot
        and (candidates is None or model_id in candidates)
    ]
    if not pool and candidates is not None:
        raise NotFound(
            f"None of the candidates ({', '.join(candidates)}) is a catalog chat model; "
            "GET /v1/models lists them.",
            param="model",
            metadata={"candidates": candidates},
        )
    if not pool:
        raise NotFound("router/auto has no catalog model to choose from.", param="model")
    prices = blended_prices(catalog, [m.id for m in pool], prompt)
    tokens = estimated_tokens(prompt)
    ordered = sorted(pool, key=lambda m: prices[m.id], reverse=tradeoff < 0.5)
    return RouterDecision(
        router=f"router/{PLATFORM_ROUTER_SLUG}",
        version=None,
        ranked=[RankedChoice(m.id, None, prices[m.id] * tokens / 1e6) for m in ordered],
        latency_ms=(time.perf_counter() - started) * 1000,
        strategy="heuristic",
        task_hint=None
        if task is None
        else {"task": task, "applied": None, "reason": "router/auto is not trained"},
    )
