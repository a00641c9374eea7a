"""WEBHOOK_ENDPOINTS_PER_ORGANIZATION holds when endpoints are created at the same moment: each
creation locks the organization's row before counting, so one counts the other's endpoint.

The interleaving is forced, not hoped for: each creation waits, after its count, for the other to
have counted too (a barrier). Serialized creations never get there together; the barrier then
times out and the first goes on alone. (Without the lock both counted 0 and both were created.)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.db import connection

from routerhub.domain import InvalidInput
from tests.factories import organization_make
from webhooks import services
from webhooks.models import WebhookEndpoint

BARRIER_TIMEOUT_S = 2.0


@pytest.mark.django_db(transaction=True)
def test_endpoints_created_at_once_do_not_pass_the_cap(monkeypatch: Any, settings: Any) -> None:
    settings.WEBHOOK_ENDPOINTS_PER_ORGANIZATION = 1
    organization = organization_make()
    barrier = threading.Barrier(2)
    check = services._endpoints_cap_check

    def check_then_meet(organization: Any) -> None:
        check(organization)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=BARRIER_TIMEOUT_S)

    monkeypatch.setattr(services, "_endpoints_cap_check", check_then_meet)
    outcomes: list[BaseException | None] = [None, None]

    def create(index: int) -> None:
        try:
            services.webhook_endpoint_create(
                organization=organization,
                url=f"http://127.0.0.1:9/hook{index}",
                events=["training.finished"],
            )
        except BaseException as exc:  # reported to the test
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert WebhookEndpoint.objects.filter(organization=organization).count() == 1
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1 and isinstance(refused[0], InvalidInput), outcomes
    assert "at most 1 webhook endpoints" in refused[0].message
