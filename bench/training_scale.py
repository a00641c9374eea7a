"""Training memory and time per row, straight through the learner (no Django, no upload).

    python -m bench.training_scale --datasets ../shared/datasets --rows 500000 [--folds 3]

One size per run (run it once per size: ``ru_maxrss`` is per process). MMLU resampled as
``make bench`` does (``bench.router.resample_mmlu``: with replacement, each prompt given a
distinct suffix), 2 candidates, ``router_fit_sampled`` (what the worker runs) with the worker's default ``TrainerConfig``. Prints
each stage's peak RSS (sampled every 50 ms), the training time and KB of peak RSS per row above
the process's footprint before training.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.router import MMLU_PRICES, MMLU_STRONG, MMLU_WEAK
from training.learner.sampling import router_fit_sampled
from training.learner.trainer import TrainerConfig, TrainingData


def _rss_mb() -> float:
    with Path("/proc/self/status").open() as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def mmlu_rows(datasets: Path, rows: int, seed: int = 0) -> TrainingData:
    frame = pd.read_csv(datasets / "routellm_mmlu.csv")
    sample = frame.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    models = [MMLU_WEAK, MMLU_STRONG]
    prices = np.array([MMLU_PRICES[m] for m in models]) / 1e6
    prompts = [f"{p}\n(#{i})" for i, p in enumerate(sample["prompt"].astype(str))]
    lengths = np.array([len(p) / 4 for p in prompts])  # ~tokens, for a per-row cost
    return TrainingData(
        prompts=prompts,
        models=models,
        scores=sample[models].to_numpy(float),
        costs=np.outer(lengths, prices),
        binary=[True, True],
    )


class StagePeaks:
    """Peak RSS per training stage, from a sampling thread."""

    def __init__(self) -> None:
        self.stage, self.peaks, self.running = "start", dict[str, float](), True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), _rss_mb())
            time.sleep(0.05)

    def progress(self, stage: str, value: float) -> None:
        self.stage = stage


def measure(datasets: Path, rows: int, folds: int) -> dict[str, object]:
    data = mmlu_rows(datasets, rows)
    before = _rss_mb()
    peaks = StagePeaks()
    started = time.perf_counter()
    fit = router_fit_sampled(data, TrainerConfig(folds=folds), peaks.progress)
    seconds = time.perf_counter() - started
    peaks.running = False
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows,
        "cross_validated_rows": len(fit.oof_predicted),
        "folds": folds,
        "training_seconds": round(seconds, 1),
        "ms_per_row": round(1000 * seconds / rows, 3),
        "rss_before_training_mb": round(before),
        "peak_rss_mb": round(peak),
        "peak_rss_kb_per_row": round(1024 * (peak - before) / rows, 1),
        "stage_peak_rss_mb": {k: round(v) for k, v in peaks.peaks.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.datasets, args.rows, args.folds), indent=2))


if __name__ == "__main__":
    main()
