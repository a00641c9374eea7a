"""Periodic sweeps of datasets (Celery beat, on the default queue): uploads stuck
``validating`` (``datasets_stuck_fail``) and stored files no dataset points to any more
(``dataset_files_orphaned_delete``). Each is bounded per run; the next run takes the rest."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from training import dispatch
from training.dataset_services import VALIDATION_HARD_LIMIT, file_error, system_built
from training.models import Dataset, DatasetStatus

logger = logging.getLogger(__name__)

# Stuck uploads one run of ``datasets_stuck_fail`` makes invalid at most (the next run, minutes
# later, takes the rest).
STUCK_BATCH = 500
# Where dataset files are stored: uploads (``Dataset.file``'s ``upload_to``), the files of
# datasets RouterHub builds (``dataset_services.BUILT_PREFIX``) and parsed copies
# (``Dataset.parsed_file``). Nothing else is stored under them.
DATASET_FILE_FOLDERS = ("datasets/uploads/", "datasets/built/", "datasets/parsed/")
# The orphan sweep: where in the listing the next run starts (a cache key), and how many listed
# names it checks against the rows at a time.
ORPHAN_CURSOR = "datasets:orphan-sweep:offset"
ORPHAN_BATCH = 500
# Errors that are bugs or a misconfiguration, not one file's trouble: the orphan sweep lets them
# end the run (the task fails, with its traceback) instead of skipping every file quietly.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    AssertionError,
    ImproperlyConfigured,
)
# What ends the orphan sweep's run instead of passing over one file: bugs, the process's own
# trouble (memory, recursion) and Celery's soft time limit (an ``Exception`` too: swallowed, the
# run went on into the hard limit's kill, its cursor never saved).
RUN_ENDING_ERRORS = (*PROGRAMMING_ERRORS, MemoryError, RecursionError, SoftTimeLimitExceeded)
# Storage errors in a row after which the orphan sweep stops its run (a storage refusing every
# file: one summary line instead of a warning per file examined).
STORAGE_ERRORS_IN_A_ROW_MAX = 10


def datasets_stuck_fail(*, batch: int | None = None) -> int:
    """End uploads stuck ``validating`` past ``DATASET_STUCK_VALIDATING_SECONDS``, at most
    ``batch`` (``STUCK_BATCH``) per call; how many were made invalid or queued again.

    - No file stored (the uploading process died): made invalid, its size no longer counted.
    - Stored, validation never started (``validation_attempts`` 0: it waits behind training runs
      on the ``training`` queue, or its task was lost): its validation is queued again (safe to
      run twice), once per period, ``DATASET_STUCK_REQUEUES`` times; made invalid only when it
      still has not started one period after the last.

    - Validation started (counted) but neither finished nor delivered again within the task's
      hard time limit plus a period after its latest attempt (``_validations_lost``): its
      worker died and the broker's redelivery was lost too. Queued again, sharing the same
      ``DATASET_STUCK_REQUEUES`` re-queues, then made invalid with the reason.

    Each row changes by one conditional ``UPDATE``, so a worker counting its first attempt at
    the same moment either counts first (the row left alone) or finds it no longer validating."""
    batch = STUCK_BATCH if batch is None else batch
    age = timedelta(seconds=int(settings.DATASET_STUCK_VALIDATING_SECONDS))
    requeues = int(settings.DATASET_STUCK_REQUEUES)
    now = timezone.now()
    validating = Dataset.objects.filter(status=DatasetStatus.VALIDATING).exclude(system_built())
    unstarted = validating.filter(validation_attempts=0).exclude(file="")
    waited = _duration(age.total_seconds())
    done = _stuck_invalid(
        validating.filter(file="", created_at__lt=now - age),
        batch,
        f"The upload did not finish: its file was not stored within {waited}, so nothing was "
        "kept. Delete this dataset and upload the file again.",
        size_bytes=0,
    )
    done += _stuck_invalid(
        unstarted.filter(
            validation_requeues__gte=requeues, created_at__lt=now - age * (requeues + 1)
        ),
        batch - done,
        f"Validation of this file did not start within "
        f"{_duration(age.total_seconds() * (requeues + 1))} (queued {requeues + 1} times). "
        "Delete this dataset and upload the file again.",
    )
    for count in range(requeues):  # the count-th re-queue once (count + 1) periods have passed
        due = unstarted.filter(validation_requeues=count, created_at__lt=now - age * (count + 1))
        done += _stuck_requeue(due, batch - done)
    return done + _validations_lost(validating, batch - done, now)


def _validations_lost(validating: QuerySet[Dataset], limit: int, now: datetime) -> int:
    """Started validations not finished ``VALIDATION_HARD_LIMIT`` + ``DATASET_STUCK_VALIDATING_
    SECONDS`` after their latest attempt started (or re-queue): no live worker still has one
    (the hard limit kills it), and the period outlasts the broker's own redelivery (Redis:
    ``visibility_timeout``, an hour). Re-queued while ``validation_requeues`` is under
    ``DATASET_STUCK_REQUEUES``, made invalid after; ``MAX_VALIDATION_ATTEMPTS`` still refuses
    a file that keeps killing its worker."""
    requeues = int(settings.DATASET_STUCK_REQUEUES)
    period = int(settings.DATASET_STUCK_VALIDATING_SECONDS)
    before = now - timedelta(seconds=VALIDATION_HARD_LIMIT + period)
    lost = validating.filter(validation_attempts__gt=0).filter(
        # Rows from before ``validation_started_at`` existed: their upload's time.
        Q(validation_started_at__lt=before)
        | Q(validation_started_at__isnull=True, created_at__lt=before)
    )
    done = _stuck_invalid(
        lost.filter(validation_requeues__gte=requeues),
        limit,
        "Validation of this file started but never finished: its worker stopped and it was "
        f"lost, also after being queued again ({_times(requeues)}). Delete this dataset and "
        "upload the file again; if it happens again, split the file into smaller ones.",
    )
    return done + _stuck_requeue(lost.filter(validation_requeues__lt=requeues), limit - done)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _duration(seconds: float) -> str:
    return f"{int(seconds) // 60} minutes" if seconds >= 120 else f"{int(seconds)} seconds"


def _stuck_ids(rows: QuerySet[Dataset], limit: int) -> list[int]:
    return list(rows.order_by("pk").values_list("pk", flat=True)[: max(0, limit)])


def _stuck_invalid(rows: QuerySet[Dataset], limit: int, message: str, **changes: Any) -> int:
    failed = rows.filter(pk__in=_stuck_ids(rows, limit)).update(
        status=DatasetStatus.INVALID,
        errors=[file_error(message)],
        validated_at=timezone.now(),
        **changes,
    )
    if failed:
        logger.warning("datasets: %s stuck uploads made invalid", failed)
    return failed


def _stuck_requeue(rows: QuerySet[Dataset], limit: int) -> int:
    """Queue again the validation of ``rows``, at most ``limit``; only the rows this call counted
    (locked, so none is counted twice) are queued."""
    with transaction.atomic():
        ids = list(
            rows.order_by("pk")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[: max(0, limit)]
        )
        rows.filter(pk__in=ids).update(
            validation_requeues=F("validation_requeues") + 1, validation_started_at=timezone.now()
        )
        for dataset_id in ids:
            dispatch.dataset_validation_queue(dataset_id)
    if ids:
        logger.warning("datasets: validation of %s stuck uploads queued again", len(ids))
    return len(ids)


def dataset_files_orphaned_delete(*, now: datetime | None = None) -> list[str]:
    """Delete stored dataset files no dataset row points to (``file`` or ``parsed_file``) and
    last modified more than ``DATASET_ORPHAN_GRACE_SECONDS`` ago, at most
    ``DATASET_ORPHAN_SWEEP_MAX`` per run; the names deleted.

    Such a file is left when a process dies between storing it and writing its name on the row
    (an upload's file, a validation's parsed copy), or when an organization is deleted with its
    datasets. The grace keeps a file being stored right now, whose row is written a moment
    later. The storage is listed through Django's storage API (local files or S3 alike), lazily:
    a run examines at most ``DATASET_ORPHAN_EXAMINE_MAX`` files, from where the previous run
    stopped (``ORPHAN_CURSOR`` in the cache; from the start when it is lost), each batch listed
    before its rows are read, so a row written meanwhile is seen. A file gone between the
    listing and its turn (deleted by its dataset meanwhile) is passed over, not the run's end,
    and so is one the storage fails on (``_orphan_delete``). The run stops early, saving where
    it got to, after ``STORAGE_ERRORS_IN_A_ROW_MAX`` storage errors in a row (a storage refusing
    everything: one summary line, not a warning per file) and at the task's soft time limit
    (a slow storage: the hard limit would kill it before the cursor is saved)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=int(settings.DATASET_ORPHAN_GRACE_SECONDS))
    most, examine = int(settings.DATASET_ORPHAN_SWEEP_MAX), int(settings.DATASET_ORPHAN_EXAMINE_MAX)
    start = int(cache.get(ORPHAN_CURSOR, 0))
    names = islice(
        (name for folder in DATASET_FILE_FOLDERS for name in _stored_names(folder)),
        start,
        start + examine,
    )
    run = _OrphanRun(cutoff, most)
    try:
        run.sweep(names)
    except SoftTimeLimitExceeded:
        run.stopped = "the task's soft time limit"
    done = run.stopped is None and run.examined < examine and len(run.deleted) < most
    cursor = 0 if done else start + run.examined - len(run.deleted)  # deleted: no longer listed
    cache.set(ORPHAN_CURSOR, cursor, timeout=None)
    if run.stopped:
        logger.warning(
            "datasets: orphan sweep stopped after %s files (%s); the next run goes on from there",
            run.examined,
            run.stopped,
        )
    if run.deleted:
        logger.warning("datasets: %s stored files no dataset points to deleted", len(run.deleted))
    return run.deleted


