"""WEBHOOK_ENDPOINTS_PER_ORGANIZATION holds when endpoints are created at the same moment: each
creation locks the organization's row before counting, so one counts the other's endpoint.

The interleaving is forced, not hoped for: each creation waits, after its count, for the other to
have counted too (a barrier). Serialized creations never get there together; the barrier then
times out and the first goes on alone. (Without the lock both counted 0 and both were created.)
"""

from __future__ import annotations

from typing import Any

import pytest

from routerhub.domain import InvalidInput
from tests.factories import organization_make
from tests.threads import meet_after, run_at_once
from webhooks import services
from webhooks.models import WebhookEndpoint


@pytest.mark.django_db(transaction=True)
def test_endpoints_created_at_once_do_not_pass_the_cap(monkeypatch: Any, settings: Any) -> None:
    settings.WEBHOOK_ENDPOINTS_PER_ORGANIZATION = 1
    organization = organization_make()
    meet_after(monkeypatch, services, "_endpoints_cap_check", 2)

    def create(index: int) -> Any:
        return lambda: services.webhook_endpoint_create(
            created_by=None,
            organization=organization,
            url=f"http://127.0.0.1:9/hook{index}",
            events=["training.finished"],
        )

    outcomes = run_at_once([create(0), create(1)])

    assert WebhookEndpoint.objects.filter(organization=organization).count() == 1
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1 and isinstance(refused[0], InvalidInput), outcomes
    assert "at most 1 webhook endpoints" in refused[0].message
