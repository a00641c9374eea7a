"""Celery entry points for training (routed to the ``training`` queue); they only call services."""

from __future__ import annotations

import socket

from celery import shared_task
from django.conf import settings

from training import dataset_services, execution, services

SOFT_LIMIT = settings.TRAINING_SOFT_TIME_LIMIT
HARD_LIMIT = settings.TRAINING_HARD_TIME_LIMIT


@shared_task(
    acks_late=True,
    soft_time_limit=dataset_services.VALIDATION_SOFT_LIMIT,
    time_limit=dataset_services.VALIDATION_HARD_LIMIT,
)
def dataset_validate(dataset_id: int) -> str | None:
    dataset = services.dataset_validate(dataset_id=dataset_id)
    return None if dataset is None else dataset.status


@shared_task(acks_late=True, soft_time_limit=SOFT_LIMIT, time_limit=HARD_LIMIT)
def training_run_execute(run_id: int) -> str:
    # Failures are recorded on the run itself; a lost worker is handled by the sweeper, so
    # nothing here retries blindly (a retry would re-run hours of work on a broken dataset).
    return execution.training_run_execute(run_id=run_id, worker=socket.gethostname())


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def training_runs_sweep() -> list[int]:
    from training.feedback_jobs import feedback_builds_sweep

    return services.training_runs_sweep() + feedback_builds_sweep()


@shared_task(name="training.datasets_stuck_fail", acks_late=True, soft_time_limit=60, time_limit=90)
def datasets_stuck_fail() -> int:
    # Named outside "training.tasks.*": a quick sweep, on the default queue.
    from training.dataset_sweeps import datasets_stuck_fail as fail

    return fail()


@shared_task(
    name="training.dataset_files_orphaned_delete",
    acks_late=True,
    soft_time_limit=300,
    time_limit=360,
)
def dataset_files_orphaned_delete() -> int:
    # Beside datasets_stuck_fail, on the default queue: a bounded number of deletions a run.
    from training.dataset_sweeps import dataset_files_orphaned_delete as delete

    return len(delete())


@shared_task(name="training.drift_check", acks_late=True, soft_time_limit=300, time_limit=360)
def drift_check() -> int:
    # Named outside "training.tasks.*" so it runs on the default queue, not behind long trainings.
    from training.drift import drift_check_all

    return drift_check_all()