class _OrphanRun:
    """One run's progress: the files examined (each counted once done with, so one the soft
    limit interrupts is examined again next run) and deleted, and why it stopped early."""

    def __init__(self, cutoff: datetime, most: int) -> None:
        self.cutoff, self.most = cutoff, most
        self.deleted: list[str] = []
        self.examined = 0
        self.failed_in_a_row = 0
        self.stopped: str | None = None

    def sweep(self, names: Iterator[str]) -> None:
        while len(self.deleted) < self.most and (batch := list(islice(names, ORPHAN_BATCH))):
            referenced = _referenced(batch)
            for name in batch:
                if len(self.deleted) >= self.most:
                    return
                outcome = "kept" if name in referenced else _orphan_delete(name, self.cutoff)
                self.examined += 1
                if outcome == "deleted":
                    self.deleted.append(name)
                failed = outcome not in {"deleted", "kept"}
                self.failed_in_a_row = self.failed_in_a_row + 1 if failed else 0
                if self.failed_in_a_row >= STORAGE_ERRORS_IN_A_ROW_MAX:
                    self.stopped = f"{self.failed_in_a_row} storage errors in a row, last {outcome}"
                    return


def _referenced(names: list[str]) -> set[str]:
    """Those of ``names`` a dataset points to."""
    rows = Dataset.objects.filter(Q(file__in=names) | Q(parsed_file__in=names))
    return {name for pair in rows.values_list("file", "parsed_file") for name in pair}


