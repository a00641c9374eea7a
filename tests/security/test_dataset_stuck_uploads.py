"""Uploads stuck validating (``training.dataset_sweeps.datasets_stuck_fail``, every 5 minutes
from Celery beat): an upload's row is committed before its file is stored, so a process dying in
between left a ``validating`` dataset without a file, and a lost validation task one that never
validated; each counted against its organization's quotas for good (on the old code nothing
ended them). Now, past ``DATASET_STUCK_VALIDATING_SECONDS``, one without a file is made invalid
with the reason; a stored one whose validation has not started (it may only be waiting behind
training runs on the ``training`` queue) is queued again, ``DATASET_STUCK_REQUEUES`` times, one
period apart, and made invalid only after that. A validation that started and was lost (its
worker died, and the broker's redelivery too) is queued again once its task's hard time limit
plus a period has passed since its latest attempt, sharing the same re-queues, then made invalid
(on the old code a started validation was never touched: validating for good)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.models import KeyScope, Organization
from routerhub.celery import app
from routerhub.domain import Unavailable
from tests.factories import key_client, key_make, organization_make
from tests.training.helpers import upload
from training import dataset_services, dataset_sweeps
from training.dataset_sweeps import datasets_stuck_fail
from training.models import Dataset, DatasetStatus

ROWS = b"prompt,a/score,b/score\n" + b"".join(b"q%d,1,0\n" % i for i in range(40))
pytestmark = pytest.mark.django_db


def _age(*datasets: Any, seconds: int = 3601) -> None:
    created = timezone.now() - timedelta(seconds=seconds)
    Dataset.objects.filter(pk__in=[d.pk for d in datasets]).update(created_at=created)


def _create(organization: Organization, name: str) -> Dataset:
    return dataset_services.dataset_create(
        organization=organization,
        name=name,
        upload=SimpleUploadedFile(name, ROWS),
        columns=None,
        maximize=True,
    )


def _died_while_storing(organization: Organization, monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """An upload whose process ended between committing its row and storing its file."""

    def dies(*args: Any, **kwargs: Any) -> str:
        raise SystemExit("the pod was killed")

    with monkeypatch.context() as patch:
        patch.setattr(FileSystemStorage, "save", dies)
        with pytest.raises(SystemExit):
            _create(organization, "big.csv")
    return Dataset.objects.get(organization=organization, name="big.csv")


def test_an_upload_whose_process_died_while_storing_is_failed_and_frees_the_quotas(
    settings: Any, media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 1
    settings.DATASETS_MAX_BYTES_PER_ORGANIZATION = len(ROWS)
    organization = organization_make()
    api = key_client(key_make(organization, scope=KeyScope.MANAGE))
    orphan = _died_while_storing(organization, monkeypatch)
    assert orphan.status == DatasetStatus.VALIDATING and not orphan.file.name
    assert upload(api, ROWS).status_code == 409  # the orphan holds both quotas
    _age(orphan)

    assert datasets_stuck_fail() == 1

    shown = api.get(f"/api/v1/datasets/{orphan.pk}").json()
    assert shown["status"] == "invalid"
    assert "upload the file again" in shown["errors"][0]["message"]
    assert upload(api, ROWS).status_code == 201  # both quotas free again
    assert datasets_stuck_fail() == 0  # idempotent: nothing left to fail


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The datasets whose validation is queued (no worker runs here)."""
    ids: list[int] = []
    monkeypatch.setattr(dataset_services.dispatch, "dataset_validation_queue", ids.append)
    return ids


def test_a_stored_upload_whose_validation_has_not_started_is_queued_again_not_failed(
    settings: Any, media: Any, queued: list[int]
) -> None:
    """Validation waits on the ``training`` queue behind training runs (up to 32 min each): an
    hour's wait is no sign of a lost task. Before: made invalid, a healthy upload refused."""
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 1
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    dataset = Dataset.objects.get(pk=upload(api, ROWS).json()["id"])
    queued.clear()  # the upload's own
    _age(dataset)

    assert datasets_stuck_fail() == 1
    assert queued == [dataset.pk]
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.VALIDATING and dataset.validation_requeues == 1
    assert datasets_stuck_fail() == 0  # once per period, not every run
    # The validation (the first delivery or the re-queued one) runs at last: the upload is fine.
    dataset_services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY
    dataset_services.dataset_validate(dataset_id=dataset.pk)  # the other delivery: nothing
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY and dataset.validation_attempts == 1


def test_an_upload_whose_validation_never_starts_is_failed_after_its_requeues(
    settings: Any, media: Any, queued: list[int]
) -> None:
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 1
    settings.DATASET_STUCK_REQUEUES = 2
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    dataset = Dataset.objects.get(pk=upload(api, ROWS).json()["id"])
    for period in (1, 2):
        _age(dataset, seconds=3600 * period + 1)
        assert datasets_stuck_fail() == 1  # queued again
    _age(dataset, seconds=3600 * 3 - 60)
    assert datasets_stuck_fail() == 0  # the last re-queue gets its period too
    _age(dataset, seconds=3600 * 3 + 1)

    assert datasets_stuck_fail() == 1

    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.INVALID and dataset.file.name
    assert "did not start within 180 minutes (queued 3 times)" in dataset.errors[0]["message"]
    assert dataset.size_bytes == len(ROWS)  # its file is stored: counted until deleted
    # A lost task delivered after all: not counted, not parsed, still invalid.
    dataset_services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.INVALID and dataset.validation_attempts == 0
    assert upload(api, ROWS).status_code == 201


