"""Hierarchical task labels: ``parent/child`` (``mmlu/college_physics``) names a subtask.

A task label is split at its first ``SEPARATOR`` into the parent task and the subtask (two levels;
``a/b/c`` is task ``a``, subtask ``b/c``); spaces around the parts are dropped, a label without one
(or with nothing after it) is a task without subtasks, one with nothing before it has the parent
``(none)``. The learner builds two families from them (``segments.py``): tasks at the parent
level, and subtasks whose bests are shrunk toward their parent's means; the report slices by the
parent level when it has two tasks or more.

*Why one string rather than a second list through the pipeline:* the stored dataset, its report
slices and every caller keep one task per row; an upload with a subtask column joins the two at
ingest (``training/ingest.py``).
"""

from __future__ import annotations

import numpy as np

SEPARATOR = "/"
NO_PARENT = "(none)"
OTHER_SUBTASKS = "(other subtasks)"  # a parent's subtasks pooled past the cap on groups


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


def has_subtasks(labels: list[str]) -> bool:
    """Whether some parent task is split into two labels or more (a level below the tasks)."""
    return len(set(subtask_labels(labels))) > len(set(parent_tasks(labels)))


def subtasks_capped(labels: list[str], cap: int) -> list[str]:
    """``subtask_labels`` with at most ``cap`` distinct values where the parents allow it: the
    rarest subtasks fall back to ``parent/(other subtasks)``, so a pooled row keeps its parent,
    as many as the cap needs (past ``cap`` parents, ``segments.task_ids`` pools the rest)."""
    leaves = subtask_labels(labels)
    names, counts = np.unique(np.asarray(leaves, dtype=str), return_counts=True)
    if len(names) <= cap:
        return leaves
    order = [str(names[i]) for i in np.argsort(-counts, kind="stable")]
    pooled = {name: _pooled(name) for name in order}
    for kept in range(cap, -1, -1):
        if len({*order[:kept], *(pooled[name] for name in order[kept:])}) <= cap:
            break
    keep = set(order[:kept])
    return [leaf if leaf in keep else pooled[leaf] for leaf in leaves]


def _pooled(leaf: str) -> str:
    """A subtask's label once pooled within its parent (a task without subtasks keeps its own)."""
    parent, child = task_parts(leaf) if SEPARATOR in leaf else (leaf, "")
    return f"{parent}{SEPARATOR}{OTHER_SUBTASKS}" if child else parent


def parent_index(leaf_names: list[str], parent_names: list[str]) -> np.ndarray:
    """(leaves,) the index in ``parent_names`` of each leaf's parent (-1: none there, e.g. the
    pooled "(other tasks)")."""
    where = {name: i for i, name in enumerate(parent_names)}
    return np.array([where.get(p, -1) for p in parent_tasks(leaf_names)], dtype=np.int64)