def _orphan_delete(name: str, cutoff: datetime) -> str:
    """Delete the unreferenced file ``name`` if last modified before ``cutoff``: "deleted",
    "kept" (recent, or already gone), else the storage's error (``_error_kind``).

    Any error of the storage on this file passes it over (logged with its name; the next runs
    try it again): an ``OSError`` of local files, and whatever a remote backend raises —
    django-storages' S3 raises botocore's ``ClientError``/``BotoCoreError``, which are not
    ``OSError`` and used to end the run at the first refused file. A file not found
    (``FileNotFoundError``, S3's 404/``NoSuchKey``: deleted since it was listed) is logged as
    INFO, already gone. Only the error's type (and an S3 error code) is logged, not its text,
    which for a remote backend may carry an endpoint or request details. ``RUN_ENDING_ERRORS``
    are not one file's trouble: they end the run. ``ValueError`` and ``LookupError`` are not
    among them: storage backends raise them for one file's name (Django's ``safe_join``, a
    backend's parsing of one odd key), and a bug raising them on every file still stops the run
    after ``STORAGE_ERRORS_IN_A_ROW_MAX`` of them, with its summary line."""
    try:
        if default_storage.get_modified_time(name) >= cutoff:
            return "kept"
        default_storage.delete(name)
    except RUN_ENDING_ERRORS:
        raise
    except Exception as exc:
        kind = _error_kind(exc)
        if _not_found(exc):
            logger.info("datasets: orphan sweep: %s already gone (%s)", name, kind)
            return "kept"
        logger.warning("datasets: orphan sweep passed over %s (%s)", name, kind)
        return kind
    return "deleted"


def _not_found(exc: Exception) -> bool:
    """Whether the storage says the file is not there (local: ``FileNotFoundError``; S3: a
    ``ClientError`` whose code is 404 or ``NoSuchKey``)."""
    return isinstance(exc, FileNotFoundError) or _s3_code(exc) in {"404", "NoSuchKey"}


def _s3_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return None if code is None else str(code)


def _error_kind(exc: Exception) -> str:
    """The storage error's type, and its code when the backend gives one (S3's ``Error.Code``,
    an ``OSError``'s errno name): nothing from its message."""
    code = _s3_code(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        code = errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__ + (f" {str(code)[:40]}" if code else "")


def _stored_names(folder: str) -> Iterator[str]:
    """Every file stored under ``folder`` (a path ending in "/"), its subfolders included."""
    try:
        subfolders, files = default_storage.listdir(folder)
    except FileNotFoundError:  # nothing stored there yet (local storage; S3 lists nothing)
        return
    for file_name in sorted(files):
        yield f"{folder}{file_name}"
    for subfolder in sorted(subfolders):
        yield from _stored_names(f"{folder}{subfolder}/")
