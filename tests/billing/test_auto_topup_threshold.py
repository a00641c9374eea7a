"""An auto top-up's threshold is below its amount, so one top-up lifts the balance above the
threshold. Before, a threshold at or above the amount was saved (20 and 10): a top-up from a
balance of 5 left 15, still under it, and the next minute's check charged the card again until
the daily cap stopped it. Settings saved before the rule are left as they are (checked on write)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django import forms
from rest_framework import serializers

from accounts.models import KeyScope
from billing.services import credit_account_for
from billing.stripe.api import AutoTopupInput
from routerhub.api_forms import ApiCheckedForm
from tests.factories import key_client, key_make

pytestmark = pytest.mark.django_db
AUTO_TOPUP = "/api/v1/credits/auto-topup"


def _owner_api(organization: Any) -> Any:
    return key_client(key_make(organization, scope=KeyScope.MANAGE))


@pytest.mark.parametrize(("threshold", "amount"), [("20", "10"), ("10", "10"), ("10.01", "10")])
def test_a_threshold_at_or_above_the_amount_is_a_400_naming_both(
    tenants: Any, threshold: str, amount: str
) -> None:
    answer = _owner_api(tenants.organization).patch(
        AUTO_TOPUP, {"threshold": threshold, "amount": amount}, format="json"
    )

    assert answer.status_code == 400, answer.json()
    error = answer.json()["error"]
    assert error["param"] == "threshold"
    assert error["message"].startswith(
        f"threshold (${Decimal(threshold):,.2f}) must be less than amount (${Decimal(amount):,.2f})"
    )
    assert error["metadata"]["fields"] == ["threshold", "amount"]
    assert credit_account_for(tenants.organization.pk).auto_topup_threshold is None


def test_a_threshold_below_the_amount_is_saved(tenants: Any) -> None:
    answer = _owner_api(tenants.organization).patch(
        AUTO_TOPUP, {"threshold": "9.99", "amount": "10"}, format="json"
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"enabled": True, "threshold": "9.99000000", "amount": "10.00000000"}


def test_a_setting_saved_before_the_rule_still_reads_and_can_be_turned_off(tenants: Any) -> None:
    account = credit_account_for(tenants.organization.pk)
    account.auto_topup_threshold, account.auto_topup_amount = Decimal("20"), Decimal("10")
    account.save()
    api = _owner_api(tenants.organization)

    seen = api.get(AUTO_TOPUP)
    off = api.patch(AUTO_TOPUP, {"threshold": None, "amount": None}, format="json")

    assert seen.status_code == 200
    assert seen.json() == {"enabled": True, "threshold": "20.00000000", "amount": "10.00000000"}
    assert off.status_code == 200 and off.json()["enabled"] is False


class _AutoTopupForm(ApiCheckedForm):
    """A dashboard form checked by the API's serializer, as ``routerhub.api_forms`` checks any."""

    threshold = forms.DecimalField()
    amount = forms.DecimalField()

    def api_input(self) -> type[serializers.Serializer[Any]]:
        return AutoTopupInput


def test_a_form_checked_by_the_api_serializer_shows_the_rule_on_the_threshold() -> None:
    refused = _AutoTopupForm(data={"threshold": "20", "amount": "10"})
    accepted = _AutoTopupForm(data={"threshold": "5", "amount": "10"})

    assert not refused.is_valid()
    assert refused.errors["threshold"][0].startswith(
        "threshold ($20.00) must be less than amount ($10.00)"
    )
    assert accepted.is_valid(), accepted.errors
