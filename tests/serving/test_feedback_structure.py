"""A router retrained from feedback keeps what it learned from its dataset's structure: tasks,
subtasks and their parents, the dataset's direction and units, its costs and training options."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Organization
from tests.factories import key_client, organization_make
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, PROSE_PROMPT, chat
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload
from training import services
from training.models import Dataset, Router, TrainingRun
from training.run_data import load_parsed
from training.serving import FeedbackExample, feedback_build, feedback_retrain_queue

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

MATH, PROSE = "math-model", "prose-model"
NEW_MATH = "Compute 71 + 13 * 4."
NEW_PROSE = "Write a short poem about the harbour at noon. (#2000)"


def _with_tasks(rows: int = 180) -> pd.DataFrame:
    frame = synthetic_frame(rows).drop_duplicates("prompt")
    writing = frame["prompt"].str.contains("#")
    frame["eval_name"] = np.where(writing, "writing", "arithmetic")
    return frame


def _with_subtasks() -> pd.DataFrame:
    """``_with_tasks`` where "writing" is split into subjects by the automatic rule and
    "openai/gsm8k" is kept whole."""
    frame = _with_tasks()
    arithmetic = frame["eval_name"] == "arithmetic"
    subject = np.array(["poems", "letters", "essays"])[(~arithmetic).cumsum() % 3]
    frame["eval_name"] = np.where(arithmetic, "openai/gsm8k", "writing/" + subject)
    return frame


def _trained(
    organization: Organization,
    frame: pd.DataFrame,
    capture: Any,
    *,
    columns: dict[str, Any] | None = None,
    maximize: bool = True,
    options: dict[str, Any] | None = None,
) -> Router:
    """A router over MATH and PROSE trained on ``frame``, with prompt logging on."""
    organization.prompt_logging = True
    organization.save(update_fields=["prompt_logging"])
    with capture(execute=True):
        dataset = services.dataset_create(
            organization=organization,
            name="base",
            upload=SimpleUploadedFile("base.csv", csv_bytes(frame)),
            columns=columns,
            maximize=maximize,
        )
    dataset.refresh_from_db()
    assert dataset.status == "ready", dataset.errors
    router = services.router_create(
        organization=organization, slug="r", name="r", candidates=[MATH, PROSE]
    )
    with capture(execute=True):
        run = services.training_run_start(router=router, dataset=dataset, options=options)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    router.refresh_from_db()
    return router


def _retrained(router: Router, feedback: list[FeedbackExample], capture: Any) -> Any:
    # The request records the retrain; a worker builds its dataset from the feedback routing
    # reads (here: exactly ``feedback``) and queues the run, which the captured commit runs.
    retrain = feedback_retrain_queue(router=router, feedback_rows=len(feedback))
    with capture(execute=True):
        feedback_build(run_id=retrain.run.pk, read=lambda _router, _before: feedback)
    retrain.dataset.refresh_from_db()
    retrain.run.refresh_from_db()
    assert retrain.run.status == "succeeded", retrain.run.error
    return retrain


def _row(dataset: Dataset, prompt: str) -> tuple[Any, int]:
    parsed = load_parsed(dataset)
    return parsed, parsed.prompts.index(prompt)


def test_a_router_retrained_from_feedback_keeps_its_task_family_and_slices(world: World) -> None:
    """Through the gateway and the API: served prompts with feedback, then the retrain."""
    manage = key_client(world.key_for(scope="manage"))
    frame = _with_tasks().rename(columns=lambda c: c.replace(MATH, CHEAP).replace(PROSE, DEAR))
    dataset = upload(manage, csv_bytes(frame), filename="tasks.csv").json()
    manage.post("/api/v1/routers", {"slug": "support", "candidates": [CHEAP, DEAR]}, format="json")
    manage.post("/api/v1/routers/support/train", {"dataset": dataset["id"]}, format="json")
    first = manage.get("/api/v1/routers/support/versions/1/report").json()
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    from accounts.keys import key_cache_clear

    key_cache_clear()
    inference = key_client(world.key)
    for prompt in (MATH_PROMPT, PROSE_PROMPT):
        completion = chat(world, prompt)
        world.usage_record(completion.id)
        inference.post("/api/v1/feedback", {"generation_id": completion.id, "score": 0}, "json")

    response = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 202, response.json()
    report = manage.get("/api/v1/routers/support/versions/2/report").json()
    assert report["slices"]["by"] == "task"
    assert {row["slice"] for row in report["slices"]["rows"]} == {"writing", "arithmetic"}
    incumbents, before = report["evaluation"]["incumbents"], first["evaluation"]["incumbents"]
    assert "tasks" in incumbents["out_of_fold"] and incumbents["family"] == before["family"]
    rebuilt = load_parsed(Dataset.objects.get(pk=response.json()["dataset"]))
    original = load_parsed(Dataset.objects.get(pk=dataset["id"]))
    n = len(original.prompts)
    assert rebuilt.prompts[:n] == original.prompts and rebuilt.tasks is not None
    assert rebuilt.tasks[:n] == original.tasks
    new = dict(zip(rebuilt.prompts[n:], rebuilt.tasks[n:], strict=True))
    assert [new[p] for p in new if p.endswith(MATH_PROMPT)] == ["arithmetic"]
    assert [new[p] for p in new if p.endswith(PROSE_PROMPT)] == ["writing"]


@pytest.mark.django_db
def test_subtasks_and_their_parents_are_kept_exactly_and_new_prompts_read_by_the_version(
    django_capture_on_commit_callbacks: Any,
) -> None:
    router = _trained(organization_make(), _with_subtasks(), django_capture_on_commit_callbacks)
    base = load_parsed(router.active_version.dataset)
    repeated = base.prompts[1]
    feedback = [
        FeedbackExample(prompt=repeated, model=MATH, score=1.0, cost=0.5),
        FeedbackExample(prompt=NEW_MATH, model=PROSE, score=0.0, cost=0.02),
        FeedbackExample(prompt=NEW_PROSE, model=MATH, score=0.0, cost=0.002),
    ]

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    rebuilt = load_parsed(retrain.dataset)
    n = len(base.prompts)
    assert len(rebuilt.prompts) == n + 2  # the repeated prompt's feedback is merged, not dropped
    assert rebuilt.tasks[:n] == base.tasks and rebuilt.task_parents[:n] == base.task_parents
    assert not any("duplicate" in warning for warning in retrain.dataset.warnings)
    j = rebuilt.models.index(MATH)
    assert rebuilt.scores[1, j] == 1.0 and rebuilt.costs[1, j] == 0.5
    levels = zip(rebuilt.tasks, rebuilt.task_parents, strict=True)
    new = dict(zip(rebuilt.prompts, levels, strict=True))
    assert new[NEW_MATH] == ("openai/gsm8k", "openai/gsm8k")
    assert new[NEW_PROSE][0].startswith("writing/") and new[NEW_PROSE][1] == "writing"
    report = retrain.run.version.report
    assert report["slices"]["by"] == "task"
    assert {"tasks", "subtasks"} <= set(report["evaluation"]["incumbents"]["out_of_fold"])


@pytest.mark.django_db
def test_a_lower_is_better_dataset_gets_feedback_and_predictions_in_its_own_direction(
    django_capture_on_commit_callbacks: Any,
) -> None:
    frame = synthetic_frame(150)
    for model in (MATH, PROSE):
        frame[f"{model}/score"] = 1 - frame[f"{model}/score"]  # errors: 0 is right
    router = _trained(
        organization_make(), frame, django_capture_on_commit_callbacks, maximize=False
    )
    feedback = [FeedbackExample(prompt=NEW_MATH, model=PROSE, score=1.0, cost=0.01)]

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    parsed, i = _row(retrain.dataset, NEW_MATH)
    assert retrain.dataset.maximize is False
    assert parsed.scores[i, parsed.models.index(PROSE)] == 0.0  # good feedback: no error
    assert parsed.scores[i, parsed.models.index(MATH)] == 0.0  # predicted right on arithmetic


@pytest.mark.django_db
def test_feedback_spans_a_graded_datasets_scale_and_the_training_options_are_kept(
    django_capture_on_commit_callbacks: Any,
) -> None:
    frame = synthetic_frame(150)
    for model in (MATH, PROSE):
        frame[f"{model}/score"] = 1 + 9 * frame[f"{model}/score"]  # graded 1..10
    frame = frame.drop(columns=[f"{MATH}/cost", f"{PROSE}/cost"])
    options = {"folds": 3, "prices": {MATH: 1.0, PROSE: 10.0}}
    router = _trained(
        organization_make(), frame, django_capture_on_commit_callbacks, options=options
    )
    feedback = [
        FeedbackExample(prompt=NEW_PROSE, model=PROSE, score=1.0, cost=0.01),
        FeedbackExample(prompt=NEW_PROSE, model=MATH, score=0.0, cost=0.001),
    ]

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    parsed, i = _row(retrain.dataset, NEW_PROSE)
    assert parsed.scores[i, parsed.models.index(PROSE)] == 10.0
    assert parsed.scores[i, parsed.models.index(MATH)] == 1.0
    previous = TrainingRun.objects.get(version=router.active_version)
    assert retrain.run.options == previous.options
    assert retrain.run.version.report["evaluation"]["cost_source"] == "prices_per_million_tokens"


@pytest.mark.django_db
def test_options_that_no_longer_hold_for_the_candidates_are_left_out_with_a_warning(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Trained on A and B with their prices and a held-out set scoring A and B; the router has
    since gained C (its base data scores C): the retrain runs without those two options and the
    dataset says so, instead of failing on "options.prices has no price for: C"."""
    third = "third-model"
    frame = synthetic_frame(150)
    frame[f"{third}/score"], frame[f"{third}/cost"] = frame[f"{MATH}/score"], 0.005
    organization = organization_make()
    with django_capture_on_commit_callbacks(execute=True):
        held = services.dataset_create(
            organization=organization,
            name="held",
            upload=SimpleUploadedFile("held.csv", csv_bytes(synthetic_frame(60, seed=1))),
            columns=None,
            maximize=True,
        )
    options = {"folds": 3, "prices": {MATH: 1.0, PROSE: 10.0}, "test_dataset": held.pk}
    router = _trained(organization, frame, django_capture_on_commit_callbacks, options=options)
    router.candidates = [MATH, PROSE, third]
    router.save(update_fields=["candidates"])
    feedback = [FeedbackExample(prompt=NEW_PROSE, model=PROSE, score=1.0, cost=0.01)]

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    assert retrain.run.options == {"folds": 3, "price_unit": "per_million_tokens"}
    notes = retrain.dataset.warnings
    assert any("option prices" in n and f"no price for: {third}" in n for n in notes), notes
    assert any("option test_dataset" in n and f"no scores for: {third}" in n for n in notes)
    assert retrain.run.version.report["evaluation"]["cost_source"] != "prices_per_million_tokens"


