"""Hierarchical task labels are parsed as documented (``training/learner/task_labels.py``): split
at the first ``/`` into two levels, and pooled within their parent past the cap on groups."""

from __future__ import annotations

from training.learner.task_labels import (
    OTHER_SUBTASKS,
    has_subtasks,
    parent_tasks,
    subtask_labels,
    subtasks_capped,
    task_parts,
)


def test_labels_split_at_the_first_separator_into_two_levels() -> None:
    assert task_parts("mmlu/college_physics") == ("mmlu", "college_physics")
    assert task_parts(" mmlu / a/b ") == ("mmlu", "a/b")
    assert task_parts("/physics") == ("(none)", "physics")
    assert subtask_labels(["gsm8k", "mmlu/", "mmlu / x"]) == ["gsm8k", "mmlu", "mmlu/x"]
    assert parent_tasks(["gsm8k", "mmlu/x"]) == ["gsm8k", "mmlu"]
    assert not has_subtasks(["a/x", "b/y", "c"])  # one child per parent: no level below
    assert has_subtasks(["a/x", "a/y", "c"])


def test_past_the_cap_the_rarest_subtasks_pool_within_their_parent() -> None:
    labels = [*(["a/x"] * 5), *(["a/y"] * 4), "a/z", "b/u", "b/v", *(["c"] * 3)]

    capped = subtasks_capped(labels, 4)

    assert len(set(capped)) <= 4
    assert capped.count("a/x") == 5 and capped.count("c") == 3
    assert set(capped) - {"a/x", "c", "a/y"} <= {f"a/{OTHER_SUBTASKS}", f"b/{OTHER_SUBTASKS}"}
    assert parent_tasks(capped) == parent_tasks(labels)
