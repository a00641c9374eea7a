"""A training worker run as ``make worker`` runs it (prefork pool, default and training queues,
Redis broker) loses the process that is training to SIGKILL (what the OOM killer does): the run
is swept by the periodic sweeper *running on the worker itself*, requeued and retried to success;
never left ``running``. (``tests/training/test_worker.py`` kills a whole solo-pool worker.)

With ``task_acks_late`` and ``task_reject_on_worker_lost`` Celery redelivers the killed task at
once; that delivery finds the run still ``running`` and does nothing (a run is claimed with a
conditional UPDATE), so the heartbeat sweeper is what retries it. A dataset's validation has no
sweeper: each delivery counts an attempt before reading the file, and the delivery after the
third killed one refuses the dataset instead of reading it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from bench.procs import tree
from tests.conftest import require_postgres, require_redis
from tests.factories import organization_make
from tests.log_hygiene import subprocess_log
from tests.processes import worker_environment
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import big_training_run
from training import services
from training.models import DatasetStatus, RunStatus, TrainingRun

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

STALE_SECONDS = 6  # > the 5 s heartbeat; production keeps 120


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def worker(media: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A routerhub worker -Q default,training`` (the Makefile's), one pool process."""
    require_postgres()
    require_redis()
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        from tests.conftest import service_missing

        service_missing("needs a Redis broker: set CELERY_BROKER_URL=redis://127.0.0.1:6379/1")
    env = worker_environment(media, TRAINING_HEARTBEAT_STALE_SECONDS=str(STALE_SECONDS))
    argv = [str(Path(sys.executable).parent / "celery"), "-A", "routerhub", "worker",
            "-Q", "default,training", "--concurrency", "1", "--without-mingle",
            "--without-gossip", "-l", "info"]  # fmt: skip
    with subprocess_log("celery-prefork-worker", tmp_path).open("wb") as log:
        proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _pool_processes(worker: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid in tree(worker.pid) if pid != worker.pid]


def _wait_for(run: TrainingRun, condition: Any, seconds: float, what: str,
              *, sweep: bool = False) -> list[tuple[str, str]]:  # fmt: skip
    """Poll the run until ``condition(run)``; with ``sweep``, send the sweeper task through the
    broker every two seconds, as celery beat would (every minute). Returns the states seen."""
    from routerhub.celery import app

    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + seconds
    next_sweep = 0.0
    while True:
        run.refresh_from_db()
        if not seen or seen[-1] != (run.status, run.stage):
            seen.append((run.status, run.stage))
        if condition(run):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}; saw {seen}")
        if sweep and time.monotonic() >= next_sweep:
            app.send_task("training.tasks.training_runs_sweep")
            next_sweep = time.monotonic() + 2
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_training_process_killed_by_sigkill_is_swept_and_retried_to_success(
    worker: subprocess.Popen[bytes],
) -> None:
    run = big_training_run(rows=1500)

    _wait_for(
        run,
        lambda r: r.status == RunStatus.RUNNING and r.stage in ("cross_validating", "fitting"),
        120,
        "the worker to start training",
    )
    pool = _pool_processes(worker)
    assert len(pool) == 1
    os.kill(pool[0], signal.SIGKILL)

    seen = _wait_for(run, lambda r: r.is_finished, 150, "the run to finish", sweep=True)

    assert worker.poll() is None, "the worker's main process survives its pool process"
    assert run.status == RunStatus.SUCCEEDED, (run.error, seen)
    # Two claims: only the sweeper puts a running run back to queued, so the second claim is
    # its retry (Celery's own redelivery of the killed task cannot claim a running run).
    assert run.attempts == 2
    assert run.version is not None
    assert _pool_processes(worker) != pool  # a new pool process did the retry


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_training_process_is_killed_on_every_attempt_fails_with_a_reason(
    worker: subprocess.Popen[bytes],
) -> None:
    run = big_training_run(rows=1500)
    training = ("cross_validating", "fitting")

    for attempt in (1, 2):
        _wait_for(
            run,
            lambda r, n=attempt: (
                r.status == RunStatus.RUNNING and r.stage in training and r.attempts == n
            ),
            120,
            f"attempt {attempt} to start training",
            sweep=attempt > 1,
        )
        (pool,) = _pool_processes(worker)
        os.kill(pool, signal.SIGKILL)

    seen = _wait_for(run, lambda r: r.is_finished, 60, "the run to be failed", sweep=True)

    assert run.status == RunStatus.FAILED, seen
    assert run.attempts == 2
    assert run.error.startswith("The worker stopped responding during ")
    assert f"no heartbeat for {STALE_SECONDS} s" in run.error
    assert run.finished_at is not None
    assert run.version is None


@pytest.mark.django_db(transaction=True)
def test_a_dataset_whose_validation_kills_the_worker_3_times_ends_invalid_not_redelivered_forever(
    worker: subprocess.Popen[bytes],
) -> None:
    frame = synthetic_frame(60_000)  # a second or two of validation to interrupt
    frame["prompt"] = frame["prompt"] + " " + " ".join(f"context{i}" for i in range(30))
    dataset = services.dataset_create(
        organization=organization_make(),
        name="killer",
        upload=SimpleUploadedFile("killer.csv", csv_bytes(frame)),
        columns=None,
        maximize=True,
    )  # queued to the worker on commit

    pools = []
    for attempt in (1, 2, 3):
        deadline = time.monotonic() + 60
        while True:
            dataset.refresh_from_db()
            if dataset.validation_attempts == attempt:
                break
            assert dataset.status == DatasetStatus.VALIDATING, (attempt, dataset.errors)
            assert time.monotonic() < deadline, f"delivery {attempt} never started"
            time.sleep(0.05)
        (pool,) = _pool_processes(worker)
        os.kill(pool, signal.SIGKILL)  # what the kernel's OOM killer does
        pools.append(pool)

    deadline = time.monotonic() + 60
    while dataset.status == DatasetStatus.VALIDATING:
        assert time.monotonic() < deadline, "the fourth delivery never finished the dataset"
        time.sleep(0.1)
        dataset.refresh_from_db()

    assert worker.poll() is None, "the worker's main process survives its pool processes"
    assert len(set(pools)) == 3, "each delivery ran in a new pool process"
    assert dataset.status == DatasetStatus.INVALID
    assert dataset.validation_attempts == 4
    assert [e["message"] for e in dataset.errors] == [
        "Processing this file stopped the worker 3 times, so RouterHub gave up on it. Check its "
        "size, rows and columns against the limits, or split it into smaller files."
    ]
    assert not dataset.parsed_file