def test_a_validation_under_way_or_a_recent_upload_is_left_alone(
    media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    started = Dataset.objects.get(pk=upload(api, ROWS, filename="started.csv").json()["id"])
    recent = Dataset.objects.get(pk=upload(api, ROWS, filename="recent.csv").json()["id"])
    # A worker counted its attempt (it is parsing the file now, or will be delivered again).
    assert dataset_services.dataset_attempt(started.pk)[1]
    _age(started)

    assert datasets_stuck_fail() == 0

    statuses = Dataset.objects.filter(pk__in=[started.pk, recent.pk]).values_list("status")
    assert set(statuses) == {(DatasetStatus.VALIDATING,)}


def test_one_run_fails_at_most_its_batch(media: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    organization = organization_make()
    # Read when the sweep runs (before: a default argument, bound when the module was loaded,
    # so this changed nothing and one run failed all three).
    monkeypatch.setattr(dataset_sweeps, "STUCK_BATCH", 2)
    stuck = []
    for index in range(3):
        Dataset.objects.create(organization=organization, name=f"o{index}", size_bytes=10)
        stuck.append(Dataset.objects.latest("pk"))
    _age(*stuck)

    assert [datasets_stuck_fail(), datasets_stuck_fail()] == [2, 1]
    assert not Dataset.objects.filter(status=DatasetStatus.VALIDATING).exists()


def test_a_built_dataset_no_longer_there_once_stored_keeps_nothing_and_queues_nothing(
    media: Any, monkeypatch: pytest.MonkeyPatch, queued: list[int]
) -> None:
    """``quota=False`` (datasets RouterHub builds): before, a row gone while its file was stored
    went on, kept the file and queued a validation of nothing."""
    organization = organization_make()
    real_save = FileSystemStorage.save

    def deleted_meanwhile(storage: FileSystemStorage, *args: Any, **kwargs: Any) -> str:
        Dataset.objects.filter(organization=organization).delete()
        return real_save(storage, *args, **kwargs)

    monkeypatch.setattr(FileSystemStorage, "save", deleted_meanwhile)
    with pytest.raises(Unavailable):
        dataset_services.dataset_create(organization=organization, name="built.csv",
                                        upload=SimpleUploadedFile("built.csv", ROWS),
                                        columns=None, maximize=True, quota=False)  # fmt: skip

    assert queued == []
    assert not Dataset.objects.filter(organization=organization).exists()
    assert not [path for path in media.rglob("*") if path.is_file()]


def test_an_upload_given_up_while_storing_keeps_nothing(
    media: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing took past the deadline: the sweep freed its size, so no file may stay behind."""
    organization = organization_make()
    real_save = FileSystemStorage.save

    def slow_save(storage: FileSystemStorage, *args: Any, **kwargs: Any) -> str:
        _age(*Dataset.objects.filter(organization=organization))
        assert datasets_stuck_fail() == 1
        return real_save(storage, *args, **kwargs)

    monkeypatch.setattr(FileSystemStorage, "save", slow_save)
    with pytest.raises(Unavailable):
        _create(organization, "slow.csv")

    assert not Dataset.objects.filter(organization=organization).exists()
    assert not [path for path in media.rglob("*") if path.is_file()]


def test_the_sweep_runs_from_beat_on_the_default_queue() -> None:
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled["training.datasets_stuck_fail"] == 300.0
    assert "training.datasets_stuck_fail" in app.tasks
    assert app.amqp.router.route({}, "training.datasets_stuck_fail")["queue"].name == "default"


def _started_ago(dataset: Dataset, seconds: float) -> None:
    started = timezone.now() - timedelta(seconds=seconds)
    Dataset.objects.filter(pk=dataset.pk).update(validation_started_at=started)


def test_a_started_validation_whose_redelivery_was_lost_is_queued_again_then_failed(
    settings: Any, media: Any, queued: list[int]
) -> None:
    settings.DATASET_STUCK_REQUEUES = 1
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    dataset = Dataset.objects.get(pk=upload(api, ROWS).json()["id"])
    queued.clear()
    assert dataset_services.dataset_attempt(dataset.pk)[1]  # a worker started it, then died
    _age(dataset, seconds=10 * 3600)
    lost_after = dataset_services.VALIDATION_HARD_LIMIT + 3600  # hard limit + a period
    _started_ago(dataset, lost_after - 60)
    assert datasets_stuck_fail() == 0  # the broker may still deliver it again

    _started_ago(dataset, lost_after + 1)
    assert datasets_stuck_fail() == 1  # old code: 0, validating for good

    assert queued == [dataset.pk]
    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.VALIDATING and dataset.validation_requeues == 1
    assert datasets_stuck_fail() == 0  # once per period: the re-queue restarted its clock
    _started_ago(dataset, lost_after + 1)  # the re-queued task was lost as well

    assert datasets_stuck_fail() == 1

    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.INVALID and queued == [dataset.pk]
    assert "started but never finished" in dataset.errors[0]["message"]
    assert "queued again (once)" in dataset.errors[0]["message"]


def test_a_lost_validation_queued_again_validates_when_delivered(
    settings: Any, media: Any, queued: list[int]
) -> None:
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    dataset = Dataset.objects.get(pk=upload(api, ROWS).json()["id"])
    assert dataset_services.dataset_attempt(dataset.pk)[1]
    _started_ago(dataset, dataset_services.VALIDATION_HARD_LIMIT + 3601)
    assert datasets_stuck_fail() == 1

    dataset_services.dataset_validate(dataset_id=dataset.pk)  # the re-queued delivery

    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.READY and dataset.validation_attempts == 2
