"""Uploads stuck validating (``training.dataset_services.datasets_stuck_fail``, every 5 minutes
from Celery beat): an upload's row is committed before its file is stored, so a process dying in
between left a ``validating`` dataset without a file, and a lost validation task one that never
validated; each counted against its organization's quotas for good (on the old code nothing
ended them). Now, past ``DATASET_STUCK_VALIDATING_SECONDS``, they are made invalid with the
reason; a validation that started is never touched."""

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
from tests.training.conftest import media
from tests.training.helpers import upload
from training import dataset_services
from training.dataset_services import datasets_stuck_fail
from training.models import Dataset, DatasetStatus

__all__ = ["media"]  # the fixture

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


def test_an_upload_whose_validation_never_started_is_failed(settings: Any, media: Any) -> None:
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 1
    api = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    created = upload(api, ROWS)  # no worker runs here: its task is never delivered
    dataset = Dataset.objects.get(pk=created.json()["id"])
    _age(dataset)

    assert datasets_stuck_fail() == 1

    dataset.refresh_from_db()
    assert dataset.status == DatasetStatus.INVALID and dataset.file.name
    assert "did not start" in dataset.errors[0]["message"]
    assert dataset.size_bytes == len(ROWS)  # its file is stored: counted until deleted
    # The lost task delivered after all: not counted, not parsed, still invalid.
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
    monkeypatch.setattr(dataset_services, "STUCK_BATCH", 2)
    stuck = []
    for index in range(3):
        Dataset.objects.create(organization=organization, name=f"o{index}", size_bytes=10)
        stuck.append(Dataset.objects.latest("pk"))
    _age(*stuck)

    assert [datasets_stuck_fail(batch=2), datasets_stuck_fail(batch=2)] == [2, 1]
    assert not Dataset.objects.filter(status=DatasetStatus.VALIDATING).exists()


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
