"""`select` over a version's held-out rows reproduces the curve its report shows (same scores)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from accounts.models import KeyScope
from tests.factories import key_client, key_make, organization_make
from tests.routing.world import World
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = [
    pytest.mark.usefixtures("eager_celery", "media", "selects_unlimited"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def selects_unlimited(settings: Any) -> None:
    """The replay makes one select per held-out row per curve point (over a thousand within a
    minute), past a key's select bucket (``ROUTER_SELECT_RPM_DEFAULT``)."""
    settings.ROUTER_SELECT_RPM_DEFAULT = 0


def _train_and_replay(manage: Any, names: dict[str, str]) -> None:
    """Train on one synthetic file, report on another, then replay every curve point through
    ``select`` and compare its score and cost with the report's."""

    def frame(rows: int, seed: int) -> pd.DataFrame:
        return synthetic_frame(rows=rows, seed=seed).rename(
            columns=lambda c: (
                names.get(c.split("/")[0], c.split("/")[0]) + "/" + c.split("/")[1]
                if "/" in c
                else c
            )
        )

    train = upload(manage, csv_bytes(frame(180, 0)), filename="train.csv").json()
    held_out = frame(60, 7)
    test = upload(manage, csv_bytes(held_out), filename="test.csv").json()
    candidates = [names["math-model"], names["prose-model"]]
    manage.post("/api/v1/routers", {"slug": "r", "name": "R", "candidates": candidates},
                format="json")  # fmt: skip
    run = manage.post("/api/v1/routers/r/train", {"dataset": train["id"], "options": {"test_dataset": test["id"]}},
                      format="json").json()  # fmt: skip
    assert manage.get(f"/api/v1/training-runs/{run['id']}").json()["status"] == "succeeded"
    report = manage.get("/api/v1/routers/r/versions/1/report").json()
    assert report["evaluation"]["method"] == "holdout"

    for point in report["curve"]:
        picks = [
            manage.post(
                "/api/v1/routers/r/select",
                {"prompt": prompt, "tradeoff": point["tradeoff"]},
                format="json",
            ).json()["chosen"]
            for prompt in held_out["prompt"]
        ]
        score = sum(held_out.loc[i, f"{m}/score"] for i, m in enumerate(picks)) / len(picks)
        cost = sum(held_out.loc[i, f"{m}/cost"] for i, m in enumerate(picks)) / len(picks)
        assert score == pytest.approx(point["score"], abs=1e-6), point
        assert cost == pytest.approx(point["cost"], rel=1e-6), point


def test_select_on_held_out_rows_gives_the_reported_curve() -> None:
    manage = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    _train_and_replay(manage, {"math-model": "math-model", "prose-model": "prose-model"})


def test_select_gives_the_reported_curve_when_catalog_prices_disagree_with_the_dataset(
    world: World,
) -> None:
    """Candidates are catalog models whose catalog prices invert the dataset's costs (test/gpt
    is the catalog's cheap model, the file says test/claude is 10x cheaper): a tradeoff still
    means what the report showed, because decisions use the calibrated costs."""
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    _train_and_replay(manage, {"math-model": "test/claude", "prose-model": "test/gpt"})
