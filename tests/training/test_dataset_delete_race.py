"""A dataset deleted while a training run on it is being recorded: the two take turns on the
dataset's row. The run recorded first makes the delete a 409 and the files stay; the delete
first makes the run's start a 404. (The delete
checked for active runs, then deleted the files: a run started at the same moment, committed
after the check, trained on files already gone.)"""

from __future__ import annotations

import os
import threading

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from routerhub.domain import Conflict, NotFound
from tests.db_locks import backend_pid, waiting_for
from tests.factories import organization_make
from tests.routing.servers import poll
from tests.threads import run_at_once
from training import services
from training.models import Dataset, DatasetStatus, Router, TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE_S = 20.0


def _dataset(organization) -> Dataset:
    dataset = Dataset(organization=organization, name="d", status=DatasetStatus.READY)
    dataset.file.save("d.csv", ContentFile(b"prompt,a/score,b/score\nhi,1,0\n"), save=False)
    dataset.parsed_file.save("d.parquet", ContentFile(b"parsed"), save=False)
    dataset.save()
    return dataset


def test_a_run_recorded_while_its_dataset_is_deleted_keeps_the_files(media) -> None:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    dataset = _dataset(organization)
    paths = [dataset.file.path, dataset.parsed_file.path]
    recording, commit, done = threading.Event(), threading.Event(), threading.Event()
    pids: list[int] = []

    def record() -> None:  # a run start, its transaction still open
        with transaction.atomic():
            services.training_run_record(
                router=router, dataset=dataset, candidates=["a", "b"], options={}
            )
            pids.append(backend_pid())
            recording.set()
            assert commit.wait(DEADLINE_S)

    def delete() -> None:
        assert recording.wait(DEADLINE_S)
        try:
            services.dataset_delete(dataset=Dataset.objects.get(pk=dataset.pk))
        finally:
            done.set()

    def release() -> None:  # once the delete waits on the run's transaction (or, unlocked,
        # went through), let the run commit; neither before the deadline fails the test
        try:
            assert recording.wait(DEADLINE_S)
            poll(lambda: waiting_for(pids[0]) or done.is_set(), timeout=DEADLINE_S)
        finally:
            commit.set()  # the run's thread ends either way; the failure is reported below

    recorded, deleted, released = run_at_once([record, delete, release])

    assert released is None, released
    assert recorded is None
    assert isinstance(deleted, Conflict), deleted
    assert TrainingRun.objects.filter(dataset=dataset).count() == 1
    assert all(os.path.exists(path) for path in paths)


def test_a_dataset_no_run_uses_is_deleted_with_its_files(media) -> None:
    organization = organization_make()
    dataset = _dataset(organization)
    paths = [dataset.file.path, dataset.parsed_file.path]

    services.dataset_delete(dataset=dataset)

    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not any(os.path.exists(path) for path in paths)


def test_a_dataset_an_active_run_tests_on_is_not_deleted(media) -> None:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    data, held_out = _dataset(organization), _dataset(organization)
    services.training_run_record(
        router=router, dataset=data, candidates=["a", "b"], options={"test_dataset": held_out.pk}
    )

    with pytest.raises(Conflict):
        services.dataset_delete(dataset=held_out)

    assert Dataset.objects.filter(pk=held_out.pk).exists()
    assert os.path.exists(held_out.file.path) and os.path.exists(held_out.parsed_file.path)


def test_a_run_started_while_its_dataset_is_being_deleted_is_a_404(media) -> None:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    dataset = _dataset(organization)
    deleting, commit = threading.Event(), threading.Event()
    pids: list[int] = []

    def delete() -> None:  # the delete first, its transaction still open
        with transaction.atomic():
            services.dataset_delete(dataset=Dataset.objects.get(pk=dataset.pk))
            pids.append(backend_pid())
            deleting.set()
            assert commit.wait(DEADLINE_S)

    def record() -> None:
        assert deleting.wait(DEADLINE_S)
        services.training_run_record(
            router=router, dataset=dataset, candidates=["a", "b"], options={}
        )

    def release() -> None:  # once the run start waits on the delete's transaction, commit it;
        # a run start that never waits before the deadline fails the test
        try:
            assert deleting.wait(DEADLINE_S)
            poll(lambda: waiting_for(pids[0]), timeout=DEADLINE_S)
        finally:
            commit.set()  # the delete's thread ends either way; the failure is reported below

    deleted, recorded, released = run_at_once([delete, record, release])

    assert released is None, released
    assert deleted is None
    assert isinstance(recorded, NotFound), recorded
    assert not TrainingRun.objects.filter(router=router).exists()
