"""`select` over a version's held-out rows reproduces the curve its report shows (same scores)."""

from __future__ import annotations

import pytest

from accounts.models import KeyScope
from tests.factories import key_client, key_make, organization_make
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = [
    pytest.mark.usefixtures("eager_celery", "media"),
    pytest.mark.django_db(transaction=True),
]


def test_select_on_held_out_rows_gives_the_reported_curve() -> None:
    manage = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    train = upload(
        manage, csv_bytes(synthetic_frame(rows=180, seed=0)), filename="train.csv"
    ).json()
    held_out = synthetic_frame(rows=60, seed=7)
    test = upload(manage, csv_bytes(held_out), filename="test.csv").json()
    manage.post("/api/v1/routers", {"slug": "r", "name": "R", "candidates": ["math-model", "prose-model"]},
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
