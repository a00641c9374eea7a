"""The ``budget.threshold`` event is emitted when the hold that crossed the share commits, never
inside its transaction: while it is being emitted another hold of the key can lock the window,
a failing emit leaves the hold in place, and a hold that rolls back emits nothing. Real
PostgreSQL, eager Celery and a real HTTP receiver."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction

from accounts.models import ApiKey
from billing import window_spend
from billing.models import KeySpendWindow, Reservation
from billing.services import ReservationRequest, credits_reserve, ledger_post
from tests.billing.key_budgets import budget_organization_make, key_hold, manage_key_make
from tests.factories import child_key_make, key_make, tenants_make
from tests.routing.servers import poll
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]

MakeReceiver = Callable[[list[int]], Receiver]


@pytest.fixture
def limited_key(receiver_factory: MakeReceiver) -> tuple[ApiKey, Receiver]:
    """A key with a daily limit of 1 USD in a funded organization that listens for the event."""
    organization = tenants_make().organization
    ledger_post(organization=organization, kind="promotion", amount=Decimal("100"),
                idempotency_key="grant")  # fmt: skip
    key_make(organization, limit=Decimal("1"), limit_reset="daily")
    receiver = receiver_factory([200])
    webhook_endpoint_create(
        created_by=None, organization=organization, url=receiver.url, events=["budget.threshold"]
    )
    return ApiKey.objects.get(organization=organization), receiver


def _hold(key: ApiKey, amount: str, generation_id: str | None = None) -> ReservationRequest:
    return ReservationRequest(
        organization_id=key.organization_id,
        generation_id=generation_id or f"gen-{uuid.uuid4().hex}",
        amount=Decimal(amount),
        key_id=key.pk,
        key_limit=key.limit,
        key_limit_reset=key.limit_reset,
    )


def _window_lockable(key_id: int) -> bool:
    """Whether another session can lock the key's window row right now (as a hold would)."""
    answer: list[bool] = []

    def lock() -> None:
        try:
            with transaction.atomic():
                KeySpendWindow.objects.select_for_update(nowait=True).get(key_id=key_id)
            answer.append(True)
        except OperationalError:  # "could not obtain lock": the crossing hold still holds it
            answer.append(False)
        finally:
            connections.close_all()

    thread = threading.Thread(target=lock)
    thread.start()
    thread.join(10)
    return answer == [True]


def _events(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    poll(lambda: len(receiver.received) >= count)
    return [json.loads(r.body) for r in receiver.received]


def test_the_event_arrives_after_the_crossing_hold_commits_its_lock_released(
    limited_key: tuple[ApiKey, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, receiver = limited_key
    emit = window_spend.webhook_event_emit
    lockable_while_emitting: list[bool] = []

    def observed(*args: Any) -> Any:
        lockable_while_emitting.append(_window_lockable(key.pk))
        return emit(*args)

    monkeypatch.setattr(window_spend, "webhook_event_emit", observed)

    credits_reserve(_hold(key, "0.5"))  # half: no event
    credits_reserve(_hold(key, "0.4"))  # 90 % of the limit
    credits_reserve(_hold(key, "0.05"))  # past the share again: once per window

    assert lockable_while_emitting == [True]  # other holds of the key never waited on it
    [event] = _events(receiver, 1)
    assert event["type"] == "budget.threshold"
    assert event["data"]["key_id"] == key.pk and event["data"]["spent"] == "0.90000000"
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_a_failing_emit_neither_fails_nor_rolls_back_the_hold(
    limited_key: tuple[ApiKey, Receiver],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, receiver = limited_key

    def broken(*args: Any) -> Any:
        raise OperationalError("the webhook tables are unavailable")

    monkeypatch.setattr(window_spend, "webhook_event_emit", broken)
    request = _hold(key, "0.9")

    credits_reserve(request)  # does not raise: the request goes on with its hold

    assert Reservation.objects.get(generation_id=request.generation_id).state == "held"
    window = KeySpendWindow.objects.get(key_id=key.pk)
    assert window.reserved == Decimal("0.9") and window.threshold_emitted_for is not None
    assert f"budget.threshold event of key {key.pk} could not be queued" in caplog.text
    assert receiver.received == []


def test_a_hold_that_rolls_back_emits_nothing_and_the_next_crossing_does(
    limited_key: tuple[ApiKey, Receiver],
) -> None:
    key, receiver = limited_key
    credits_reserve(_hold(key, "0.5", generation_id="gen-twice"))

    # The same generation held twice: the reservation insert fails after the window crossed
    # the share, and the whole hold (the window's mark with it) rolls back.
    with pytest.raises(IntegrityError):
        credits_reserve(_hold(key, "0.4", generation_id="gen-twice"))

    assert not WebhookDelivery.objects.exists() and receiver.received == []
    assert KeySpendWindow.objects.get(key_id=key.pk).threshold_emitted_for is None
    credits_reserve(_hold(key, "0.4"))
    [event] = _events(receiver, 1)
    assert event["data"]["spent"] == "0.90000000"


def test_an_ancestors_event_fires_when_its_trees_spend_crosses_the_share(
    receiver_factory: MakeReceiver,
) -> None:
    """README: an ancestor's window counts its whole tree, and its ``budget.threshold`` event
    fires when the tree's spend crosses the share, though no key of the tree crossed its own."""
    organization = budget_organization_make()
    receiver = receiver_factory([200])
    webhook_endpoint_create(
        created_by=None, organization=organization, url=receiver.url, events=["budget.threshold"]
    )
    _, parent = manage_key_make(organization, limit=Decimal("1"), limit_reset="daily")
    first, _ = child_key_make(parent)  # each takes its parent's limit: 1 a day
    second, _ = child_key_make(parent)

    key_hold(first, "0.5")
    key_hold(second, "0.4")  # each key at half or less; the tree at 90 %

    [event] = _events(receiver, 1)
    assert event["data"]["key_id"] == parent.pk and event["data"]["spent"] == "0.90000000"
