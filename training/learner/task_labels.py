"""Hierarchical task labels: ``parent/child`` (``mmlu/college_physics``) names a subtask.

A task label is split at its first ``SEPARATOR`` into the parent task and the subtask (two levels;
``a/b/c`` is task ``a``, subtask ``b/c``); spaces around the parts are dropped, a label without one
(or with nothing after it) is a task without subtasks, one with nothing before it has the parent
``(none)``. The learner builds two families from them (``segments.py``): tasks at the parent
level, and subtasks whose bests are shrunk toward their parent's means; the report slices by the
parent level when it has two tasks or more.

A ``/`` is not always a level: ``openai/gsm8k`` names one dataset. An upload decides once, at
ingest (``training/task_columns.py``: ``columns.task_hierarchy``, else ``split_parents``, parent
by parent), and stores each row's parent task beside its label (``parents`` below); labels without
their parents (datasets stored before that, the benchmarks) split at the first ``/`` as above.
The label stays one string per row (the report slices and every caller keep one task per row);
the parents only say where its level is.
"""

from __future__ import annotations

import numpy as np

SEPARATOR = "/"
NO_PARENT = "(none)"
OTHER_SUBTASKS = "(other subtasks)"  # a parent's subtasks pooled past the cap on groups
# Distinct children a parent needs for the automatic rule to read its names' "/" as a level
# (decided per parent): a benchmark's subjects are many (MMLU 57, BBH 23), a publisher's datasets
# few (``openai/gsm8k``, ``openai/humaneval``).
MIN_CHILDREN_PER_PARENT = 3


def task_parts(label: str) -> tuple[str, str]:
    """(parent, subtask) of a label; the subtask is "" for a task without one."""
    parent, _, child = label.partition(SEPARATOR)
    return parent.strip() or NO_PARENT, child.strip()


def parent_tasks(labels: list[str]) -> list[str]:
    """Each label's parent task (the label itself when it has no subtask)."""
    return [task_parts(label)[0] if SEPARATOR in label else label for label in labels]


def subtask_labels(labels: list[str]) -> list[str]:
    """Each label normalised as ``parent/subtask`` (or ``parent``)."""
    out = []
    for label in labels:
        parent, child = task_parts(label) if SEPARATOR in label else (label, "")
        out.append(f"{parent}{SEPARATOR}{child}" if child else parent)
    return out


def split_parents(names: list[str]) -> set[str]:
    """The parents whose names' ``/`` reads as a level below the tasks, each decided on its own:
    those with ``MIN_CHILDREN_PER_PARENT`` distinct children or more (``mmlu/anatomy``,
    ``mmlu/college_physics``, ``mmlu/virology``), not a publisher's prefix on a dataset or two
    (``openai/gsm8k``, ``cais/mmlu``), however many subjects another parent has beside them."""
    children: dict[str, set[str]] = {}
    for name in set(names):
        parent, child = task_parts(name)
        if SEPARATOR in name and child:
            children.setdefault(parent, set()).add(child)
    return {parent for parent, found in children.items() if len(found) >= MIN_CHILDREN_PER_PARENT}


def name_levels(names: list[str], split: set[str] | None) -> tuple[list[str], list[str]]:
    """(each name's label, its parent task): a name holding a ``/`` under a parent in ``split``
    (None: every parent) as ``parent/subtask`` under its parent, any other name whole, its own
    parent."""
    labels, parents = [], []
    for name in names:
        parent, child = task_parts(name)
        if SEPARATOR in name and (split is None or parent in split):
            labels.append(f"{parent}{SEPARATOR}{child}" if child else parent)
            parents.append(parent)
        else:
            labels.append(name)
            parents.append(name)
    return labels, parents


def task_levels(labels: list[str], parents: list[str] | None) -> tuple[list[str], list[str]]:
    """(each row's parent task, each row's label as ``parent/subtask`` or ``parent``): the
    labels as they are when their ``parents`` are given, else split at the first ``/``."""
    if parents is None:
        return parent_tasks(labels), subtask_labels(labels)
    return list(parents), list(labels)


def has_subtasks(labels: list[str], parents: list[str] | None = None) -> bool:
    """Whether some parent task is split into two labels or more (a level below the tasks)."""
    parents, leaves = task_levels(labels, parents)
    return len(set(leaves)) > len(set(parents))


def subtasks_capped(labels: list[str], cap: int, parents: list[str] | None = None) -> list[str]:
    """``subtask_labels`` with at most ``cap`` distinct values where the parents allow it: the
    rarest subtasks fall back to ``parent/(other subtasks)``, so a pooled row keeps its parent,
    as many as the cap needs (past ``cap`` parents, ``segments.task_ids`` pools the rest)."""
    parents, leaves = task_levels(labels, parents)
    names, counts = np.unique(np.asarray(leaves, dtype=str), return_counts=True)
    if len(names) <= cap:
        return leaves
    parent_of = dict(zip(leaves, parents, strict=True))
    order = [str(names[i]) for i in np.argsort(-counts, kind="stable")]
    pooled = {name: _pooled(name, parent_of[name]) for name in order}
    for kept in range(cap, -1, -1):
        if len({*order[:kept], *(pooled[name] for name in order[kept:])}) <= cap:
            break
    keep = set(order[:kept])
    return [leaf if leaf in keep else pooled[leaf] for leaf in leaves]


def _pooled(leaf: str, parent: str) -> str:
    """A subtask's label once pooled within its parent (a task without subtasks keeps its own)."""
    return f"{parent}{SEPARATOR}{OTHER_SUBTASKS}" if leaf != parent else parent


def parent_index(
    leaf_names: list[str], parent_names: list[str], leaf_parents: dict[str, str]
) -> np.ndarray:
    """(leaves,) the index in ``parent_names`` of each leaf's parent (``leaf_parents``; -1: none
    there, e.g. the pooled "(other tasks)")."""
    where = {name: i for i, name in enumerate(parent_names)}
    parents = [leaf_parents.get(leaf, leaf) for leaf in leaf_names]
    return np.array([where.get(p, -1) for p in parents], dtype=np.int64)
