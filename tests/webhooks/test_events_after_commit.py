"""A webhook event is part of the change it announces: ``webhook_event_emit`` writes the
deliveries in the caller's transaction and sends them after its commit, so a change that rolls
back (here a promotion, emitted inside ``version_switch``'s transaction and an outer one)
announces nothing, and the same change committed is delivered once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction

from tests.training.test_lifecycle_api import router_with_versions
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_deliveries import endpoint_create
from training.lifecycle import version_promote
from training.models import Router
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.usefixtures("eager_celery")


@pytest.mark.django_db(transaction=True)
def test_a_promotion_that_rolls_back_announces_nothing(
    receiver_factory: Callable[[list[int]], Receiver],
) -> None:
    receiver = receiver_factory([200])
    router, _ = router_with_versions(2)
    endpoint_create(router.organization, receiver.url, ["router.promoted"])

    with pytest.raises(RuntimeError), transaction.atomic():
        version_promote(router=router, number=2, evidence={"decisions": 500})
        raise RuntimeError("the work after the promotion, in the same transaction, fails")

    assert not WebhookDelivery.objects.exists() and receiver.received == []
    assert Router.objects.get(pk=router.pk).active_version.number == 1  # type: ignore[union-attr]
    version_promote(router=router, number=2, evidence={"decisions": 500})
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.event_type, delivery.status) == ("router.promoted", "succeeded")
    assert len(receiver.received) == 1
