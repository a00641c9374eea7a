"""The semi-synthetic benchmark's label generator (bench/semisynthetic_labels.py) carries the
structure it documents: a different best model per task with close overall means, a different
best model per subtopic, prompt-level structure the text partly shows, reproducible seeds; and
one tiny end-to-end run of the benchmark's scenario loop."""

from __future__ import annotations

import numpy as np
import pytest

from bench.router_semisynthetic import reference_picks, run_seed, scenario_summary, served_scores
from bench.semisynthetic_labels import (
    FAMILIES,
    TASKS,
    Pool,
    Structure,
    labels_draw,
    prompt_pool,
    split_rows,
    subtask_labels,
)
from tests.training.conftest import SHARED_DATASETS
from training.learner.trainer import TrainerConfig


@pytest.fixture(scope="module")
def pool() -> Pool:
    if not (SHARED_DATASETS / "routellm_mmlu.csv").exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return prompt_pool(SHARED_DATASETS)


def _best(labels: np.ndarray, rows: np.ndarray) -> int:
    return int(np.argmax(labels[rows].mean(axis=0)))


def test_each_task_has_its_own_best_model_and_overall_means_are_close(pool: Pool) -> None:
    labels = labels_draw(pool, Structure(), seed=0)
    train, _ = split_rows(pool, 2000, 1000, seed=0)

    bests = {task: _best(labels, train[pool.tasks[train] == task]) for task in TASKS}
    margins = [
        np.diff(np.sort(labels[train[pool.tasks[train] == task]].mean(axis=0))[-2:])[0]
        for task in TASKS
    ]
    means = labels[train].mean(axis=0)

    assert len(set(bests.values())) == len(TASKS)
    assert min(margins) > 0.08  # each task's best is clearly best there
    assert means.max() - means.min() <= 0.1


def test_each_subtopic_has_a_best_model_other_than_its_tasks(pool: Pool) -> None:
    structure = Structure(subtopic=True)
    labels = labels_draw(pool, structure, seed=0)

    for task in TASKS:
        in_task = pool.tasks == task
        task_best = _best(labels, np.flatnonzero(in_task))
        subtopic_bests = [
            _best(labels, np.flatnonzero(in_task & (pool.groups == g)))
            for g in range(len(FAMILIES[task]))
        ]
        assert task_best not in subtopic_bests
        assert len(set(subtopic_bests)) == len(subtopic_bests)
        # "other" (no keyword family) keeps the task's best model
        assert _best(labels, np.flatnonzero(in_task & (pool.groups == len(FAMILIES[task])))) == (
            task_best
        )


def test_subtopic_and_prompt_structure_are_worth_finding_on_held_out_rows(pool: Pool) -> None:
    train, test = split_rows(pool, 2000, 1000, seed=1)
    gains = {}
    for structure in (Structure(), Structure(subtopic=True), Structure(prompt=True)):
        labels = labels_draw(pool, structure, seed=1)
        served = served_scores(labels[test], reference_picks(pool, structure, labels, train, test))
        gains[structure.name] = {
            k: float(v.mean() - served["task_floor"].mean()) for k, v in served.items()
        }

    assert gains["task"]["best_single"] < -0.05
    assert gains["task"]["subtopic_floor"] == pytest.approx(0.0, abs=0.005)
    assert gains["task+subtopic"]["subtopic_floor"] > 0.04
    assert gains["task+prompt"]["subtopic_floor"] == pytest.approx(0.0, abs=0.01)
    assert gains["task+prompt"]["observable"] > 0.015


def test_labels_and_splits_are_reproducible_from_the_seed(pool: Pool) -> None:
    structure = Structure(subtopic=True, prompt=True)

    first, again = labels_draw(pool, structure, seed=3), labels_draw(pool, structure, seed=3)
    other = labels_draw(pool, structure, seed=4)
    train, test = split_rows(pool, 2000, 1000, seed=3)

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(train, split_rows(pool, 2000, 1000, seed=3)[0])
    assert not set(train.tolist()) & set(test.tolist())


def test_arc_prompts_take_mmlus_layout_in_the_multiple_choice_scenario(pool: Pool) -> None:
    arc = [p for p, t in zip(pool.mc_prompts, pool.tasks, strict=True) if t == "arc"]

    assert all(p.endswith("\nAnswer:") for p in arc)
    assert not any("Print only a single choice" in p for p in arc)
    assert sum("\nA. " in p for p in arc) > 0.95 * len(arc)


def test_subtask_labels_name_each_prompts_subtopic_under_its_task(pool: Pool) -> None:
    labels = subtask_labels(pool)

    assert [label.split("/")[0] for label in labels] == pool.tasks.tolist()
    assert len(set(labels)) == len(set(zip(pool.tasks.tolist(), pool.groups.tolist(), strict=True)))
    assert {label for label in labels if label.startswith("mmlu/")} == {
        "mmlu/math",
        "mmlu/science",
        "mmlu/society",
        "mmlu/other",
    }


def test_a_tiny_run_beats_the_best_single_model_on_task_structure(pool: Pool) -> None:
    config = TrainerConfig(folds=2, boost_rounds=20, threads=1)

    served = run_seed(pool, Structure(), (240, 160), seed=0, config=config)

    assert set(served) >= {"router_without_tasks", "router_with_tasks", "task_floor", "oracle"}
    assert served["router_without_tasks"].mean() > served["best_single"].mean()


def test_a_run_without_the_task_column_fits_only_that_router(pool: Pool) -> None:
    config = TrainerConfig(folds=2, boost_rounds=20, threads=1)

    served = run_seed(pool, Structure(), (240, 160), 0, config, fits=("without",))
    summary = scenario_summary([served])

    assert "router_without_tasks" in served and "router_with_tasks" not in served
    assert "router_without_tasks - task_floor" in summary
    assert not any(key.startswith("router_with_tasks") for key in summary)
