"""The whole top-up with the real ``stripe`` library against localstripe, a stateful fake Stripe.

Our API opens the payment; the test, acting as the customer's browser and Stripe, pays it on
localstripe; localstripe signs the resulting event and POSTs it to a recording endpoint, and
the test hands exactly those bytes and that signature to our webhook.

localstripe has PaymentIntents, charges, refunds, customers, saved cards and signed webhooks,
but no Checkout Sessions and no refund or dispute events: refunds are made on localstripe and
their ``charge.refunded`` event is built from localstripe's charge and signed like Stripe does.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from django.test import Client

from accounts.models import KeyScope
from billing.models import LedgerEntry, Payment, PaymentKind, PaymentStatus
from billing.services import credit_account_for
from billing.stripe.payments import stripe_customer_ensure
from billing.stripe.tasks import auto_topups
from tests.billing.stripe_support import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    event_payload,
    stripe_signature,
    webhook_post,
)
from tests.conftest import service_missing
from tests.factories import key_client, key_make, session_client

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def _localstripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = LocalStripe(Path(tmp_path_factory.mktemp("localstripe")))
    try:
        server.start()
    except RuntimeError as error:
        service_missing(f"localstripe (pip install localstripe) could not start: {error}")
    yield server
    server.stop()


@pytest.fixture
def localstripe(_localstripe_server: LocalStripe, settings: Any) -> LocalStripe:
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_routerhub"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = _localstripe_server.url
    return _localstripe_server


@pytest.fixture
def fake_stripe(localstripe: LocalStripe) -> stripe.StripeClient:
    """The other side: what the customer's browser and Stripe's dashboard do."""
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url})


def _owner_api(tenants: Any) -> Any:
    return key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))


def _deliver_from_localstripe(localstripe: LocalStripe, event_type: str, object_id: str) -> Any:
    delivery = localstripe.inbox.wait_for(event_type, object_id)
    return webhook_post(Client(), delivery.body, delivery.signature)


def _balance(organization: Any) -> Decimal:
    return credit_account_for(organization.pk).balance


def test_a_paid_checkout_credits_the_organization_and_a_refund_takes_it_back(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    api = _owner_api(tenants)

    started = api.post("/api/v1/credits/checkout", {"amount": "20"}, format="json")

    assert started.status_code == 201, started.content
    body = started.json()
    assert (body["amount"], body["fee"], body["total"]) == (
        "20.00000000",
        "1.10000000",
        "21.10000000",
    )
    payment = Payment.objects.get(organization=tenants.organization)
    assert body["session_id"] == payment.stripe_payment_intent_id
    assert body["checkout_url"].endswith(f"/billing/stripe/pay/{payment.pk}")
    assert _balance(tenants.organization) == Decimal("0")
    intent = fake_stripe.v1.payment_intents.retrieve(body["session_id"])
    assert intent.amount == 2110 and intent.currency == "usd"
    assert intent.customer == credit_account_for(tenants.organization.pk).stripe_customer_id
    assert intent.metadata["organization_id"] == str(tenants.organization.pk)

    # The customer pays with a card (Stripe.js does this on the pay page).
    fake_stripe.v1.payment_intents.update(intent.id, params={"payment_method": "pm_card_visa"})
    fake_stripe.v1.payment_intents.confirm(intent.id)
    credited = _deliver_from_localstripe(localstripe, "payment_intent.succeeded", intent.id)

    assert credited.status_code == 200 and credited.json()["outcome"] == "processed"
    assert _balance(tenants.organization) == Decimal("20")
    topup = LedgerEntry.objects.get(organization=tenants.organization)
    assert (topup.kind, topup.amount, topup.idempotency_key) == (
        "topup",
        Decimal("20"),
        f"stripe:{intent.id}",
    )
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and payment.stripe_charge_id.startswith("ch_")
    receipts = api.get("/api/v1/credits/receipts").json()["results"]
    assert [(r["session_id"], r["status"], r["total"]) for r in receipts] == [
        (intent.id, "succeeded", "21.10000000")
    ]

    # Half the charge is refunded on Stripe: half the credits go.
    fake_stripe.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1055})
    charge = fake_stripe.v1.charges.retrieve(payment.stripe_charge_id).to_dict()
    assert charge["amount_refunded"] == 1055
    refund_event = event_payload("charge.refunded", charge)
    refunded = webhook_post(Client(), refund_event, stripe_signature(refund_event))

    assert refunded.status_code == 200
    assert _balance(tenants.organization) == Decimal("10")
    refund = LedgerEntry.objects.get(organization=tenants.organization, kind="refund")
    assert refund.amount == Decimal("-10") and refund.balance_after == Decimal("10")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED


def test_a_declined_card_credits_nothing(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    intent_id = (
        _owner_api(tenants)
        .post("/api/v1/credits/checkout", {"amount": "10"}, format="json")
        .json()["session_id"]
    )
    fake_stripe.v1.payment_intents.update(
        intent_id, params={"payment_method": "pm_card_chargeCustomerFail"}
    )

    with pytest.raises(stripe.CardError):
        fake_stripe.v1.payment_intents.confirm(intent_id)
    failed = _deliver_from_localstripe(localstripe, "payment_intent.payment_failed", intent_id)

    assert failed.status_code == 200
    assert _balance(tenants.organization) == Decimal("0")
    payment = Payment.objects.get(stripe_payment_intent_id=intent_id)
    # The person may retry with another card on the same page, so it stays open.
    assert payment.status == PaymentStatus.PENDING and "declined" in payment.failure_message


def test_the_organization_gets_one_stripe_customer(tenants: Any, localstripe: LocalStripe):
    api = _owner_api(tenants)

    first = api.post("/api/v1/credits/checkout", {"amount": "10"}, format="json").json()
    second = api.post("/api/v1/credits/checkout", {"amount": "15"}, format="json").json()

    fake = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe.url})
    customers = {
        fake.v1.payment_intents.retrieve(body["session_id"]).customer for body in (first, second)
    }
    assert customers == {credit_account_for(tenants.organization.pk).stripe_customer_id}
    assert customers.pop().startswith("cus_")


def test_the_pay_page_hands_stripe_js_the_client_secret_only_to_owners(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    body = (
        _owner_api(tenants).post("/api/v1/credits/checkout", {"amount": "10"}, format="json").json()
    )
    path = body["checkout_url"].removeprefix("http://127.0.0.1:8000")
    client_secret = fake_stripe.v1.payment_intents.retrieve(body["session_id"]).client_secret

    owner_page = session_client(tenants.owner, tenants.organization).get(path)
    admin_page = session_client(tenants.admin, tenants.organization).get(path)
    outsider_page = session_client(tenants.outsider, tenants.outsider_organization).get(path)

    assert owner_page.status_code == 200
    assert client_secret in owner_page.content.decode()
    assert b"$10.80" in owner_page.content  # the fee is shown before paying
    # Stripe.js from Stripe's host, the page's own code from /static/ (no inline script).
    policy = owner_page["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in policy
    assert "frame-src 'self' https://js.stripe.com https://hooks.stripe.com" in policy
    assert b"<script>" not in owner_page.content and b"billing/checkout.js" in owner_page.content
    assert admin_page.status_code == 403
    assert outsider_page.status_code == 404


def test_auto_top_up_charges_the_saved_card_once_when_the_balance_falls_below_the_threshold(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    organization = tenants.organization
    configured = _owner_api(tenants).patch(
        "/api/v1/credits/auto-topup", {"threshold": "5", "amount": "25"}, format="json"
    )
    customer = stripe_customer_ensure(organization=organization)
    # A card saved by an earlier checkout (setup_future_usage); localstripe does not save it
    # by itself, so the test attaches it.
    fake_stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})

    assert configured.status_code == 200 and configured.json()["enabled"] is True
    assert auto_topups() == 1
    assert auto_topups() == 0  # the first one is still in flight: no second charge
    payment = Payment.objects.get(organization=organization, kind=PaymentKind.AUTO_TOPUP)
    credited = _deliver_from_localstripe(
        localstripe, "payment_intent.succeeded", payment.stripe_payment_intent_id
    )

    assert credited.json()["outcome"] == "processed"
    assert _balance(organization) == Decimal("25")
    assert auto_topups() == 0  # above the threshold now
    assert Payment.objects.filter(organization=organization).count() == 1
    intent = fake_stripe.v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert intent.amount == 2500 + 138  # 25 + 5.5 % fee, rounded to the cent


def test_a_declined_auto_top_up_is_recorded_and_not_retried_at_once(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    organization = tenants.organization
    account = credit_account_for(organization.pk)
    account.auto_topup_threshold, account.auto_topup_amount = Decimal("5"), Decimal("10")
    account.save()
    customer = stripe_customer_ensure(organization=organization)
    fake_stripe.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": customer}
    )

    started = auto_topups()
    again = auto_topups()

    assert (started, again) == (1, 0)
    payment = Payment.objects.get(organization=organization)
    assert payment.status == PaymentStatus.FAILED and "declined" in payment.failure_message
    assert _balance(organization) == Decimal("0")


def test_auto_top_up_charges_a_card_at_most_the_daily_cap_however_often_it_succeeds(
    tenants: Any, localstripe: LocalStripe, fake_stripe: stripe.StripeClient
):
    """A balance that stays under the threshold after each top-up (spent at once, or a threshold
    above any amount) is topped up AUTO_TOPUPS_PER_ORGANIZATION_PER_DAY (3) times a day, not at
    every run of the minute-by-minute check."""
    organization = tenants.organization
    account = credit_account_for(organization.pk)
    account.auto_topup_threshold, account.auto_topup_amount = Decimal("10000"), Decimal("10")
    account.save()
    customer = stripe_customer_ensure(organization=organization)
    fake_stripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    for _ in range(3):
        assert auto_topups() == 1
        payment = Payment.objects.filter(organization=organization).latest("pk")
        _deliver_from_localstripe(
            localstripe, "payment_intent.succeeded", payment.stripe_payment_intent_id
        )

    after_the_cap = auto_topups()

    assert after_the_cap == 0
    succeeded = Payment.objects.filter(organization=organization, status=PaymentStatus.SUCCEEDED)
    assert succeeded.count() == Payment.objects.filter(organization=organization).count() == 3
    assert _balance(organization) == Decimal("30")


def test_auto_top_up_without_a_saved_card_charges_nothing(tenants: Any, localstripe: LocalStripe):
    organization = tenants.organization
    account = credit_account_for(organization.pk)
    account.auto_topup_threshold, account.auto_topup_amount = Decimal("5"), Decimal("10")
    account.save()
    stripe_customer_ensure(organization=organization)

    auto_topups()

    payment = Payment.objects.get(organization=organization)
    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_message == "No saved card for automatic top-up."


def test_only_owners_start_a_checkout(tenants: Any, localstripe: LocalStripe):
    admin = session_client(tenants.admin, tenants.organization)
    admin.get("/dashboard/")
    member = key_client(key_make(tenants.organization))  # an inference key

    by_admin = admin.post(
        "/api/v1/credits/checkout",
        {"amount": "10"},
        format="json",
        HTTP_X_CSRFTOKEN=admin.cookies["csrftoken"].value,
    )
    by_inference_key = member.post("/api/v1/credits/checkout", {"amount": "10"}, format="json")

    assert by_admin.status_code == 403 and "owner" in by_admin.json()["error"]["message"]
    assert by_inference_key.status_code == 403
    assert not Payment.objects.exists()
