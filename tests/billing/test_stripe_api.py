"""Top-up API without Stripe: fee quotes, amount limits, receipts and the auto top-up setting."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from accounts.models import KeyScope
from billing.models import Payment, PaymentKind, PaymentStatus
from billing.services import credit_account_for
from tests.factories import key_client, key_make, session_client
from tests.processes import production_environment

pytestmark = pytest.mark.django_db


def _owner_api(organization: Any) -> Any:
    return key_client(key_make(organization, scope=KeyScope.MANAGE))


def _payment(organization: Any, intent: str, **fields: Any) -> Payment:
    return Payment.objects.create(
        organization=organization,
        kind=PaymentKind.CHECKOUT,
        amount=Decimal("20"),
        fee=Decimal("1.10"),
        stripe_payment_intent_id=intent,
        **fields,
    )


@pytest.mark.parametrize(
    ("amount", "fee", "total"),
    [
        ("20", "1.10000000", "21.10000000"),
        ("5", "0.80000000", "5.80000000"),  # the minimum fee
        ("10.01", "0.80000000", "10.81000000"),
        ("100.10", "5.51000000", "105.61000000"),  # 5.5055 rounds up to the cent
        ("10000", "550.00000000", "10550.00000000"),
    ],
)
def test_the_quote_shows_the_fee_before_paying(tenants: Any, amount: str, fee: str, total: str):
    client = session_client(tenants.member, tenants.organization)

    response = client.get("/api/v1/credits/checkout/quote", {"amount": amount})

    assert response.status_code == 200
    assert response.json() == {
        "amount": f"{Decimal(amount):.8f}",
        "fee": fee,
        "total": total,
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("4.99", "amount must be at least $5.00."),
        ("10000.01", "amount must be at most $10,000.00."),
        ("12.345", "amount must be in whole cents, like 25 or 25.50."),
        ("twelve", "amount: A valid number is required."),
    ],
)
def test_checkout_amounts_outside_the_limits_get_a_clear_400(
    tenants: Any, amount: str, message: str
):
    response = _owner_api(tenants.organization).post(
        "/api/v1/credits/checkout", {"amount": amount}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert response.json()["error"]["param"] == "amount"
    assert not Payment.objects.exists()


def test_the_limits_come_from_settings(tenants: Any, settings: Any):
    settings.TOPUP_MIN_AMOUNT = Decimal("50")
    client = session_client(tenants.member, tenants.organization)

    response = client.get("/api/v1/credits/checkout/quote", {"amount": "20"})

    assert response.json()["error"]["message"] == "amount must be at least $50.00."


def test_checkout_without_stripe_configured_is_unavailable(tenants: Any, settings: Any):
    settings.STRIPE_SECRET_KEY = ""

    response = _owner_api(tenants.organization).post(
        "/api/v1/credits/checkout", {"amount": "20"}, format="json"
    )

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "payments_unavailable"


def test_receipts_list_the_organizations_payments_newest_first(tenants: Any):
    older = _payment(tenants.organization, "pi_old", status=PaymentStatus.SUCCEEDED)
    newer = _payment(
        tenants.organization,
        "pi_new",
        status=PaymentStatus.SUCCEEDED,
        receipt_url="https://pay.stripe.com/receipts/x",
    )
    _payment(tenants.outsider_organization, "pi_theirs")
    _payment(tenants.organization, "")  # Stripe never saw it: not a receipt

    response = session_client(tenants.admin, tenants.organization).get("/api/v1/credits/receipts")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [newer.pk, older.pk]
    assert results[0] | {"created_at": None, "paid_at": None} == {
        "id": newer.pk,
        "kind": "checkout",
        "status": "succeeded",
        "amount": "20.00000000",
        "fee": "1.10000000",
        "total": "21.10000000",
        "currency": "usd",
        "session_id": "pi_new",
        "receipt_url": "https://pay.stripe.com/receipts/x",
        "failure_message": "",
        "created_at": None,
        "paid_at": None,
    }


@pytest.mark.parametrize(
    ("status", "redirect_status", "shown"),
    [
        (PaymentStatus.SUCCEEDED, "succeeded", "$20.00 of credits were added"),
        (PaymentStatus.PENDING, "succeeded", "will appear in your balance"),
        (PaymentStatus.PENDING, "", "was not completed"),
    ],
)
def test_the_return_page_tells_the_owner_where_the_payment_stands(
    tenants: Any, status: str, redirect_status: str, shown: str
):
    payment = _payment(tenants.organization, "pi_back", status=status)
    client = session_client(tenants.owner, tenants.organization)

    page = client.get(f"/billing/stripe/return/{payment.pk}", {"redirect_status": redirect_status})

    assert page.status_code == 200
    assert shown in page.content.decode()


def test_members_cannot_see_receipts(tenants: Any):
    response = session_client(tenants.member, tenants.organization).get("/api/v1/credits/receipts")

    assert response.status_code == 403


def test_owners_turn_auto_top_up_on_and_off(tenants: Any):
    api = _owner_api(tenants.organization)

    on = api.patch("/api/v1/credits/auto-topup", {"threshold": "5", "amount": "25"}, format="json")
    off = api.patch(
        "/api/v1/credits/auto-topup", {"threshold": None, "amount": None}, format="json"
    )

    assert on.json() == {"enabled": True, "threshold": "5.00000000", "amount": "25.00000000"}
    assert off.json() == {"enabled": False, "threshold": None, "amount": None}
    account = credit_account_for(tenants.organization.pk)
    assert account.auto_topup_threshold is None and account.auto_topup_amount is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"threshold": "5", "amount": None}, "Set both threshold and amount"),
        ({"threshold": "5", "amount": "1"}, "amount must be at least $5.00."),
        ({"threshold": "-1", "amount": "10"}, "threshold must not be negative."),
        # A threshold the balance never reaches would charge the card at every check.
        (
            {"threshold": "10000.01", "amount": "10"},
            "threshold must be at most $10,000.00 (TOPUP_MAX_AMOUNT",
        ),
        ({"threshold": "999999999999", "amount": "10"}, "threshold must be at most $10,000.00"),
    ],
)
def test_auto_top_up_settings_are_validated(tenants: Any, body: dict[str, Any], message: str):
    response = _owner_api(tenants.organization).patch(
        "/api/v1/credits/auto-topup", body, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


def test_admins_see_but_cannot_change_auto_top_up(tenants: Any):
    admin = session_client(tenants.admin, tenants.organization)
    admin.get("/dashboard/")

    seen = admin.get("/api/v1/credits/auto-topup")
    changed = admin.patch(
        "/api/v1/credits/auto-topup",
        {"threshold": "5", "amount": "25"},
        format="json",
        HTTP_X_CSRFTOKEN=admin.cookies["csrftoken"].value,
    )

    assert seen.status_code == 200 and seen.json()["enabled"] is False
    assert changed.status_code == 403
    assert credit_account_for(tenants.organization.pk).auto_topup_amount is None


def _boot_production(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = production_environment(tmp_path, **extra)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_boot_without_stripe_secrets_while_billing_is_on(tmp_path: Path):
    refused = _boot_production(tmp_path, STRIPE_SECRET_KEY="sk_live_x")
    without_billing = _boot_production(tmp_path, BILLING_ENABLED="false")

    assert refused.returncode != 0
    assert "STRIPE_PUBLISHABLE_KEY must be set" in refused.stderr
    assert without_billing.returncode == 0, without_billing.stderr
