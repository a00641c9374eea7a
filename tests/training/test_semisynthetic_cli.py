"""The semi-synthetic benchmark's command line: ``--quick`` keeps ``--only``'s scenarios, and
``--against`` pairs rows only with a ``--rows`` file of the same seeds and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.router_semisynthetic import SCENARIOS, arguments, earlier_rows, pairing, plan


def test_quick_runs_the_scenarios_only_names() -> None:
    named = SCENARIOS[1].name

    _, scenarios, sizes, seeds = plan(arguments().parse_args(["--quick", "--only", named]))
    _, default, _, _ = plan(arguments().parse_args(["--quick"]))

    assert [s.name for s in scenarios] == [named]
    assert sizes == (400, 200) and seeds == [0]
    assert [s.name for s in default] == [SCENARIOS[0].name, SCENARIOS[3].name]


def test_rows_of_the_same_seeds_and_sizes_are_read_without_their_pairing(tmp_path: Path) -> None:
    path = tmp_path / "rows.npz"
    np.savez(path, **{"task/router_with_tasks": np.ones(3)}, **pairing([0, 1], (400, 200)))

    earlier = earlier_rows(path, [0, 1], (400, 200))

    assert list(earlier) == ["task/router_with_tasks"]


@pytest.mark.parametrize(
    ("seeds", "sizes", "message"),
    [([0, 2], (400, 200), "seeds [0, 1]"), ([0, 1], (2000, 1000), "sizes [400, 200]")],
)
def test_rows_of_other_seeds_or_sizes_are_refused(
    tmp_path: Path, seeds: list[int], sizes: tuple[int, int], message: str
) -> None:
    path = tmp_path / "rows.npz"
    np.savez(path, **{"task/router_with_tasks": np.ones(3)}, **pairing([0, 1], (400, 200)))

    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        earlier_rows(path, seeds, sizes)


def test_rows_saved_without_seeds_and_sizes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.npz"
    np.savez(path, **{"task/router_with_tasks": np.ones(3)})

    with pytest.raises(ValueError, match="saved before seeds and sizes were recorded"):
        earlier_rows(path, [0], (400, 200))
