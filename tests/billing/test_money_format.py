"""The dashboard's one money format: 2 to 6 decimals, the exact stored value on hover."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from billing.services import ledger_post
from routerhub.templatetags.money import usd
from tests.factories import dashboard_client


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("10", "$10.00"),
        ("9.995", "$9.995"),
        ("0.000012", "$0.000012"),
        ("-0.5", "-$0.50"),
        ("1234.5", "$1,234.50"),
        ("0.00000001", "<$0.000001"),
    ],
)
def test_usd_shows_two_to_six_decimals_and_the_exact_value_on_hover(
    amount: str, shown: str
) -> None:
    html = str(usd(Decimal(amount)))

    assert f">{shown.replace('<', '&lt;')}</span>" in html
    assert (
        f'title="{"-" if amount.startswith("-") else ""}${abs(Decimal(amount)):.8f} exactly"'
        in html
    )


@pytest.mark.django_db
def test_credits_balance_available_and_ledger_agree_to_the_same_format(tenants: Any) -> None:
    for key, amount in (("grant", "10"), ("charge", "-0.005")):
        ledger_post(
            organization=tenants.organization,
            kind="promotion" if key == "grant" else "usage",
            amount=Decimal(amount),
            idempotency_key=key,
        )

    html = dashboard_client(tenants.owner, tenants.organization).get("/dashboard/credits/")

    shown = re.findall(r'<span class="money" title="([^"]+)">([^<]+)</span>', html.content.decode())
    values = {text: title for title, text in shown}
    # Balance, available (nothing held) and the last "balance after" are one value, one format.
    assert [text for _, text in shown].count("$9.995") == 3, shown
    assert values["$9.995"] == "$9.99500000 exactly"
    assert "-$0.005" in values and "$10.00" in values
    assert "$10.00" not in [text for title, text in shown if title == "$9.99500000 exactly"]
