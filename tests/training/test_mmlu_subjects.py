"""The ``quality_mmlu`` benchmark's subject recovery (bench/router_mmlu.py): each row of
routellm_mmlu.csv gets its subject from its position, a file of another length is refused, and
the halves are split within each subject. Generated files of the right shape, no dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.router_mmlu import (
    MMLU_ROWS,
    MMLU_STRONG,
    MMLU_SUBJECT_ROWS,
    MMLU_WEAK,
    mmlu_labelled,
    mmlu_subjects,
    split_by_task,
)


def _csv(tmp_path: Path, rows: int, duplicate: tuple[int, int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    prompts = [f"question {i}" for i in range(rows)]
    if duplicate is not None:
        prompts[duplicate[1]] = prompts[duplicate[0]]
    frame = pd.DataFrame(
        {
            "prompt": prompts,
            MMLU_WEAK: rng.random(rows) < 0.7,
            MMLU_STRONG: rng.random(rows) < 0.8,
        }
    )
    path = tmp_path / "routellm_mmlu.csv"
    frame.to_csv(path, index=False)
    return path


def test_the_table_holds_57_sorted_subjects_and_the_files_14037_rows() -> None:
    names = [name for name, _ in MMLU_SUBJECT_ROWS]
    counts = dict(MMLU_SUBJECT_ROWS)

    assert len(names) == len(set(names)) == 57
    assert names == sorted(names)  # RouteLLM's files concatenated in sorted order
    assert MMLU_ROWS == sum(counts.values()) == 14_037
    # MMLU's test split minus RouteLLM's 5 contaminated prompts, one in each of these:
    assert counts["college_chemistry"] == 99 and counts["machine_learning"] == 111
    assert counts["abstract_algebra"] == 100 and counts["professional_law"] == 1534


@pytest.mark.parametrize("rows", [10, MMLU_ROWS - 1, MMLU_ROWS + 1])
def test_a_file_of_another_length_is_refused(tmp_path: Path, rows: int) -> None:
    with pytest.raises(ValueError, match="14,037"):
        mmlu_subjects(rows)
    if rows == 10:  # a tiny file, read the way the benchmark reads it
        with pytest.raises(ValueError, match=r"has 10 rows, not the 14,037"):
            mmlu_labelled(_csv(tmp_path, rows))


def test_rows_take_their_subject_from_their_position_at_the_boundaries(tmp_path: Path) -> None:
    frame = mmlu_labelled(_csv(tmp_path, MMLU_ROWS))
    task = frame["task"].tolist()

    assert len(frame) == MMLU_ROWS
    assert task[0] == task[99] == "mmlu/abstract_algebra"
    assert task[100] == task[234] == "mmlu/anatomy"
    assert task[235] == "mmlu/astronomy"
    first_chemistry = 100 + 135 + 152 + 100 + 265 + 144
    assert task[first_chemistry - 1] == "mmlu/college_biology"
    assert task[first_chemistry] == task[first_chemistry + 98] == "mmlu/college_chemistry"
    assert task[first_chemistry + 99] == "mmlu/college_computer_science"
    assert task[MMLU_ROWS - 172] == "mmlu/virology"
    assert task[MMLU_ROWS - 171] == task[-1] == "mmlu/world_religions"
    assert list(frame.columns) == ["prompt", "task", MMLU_WEAK, MMLU_STRONG]


def test_duplicates_keep_their_first_row_and_halves_split_within_each_subject(
    tmp_path: Path,
) -> None:
    frame = mmlu_labelled(_csv(tmp_path, MMLU_ROWS, duplicate=(5, 150)))  # algebra's in anatomy
    halves = split_by_task(frame, seed=0)
    train, test = halves["train"], halves["test"]

    assert len(frame) == MMLU_ROWS - 1
    assert frame.loc[frame["prompt"] == "question 5", "task"].tolist() == ["mmlu/abstract_algebra"]
    assert not set(train["prompt"]) & set(test["prompt"])
    assert len(train) + len(test) == len(frame)
    sizes = frame["task"].value_counts()
    assert (test["task"].value_counts()[sizes.index] == sizes // 2).all()
    assert test["task"].value_counts()["mmlu/anatomy"] == 67  # 135 - 1 duplicate, halved down
    again = split_by_task(frame, seed=0)["test"]
    other = split_by_task(frame, seed=1)["test"]
    assert again["prompt"].tolist() == test["prompt"].tolist()
    assert set(other["prompt"]) != set(test["prompt"])
