"""Concurrent train requests: one active run per router, and an organization's cap on active
runs, hold when the requests race — over real HTTP (status codes and error bodies), and as
concurrent transactions on PostgreSQL from many threads (as gunicorn's processes race)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from accounts.models import KeyScope, Organization
from routerhub.errors import Conflict
from tests.conftest import require_postgres
from tests.factories import key_make, organization_make
from tests.routing.servers import ServerThread
from tests.training.conftest import csv_bytes, synthetic_frame
from training import services
from training.models import Dataset, DatasetStatus, Router, RunStatus, TrainingRun

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_runs_left_queued() -> Iterator[None]:
    """No worker consumes these runs: drop their messages so no later worker test gets them."""
    yield
    from routerhub.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("training")


def _organization_with_dataset(routers: int) -> tuple[Organization, int, str]:
    require_postgres()
    organization = organization_make()
    dataset = services.dataset_create(
        organization=organization,
        name="evals",
        upload=SimpleUploadedFile("evals.csv", csv_bytes(synthetic_frame())),
        columns=None,
        maximize=True,
    )
    validated = services.dataset_validate(dataset_id=dataset.pk)
    assert validated is not None and validated.status == DatasetStatus.READY, validated
    for i in range(routers):
        services.router_create(organization=organization, slug=f"r{i}", name=f"r{i}", candidates=[])
    return organization, dataset.pk, key_make(organization, KeyScope.MANAGE)


def _train_at_once(server: ServerThread, key: str, slugs: list[str], dataset: int) -> list[Any]:
    """POST ``/train`` for each slug from its own thread, released together."""
    gate = threading.Barrier(len(slugs))
    responses: list[Any] = [None] * len(slugs)

    def call(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            gate.wait()
            responses[i] = client.post(
                f"/api/v1/routers/{slugs[i]}/train",
                json={"dataset": dataset},
                headers={"Authorization": f"Bearer {key}"},
            )

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(slugs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_twenty_concurrent_train_requests_on_one_router_start_one_run_and_409_the_rest(
    gateway_server: ServerThread, media: Any
) -> None:
    organization, dataset, key = _organization_with_dataset(routers=1)

    responses = _train_at_once(gateway_server, key, ["r0"] * 20, dataset)

    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 409]
    assert (len(accepted), len(refused)) == (1, 19), [r.status_code for r in responses]
    run = accepted[0].json()
    for response in refused:
        error = response.json()["error"]
        assert error["type"] == "conflict"
        assert error["metadata"] == {"run": run["id"], "status": "queued"}
        assert error["message"].startswith(
            f"Router 'r0' already has a training run queued (run {run['id']}); wait for it"
        )
    assert list(
        TrainingRun.objects.filter(organization=organization).values_list("pk", flat=True)
    ) == [run["id"]]


def test_concurrent_train_requests_on_many_routers_stop_at_the_organization_cap(
    gateway_server: ServerThread, media: Any, settings: Any
) -> None:
    settings.TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION = 3
    organization, dataset, key = _organization_with_dataset(routers=8)

    responses = _train_at_once(gateway_server, key, [f"r{i}" for i in range(8)], dataset)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 3 + [409] * 5, statuses
    started = TrainingRun.objects.filter(organization=organization, status=RunStatus.QUEUED)
    assert started.count() == 3
    for response in (r for r in responses if r.status_code == 409):
        error = response.json()["error"]
        assert error["message"] == (
            "Your organization already has 3 training runs queued or running; the limit is 3 at "
            "once. Wait for one to finish or cancel one."
        )
        assert sorted(error["metadata"]["runs"]) == sorted(started.values_list("pk", flat=True))

    # A cancelled run frees its place.
    services.training_run_cancel(run=started.order_by("pk")[0])
    refused_slug = next(f"r{i}" for i, r in enumerate(responses) if r.status_code == 409)
    (again,) = _train_at_once(gateway_server, key, [refused_slug], dataset)
    assert again.status_code == 202, again.json()


def test_concurrent_transactions_never_start_two_runs_on_a_router_or_pass_the_cap(
    settings: Any, media: Any
) -> None:
    settings.TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION = 3
    organization, dataset_id, _ = _organization_with_dataset(routers=8)
    slugs = [f"r{i}" for i in range(8)] * 3
    gate = threading.Barrier(len(slugs))
    outcomes: list[str] = [""] * len(slugs)

    def start(i: int) -> None:
        try:
            router = Router.objects.get(organization=organization, slug=slugs[i])
            dataset = Dataset.objects.get(pk=dataset_id)
            gate.wait()
            try:
                services.training_run_start(router=router, dataset=dataset)
            except Conflict as exc:
                outcomes[i] = exc.message
            else:
                outcomes[i] = "started"
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(slugs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes.count("started") == 3, outcomes
    assert all(o == "started" or o.startswith(("Router 'r", "Your organization")) for o in outcomes)
    runs = TrainingRun.objects.filter(organization=organization)
    assert runs.count() == 3
    assert len(set(runs.values_list("router_id", flat=True))) == 3
