"""Retrain from feedback answers at once: the request checks, counts and records, a task builds.

What does not depend on a real worker is proved here (tasks eager where they run at all); the
worker's side is in ``test_feedback_worker.py``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from billing.models import UsageRecord
from routerhub.errors import Conflict
from routing.feedback import (
    feedback_record,
    feedback_retrain,
    feedback_retrain_build,
    router_feedback,
)
from tests.conftest import require_postgres
from tests.factories import member_add, organization_make
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, train_router
from training import feedback as training_feedback
from training import feedback_jobs, predictor
from training.models import Dataset, Router, RouterVersion, RunStatus, TrainingRun
from training.run_data import load_parsed

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

PROMPTS = ("Compute 8 + 5 * 3.", "Write two lines about rain on a tin roof.", "Compute 9 * 9 - 1.")


def feedback_given(
    organization: Any, router: Router, generation_id: str, prompt: str, model: str, score: float = 0
) -> None:
    """A request of ``organization`` recorded as served by ``router``'s id, and its feedback."""
    UsageRecord.objects.create(
        organization=organization,
        generation_id=generation_id,
        model=model,
        router=f"router/{router.slug}",
        router_id=router.pk,
        status="succeeded",
        prompt=prompt,
        cost="0.001",
        created_at=datetime.now(UTC),
    )
    feedback_record(
        organization_id=organization.pk, generation_id=generation_id, score=score, key_id=None
    )


def served_with_feedback(world: World, prompts: tuple[str, ...] = PROMPTS) -> Router:
    """The trained router ``support`` with prompt logging on and feedback on one served request
    per prompt, in ``prompts``' order (the last is the newest)."""
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    router = Router.objects.get(organization=world.organization, slug="support")
    for i, prompt in enumerate(prompts):
        feedback_given(world.organization, router, f"gen-fb-{i}", prompt, (CHEAP, DEAR)[i % 2])
    return router


@pytest.fixture
def nothing_heavy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the feedback, a version's parsed data or its predictor fails the test."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the request must not read feedback, data or a predictor")

    monkeypatch.setattr("routing.feedback.router_feedback", forbidden)
    monkeypatch.setattr(training_feedback, "load_parsed", forbidden)
    monkeypatch.setattr(training_feedback, "predictor_for_version", forbidden)
    monkeypatch.setattr(predictor, "predictor_for_version", forbidden)


