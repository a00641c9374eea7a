"""Dataset and training settings: upload limits, memory and time limits of the tasks."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from routerhub.settings_parts.environment import (
    REDIS_CONNECT_TIMEOUT,
    REDIS_SOCKET_TIMEOUT,
    env,
    positive_int,
)

DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=200 * 1024 * 1024)
DATASET_MAX_ROWS = env.int("DATASET_MAX_ROWS", default=500_000)
DATASET_MAX_MODELS = env.int("DATASET_MAX_MODELS", default=64)
DATASET_MAX_CELL_CHARS = env.int("DATASET_MAX_CELL_CHARS", default=100_000)
DATASET_MIN_ROWS = env.int("DATASET_MIN_ROWS", default=25)
DATASET_MAX_COLUMNS = env.int("DATASET_MAX_COLUMNS", default=1000)
# A CSV header line longer than this is refused without parsing the rest of the file.
DATASET_MAX_HEADER_BYTES = env.int("DATASET_MAX_HEADER_BYTES", default=256 * 1024)
# A Parquet file's data once decompressed and decoded (its footer declares the first part).
DATASET_MAX_DECODED_BYTES = env.int("DATASET_MAX_DECODED_BYTES", default=512 * 1024 * 1024)
# Address space a task may add to its worker process (RLIMIT_AS while it runs): past it the task
# gets a MemoryError and records why, instead of the kernel killing the pod (training's is 8 GiB).
DATASET_VALIDATION_MEMORY_BYTES = env.int(
    "DATASET_VALIDATION_MEMORY_BYTES", default=3 * 1024 * 1024 * 1024
)
TRAINING_MEMORY_BYTES = env.int("TRAINING_MEMORY_BYTES", default=6 * 1024 * 1024 * 1024)
# A pool process whose resident memory passed this after a task is replaced (Celery, in KiB).
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int(
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=2 * 1024 * 1024
)
# What one organization's uploads may hold at once (training/dataset_services.py): their files'
# bytes in all (a person who signs up administers their own organization, so without it anyone
# could fill the media storage 200 MB at a time), and uploads waiting for or in validation (each
# a worker task of up to 5 minutes on the queue every organization shares).
DATASETS_MAX_BYTES_PER_ORGANIZATION = positive_int(
    "DATASETS_MAX_BYTES_PER_ORGANIZATION", 10 * DATASET_MAX_BYTES
)
DATASETS_MAX_VALIDATING_PER_ORGANIZATION = positive_int(
    "DATASETS_MAX_VALIDATING_PER_ORGANIZATION", 4
)
# An upload still validating this long after it was made with no file stored (its process died
# while storing it) is made invalid with the reason by a periodic sweep
# (training.datasets_stuck_fail), freeing the organization's quotas.
# A stored upload whose validation has not started (it waits behind training runs on the
# `training` queue, or its task was lost) is not failed at that age: its validation is queued
# again once per DATASET_STUCK_VALIDATING_SECONDS, and only after this many re-queues (and one
# more period) is it made invalid. A validation that started but neither finished nor came back
# (its worker died and the broker's redelivery was lost) is queued again the same way once the
# task's hard time limit (360 s) plus this period has passed since its latest attempt, sharing
# the same re-queues, then made invalid with the reason.
DATASET_STUCK_VALIDATING_SECONDS = positive_int("DATASET_STUCK_VALIDATING_SECONDS", 3600)
DATASET_STUCK_REQUEUES = positive_int("DATASET_STUCK_REQUEUES", 4)
# Stored dataset files no dataset points to (a process died between storing one and writing its
# name on the row; an organization deleted) are deleted by an hourly sweep
# (training.dataset_files_orphaned_delete) once last modified this long ago, at most this many a
# run. The grace must outlast storing an upload and writing its row (seconds; a day is ample).
DATASET_ORPHAN_GRACE_SECONDS = positive_int("DATASET_ORPHAN_GRACE_SECONDS", 86400)
DATASET_ORPHAN_SWEEP_MAX = positive_int("DATASET_ORPHAN_SWEEP_MAX", 500)
# Stored files one run of the orphan sweep examines at most (the next run goes on from there).
DATASET_ORPHAN_EXAMINE_MAX = positive_int("DATASET_ORPHAN_EXAMINE_MAX", 5000)
# Training runs queued or running at once per organization (one per router in any case).
TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION = env.int(
    "TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION", default=4
)
TRAINING_SOFT_TIME_LIMIT = env.int("TRAINING_SOFT_TIME_LIMIT", default=1800)
TRAINING_HARD_TIME_LIMIT = env.int(
    "TRAINING_HARD_TIME_LIMIT", default=TRAINING_SOFT_TIME_LIMIT + 120
)
TRAINING_HEARTBEAT_STALE_SECONDS = env.int("TRAINING_HEARTBEAT_STALE_SECONDS", default=120)
# Retrain from feedback (training/feedback_jobs.py): the newest feedback rows one retrain reads,
# the time limit of the task that builds its dataset, and how long a retrain may wait for its
# dataset (queued behind other work, or its worker lost) before it is failed with that reason.
# Each a whole number of at least 1, checked at boot (0 would read no feedback, or fail every
# build at once).
FEEDBACK_RETRAIN_MAX_ROWS = positive_int("FEEDBACK_RETRAIN_MAX_ROWS", 20_000)
FEEDBACK_RETRAIN_TIME_LIMIT = positive_int("FEEDBACK_RETRAIN_TIME_LIMIT", 900)
FEEDBACK_RETRAIN_DEADLINE_SECONDS = positive_int("FEEDBACK_RETRAIN_DEADLINE_SECONDS", 6 * 3600)
# Sentence-embedding features for routers trained from now on ("off" or "wordllama": the
# wordllama package's packaged weights, nothing downloaded; training/learner/embedding.py). A
# version records its featurizer, so changing this never changes how a saved version serves.
ROUTER_EMBEDDINGS = env.str("ROUTER_EMBEDDINGS", default="off").strip().lower()
if ROUTER_EMBEDDINGS not in {"off", "wordllama"}:
    raise ImproperlyConfigured(
        f"ROUTER_EMBEDDINGS must be off or wordllama, not {ROUTER_EMBEDDINGS!r}"
    )

# Redis hands a message its worker has not acknowledged within ``visibility_timeout`` to another
# worker, and tasks acknowledge late (when they end): the timeout must outlast the longest task's
# hard time limit, or a still-running training or retrain build also starts on a second worker.
# Set from the limits (at least Kombu's 3600 s default); CELERY_BROKER_VISIBILITY_TIMEOUT may
# raise it, and one that is too short for the limits stops the boot naming both.
TASK_FIXED_TIME_LIMIT_MAX = 360  # the longest literal time_limit in the apps' tasks.py
VISIBILITY_TIMEOUT_MARGIN_SECONDS = 300
LONGEST_TASK_TIME_LIMIT = max(
    TRAINING_HARD_TIME_LIMIT, FEEDBACK_RETRAIN_TIME_LIMIT + 60, TASK_FIXED_TIME_LIMIT_MAX
)
_BROKER_URL = str(env.str("CELERY_BROKER_URL", default="filesystem://"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, float] = {}
if _BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
    _least = LONGEST_TASK_TIME_LIMIT + VISIBILITY_TIMEOUT_MARGIN_SECONDS
    _visibility = positive_int("CELERY_BROKER_VISIBILITY_TIMEOUT", max(3600, _least))
    if _visibility < _least:
        raise ImproperlyConfigured(
            f"CELERY_BROKER_VISIBILITY_TIMEOUT must be at least {_least} s (the longest task "
            f"time limit, {LONGEST_TASK_TIME_LIMIT} s from TRAINING_HARD_TIME_LIMIT or "
            f"FEEDBACK_RETRAIN_TIME_LIMIT + 60, plus {VISIBILITY_TIMEOUT_MARGIN_SECONDS} s), not "
            f"{_visibility}: Redis would give a still-running task to a second worker"
        )
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        # A worker's BRPOP blocks 1 s (kombu's brpop_timeout): its reply may come that late.
        "socket_timeout": REDIS_SOCKET_TIMEOUT + 1,
    }
