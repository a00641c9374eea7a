"""Stored dataset files nothing points to (``training.dataset_sweeps.dataset_files_orphaned_delete``,
hourly from Celery beat): an upload whose process died after its file was stored but before its
row named it left the file in the storage for good (the stuck sweep makes the row invalid, with
no file to delete). Now such files, past ``DATASET_ORPHAN_GRACE_SECONDS``, are deleted, at most
``DATASET_ORPHAN_SWEEP_MAX`` a run; files a dataset points to, and recent ones, are kept. On the
test storage (``FileSystemStorage`` in a temporary media folder), listed through Django's API."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from routerhub.celery import app
from tests.factories import organization_make
from training import dataset_services
from training.dataset_sweeps import (
    ORPHAN_CURSOR,
    STORAGE_ERRORS_IN_A_ROW_MAX,
    dataset_files_orphaned_delete,
    datasets_stuck_fail,
)
from training.models import Dataset, DatasetStatus

ROWS = b"prompt,a/score,b/score\n" + b"".join(b"q%d,1,0\n" % i for i in range(40))
pytestmark = pytest.mark.django_db
DAY = 86400


@pytest.fixture(autouse=True)
def _sweep_from_the_start() -> None:
    cache.delete(ORPHAN_CURSOR)


def _stored(media: Path) -> set[str]:
    return {path.relative_to(media).as_posix() for path in media.rglob("*") if path.is_file()}


def _age(media: Path, name: str, seconds: int = DAY + 60) -> None:
    then = time.time() - seconds
    os.utime(media / name, (then, then))


def _died_after_storing(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """An upload whose process ended after storing its file, before its row named the file."""
    organization = organization_make()
    real_save = FileSystemStorage.save

    def stores_then_dies(storage: FileSystemStorage, *args: Any, **kwargs: Any) -> str:
        real_save(storage, *args, **kwargs)
        raise SystemExit("the pod was killed")

    with monkeypatch.context() as patch:
        patch.setattr(FileSystemStorage, "save", stores_then_dies)
        with pytest.raises(SystemExit):
            dataset_services.dataset_create(organization=organization, name="lost.csv",
                                            upload=SimpleUploadedFile("lost.csv", ROWS),
                                            columns=None, maximize=True)  # fmt: skip
    return Dataset.objects.get(organization=organization)


def test_an_uploads_file_its_row_never_named_is_deleted_after_the_grace(
    media: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    lost = _died_after_storing(monkeypatch)
    [orphan] = _stored(media)
    assert lost.file.name == "" and orphan.startswith("datasets/uploads/")
    Dataset.objects.filter(pk=lost.pk).update(created_at=lost.created_at.replace(year=2000))
    assert datasets_stuck_fail() == 1  # the row made invalid: it never named the file

    assert dataset_files_orphaned_delete() == []  # still within the grace
    _age(media, orphan)
    # Old code: nothing ever deleted it (the file stayed in the storage, counted by nobody).
    assert dataset_files_orphaned_delete() == [orphan]

    assert _stored(media) == set()
    lost.refresh_from_db()
    assert lost.status == DatasetStatus.INVALID


def test_files_a_dataset_points_to_and_recent_files_are_kept(media: Path, settings: Any) -> None:
    organization = organization_make()
    kept = dataset_services.dataset_create(organization=organization, name="kept.csv",
                                           upload=SimpleUploadedFile("kept.csv", ROWS),
                                           columns=None, maximize=True)  # fmt: skip
    dataset_services.dataset_validate(dataset_id=kept.pk)
    kept.refresh_from_db()
    assert kept.status == DatasetStatus.READY and kept.parsed_file.name
    recent = default_storage.save("datasets/parsed/9-9.parquet", ContentFile(b"x"))
    for name in (kept.file.name, kept.parsed_file.name):
        _age(media, name, seconds=30 * DAY)

    assert dataset_files_orphaned_delete() == []

    assert _stored(media) == {kept.file.name, kept.parsed_file.name, recent}


def test_one_run_deletes_at_most_its_bound(media: Path, settings: Any) -> None:
    settings.DATASET_ORPHAN_SWEEP_MAX = 2
    names = [
        default_storage.save(f"datasets/{folder}/{index}-old.csv", ContentFile(b"x"))
        for index, folder in enumerate(["uploads/2026/01", "built", "parsed"])
    ]
    outside = default_storage.save("routers/1/1/run-1-a1/model.txt", ContentFile(b"x"))
    for name in [*names, outside]:
        _age(media, name)

    first, second = dataset_files_orphaned_delete(), dataset_files_orphaned_delete()

    assert (len(first), len(second)) == (2, 1) and set(first + second) == set(names)
    assert _stored(media) == {outside}  # only dataset folders are swept


def test_the_orphan_sweep_runs_from_beat_on_the_default_queue() -> None:
    name = "training.dataset_files_orphaned_delete"
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled[name] == 3600.0 and name in app.tasks
    assert app.amqp.router.route({}, name)["queue"].name == "default"


def test_a_run_examines_a_bounded_number_and_the_next_goes_on(media: Path, settings: Any) -> None:
    settings.DATASET_ORPHAN_EXAMINE_MAX = 2
    recent = [default_storage.save(f"datasets/uploads/{c}.csv", ContentFile(b"x")) for c in "ab"]
    orphan = default_storage.save("datasets/parsed/c.csv", ContentFile(b"x"))
    _age(media, orphan)

    # Old code: the whole listing read at once, the orphan deleted by the first run.
    assert dataset_files_orphaned_delete() == []  # the two recent files examined, kept
    assert dataset_files_orphaned_delete() == [orphan]
    assert dataset_files_orphaned_delete() == []  # the listing's end: from the start again
    assert _stored(media) == set(recent)


def test_a_file_gone_since_the_listing_is_passed_over(
    media: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [default_storage.save(f"datasets/built/{c}.csv", ContentFile(b"x")) for c in "ab"]
    for name in names:
        _age(media, name)
    real = FileSystemStorage.get_modified_time

    def gone_first(storage: FileSystemStorage, name: str) -> Any:
        if name == names[0]:
            os.remove(media / name)  # deleted by its dataset after the listing
        return real(storage, name)

    monkeypatch.setattr(FileSystemStorage, "get_modified_time", gone_first)
    # Old code: FileNotFoundError, the run aborted before the second file.
    assert dataset_files_orphaned_delete() == [names[1]]
    assert _stored(media) == set()


class StorageRefused(Exception):
    """What a remote storage raises, not an ``OSError`` (django-storages' S3: botocore's
    ``ClientError``, with its ``response``)."""

    def __init__(self, message: str, code: str = "AccessDenied") -> None:
        super().__init__(message)
        self.response = {"Error": {"Code": code, "Message": message}}


def test_a_file_the_storage_fails_on_is_passed_over_and_the_rest_are_swept(
    media: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    names = [default_storage.save(f"datasets/built/{c}.csv", ContentFile(b"x")) for c in "abc"]
    for name in names:
        _age(media, name)
    real_delete, real_modified = FileSystemStorage.delete, FileSystemStorage.get_modified_time

    def refuses_a(storage: FileSystemStorage, name: str) -> None:
        if name == names[0]:
            raise StorageRefused("denied for key AKIAEXAMPLESECRET")
        real_delete(storage, name)

    def refuses_b(storage: FileSystemStorage, name: str) -> Any:
        if name == names[1]:
            raise StorageRefused("endpoint https://user:secret@s3.example")
        return real_modified(storage, name)

    monkeypatch.setattr(FileSystemStorage, "delete", refuses_a)
    monkeypatch.setattr(FileSystemStorage, "get_modified_time", refuses_b)
    # Old code: StorageRefused ended the run at the first file; the others were never swept.
    assert dataset_files_orphaned_delete() == [names[2]]
    assert _stored(media) == set(names[:2])
    logged = caplog.text
    assert names[0] in logged and names[1] in logged and "StorageRefused AccessDenied" in logged
    assert "SECRET" not in logged.upper()


@pytest.mark.parametrize("error", [TypeError, MemoryError, RecursionError])
def test_a_programming_error_in_the_sweep_is_not_passed_over(
    media: Path, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """A bug (or the process's own trouble: memory, recursion) is not one file's trouble: it
    ends the run (the task fails with its traceback) rather than skipping every file quietly.
    Old code: MemoryError and RecursionError were passed over as a storage error."""
    name = default_storage.save("datasets/built/a.csv", ContentFile(b"x"))
    _age(media, name)

    def broken(storage: FileSystemStorage, name: str) -> Any:
        raise error("a bug")

    monkeypatch.setattr(FileSystemStorage, "get_modified_time", broken)
    with pytest.raises(error):
        dataset_files_orphaned_delete()
    assert _stored(media) == {name}


def test_the_soft_time_limit_stops_the_run_and_saves_where_it_got_to(
    media: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Celery's ``SoftTimeLimitExceeded`` is an ``Exception``: the storage-error catch swallowed
    it and the run went on (a slow S3) into the hard limit's kill, its cursor never saved. Now
    the run stops there and saves its cursor; the interrupted file is examined again next run.
    Old code: the limit passed over as one file's error, the next file deleted, cursor 0."""
    kept = default_storage.save("datasets/built/a.csv", ContentFile(b"x"))  # recent: kept
    slow, orphan = (
        default_storage.save(f"datasets/built/{c}.csv", ContentFile(b"x")) for c in "bc"
    )
    _age(media, slow)
    _age(media, orphan)
    real = FileSystemStorage.get_modified_time

    def times_out(storage: FileSystemStorage, name: str) -> Any:
        if name == slow:
            raise SoftTimeLimitExceeded()
        return real(storage, name)

    with monkeypatch.context() as patch:
        patch.setattr(FileSystemStorage, "get_modified_time", times_out)
        assert dataset_files_orphaned_delete() == []
    assert cache.get(ORPHAN_CURSOR) == 1  # after the kept file: the slow one is next
    assert "stopped after 1 files (the task's soft time limit)" in caplog.text
    assert dataset_files_orphaned_delete() == [slow, orphan]
    assert _stored(media) == {kept}


def test_a_storage_refusing_every_file_stops_the_run_with_one_summary_line(
    media: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code: a warning for every file examined (up to ``DATASET_ORPHAN_EXAMINE_MAX``, 5000
    a run) and the cursor back at the start."""
    names = [
        default_storage.save(f"datasets/built/{i:02}.csv", ContentFile(b"x")) for i in range(14)
    ]
    for name in names:
        _age(media, name)

    def refuses(storage: FileSystemStorage, name: str) -> None:
        raise StorageRefused("slow down")

    monkeypatch.setattr(FileSystemStorage, "delete", refuses)
    assert dataset_files_orphaned_delete() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == STORAGE_ERRORS_IN_A_ROW_MAX + 1
    assert "10 storage errors in a row, last StorageRefused AccessDenied" in warnings[-1]
    assert cache.get(ORPHAN_CURSOR) == STORAGE_ERRORS_IN_A_ROW_MAX  # the next run goes on
    assert _stored(media) == set(names)


def test_a_file_the_storage_says_is_not_found_is_already_gone_not_a_warning(
    media: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """S3's HEAD of a key deleted since the listing: a ``ClientError`` with code 404. Old code:
    a warning, as for a refused file."""
    name = default_storage.save("datasets/built/a.csv", ContentFile(b"x"))
    _age(media, name)

    def gone(storage: FileSystemStorage, name: str) -> Any:
        raise StorageRefused("Not Found", code="404")

    monkeypatch.setattr(FileSystemStorage, "get_modified_time", gone)
    caplog.set_level("INFO", logger="training.dataset_sweeps")
    assert dataset_files_orphaned_delete() == []
    [record] = [r for r in caplog.records if r.name == "training.dataset_sweeps"]
    assert record.levelname == "INFO" and "already gone (StorageRefused 404)" in record.getMessage()
