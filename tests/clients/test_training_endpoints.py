"""The client against the in-process server: datasets from every source, routers trained and
waited on, reports, activation and rollback, select, runs and their cancellation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from routerhub_client import (
    BadRequestError,
    ConflictError,
    DatasetInvalidError,
    NotFoundError,
    RouterHub,
    TrainingFailedError,
)

from tests.clients.conftest import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, support_frame
from training.models import Dataset, Router, TrainingRun


def test_datasets_upload_from_a_path_a_dataframe_and_rows(
    manage: RouterHub, tmp_path: Path
) -> None:
    frame = support_frame(rows=60)
    path = tmp_path / "support.csv"
    frame.to_csv(path, index=False)
    sent: list[tuple[int, int]] = []

    from_path = manage.datasets.upload(
        path, progress=lambda done, total: sent.append((done, total))
    )
    from_frame = manage.datasets.upload(frame, name="from-frame")
    from_rows = manage.datasets.upload(frame.to_dict("records"), name="from-rows")

    assert [d["status"] for d in (from_path, from_frame, from_rows)] == ["ready"] * 3
    assert from_path["name"] == "support.csv" and from_path["format"] == "csv"
    assert from_frame["format"] == from_rows["format"] == "jsonl"
    assert {m["id"] for m in from_rows["models"]} == {CHEAP, DEAR}
    assert from_path["rows"] == from_frame["rows"] == from_rows["rows"] == 60
    total = path.stat().st_size
    assert sent[-1] == (total, total)
    assert [done for done, _ in sent] == sorted(done for done, _ in sent)
    listed = {d["id"] for d in manage.datasets.list(page_size=2)}
    assert listed == {from_path["id"], from_frame["id"], from_rows["id"]}


def test_dataset_delete_then_get_is_not_found(manage: RouterHub) -> None:
    dataset = manage.datasets.upload(support_frame(rows=40), name="gone")

    manage.datasets.delete(dataset["id"])

    with pytest.raises(NotFoundError) as caught:
        manage.datasets.get(dataset["id"])
    assert caught.value.type == "not_found"


def test_an_invalid_dataset_raises_with_the_rows_to_fix(manage: RouterHub) -> None:
    rows = [{"prompt": f"question {i}", f"{CHEAP}/score": "maybe"} for i in range(40)]

    with pytest.raises(DatasetInvalidError) as caught:
        manage.datasets.upload(rows, name="bad")

    assert caught.value.dataset["status"] == "invalid"
    assert caught.value.errors and caught.value.errors[0]["message"]


def _train(manage: RouterHub, slug: str, seed: int = 0, **router: Any) -> tuple[Any, list[Any]]:
    dataset = manage.datasets.upload(support_frame(seed=seed), name=f"{slug}-data")
    seen: list[Any] = []
    run = manage.routers.train_and_wait(slug, dataset["id"], progress=seen.append, interval=0.05)
    return run, seen


def test_router_create_train_report_activate_rollback(manage: RouterHub) -> None:
    created = manage.routers.create("support", name="Support", candidates=[CHEAP, DEAR])

    first, seen = _train(manage, "support")
    second, _ = _train(manage, "support", seed=1)
    versions = [v["number"] for v in manage.routers.versions("support")]
    report = manage.routers.report("support", 1)
    activated = manage.routers.activate("support", 2)
    rolled_back = manage.routers.rollback("support")

    assert created["active_version"] is None
    assert first["status"] == "succeeded" and first["version"] == 1 and second["version"] == 2
    assert seen[-1]["status"] == "succeeded" and seen[-1]["progress"] == 1
    assert manage.training_runs.get(first["id"])["metrics"] == first["metrics"]
    assert sorted(versions) == [1, 2]
    assert {m["id"] for m in report["models"]} == {CHEAP, DEAR}
    assert report["curve"] and "apgr" in report
    assert activated["active_version"] == 2 and rolled_back["active_version"] == 1
    assert manage.routers.get("support")["active_version"] == 1


def test_router_get_update_list_delete(manage: RouterHub) -> None:
    manage.routers.create("triage", candidates=[CHEAP, DEAR])

    updated = manage.routers.update("triage", name="Triage", default_tradeoff=0.3)
    listed = [r["slug"] for r in manage.routers.list()]
    manage.routers.delete("triage")

    assert (updated["name"], updated["default_tradeoff"]) == ("Triage", 0.3)
    assert listed == ["triage"]
    with pytest.raises(NotFoundError):
        manage.routers.get("triage")


def test_router_create_rejects_a_bad_slug_naming_the_field(manage: RouterHub) -> None:
    with pytest.raises(BadRequestError) as caught:
        manage.routers.create("Not A Slug!")

    assert caught.value.param == "slug" and caught.value.status == 400


def test_select_with_an_inference_key_ranks_the_candidates(
    manage: RouterHub, inference: RouterHub
) -> None:
    manage.routers.create("support", candidates=[CHEAP, DEAR])
    _train(manage, "support")

    math = inference.routers.select(
        "support", [{"role": "user", "content": MATH_PROMPT}], tradeoff=0
    )
    prose = inference.routers.select("support", prompt=PROSE_PROMPT, tradeoff="quality")
    narrowed = inference.routers.select("support", prompt=MATH_PROMPT, candidates=[DEAR])

    assert (math["chosen"], prose["chosen"], narrowed["chosen"]) == (CHEAP, DEAR, DEAR)
    assert math["version"] == 1 and {r["model"] for r in math["ranked"]} == {CHEAP, DEAR}


def test_cancel_a_queued_run_then_waiting_raises(manage: RouterHub, world: Any) -> None:
    manage.routers.create("support", candidates=[CHEAP, DEAR])
    dataset = manage.datasets.upload(support_frame(rows=40), name="queued")
    run = TrainingRun.objects.create(
        organization=world.organization,
        router=Router.objects.get(organization=world.organization, slug="support"),
        dataset=Dataset.objects.get(pk=dataset["id"]),
    )

    cancelled = manage.training_runs.cancel(run.pk)

    assert cancelled["status"] == "cancelled"
    with pytest.raises(TrainingFailedError) as failed:
        manage.training_runs.wait(run.pk, interval=0.01)
    assert failed.value.run["status"] == "cancelled"
    with pytest.raises(ConflictError) as conflict:
        manage.training_runs.cancel(run.pk)
    assert conflict.value.status == 409 and "already cancelled" in conflict.value.message


def test_pipelines_create_version_list_serve_and_delete(
    manage: RouterHub, inference: RouterHub
) -> None:
    steps = [{"model": CHEAP, "gate": {"type": "non_empty"}}, {"model": DEAR}]
    created = manage.pipelines.create("tiered", "cascade", steps, name="Tiered")
    assert created["model"] == "pipeline/tiered" and created["version"] == 1

    updated = manage.pipelines.update("tiered", "cascade", [{"model": DEAR}, {"model": CHEAP}])
    assert updated["version"] == 2 and updated["steps"][0]["model"] == DEAR
    assert sorted(v["version"] for v in manage.pipelines.versions("tiered")) == [1, 2]
    assert [p["slug"] for p in manage.pipelines.list()] == ["tiered"]
    answer = inference.openai.chat.completions.create(
        model="pipeline/tiered", messages=[{"role": "user", "content": MATH_PROMPT}]
    )
    assert answer.choices[0].message.content

    voted = manage.pipelines.update("tiered", "parallel", [{"model": DEAR}, {"model": CHEAP}],
                                    aggregate={"type": "majority"}, branch_timeout_s=30)  # fmt: skip
    assert (voted["kind"], voted["aggregate"], voted["branch_timeout_s"]) == (
        "parallel", {"type": "majority"}, 30.0)  # fmt: skip
    answer = inference.openai.chat.completions.create(
        model="pipeline/tiered", messages=[{"role": "user", "content": MATH_PROMPT}]
    )
    assert answer.model_extra["pipeline"]["aggregate"]["answered"] == 2

    with pytest.raises(BadRequestError):
        manage.pipelines.create("bad", "cascade", [{"model": "no/such-model"}])
    manage.pipelines.delete("tiered")
    with pytest.raises(NotFoundError):
        manage.pipelines.get("tiered")
