"""Regression tests for what the shapes probe (``test_shapes_probe.py``) found, through the API on
real PostgreSQL with eager Celery: lower-is-better datasets (``maximize=false``) filled empty
score cells with the model's best loss and ranked the cheapest stand-in cost to the best model;
an 'N/A' score cell was refused without saying that an empty cell is how to leave a score out;
scores near 1e300 were accepted, then overflowed the float32 heads (a 500 in select); tab- and
semicolon-separated files were refused as one column."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope
from tests.factories import key_client, key_make
from tests.training.helpers import upload
from tests.training.shapes import base_frame, csv_of, rescaled, shape_named

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(tenants: Any, media: Any, eager_celery: None) -> APIClient:
    return key_client(key_make(tenants.organization, KeyScope.MANAGE))


def losses(rows: int = 60) -> pd.DataFrame:
    """Three models whose losses (lower is better) average about 1, 2 and 3."""
    rng = np.random.default_rng(0)
    data: dict[str, Any] = {
        "prompt": [f"Question {i}: what is {i} * {i + 3}?" for i in range(rows)]
    }
    for j in range(3):
        data[f"m{j}/score"] = np.round(1.0 + j + rng.normal(0, 0.3, rows), 3)
    return pd.DataFrame(data)


def validated(client: APIClient, content: bytes, capture: Any, **fields: Any) -> dict[str, Any]:
    with capture(execute=True):
        created = upload(client, content, **fields)
    assert created.status_code == 201, created.content[:300]
    return client.get(f"/api/v1/datasets/{created.json()['id']}").json()  # type: ignore[no-any-return]


def trained(client: APIClient, dataset: dict[str, Any], capture: Any, slug: str) -> Any:
    """Train router ``slug`` on ``dataset`` (2 folds) through the API; its report, strictly read
    (NaN or Infinity in it fail here)."""
    client.post("/api/v1/routers", {"slug": slug}, format="json")
    with capture(execute=True):
        started = client.post(f"/api/v1/routers/{slug}/train",
                              {"dataset": dataset["id"], "options": {"folds": 2}}, format="json")  # fmt: skip
    run = client.get(f"/api/v1/training-runs/{started.json()['id']}").json()
    assert run["status"] == "succeeded", run["error"]
    report = client.get(f"/api/v1/routers/{slug}/versions/1/report").content
    return json.loads(report, parse_constant=_refuse)


def test_an_empty_loss_counts_as_the_models_highest_loss_not_its_best(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    frame = losses()
    worst = float(frame["m0/score"].max())
    frame = frame.astype({"m0/score": object})
    frame.loc[:9, "m0/score"] = ""  # ten missing answers

    dataset = validated(admin_api, csv_of(frame), django_capture_on_commit_callbacks,
                        maximize="false")  # fmt: skip

    assert dataset["status"] == "ready", dataset["errors"]
    observed = pd.to_numeric(frame["m0/score"].iloc[10:])
    expected = (observed.sum() + 10 * worst) / len(frame)
    m0 = next(m for m in dataset["models"] if m["id"] == "m0")
    assert m0["mean_score"] == pytest.approx(expected, abs=1e-6)
    assert f"counted as its worst score ({worst:g})" in " ".join(dataset["warnings"])


def test_without_costs_the_lowest_loss_model_gets_the_highest_stand_in_cost(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    dataset = validated(admin_api, csv_of(losses()), django_capture_on_commit_callbacks,
                        maximize="false")  # fmt: skip
    report = trained(admin_api, dataset, django_capture_on_commit_callbacks, "r")

    cost = {m["id"]: m["mean_cost"] for m in report["models"]}
    assert report["best_single"]["id"] == "m0"  # the lowest loss
    assert cost["m0"] > cost["m1"] > cost["m2"]  # the better, the dearer (rank stand-in)
    assert report["curve"][-1]["share"].get("m2", 0) == 1  # all cost, no quality: the worst


@pytest.mark.parametrize(
    ("shape_name", "row", "column", "says"),
    [
        # 'N/A' was refused before too, without saying how to leave a score out.
        ("'N/A' cell", 8, "m1/score", "leave the cell empty where the model has no score"),
        # Accepted before: they became inf in the float32 heads and select answered 500.
        ("scores near 1e300", 1, "m0/score", "is beyond ±1e+15; rescale the column"),
    ],
)
def test_a_cell_that_cannot_be_a_score_is_refused_naming_it_and_what_to_do(
    admin_api: APIClient,
    django_capture_on_commit_callbacks: Any,
    shape_name: str,
    row: int,
    column: str,
    says: str,
) -> None:
    dataset = validated(admin_api, shape_named(shape_name).content,
                        django_capture_on_commit_callbacks)  # fmt: skip

    assert dataset["status"] == "invalid"
    error = dataset["errors"][0]
    assert (error["row"], error["column"]) == (row, column)
    assert says in error["message"]


@pytest.mark.parametrize("shape_name", ["tab-separated", "semicolon-separated"])
def test_a_tab_or_semicolon_separated_file_reads_like_its_comma_separated_twin(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any, shape_name: str
) -> None:
    """Refused before: one column named 'prompt\\tm0/score\\t…' and 'No prompt column'."""
    twin = validated(admin_api, shape_named("binary 0/1 (control)").content,
                     django_capture_on_commit_callbacks)  # fmt: skip
    shape = shape_named(shape_name)

    dataset = validated(admin_api, shape.content, django_capture_on_commit_callbacks,
                        filename=shape.filename)  # fmt: skip

    assert dataset["status"] == "ready", dataset["errors"]
    assert dataset["rows"] == twin["rows"] == 150
    assert dataset["models"] == twin["models"]


def decimals(rows: int = 60) -> pd.DataFrame:
    """Scores on a 0 to 10 scale and costs with fractional digits: what a decimal comma spells."""
    frame = rescaled(base_frame(rows=rows), 0, 10).drop(columns=["family"])
    for j in range(3):
        frame[f"m{j}/cost"] = np.round(0.0015 * (j + 1) + 0.0001 * (np.arange(rows) % 7), 5)
    return frame


def test_a_semicolon_file_with_decimal_commas_reads_like_its_comma_twin(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    """A European locale's export ('0,75' in a ';'-separated file) was refused cell by cell as
    'is not a score'."""
    frame = decimals()
    european = frame.to_csv(index=False, sep=";", decimal=",").encode()
    assert b";9,274;0,0015;" in european  # really decimal commas
    twin = validated(admin_api, csv_of(frame), django_capture_on_commit_callbacks)

    dataset = validated(admin_api, european, django_capture_on_commit_callbacks)

    assert dataset["status"] == "ready", dataset["errors"][:3]
    assert dataset["rows"] == twin["rows"] == 60
    assert dataset["models"] == twin["models"]
    assert 0 < dataset["models"][0]["mean_score"] < 10
    assert dataset["models"][0]["mean_score"] != round(dataset["models"][0]["mean_score"])


@pytest.mark.parametrize("separator", [",", "\t"])
def test_a_decimal_comma_is_still_not_a_number_in_a_comma_or_tab_file(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any, separator: str
) -> None:
    """Only a semicolon-separated file reads '0,75' as 0.75: in a comma file it is a quoted cell
    that a person meant as two (and a tab file comes from a locale that kept its commas)."""
    frame = decimals().astype({"m1/score": object})
    frame.loc[4, "m1/score"] = "0,75"
    content = frame.to_csv(index=False, sep=separator).encode()

    dataset = validated(admin_api, content, django_capture_on_commit_callbacks)

    assert dataset["status"] == "invalid"
    error = dataset["errors"][0]
    assert (error["row"], error["column"]) == (5, "m1/score")
    assert "'0,75' is not a score" in error["message"]


@pytest.mark.parametrize("cell", ["1.234,5", "1,234,5"])
def test_a_semicolon_file_refuses_thousands_separators_saying_what_to_write(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any, cell: str
) -> None:
    """'1.234,5' is 1234.5 in Germany, but '1.234' beside it would be 1.234: refused, not guessed."""
    frame = decimals().astype({"m2/cost": object})
    frame.loc[2, "m2/cost"] = cell
    content = frame.to_csv(index=False, sep=";", decimal=",").encode()

    dataset = validated(admin_api, content, django_capture_on_commit_callbacks)

    assert dataset["status"] == "invalid"
    assert len(dataset["errors"]) == 1
    error = dataset["errors"][0]
    assert (error["row"], error["column"]) == (3, "m2/cost")
    assert error["message"].startswith(f"Row 3: '{cell}' mixes thousands separators")
    assert "write the number without thousands separators (1234,5 or 1234.5)" in error["message"]


def test_scores_and_costs_at_the_bound_train_and_select_answers(
    admin_api: APIClient, tenants: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The ±1e15 bound was only trained up to 1e12: scores up to 1e15 (around 1e14 on average)
    and costs near 1e14 train through the float32 heads, and select answers finitely."""
    frame = rescaled(base_frame(rows=60), 0, 1e15).drop(columns=["family"])
    for j in range(3):
        frame[f"m{j}/cost"] = 1e14 * (j + 1)
    dataset = validated(admin_api, csv_of(frame), django_capture_on_commit_callbacks)
    assert dataset["status"] == "ready", dataset["errors"][:3]
    report = trained(admin_api, dataset, django_capture_on_commit_callbacks, "big")
    assert report["best_single"]["score"] > 1e14

    inference = key_client(key_make(tenants.organization))
    for tradeoff in (0, 0.5, 1):
        answer = inference.post("/api/v1/routers/big/select", {
            "messages": [{"role": "user", "content": "Compute 17 + 42 * 3."}], "tradeoff": tradeoff,
        }, format="json")  # fmt: skip
        assert answer.status_code == 200, answer.content[:500]
        body = json.loads(answer.content, parse_constant=_refuse)  # NaN/Infinity fail here
        assert body["chosen"] in {"m0", "m1", "m2"}


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} in a JSON answer")
