"""The shapes probe (opt-in, ~5 min): every generated shape of ``tests/training/shapes.py``
through the service — upload, validation, training, the report, the dashboard's version page and
``select`` — on real PostgreSQL and Redis with eager Celery.

    SHAPES_PROBE=1 pytest tests/training/test_shapes_probe.py [-k 'ratings']

Each shape either trains a router whose held-out (out-of-fold) tradeoff-0 score reaches its best
single model's within noise, whose report holds no NaN and renders, and whose ``select`` answers
every kind of prompt; or is refused with errors naming the row or column. The regression tests
for what it found run in CI (``test_upload_shapes.py``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope
from tests.factories import dashboard_client, key_client, key_make
from tests.training.helpers import upload
from tests.training.shapes import SHAPE_NAMES, Shape, shape_named

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.environ.get("SHAPES_PROBE"), reason="opt-in: SHAPES_PROBE=1"),
]

SELECT_PROMPTS = [
    "Compute 17 + 42 * 3.",
    "",
    "计算 3 加 4",
    "🙂🚀",
    "def f(x):\n    return x",
    "x" * 50_000,
]


def strict_json(content: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(content, parse_constant=refuse)


def floor_tolerance(report: dict[str, Any], noise: float) -> float:
    """Noise on the out-of-fold floor: ``noise`` times the scale of the scores (the largest mean)."""
    scores = [m["mean_score"] for m in report["models"]] + [report["oracle"]["score"]]
    return noise * max(abs(s) for s in scores) + 1e-6


def upload_shape(client: APIClient, shape: Shape, capture: Any) -> dict[str, Any] | None:
    """The dataset's final state, or None when the upload itself was refused (a clear 400)."""
    with capture(execute=True):
        created = upload(client, shape.content, filename=shape.filename, columns=shape.columns,
                         maximize=str(shape.maximize).lower())  # fmt: skip
    assert created.status_code in (201, 400), created.content[:500]
    if created.status_code == 400:
        assert strict_json(created.content)["error"]["message"]
        return None
    shown = client.get(f"/api/v1/datasets/{created.json()['id']}")
    assert shown.status_code == 200
    return strict_json(shown.content)  # type: ignore[no-any-return]


def check_refusal(shape: Shape, dataset: dict[str, Any] | None) -> None:
    assert dataset is None or dataset["status"] == "invalid", dataset
    if dataset is None:
        return
    text = " ".join(f"{e['row']} {e['column']} {e['message']}" for e in dataset["errors"])
    assert dataset["errors"] and all(e["message"] for e in dataset["errors"])
    for word in shape.says:
        assert word in text, (word, text)


def train_and_check(
    tenants: Any, client: APIClient, dataset: dict[str, Any], capture: Any, shape: Shape
) -> None:
    assert dataset["status"] == "ready", dataset.get("errors")
    for model in dataset["models"]:
        assert math.isfinite(model["mean_score"])
    client.post("/api/v1/routers", {"slug": "probe"}, format="json")
    with capture(execute=True):
        started = client.post("/api/v1/routers/probe/train",
                              {"dataset": dataset["id"], "options": {"folds": 3}}, format="json")  # fmt: skip
    assert started.status_code == 202, started.content[:500]
    run = strict_json(client.get(f"/api/v1/training-runs/{started.json()['id']}").content)
    assert run["status"] == "succeeded", run["error"]
    report = strict_json(client.get("/api/v1/routers/probe/versions/1/report").content)
    floor = (report["curve"][0]["score"] - report["best_single"]["score"]) * (
        1 if shape.maximize else -1
    )
    tolerance = floor_tolerance(report, shape.floor_noise)
    assert floor >= -tolerance, (floor, tolerance, report["best_single"], report["curve"][0])
    page = dashboard_client(tenants.member, tenants.organization).get(
        "/dashboard/routers/probe/versions/1/"
    )
    assert page.status_code == 200
    assert "NaN" not in page.content.decode() and ">nan<" not in page.content.decode()
    run_page = dashboard_client(tenants.member, tenants.organization).get(
        f"/dashboard/training-runs/{run['id']}/"
    )
    assert run_page.status_code == 200
    select_everything(tenants, [m["id"] for m in dataset["models"]])


def select_everything(tenants: Any, models: list[str]) -> None:
    inference = key_client(key_make(tenants.organization))
    for prompt in SELECT_PROMPTS:
        for tradeoff in (0, 0.5, 1, "quality", "balanced", "cost"):
            answer = inference.post("/api/v1/routers/probe/select", {
                "messages": [{"role": "user", "content": prompt}], "tradeoff": tradeoff,
            }, format="json")  # fmt: skip
            assert answer.status_code == 200, answer.content[:500]
            assert strict_json(answer.content)["chosen"] in models
    narrowed = inference.post("/api/v1/routers/probe/select", {
        "messages": [{"role": "user", "content": "hi"}], "candidates": models[-2:],
    }, format="json")  # fmt: skip
    assert narrowed.status_code == 200, narrowed.content[:500]
    assert strict_json(narrowed.content)["chosen"] in models[-2:]


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shape(
    name: str, tenants: Any, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    shape = shape_named(name)
    client = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    dataset = upload_shape(client, shape, django_capture_on_commit_callbacks)
    if dataset is not None:
        page = dashboard_client(tenants.member, tenants.organization).get(
            f"/dashboard/datasets/{dataset['id']}/"
        )
        assert page.status_code == 200
    if shape.expect == "invalid":
        check_refusal(shape, dataset)
        return
    assert dataset is not None
    train_and_check(tenants, client, dataset, django_capture_on_commit_callbacks, shape)
