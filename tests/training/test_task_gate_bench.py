"""The per-task gate of ``bench/router_task_gate.py`` (issue 20): a task keeps the router only
where its out-of-fold gain over the task's floor clears the standard-error test."""

from __future__ import annotations

import numpy as np

from bench.router_task_gate import task_gates


def test_gate_keeps_the_router_only_where_it_gains_out_of_fold() -> None:
    ids = np.repeat(np.arange(3), 400)
    gains = np.tile(np.r_[np.ones(100), np.zeros(300)], 3)
    diff = np.where(ids == 0, gains, np.where(ids == 1, -gains, 0.0))  # gains, loses, level
    gates = task_gates(ids, 3, diff)
    assert gates["gate"].tolist() == [True, False, False]
    # Task 2 is undecided: ``hier`` gives it the parent's pooled test (level: the floor).
    assert gates["hier"].tolist() == [True, False, False]
    assert not gates["glob"].any()