@pytest.fixture
def builds_held(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The build tasks the requests queue, held (as if no worker had taken them yet): their run
    ids. (The world's database commits for real, so commit callbacks cannot be captured.)"""
    held: list[int] = []
    monkeypatch.setattr("routing.feedback._build_queue", held.append)
    return held


def test_the_request_reads_no_feedback_or_data_and_answers_with_the_queued_run(
    world: World, nothing_heavy: None, builds_held: list[int]
) -> None:
    manage, _ = train_router(world)
    served_with_feedback(world)

    response = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["feedback_rows"] == 3 and body["warnings"] == []
    run = TrainingRun.objects.get(pk=body["id"])
    assert run.stage == "building_dataset" and run.dataset_id == body["dataset"]
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "validating" and not dataset.file
    assert builds_held == [run.pk]  # the build task, sent once the records are committed
    page = manage.get(f"/api/v1/training-runs/{run.pk}").json()
    assert page["status"] == "queued"


def test_a_second_click_while_building_is_a_409_naming_the_run_and_records_nothing(
    world: World, nothing_heavy: None, builds_held: list[int]
) -> None:
    manage, _ = train_router(world)
    served_with_feedback(world)
    admin = member_add(world.organization, Role.ADMIN)
    browser = Client()
    browser.force_login(admin)

    first = manage.post("/api/v1/routers/support/retrain-from-feedback").json()
    datasets = Dataset.objects.count()
    second = manage.post("/api/v1/routers/support/retrain-from-feedback")
    page = browser.post("/dashboard/routers/support/retrain-from-feedback", follow=True)

    assert second.status_code == 409
    error = second.json()["error"]
    assert error["metadata"] == {"run": first["id"], "status": "queued"}
    assert f"run {first['id']}" in error["message"]
    assert f"already has a training run queued (run {first['id']})" in page.content.decode()
    assert Dataset.objects.count() == datasets and builds_held == [first["id"]]


def test_the_newest_feedback_up_to_the_cap_is_used_and_overlong_prompts_are_left_out(
    world: World, settings: Any
) -> None:
    manage, _ = train_router(world)
    settings.DATASET_MAX_CELL_CHARS = 200
    served_with_feedback(world, (*PROMPTS, "Explain " + "very " * 60 + "slowly."))
    settings.FEEDBACK_RETRAIN_MAX_ROWS = 2

    response = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 202, response.json()
    assert response.json()["feedback_rows"] == 2
    dataset = Dataset.objects.get(pk=response.json()["dataset"])
    assert dataset.status == "ready", dataset.errors
    prompts = set(load_parsed(dataset).prompts)
    assert {PROMPTS[1], PROMPTS[2]} <= prompts  # the newest two that fit a cell
    assert PROMPTS[0] not in prompts and dataset.rows == 180 + 2
    assert TrainingRun.objects.get(pk=response.json()["id"]).status == RunStatus.SUCCEEDED


def test_a_dataset_that_does_not_validate_fails_the_run_and_the_dataset_visibly(
    world: World, settings: Any
) -> None:
    manage, _ = train_router(world)
    served_with_feedback(world)
    settings.DATASET_MAX_ROWS = 181  # the 180 rows trained on fit; with 3 new prompts they do not
    admin = member_add(world.organization, Role.ADMIN)
    browser = Client()
    browser.force_login(admin)

    response = manage.post("/api/v1/routers/support/retrain-from-feedback")

    assert response.status_code == 202, response.json()
    run = manage.get(f"/api/v1/training-runs/{response.json()['id']}").json()
    assert run["status"] == "failed"
    assert run["error"].startswith("The feedback dataset did not validate:")
    dataset = manage.get(f"/api/v1/datasets/{response.json()['dataset']}").json()
    assert dataset["status"] == "invalid" and dataset["errors"]
    page = browser.get(f"/dashboard/training-runs/{run['id']}/").content.decode()
    assert "The feedback dataset did not validate" in page


def _queued(world: World) -> tuple[Any, dict[str, Any]]:
    """The management client and the answer of a retrain queued (its build held)."""
    manage, _ = train_router(world)
    served_with_feedback(world)
    return manage, manage.post("/api/v1/routers/support/retrain-from-feedback").json()


def test_a_retrain_whose_build_never_came_is_failed_by_the_sweeper_with_the_reason(
    world: World, builds_held: list[int]
) -> None:
    _manage, body = _queued(world)
    run = TrainingRun.objects.get(pk=body["id"])

    assert feedback_jobs.feedback_builds_sweep() == []
    later = timedelta(hours=6, seconds=1)
    assert feedback_jobs.feedback_builds_sweep(later=later) == [run.pk]

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "was not built within 21600 s" in run.error
    assert Dataset.objects.get(pk=body["dataset"]).status == "invalid"
    assert feedback_retrain_build(run.pk) == RunStatus.FAILED  # a late delivery does nothing


def test_a_build_that_keeps_killing_its_worker_is_given_up_with_the_reason(
    world: World, builds_held: list[int]
) -> None:
    _manage, body = _queued(world)
    # Three deliveries counted and none finished: the worker died each time.
    Dataset.objects.filter(pk=body["dataset"]).update(validation_attempts=3)

    status = feedback_retrain_build(body["id"])

    run = TrainingRun.objects.get(pk=body["id"])
    assert status == RunStatus.FAILED == run.status
    assert "stopped the worker 3 times" in run.error
    assert "Lower FEEDBACK_RETRAIN_MAX_ROWS" in run.error and "split it" not in run.error
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "invalid" and dataset.errors[0]["message"] in run.error


def test_a_retrain_cancelled_before_its_build_leaves_no_dataset_validating(
    world: World, builds_held: list[int]
) -> None:
    manage, body = _queued(world)
    cancelled = manage.post(f"/api/v1/training-runs/{body['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.json()

    assert feedback_retrain_build(body["id"]) == RunStatus.CANCELLED

    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "invalid"
    assert dataset.errors[0]["message"] == "Not built: the retrain was cancelled first."


def test_the_sweep_leaves_a_build_a_worker_is_running_past_the_deadline_alone(
    world: World, builds_held: list[int], settings: Any
) -> None:
    """The build taken just before the deadline: the sweep running while it reads the feedback
    leaves it (its hard time limit from when it was taken), and the build trains; once that
    limit has passed too with the build never finished, the sweep fails it."""
    manage, body = _queued(world)
    deadline = timedelta(seconds=settings.FEEDBACK_RETRAIN_DEADLINE_SECONDS + 1)
    # It waited in the queue until the deadline (all the feedback is read: it came "later").
    TrainingRun.objects.filter(pk=body["id"]).update(created_at=timezone.now() - deadline)
    swept: list[list[int]] = []

    def read(router: Router, before: datetime) -> Any:
        swept.append(feedback_jobs.feedback_builds_sweep())
        return router_feedback(router)

    assert feedback_jobs.feedback_build(body["id"], read) == RunStatus.SUCCEEDED
    assert swept == [[]]
    assert Dataset.objects.get(pk=body["dataset"]).status == "ready"

    body = manage.post("/api/v1/routers/support/retrain-from-feedback").json()
    # This one waited as long, then the worker that took it died.
    TrainingRun.objects.filter(pk=body["id"]).update(created_at=timezone.now() - deadline)

    def killed(router: Router, before: datetime) -> Any:
        raise WorkerKilled

    with pytest.raises(WorkerKilled):
        feedback_jobs.feedback_build(body["id"], killed)
    assert feedback_jobs.feedback_builds_sweep() == []  # within the build's hard time limit
    hard = timedelta(seconds=settings.FEEDBACK_RETRAIN_TIME_LIMIT + 61)  # the time_limit, +1 s
    assert feedback_jobs.feedback_builds_sweep(later=hard) == []  # two clocks: a margin
    margin = timedelta(seconds=feedback_jobs.CLAIM_MARGIN_SECONDS)
    assert feedback_jobs.feedback_builds_sweep(later=hard + margin) == [body["id"]]
    assert Dataset.objects.get(pk=body["dataset"]).status == "invalid"


def test_a_build_the_sweep_failed_meanwhile_never_turns_its_dataset_ready(
    world: World, builds_held: list[int]
) -> None:
    _manage, body = _queued(world)

    def read(router: Router, before: datetime) -> Any:  # the sweep fails it mid-build
        assert feedback_jobs.feedback_build_fail(body["id"], "Not built in time.")
        return router_feedback(router)

    assert feedback_jobs.feedback_build(body["id"], read) == RunStatus.FAILED
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "invalid" and dataset.errors[0]["message"] == "Not built in time."


def test_a_left_out_options_note_survives_a_worker_dying_after_validation(
    world: World, builds_held: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    manage, _ = train_router(world)
    router = served_with_feedback(world)
    TrainingRun.objects.filter(version=router.active_version).update(
        options={"folds": 3, "prices": {CHEAP: 1.0}}
    )
    body = manage.post("/api/v1/routers/support/retrain-from-feedback").json()
    parse = feedback_jobs.services.dataset_parse

    def dies_after(*args: Any) -> Any:
        parse(*args)
        raise WorkerKilled

    monkeypatch.setattr(feedback_jobs.services, "dataset_parse", dies_after)
    with pytest.raises(WorkerKilled):
        feedback_retrain_build(body["id"])
    monkeypatch.setattr(feedback_jobs.services, "dataset_parse", parse)

    assert feedback_retrain_build(body["id"]) == RunStatus.SUCCEEDED  # the redelivery
    warnings = Dataset.objects.get(pk=body["dataset"]).warnings
    assert any("prices is not used for this retrain" in w for w in warnings), warnings


class WorkerKilled(BaseException):
    """What the worker's death looks like from inside the task: nothing after it runs."""


def test_a_delivery_after_a_worker_died_between_validating_and_queueing_trains_once(
    world: World, builds_held: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _manage, body = _queued(world)
    datasets, versions = Dataset.objects.count(), RouterVersion.objects.count()
    queue = feedback_jobs._training_queue

    def dies(run: TrainingRun) -> str:
        raise WorkerKilled

    monkeypatch.setattr(feedback_jobs, "_training_queue", dies)
    with pytest.raises(WorkerKilled):
        feedback_retrain_build(body["id"])
    assert Dataset.objects.get(pk=body["dataset"]).status == "ready"
    monkeypatch.setattr(feedback_jobs, "_training_queue", queue)

    assert feedback_retrain_build(body["id"]) == RunStatus.SUCCEEDED  # the redelivery
    assert feedback_retrain_build(body["id"]) == RunStatus.SUCCEEDED  # and one more: nothing
    assert RouterVersion.objects.count() == versions + 1
    assert Dataset.objects.count() == datasets


def test_concurrent_clicks_in_their_own_transactions_queue_one_retrain_and_one_dataset(
    world: World, builds_held: list[int]
) -> None:
    require_postgres()
    train_router(world)
    router_id = served_with_feedback(world).pk
    datasets = Dataset.objects.count()
    gate = threading.Barrier(6)

    def click(_: int) -> Any:
        try:
            router = Router.objects.select_related("active_version").get(pk=router_id)
            gate.wait(timeout=30)
            try:
                return feedback_retrain(router=router).run.pk
            except Conflict as exc:
                return exc.metadata
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:  # each thread: its own connection
        outcomes = list(pool.map(click, range(6)))

    started = [o for o in outcomes if isinstance(o, int)]
    assert len(started) == 1 and builds_held == started, outcomes
    assert outcomes.count({"run": started[0], "status": "queued"}) == 5, outcomes
    assert Dataset.objects.count() == datasets + 1


def test_an_option_left_out_is_named_on_the_dashboard_and_in_the_answer(
    world: World, nothing_heavy: None, builds_held: list[int]
) -> None:
    """The version's run priced only CHEAP (DEAR came later): the click still queues, and says
    the prices are not used, on the run page it lands on and in the API's answer."""
    manage, _ = train_router(world)
    router = served_with_feedback(world)
    TrainingRun.objects.filter(version=router.active_version).update(
        options={"folds": 3, "prices": {CHEAP: 1.0}}
    )
    admin = member_add(world.organization, Role.ADMIN)
    browser = Client()
    browser.force_login(admin)

    page = browser.post("/dashboard/routers/support/retrain-from-feedback", follow=True)

    run = TrainingRun.objects.get(router=router, status=RunStatus.QUEUED)
    assert run.options == {"folds": 3, "price_unit": "per_million_tokens"}
    note = f"prices is not used for this retrain: options.prices has no price for: {DEAR}"
    assert note in page.content.decode()
    manage.post(f"/api/v1/training-runs/{run.pk}/cancel")
    body = manage.post("/api/v1/routers/support/retrain-from-feedback").json()
    assert any(note in warning for warning in body["warnings"]), body


def test_the_build_reads_only_this_routers_feedback_given_before_the_click(
    world: World, builds_held: list[int]
) -> None:
    """Feedback given after the click, and another organization's feedback on a record naming
    this router's id, are not read; what was counted is."""
    _manage, body = _queued(world)
    router = Router.objects.get(pk=TrainingRun.objects.get(pk=body["id"]).router_id)
    other = organization_make()
    late, foreign = "Compute 4 * 4 + 4, given later.", "Write about another tenant's secrets."
    feedback_given(world.organization, router, "gen-late", late, CHEAP, 1.0)
    feedback_given(other, router, "gen-foreign", foreign, CHEAP, 1.0)

    assert feedback_retrain_build(body["id"]) == RunStatus.SUCCEEDED

    prompts = set(load_parsed(Dataset.objects.get(pk=body["dataset"])).prompts)
    assert set(PROMPTS) <= prompts
    assert late not in prompts and foreign not in prompts
