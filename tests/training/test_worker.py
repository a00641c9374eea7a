"""A real Celery worker killed mid-training: the run is retried (or failed), never left running."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.processes import training_workers, until
from tests.training.helpers import big_training_run
from training import services
from training.models import RunStatus, TrainingRun


@pytest.fixture
def start_worker(media: Path, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    if connection.vendor == "sqlite" and ":memory:" in str(connection.settings_dict["NAME"]):
        pytest.skip("the worker needs a database file or server it can share with the test")
    with training_workers(media, tmp_path) as start:
        yield start


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_training_leaves_a_run_that_is_retried_to_success(
    start_worker: Callable[[], Any],
) -> None:
    from routerhub.celery import app

    assert not app.conf.task_always_eager
    # As many rows as tests/reliability/test_worker_kill.py's: seconds of training to kill,
    # and the retry trains them all again.
    run = big_training_run(rows=1500)
    worker = start_worker()

    def mid_training() -> bool:
        run.refresh_from_db()
        return run.status == RunStatus.RUNNING and run.stage in ("cross_validating", "fitting")

    until(mid_training, 240, "the worker to start training")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # the dead worker cannot say anything

    until(
        lambda: run.pk in services.training_runs_sweep(stale_after=timedelta(seconds=1)),
        60,
        "the sweeper to notice the missing heartbeat",
    )
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert "stopped responding during" in run.error

    start_worker()

    def finished() -> bool:
        run.refresh_from_db()
        return run.is_finished

    until(finished, 400, "the retried run to finish")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 2
    assert run.version is not None


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_run_stops_it_at_the_next_checkpoint(
    start_worker: Callable[[], Any],
) -> None:
    run = big_training_run(rows=3000)
    start_worker()
    until(
        lambda: TrainingRun.objects.get(pk=run.pk).status == RunStatus.RUNNING,
        240,
        "the worker to start training",
    )

    services.training_run_cancel(run=run)

    def finished() -> bool:
        run.refresh_from_db()
        return run.is_finished

    until(finished, 240, "the run to stop")
    assert run.status == RunStatus.CANCELLED
    assert run.version is None
    assert not run.router.versions.exists()


@pytest.mark.django_db
def test_sweeper_fails_a_run_whose_retries_are_used_up_with_a_reason(media: Any) -> None:
    run = big_training_run(rows=40)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        stage="fitting",
        attempts=2,
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )

    swept = services.training_runs_sweep()

    run.refresh_from_db()
    assert swept == [run.pk]
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("The worker stopped responding during fitting")
    assert run.finished_at is not None


@pytest.mark.django_db
def test_sweeper_leaves_runs_with_a_fresh_heartbeat_alone(media: Any) -> None:
    run = big_training_run(rows=40)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now()
    )
    assert services.training_runs_sweep() == []
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
