"""Retrain from feedback on a real Celery worker: the request answers with the run queued and
its dataset not built yet; the worker builds the dataset and trains, or records why it could not.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from bench.procs import tree
from routerhub.celery import app
from tests.celery_conf import celery_conf
from tests.processes import database_url, training_workers, until
from tests.routing.world import World
from tests.serving.test_feedback_queue import served_with_feedback
from tests.serving.test_router_serving import train_router
from training import feedback_jobs
from training.models import Dataset, RunStatus, TrainingRun

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def trained(world: World, media: Path, eager_celery: None) -> Iterator[Any]:
    """The ``support`` router trained in this process, and its feedback; tasks go to the broker
    from here on (the eager setting is switched off for the rest of the test)."""
    if connection.vendor == "sqlite":
        pytest.skip("the worker needs a database server it shares with the test")
    manage, _ = train_router(world)
    served_with_feedback(world)
    with celery_conf(task_always_eager=False):
        assert not app.conf.task_always_eager
        yield manage


def _finished(run_id: int) -> Callable[[], bool]:
    return lambda: TrainingRun.objects.get(pk=run_id).is_finished


def test_the_worker_builds_the_dataset_and_trains_after_the_request_answered(
    trained: Any, media: Path, tmp_path: Path
) -> None:
    with training_workers(media, tmp_path) as start:
        response = trained.post("/api/v1/routers/support/retrain-from-feedback")
        assert response.status_code == 202, response.json()
        body = response.json()
        assert body["status"] == "queued" and body["feedback_rows"] == 3
        run = TrainingRun.objects.get(pk=body["id"])
        # No worker yet: the request did not build anything itself.
        assert run.stage == "building_dataset"
        assert Dataset.objects.get(pk=body["dataset"]).status == "validating"

        start()
        until(_finished(run.pk), 90, "the worker to build the dataset and train")

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "ready" and dataset.rows == 180 + 3
    assert run.version is not None and run.version.number == 2


def test_a_feedback_dataset_the_worker_cannot_validate_ends_failed_with_the_reason(
    trained: Any, media: Path, tmp_path: Path
) -> None:
    # The worker's row limit lets the 180 rows trained on through, not 3 more.
    with training_workers(media, tmp_path, DATASET_MAX_ROWS="181") as start:
        body = trained.post("/api/v1/routers/support/retrain-from-feedback").json()
        start()
        until(_finished(body["id"]), 90, "the worker to give up on the dataset")

    run = trained.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "failed"
    assert run["error"].startswith("The feedback dataset did not validate:")
    dataset = trained.get(f"/api/v1/datasets/{body['dataset']}").json()
    assert dataset["status"] == "invalid"
    assert "181" in dataset["errors"][0]["message"].replace(",", "")


@contextmanager
def feedback_locked() -> Iterator[Callable[[int], bool]]:
    """The feedback table locked by another connection until the block ends, so a build reads
    nothing past its claim; yields ``waiting(n)``: n builds are blocked reading it."""
    with psycopg.connect(database_url(), autocommit=False) as holder:
        holder.execute("LOCK TABLE billing_feedback IN ACCESS EXCLUSIVE MODE")

        def waiting(n: int) -> bool:
            with psycopg.connect(database_url(), autocommit=True) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE '%%billing_feedback%%' AND pid <> %s",
                    (holder.info.backend_pid,),
                ).fetchone()
            return row is not None and row[0] == n

        try:
            yield waiting
        finally:
            holder.rollback()


def _attempts(dataset_id: int) -> int:
    return Dataset.objects.get(pk=dataset_id).validation_attempts


def test_a_worker_killed_mid_build_leaves_the_retrain_to_the_sweep_which_fails_it_visibly(
    trained: Any, media: Path, tmp_path: Path, settings: Any
) -> None:
    """The whole worker SIGKILLed while its build reads the feedback: the message waits unacked
    in Redis (no redelivery to count), the run shows it building; the sweep, once the deadline
    and the claimed build's hard time limit have passed, fails it with the reason."""
    body = trained.post("/api/v1/routers/support/retrain-from-feedback").json()
    with training_workers(media, tmp_path) as start, feedback_locked() as waiting:
        worker = start()
        until(lambda: waiting(1), 60, "the build to claim the run and read the feedback")
        assert _attempts(body["dataset"]) == 1
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    run = trained.get(f"/api/v1/training-runs/{body['id']}").json()
    assert (run["status"], run["stage"]) == ("queued", "building_dataset"), run
    assert feedback_jobs.feedback_builds_sweep() == []  # the build might still be running
    limit = settings.FEEDBACK_RETRAIN_DEADLINE_SECONDS + settings.FEEDBACK_RETRAIN_TIME_LIMIT
    later = timedelta(seconds=limit + 60 + feedback_jobs.CLAIM_MARGIN_SECONDS + 1)
    assert feedback_jobs.feedback_builds_sweep(later=later) == [body["id"]]

    run = trained.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "failed" and "its worker stopped" in run["error"], run
    dataset = trained.get(f"/api/v1/datasets/{body['dataset']}").json()
    assert (
        dataset["status"] == "invalid" and "its worker stopped" in dataset["errors"][0]["message"]
    )


def test_a_build_whose_pool_process_is_killed_3_times_is_given_up_not_redelivered_forever(
    trained: Any, media: Path, tmp_path: Path
) -> None:
    """A prefork worker (``make worker``'s pool) loses the process building the dataset to
    SIGKILL three times; Celery redelivers each time, and the fourth delivery fails the run."""
    body = trained.post("/api/v1/routers/support/retrain-from-feedback").json()
    with training_workers(media, tmp_path, prefork=True) as start, feedback_locked() as waiting:
        worker = start()
        killed = []
        for delivery in (1, 2, 3):
            until(lambda n=delivery: waiting(n), 60, f"delivery {delivery} to read the feedback")
            assert _attempts(body["dataset"]) == delivery
            (pool,) = [pid for pid in tree(worker.pid) if pid != worker.pid]
            os.kill(pool, signal.SIGKILL)  # what the kernel's OOM killer does
            killed.append(pool)
        until(_finished(body["id"]), 60, "the fourth delivery to give the retrain up")
        assert worker.poll() is None, "the worker's main process survives its pool processes"

    assert len(set(killed)) == 3, "each delivery ran in a new pool process"
    run = trained.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "failed", run
    # What to do about it, for a dataset nobody uploaded: not an uploaded file's advice.
    advice = "Lower FEEDBACK_RETRAIN_MAX_ROWS or give the training worker more memory"
    assert "stopped the worker 3 times" in run["error"] and advice in run["error"], run
    assert _attempts(body["dataset"]) == 4
    dataset = trained.get(f"/api/v1/datasets/{body['dataset']}").json()
    assert dataset["status"] == "invalid" and advice in dataset["errors"][0]["message"]