def _new_tasks(retrain: Any) -> dict[str, tuple[str, str]]:
    rebuilt = load_parsed(retrain.dataset)
    levels = zip(rebuilt.tasks, rebuilt.task_parents or rebuilt.tasks, strict=True)
    return dict(zip(rebuilt.prompts, levels, strict=True))


@pytest.mark.django_db
def test_a_new_prompt_takes_the_task_its_request_named_over_the_versions_reading(
    django_capture_on_commit_callbacks: Any,
) -> None:
    router = _trained(organization_make(), _with_tasks(), django_capture_on_commit_callbacks)
    unnamed, unknown = "Compute 12 + 5 * 3.", "Compute 40 + 2 * 9."
    feedback = [
        FeedbackExample(prompt=NEW_MATH, model=PROSE, score=1.0, cost=0.02, task="writing"),
        FeedbackExample(prompt=unnamed, model=MATH, score=1.0, cost=0.002),
        FeedbackExample(prompt=unknown, model=MATH, score=1.0, cost=0.002, task="poetry"),
    ]

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    tasks = _new_tasks(retrain)
    assert tasks[unnamed] == ("arithmetic", "arithmetic")  # how the version reads arithmetic
    assert tasks[NEW_MATH] == ("writing", "writing")  # the request said writing
    assert tasks[unknown] == ("arithmetic", "arithmetic")  # a task the data never saw: read


@pytest.mark.django_db
def test_a_hint_naming_a_parent_task_reads_the_subtask_within_it(
    django_capture_on_commit_callbacks: Any,
) -> None:
    router = _trained(organization_make(), _with_subtasks(), django_capture_on_commit_callbacks)
    feedback = [
        FeedbackExample(prompt=NEW_MATH, model=PROSE, score=1.0, cost=0.02, task="writing"),
        FeedbackExample(prompt=NEW_PROSE, model=MATH, score=0.0, cost=0.002,
                        task="writing/letters"),
    ]  # fmt: skip

    retrain = _retrained(router, feedback, django_capture_on_commit_callbacks)

    tasks = _new_tasks(retrain)
    label, parent = tasks[NEW_MATH]  # the version reads it as openai/gsm8k
    assert parent == "writing" and label.startswith("writing/")
    assert tasks[NEW_PROSE] == ("writing/letters", "writing")
