"""Queueing training's Celery tasks once the current transaction commits.

Tasks import services, never the reverse: services queue work through this module, which
imports ``training.tasks`` only where a task is sent (``training.tasks`` imports services, and
the tasks module is not loaded in processes that never queue training work, such as the
gateway).
"""

from __future__ import annotations

from django.db import transaction


def dataset_validation_queue(dataset_id: int) -> None:
    from training import tasks

    transaction.on_commit(lambda: tasks.dataset_validate.delay(dataset_id))


def training_run_queue(run_id: int) -> None:
    from training import tasks

    transaction.on_commit(lambda: tasks.training_run_execute.delay(run_id))
