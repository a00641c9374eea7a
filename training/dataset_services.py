"""Writes for datasets: store an upload and queue its validation, validate it (under a memory
ceiling, a bounded number of deliveries), delete it.

Split from ``training.services``, which re-exports these functions for its callers.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from accounts.models import Organization
from routerhub.deliveries import delivery_count
from routerhub.domain import Conflict, TooLarge, Unavailable
from routerhub.memory import memory_ceiling
from training import dispatch, ingest
from training.models import ACTIVE_STATUSES, Dataset, DatasetStatus, TrainingRun

logger = logging.getLogger(__name__)

# Deliveries of one dataset's validation that may end with the worker process gone (killed by the
# kernel, the pod restarted) before the dataset is refused instead of delivered again.
MAX_VALIDATION_ATTEMPTS = 3
# The first key of the advisory lock that counts an organization's uploads one at a time.
_UPLOADS_LOCK = 0x5244  # "RD"
# The validation task's time limits (training.tasks.dataset_validate): one that started and has
# not finished this long after plus a grace was lost (``dataset_sweeps.datasets_stuck_fail``).
VALIDATION_SOFT_LIMIT = 300
VALIDATION_HARD_LIMIT = 360
# Where the files of datasets RouterHub builds itself are stored (uploads: ``Dataset.file``'s
# ``upload_to``); the organization's dataset limits leave them out (``system_built``).
BUILT_PREFIX = "datasets/built/"


def dataset_create(
    *,
    organization: Organization,
    name: str,
    upload: UploadedFile[bytes],
    columns: dict[str, Any] | None,
    maximize: bool,
    quota: bool = True,
) -> Dataset:
    """Store an upload and queue its validation (after the transaction commits). ``quota``: the
    organization's storage and validation limits apply (``_quota_check``); only datasets
    RouterHub builds itself (``dataset_from_bytes``) are made without them, stored under
    ``BUILT_PREFIX`` so that the limits leave them out.

    The row is written (its size reserved, the quota's lock released) and committed before the
    file is stored: no lock or transaction waits on the storage (S3, up to
    ``DATASET_MAX_BYTES``). A file that cannot be stored deletes its row again (``Unavailable``).
    """
    limits = ingest.Limits.from_settings()
    if upload.size is not None and upload.size > limits.max_bytes:
        raise TooLarge(
            f"The file is {ingest.human_bytes(upload.size)}; "
            f"the limit is {ingest.human_bytes(limits.max_bytes)}.",
            param="file",
        )
    dataset = Dataset(
        organization=organization,
        # A name taken from the file's (up to 255 characters) fits the column (a 500 past it).
        name=name[: Dataset._meta.get_field("name").max_length],
        original_filename=(upload.name or "")[:255],
        size_bytes=upload.size or 0,
        columns=columns or {},
        maximize=maximize,
    )
    with transaction.atomic():
        if quota:
            _quota_check(organization, dataset.size_bytes)
        dataset.save()
    filename = f"{organization.pk}-{upload.name or 'dataset'}"
    try:
        if quota:
            dataset.file.save(filename, upload, save=False)
        else:
            built_file_save(dataset, filename, upload)
        stored = Dataset.objects.filter(pk=dataset.pk, status=DatasetStatus.VALIDATING)
        if not stored.update(file=dataset.file.name):
            # Made invalid meanwhile by ``datasets_stuck_fail`` (storing took longer than
            # DATASET_STUCK_VALIDATING_SECONDS), its size no longer counted, or deleted: keep
            # nothing, queue nothing (a dataset RouterHub builds as much as an upload).
            raise RuntimeError("no longer validating once its file was stored")
    except Exception as exc:
        _unstored_delete(dataset, exc)
        raise Unavailable(
            "The file could not be stored; nothing was kept. Try the upload again.", param="file"
        ) from exc
    dispatch.dataset_validation_queue(dataset.pk)
    return dataset


def built_file_save(dataset: Dataset, name: str, content: File[bytes]) -> None:
    """Store the file of a dataset RouterHub builds itself under ``BUILT_PREFIX`` (not saved);
    its name leads with the dataset's id (S3 overwrites a file stored under the same name)."""
    stored = dataset.file.storage.save(
        f"{BUILT_PREFIX}{dataset.pk}-{name}", content, max_length=300
    )
    dataset.file.name = stored


def _unstored_delete(dataset: Dataset, exc: Exception) -> None:
    """Undo a dataset whose file could not be stored: its row (and the file, if it was)."""
    logger.warning("dataset %s: storing its file failed (%s); row deleted", dataset.pk, exc)
    try:
        if dataset.file.name:
            dataset.file.delete(save=False)
    finally:
        Dataset.objects.filter(pk=dataset.pk).delete()


def _quota_check(organization: Organization, size: int) -> None:
    """409 when a new upload of ``size`` bytes would take the organization's datasets past
    ``DATASETS_MAX_BYTES_PER_ORGANIZATION``, or it already has
    ``DATASETS_MAX_VALIDATING_PER_ORGANIZATION`` uploads validating. Uploads of one organization
    are counted one at a time (a transaction-level advisory lock on its id, held until the new
    row commits), so uploads sent at once cannot all pass the same count. Datasets RouterHub
    builds itself (``system_built``) are not counted. The quota counts uploaded files' bytes
    (``size_bytes``), not their parsed copies (``parsed_file``): README, settings table."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_UPLOADS_LOCK, organization.pk])
    rows = Dataset.objects.filter(organization=organization).exclude(system_built())
    validating_max = int(settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION)
    validating = rows.filter(status=DatasetStatus.VALIDATING).count()
    if validating >= validating_max:
        raise Conflict(
            f"Your organization has {validating} datasets waiting for validation; the limit is "
            f"{validating_max} at once. Upload this one when one of them is ready or invalid.",
            param="file",
            metadata={"validating": validating, "limit": validating_max},
        )
    stored = int(rows.aggregate(total=Sum("size_bytes"))["total"] or 0)
    quota = int(settings.DATASETS_MAX_BYTES_PER_ORGANIZATION)
    if stored + size > quota:
        raise Conflict(
            f"Your organization's datasets hold {ingest.human_bytes(stored)} of its "
            f"{ingest.human_bytes(quota)}; this file ({ingest.human_bytes(size)}) does not fit. "
            "Delete datasets you no longer need first.",
            param="file",
            metadata={"stored_bytes": stored, "size_bytes": size, "limit_bytes": quota},
        )


def system_built() -> Q:
    """Datasets RouterHub builds itself (feedback retrains, ``dataset_from_bytes``): stored
    under ``BUILT_PREFIX``, or a feedback retrain's not built yet (no file, its run building)."""
    from training.feedback_jobs import BUILDING

    building = TrainingRun.objects.filter(dataset=OuterRef("pk"), stage=BUILDING)
    return Q(file__startswith=BUILT_PREFIX) | Q(Exists(building), file="")


class DatasetNotReady(Exception):
    """A dataset stored and validated in one call did not validate; ``dataset.errors`` says why."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(f"dataset {dataset.pk} is {dataset.status}")
        self.dataset = dataset

    def problems(self, limit: int) -> str:
        return "; ".join(error["message"] for error in self.dataset.errors[:limit])


def dataset_from_bytes(
    *,
    organization: Organization,
    name: str,
    content: bytes,
    columns: dict[str, Any] | None,
    maximize: bool,
) -> Dataset:
    """Store a dataset RouterHub made itself and validate it here, not on a worker: a ready
    dataset, or ``DatasetNotReady``."""
    dataset = dataset_create(
        organization=organization,
        name=name,
        upload=SimpleUploadedFile(name, content),
        columns=columns,
        maximize=maximize,
        quota=False,
    )
    validated = dataset_validate(dataset_id=dataset.pk) or dataset
    validated.refresh_from_db()
    if validated.status != DatasetStatus.READY:
        raise DatasetNotReady(validated)
    return validated


def dataset_validate(*, dataset_id: int) -> Dataset | None:
    """Parse a ``validating`` dataset into ``ready`` or ``invalid``; safe to call twice.

    Each call counts an attempt before reading anything (``dataset_attempt``). The parse runs
    under a memory ceiling (``DATASET_VALIDATION_MEMORY_BYTES``) so it fails with a reason.
    """
    dataset, counted = dataset_attempt(dataset_id)
    if dataset is None or not counted:
        return dataset
    return dataset_parse(dataset)


def dataset_attempt(dataset_id: int, gave_up: str | None = None) -> tuple[Dataset | None, bool]:
    """Count one more delivery of a ``validating`` dataset's processing: the dataset, and
    whether to process it (False: not validating any more, or refused now).

    Tasks are acknowledged late, so work that kills the worker is delivered again, and after
    ``MAX_VALIDATION_ATTEMPTS`` such deliveries the dataset is refused rather than tried forever,
    with ``gave_up`` as the reason (an uploaded file's advice unless given).
    """
    counted = delivery_count(
        Dataset.objects.filter(pk=dataset_id, status=DatasetStatus.VALIDATING),
        "validation_attempts",
        validation_started_at=timezone.now(),
    )
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None or counted is None:
        return dataset, False
    if dataset.validation_attempts > MAX_VALIDATION_ATTEMPTS:
        logger.warning(
            "dataset %s: validation gave up after %s attempts", dataset_id, MAX_VALIDATION_ATTEMPTS
        )
        message = gave_up or (
            f"Processing this file stopped the worker {MAX_VALIDATION_ATTEMPTS} times, so "
            "RouterHub gave up on it. Check its size, rows and columns against the "
            "limits, or split it into smaller files."
        )
        return dataset_refuse(dataset, message), False
    return dataset, True


def dataset_parse(dataset: Dataset, notes: list[str] | None = None) -> Dataset:
    """Parse a counted dataset's file (``dataset_attempt``) into ``ready`` or ``invalid``;
    ``notes`` lead its warnings, saved in the same write (a redelivery finds them there)."""
    try:
        parsed, normalized = _dataset_read(dataset)
    except Exception as exc:  # a malformed file must never crash the worker or stay validating
        return _dataset_finish(dataset, errors=_validation_errors(dataset.pk, exc))
    parsed_name = default_storage.save(
        f"datasets/parsed/{dataset.organization_id}-{dataset.pk}.parquet", ContentFile(normalized)
    )
    dataset.parsed_file.name = parsed_name
    dataset.rows = len(parsed.prompts)
    dataset.model_summary = parsed.summary()
    dataset.has_costs = parsed.costs is not None
    dataset.warnings = [*(notes or []), *parsed.warnings]
    return _dataset_finish(dataset, errors=[])


def dataset_refuse(dataset: Dataset, message: str) -> Dataset:
    """Mark a dataset ``invalid`` with one file-level reason."""
    return _dataset_finish(dataset, errors=[file_error(message)])


def _dataset_read(dataset: Dataset) -> tuple[ingest.ParsedDataset, bytes]:
    """The uploaded file parsed and normalised to Parquet, under the validation memory budget."""
    with memory_ceiling(int(settings.DATASET_VALIDATION_MEMORY_BYTES)):
        with dataset.file.open("rb") as handle:
            content = handle.read()
        dataset.format = ingest.sniff_format(content[:8192])
        parsed = ingest.dataset_parse(content, columns=dataset.columns, maximize=dataset.maximize)
        normalized = ingest.normalized_to_parquet(parsed)
        del content
    return parsed, normalized


def _validation_errors(dataset_id: int, exc: Exception) -> list[dict[str, Any]]:
    """What the dataset page shows for a file whose reading failed (called while handling it)."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, ingest.DatasetInvalidError):
        return exc.errors
    if isinstance(exc, MemoryError):
        logger.warning("dataset %s: validation ran out of its memory budget", dataset_id)
        budget = _binary_size(int(settings.DATASET_VALIDATION_MEMORY_BYTES))
        message = (
            f"Validating this file needed more than its memory budget ({budget}). Reduce its "
            "rows, columns or cell sizes, or split it into smaller files."
        )
        return [file_error(message)]
    if isinstance(exc, SoftTimeLimitExceeded):
        return [file_error("Validating this file took too long; split it into smaller files.")]
    logger.exception("dataset %s: unexpected validation failure", dataset_id)
    return [file_error(f"The file could not be read ({type(exc).__name__}: {exc}).")]


def _binary_size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def file_error(message: str) -> dict[str, Any]:
    return {"row": None, "column": None, "message": message}


def _dataset_finish(dataset: Dataset, *, errors: list[dict[str, Any]]) -> Dataset:
    """Write the outcome only while the dataset is still ``validating`` (its row locked): a
    dataset refused meanwhile (a feedback build the sweep failed) never turns ``ready``."""
    with transaction.atomic():
        still = Dataset.objects.select_for_update().filter(
            pk=dataset.pk, status=DatasetStatus.VALIDATING
        )
        if not still.exists():
            dataset.refresh_from_db()
            return dataset
        dataset.status = DatasetStatus.INVALID if errors else DatasetStatus.READY
        dataset.errors = errors[: ingest.MAX_ERRORS]
        dataset.validated_at = timezone.now()
        dataset.save()
    return dataset


def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset no queued or running run uses (as its data or ``test_dataset``; else a
    409), its files once the delete commits. Its row is locked first, as a run being recorded on
    it locks it (``training_run_record``): that run has committed and is seen here, or it waits
    and then finds the dataset gone (a check then delete let a run started at the same moment
    train on deleted files)."""
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        if locked is None:
            return
        in_use = Q(dataset=locked) | Q(options__test_dataset=locked.pk)
        if TrainingRun.objects.filter(in_use, status__in=ACTIVE_STATUSES).exists():
            raise Conflict(
                "A training run is using this dataset; cancel it or wait for it to finish."
            )
        files = [field for field in (locked.file, locked.parsed_file) if field.name]
        locked.delete()

        def files_delete() -> None:
            for field in files:
                field.delete(save=False)

        transaction.on_commit(files_delete)


def datasets_lock(dataset_ids: list[int]) -> int:
    """Lock these datasets' rows (a run being recorded on them; ``dataset_delete`` locks them
    too), in primary-key order; how many are still there."""
    rows = Dataset.objects.select_for_update(no_key=True).filter(pk__in=dataset_ids)
    return len(rows.order_by("pk").values_list("pk", flat=True))
