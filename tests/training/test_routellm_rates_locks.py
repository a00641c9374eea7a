"""RouteLLM's rates load a version at a time per version: a load that waits (here for the row
lock of a version another transaction holds, as a slow computation would) holds up no lookup
of another version, and the process keeps a bounded number of versions' rates."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction

from tests.db_locks import backend_pid, waiting_for
from tests.factories import organization_make
from training import routellm_rates
from training.models import RouteLLMCalibration, Router, RouterVersion

pytestmark = pytest.mark.django_db(transaction=True)


def _versions(count: int) -> list[RouterVersion]:
    router = Router.objects.create(organization=organization_make(), slug="r", candidates=[])
    return [
        RouterVersion.objects.create(router=router, number=n + 1, checksum=f"c{n}")
        for n in range(count)
    ]


def _store(version: RouterVersion, rate: float) -> None:
    RouteLLMCalibration.objects.create(version_id=version.pk, checksum=version.checksum,
                                       strong="s", weak="w",
                                       rates=np.array([rate]).tobytes())  # fmt: skip


def _in_thread(version: RouterVersion, outcome: dict[int, Any]) -> threading.Thread:
    def look_up() -> None:
        try:
            outcome[version.pk] = routellm_rates.calibration_rates(version.pk, version.checksum)
        finally:
            connection.close()

    thread = threading.Thread(target=look_up)
    thread.start()
    return thread


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the load never reached the version's row lock"
        time.sleep(0.01)


def test_a_version_whose_load_waits_holds_up_no_other_versions_lookup() -> None:
    slow, other = _versions(2)
    _store(other, 0.25)
    routellm_rates._calibrations.clear()
    outcome: dict[int, Any] = {}
    with transaction.atomic():
        RouterVersion.objects.select_for_update().get(pk=slow.pk)  # the slow load waits here
        waiting = _in_thread(slow, outcome)
        _until(lambda: waiting_for(backend_pid()))
        looking = _in_thread(other, outcome)
        looking.join(timeout=20)  # a bound for the old code's wait, which lasted until commit
        other_done_while_slow_waited = not looking.is_alive()
        _store(slow, 0.75)  # what the slow load finds once the lock is released
    waiting.join(timeout=20)
    looking.join(timeout=20)

    # Was False: one process-wide lock, held by the slow version's load, kept the other waiting.
    assert other_done_while_slow_waited
    assert list(outcome[other.pk][1]) == [0.25] and list(outcome[slow.pk][1]) == [0.75]
    assert outcome[slow.pk][0] == routellm_rates.Pair(strong="s", weak="w")
    assert routellm_rates._loading == {}  # a lock lives while its version loads


def test_the_process_keeps_the_rates_of_a_bounded_number_of_versions() -> None:
    versions = _versions(routellm_rates._PROCESS_CACHE_SIZE + 3)
    for n, version in enumerate(versions):
        _store(version, n / 100)
    routellm_rates._calibrations.clear()

    loaded = [routellm_rates.calibration_rates(v.pk, v.checksum)[1][0] for v in versions]
    again = routellm_rates.calibration_rates(versions[-1].pk, versions[-1].checksum)

    assert loaded == [n / 100 for n in range(len(versions))]
    assert len(routellm_rates._calibrations) == routellm_rates._PROCESS_CACHE_SIZE
    assert again[1][0] == (len(versions) - 1) / 100
    assert (versions[0].pk, versions[0].checksum) not in routellm_rates._calibrations
    assert routellm_rates._loading == {}
