"""An organization's uploads are bounded: their files' bytes in all, and how many wait for
validation at once (``training.dataset_services._quota_check``).

The attack: anyone who signs up administers their own organization, and an administrator may
upload datasets. On the old code nothing bounded how many: one free account could fill the
media storage 200 MB at a time, and queue validation tasks (each up to 5 minutes of a worker)
without end on the queue every organization shares, uploading, deleting and uploading again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection

from accounts.models import KeyScope
from tests.conftest import require_postgres
from tests.factories import key_client, key_make, organization_make
from tests.training.helpers import upload
from training.dataset_services import _UPLOADS_LOCK
from training.models import Dataset, DatasetStatus

ROWS = b"prompt,a/score,b/score\n" + b"".join(b"q%d,1,0\n" % i for i in range(40))


def admin_api(organization: Any = None) -> Any:
    return key_client(key_make(organization or organization_make(), scope=KeyScope.MANAGE))


@pytest.mark.django_db
def test_uploads_past_the_organizations_storage_are_refused_and_deleting_frees_it(
    settings: Any,
) -> None:
    settings.DATASETS_MAX_BYTES_PER_ORGANIZATION = 3 * len(ROWS)
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 100
    api, other = admin_api(), admin_api()

    stored = [upload(api, ROWS, filename=f"d{i}.csv") for i in range(3)]
    refused = upload(api, ROWS, filename="one-too-many.csv")
    elsewhere = upload(other, ROWS)  # another organization's storage is its own

    assert [r.status_code for r in stored] == [201, 201, 201]
    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["param"] == "file" and "Delete datasets" in error["message"]
    assert error["metadata"]["limit_bytes"] == 3 * len(ROWS)
    assert elsewhere.status_code == 201
    assert api.delete(f"/api/v1/datasets/{stored[0].json()['id']}").status_code == 204
    assert upload(api, ROWS, filename="fits-again.csv").status_code == 201


@pytest.mark.django_db
def test_uploads_waiting_for_validation_are_bounded(settings: Any) -> None:
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 2
    organization = organization_make()
    api = admin_api(organization)

    waiting = [upload(api, ROWS, filename=f"w{i}.csv") for i in range(2)]  # no worker runs here
    refused = upload(api, ROWS, filename="third.csv")
    Dataset.objects.filter(pk=waiting[0].json()["id"]).update(status=DatasetStatus.READY)
    after_one_validated = upload(api, ROWS, filename="third-again.csv")

    assert [r.status_code for r in waiting] == [201, 201]
    assert refused.status_code == 409, refused.content
    assert refused.json()["error"]["metadata"] == {"validating": 2, "limit": 2}
    assert after_one_validated.status_code == 201, after_one_validated.content


@pytest.mark.django_db(transaction=True)
def test_uploads_sent_at_once_cannot_all_pass_the_same_count(settings: Any) -> None:
    """Six uploads at once (each in its own connection and transaction), room for two: two."""
    settings.DATASETS_MAX_BYTES_PER_ORGANIZATION = 2 * len(ROWS)
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 100
    organization = organization_make()
    plaintext = key_make(organization, scope=KeyScope.MANAGE)
    barrier, statuses = threading.Barrier(6), []

    def send(i: int) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=30)
                statuses.append(
                    upload(key_client(plaintext), ROWS, filename=f"c{i}.csv").status_code
                )
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=send(i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [201, 201, 409, 409, 409, 409]
    assert Dataset.objects.filter(organization=organization).count() == 2


def _quota_lock_held(organization_id: int) -> bool:
    """Whether any session holds the advisory lock ``_quota_check`` takes for the organization."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s",
            [_UPLOADS_LOCK, organization_id],
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_the_file_is_stored_outside_the_transaction_and_the_quota_lock(
    monkeypatch: pytest.MonkeyPatch, media: Any
) -> None:
    """Storing a file (S3 in production, up to 200 MB) held the organization's upload lock and a
    transaction open on the old code: every other upload of the organization waited on it, and
    a database connection sat idle in a transaction for the whole transfer."""
    require_postgres()
    organization = organization_make()
    seen: list[tuple[bool, bool, bool]] = []
    store = FileSystemStorage._save

    def observed(storage: FileSystemStorage, name: str, content: Any) -> str:
        reserved = Dataset.objects.filter(organization=organization, size_bytes=len(ROWS))
        seen.append(
            (connection.in_atomic_block, _quota_lock_held(organization.pk), reserved.exists())
        )
        return store(storage, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", observed)
    response = upload(admin_api(organization), ROWS)

    assert response.status_code == 201, response.content
    # Not in a transaction, the lock free, and the row (its size reserved) already committed.
    assert seen == [(False, False, True)]
    assert Dataset.objects.get(pk=response.json()["id"]).file.name


@pytest.mark.django_db(transaction=True)
def test_a_file_that_cannot_be_stored_keeps_no_row_and_takes_no_quota(
    monkeypatch: pytest.MonkeyPatch, settings: Any, media: Any
) -> None:
    settings.DATASETS_MAX_BYTES_PER_ORGANIZATION = len(ROWS)
    organization = organization_make()
    api = admin_api(organization)

    def unreachable(storage: FileSystemStorage, name: str, content: Any) -> str:
        raise OSError("the storage is unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(FileSystemStorage, "_save", unreachable)
        failed = upload(api, ROWS, filename="lost.csv")

    assert failed.status_code == 503, failed.content
    error = failed.json()["error"]
    assert error["param"] == "file" and "nothing was kept" in error["message"]
    assert not Dataset.objects.filter(organization=organization).exists()
    assert upload(api, ROWS, filename="again.csv").status_code == 201  # its room was freed
