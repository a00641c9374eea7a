"""Cascade before use on RouteLLM MMLU: cheap model, then the strong one, the cheap step gated by
the router's predicted score for it, replayed on the router's held-out (out-of-fold) rows.

    python -m bench.cascade --datasets ../shared/datasets [--json out.json]

Trains the MMLU router exactly as ``bench.router --only mmlu`` does (upload, 5-fold training run,
RouteLLM's prices) in a throwaway SQLite database, defines the cascade as a pipeline version
(``Mixtral -> GPT-4``, ``pre_gate`` on the router; the MMLU model names are not catalog ids, so
the version is stored directly rather than through the API's catalog check) and asks
``routing.pipeline_api.pipeline_report`` for its report, the function behind
``GET /api/v1/pipelines/{slug}/report``. Prints the cascade's curve beside the router's, both
curves' AIQ, the best score each reaches within cost budgets, and RouteLLM's APGR/CPT for the
cascade's gate (ranking prompts by the cheap model's predicted score alone) beside the router's
(ranking them by the predicted difference between the two models).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.router import (
    MMLU_PRICES,
    MMLU_STRONG,
    MMLU_WEAK,
    _django,
    _organization,
    _train,
    _upload,
)

BUDGETS = (0.1, 0.25, 0.5, 0.75)  # shares of the strong model's mean cost


def bench_cascade(datasets: Path) -> dict[str, Any]:
    from routing.models import Pipeline
    from routing.pipeline_api import pipeline_report, pipeline_version_add

    organization = _organization()
    columns = {"prompt": "prompt", "scores": {MMLU_WEAK: MMLU_WEAK, MMLU_STRONG: MMLU_STRONG}}
    dataset = _upload(organization, datasets / "routellm_mmlu.csv", columns)
    version, wall = _train(
        organization, "mmlu", [MMLU_WEAK, MMLU_STRONG], dataset, {"prices": MMLU_PRICES, "folds": 5}
    )
    pipeline = Pipeline.objects.create(organization=organization, slug="mmlu-cascade", name="c")
    gate = {"type": "router_score", "router": "mmlu", "min_score": 0.5}
    steps = [{"model": MMLU_WEAK, "pre_gate": gate}, {"model": MMLU_STRONG}]
    pipeline_version_add(pipeline, "cascade", steps)
    started = time.perf_counter()
    report = pipeline_report(organization, pipeline, None)
    report_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    pipeline_report(organization, pipeline, None)
    cached_ms = (time.perf_counter() - started) * 1000
    return {
        "benchmark": "cascade Mixtral -> GPT-4 on RouteLLM MMLU, 5-fold out-of-fold rows",
        "rows": report["evaluation"]["rows"],
        "aiq": report["aiq"],
        "configured_min_score_0.5": report["configured"],
        "within_budget": _within_budgets(report),
        "routellm": {"router": _router_routellm(version), "cascade": _cascade_routellm(version)},
        "curve": [{k: p[k] for k in ("min_score", "score", "cost", "share")} for p in report["curve"]],
        "router_curve": [{k: p[k] for k in ("tradeoff", "score", "cost")} for p in report["router_curve"]],
        "models": report["models"],
        "report_ms": round(report_ms, 1),
        "report_cached_ms": round(cached_ms, 2),
        "training_run_wall_seconds": round(wall, 1),
    }  # fmt: skip


def _within_budgets(report: dict[str, Any]) -> list[dict[str, Any]]:
    from training.learner import metrics

    strong_cost = next(m["mean_cost"] for m in report["models"] if m["id"] == MMLU_STRONG)
    cascade = [(p["cost"], p["score"]) for p in report["curve"]]
    router = [(p["cost"], p["score"]) for p in report["router_curve"]]
    return [
        {
            "budget": f"{share:.0%} of GPT-4's cost",
            "cascade": metrics.best_quality_within(cascade, share * strong_cost),
            "router": metrics.best_quality_within(router, share * strong_cost),
        }
        for share in BUDGETS
    ]


def _held_out(version: Any) -> Any:
    from training.heldout import heldout_load

    held = heldout_load(version)
    assert held is not None
    return held, held.models.index(MMLU_WEAK), held.models.index(MMLU_STRONG)


def _routellm(rates: Any, held: Any, weak: int, strong: int) -> dict[str, float]:
    from training.learner import metrics

    curve = metrics.routellm_curve(rates, held.scores[:, strong], held.scores[:, weak])
    return {
        "apgr": round(metrics.routellm_apgr(curve), 4),
        "cpt50_percent": round(metrics.routellm_cpt(curve, 0.5), 2),
        "cpt80_percent": round(metrics.routellm_cpt(curve, 0.8), 2),
    }


def _cascade_routellm(version: Any) -> dict[str, float]:
    """The cascade's gate as a RouteLLM router: the lower the cheap model's predicted score,
    the sooner the prompt goes to the strong model."""
    held, weak, strong = _held_out(version)
    return _routellm(-held.predicted[:, weak], held, weak, strong)


def _router_routellm(version: Any) -> dict[str, float]:
    held, weak, strong = _held_out(version)
    return _routellm(held.predicted[:, strong] - held.predicted[:, weak], held, weak, strong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    datasets = args.datasets.resolve()
    if not (datasets / "routellm_mmlu.csv").exists():
        raise SystemExit(f"datasets not found in {datasets} (see bench/router.py's docstring)")
    with tempfile.TemporaryDirectory(prefix="rh-bench-cascade-") as workdir:
        _django(Path(workdir))
        result = bench_cascade(datasets)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
