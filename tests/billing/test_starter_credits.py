"""Starter credits: a newcomer's first request needs no operator and no card."""

from __future__ import annotations

import importlib
import re
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import connections
from django.test import Client

from accounts.models import Membership, Organization
from accounts.services import organization_create
from billing.models import CreditAccount, LedgerEntry, LedgerKind
from billing.services import ledger_post, starter_credits_grant
from tests.conftest import require_postgres
from tests.factories import PASSWORD, dashboard_client, organization_make, user_make
from tests.routing.conftest import _fresh_gateway_state, fake_server, gateway_server
from tests.routing.servers import ServerThread

__all__ = ["_fresh_gateway_state", "fake_server", "gateway_server"]  # the live servers


def _signup(client: Client, name: str) -> Organization:
    """Sign up and confirm the address through the emailed link, as a newcomer does."""
    # A new address each run: allauth rate-limits confirmation emails per address in the cache,
    # which outlives a run when it is Redis.
    email = f"{name}.{uuid.uuid4().hex[:8]}@example.com"
    client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    link = re.search(r"https?://\S+", mail.outbox[-1].body)
    assert link, mail.outbox[-1].body
    client.post("/accounts/" + link.group(0).split("/accounts/", 1)[1])
    client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    return Membership.objects.get(user__email=email).organization


def _at_once(threads: int, call: Callable[[int], object]) -> list[BaseException]:
    """Run ``call(i)`` in ``threads`` threads released together; the exceptions they raised."""
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            call(index)
        except BaseException as exc:  # reported: a thread's failure must fail the test
            failures.append(exc)
        finally:
            connections.close_all()

    started = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=30)
    return failures


@pytest.mark.django_db
def test_a_new_organization_starts_with_one_promotion_of_starter_credits(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("5")

    organization = _signup(Client(), "newcomer")
    starter_credits_grant(organization=organization)  # again: still once

    entries = LedgerEntry.objects.filter(organization=organization)
    assert [(e.kind, e.amount) for e in entries] == [(LedgerKind.PROMOTION, Decimal("5"))]
    assert CreditAccount.objects.get(organization=organization).balance == Decimal("5")


@pytest.mark.django_db
def test_no_starter_credits_when_the_setting_is_zero(settings: Any) -> None:
    settings.STARTER_CREDITS_USD = Decimal("0")

    organization = organization_make()

    assert not LedgerEntry.objects.filter(organization=organization).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_grants_for_one_organization_credit_it_once(settings: Any) -> None:
    require_postgres()
    settings.STARTER_CREDITS_USD = Decimal("0")
    organization = organization_make()
    settings.STARTER_CREDITS_USD = Decimal("3")
    failures = _at_once(4, lambda _: starter_credits_grant(organization=organization))

    assert failures == []
    assert LedgerEntry.objects.filter(organization=organization).count() == 1
    assert CreditAccount.objects.get(organization=organization).balance == Decimal("3")


@pytest.mark.django_db
def test_credits_page_says_what_to_do_when_card_payments_are_off(settings: Any, tenants) -> None:  # type: ignore[no-untyped-def]
    settings.BILLING_ENABLED = False
    settings.STARTER_CREDITS_USD = Decimal("5")
    # The page offers the starter credits an organization got (one that got none is told why:
    # test_starter_credits_domains.py::test_an_organization_refused_starter_credits_is_told_why).
    ledger_post(
        organization=tenants.organization,
        kind=LedgerKind.PROMOTION,
        amount=Decimal("5"),
        idempotency_key=f"starter-credits:{tenants.organization.pk}",
        description="Starter credits",
    )

    html = (
        dashboard_client(tenants.owner, tenants.organization)
        .get("/dashboard/credits/")
        .content.decode()
    )

    assert "Card payments are off on this server" in html
    assert "Continue to payment" not in html
    assert re.search(r">\$5\.00</span> of starter credits", html)
    assert f"credits_grant {tenants.organization.slug}" in html
    assert "/dashboard/provider-keys/" in html


def test_a_fresh_signup_sends_a_first_request_on_starter_credits(
    transactional_db: None,
    settings: Any,
    fake_server: ServerThread,
    gateway_server: ServerThread,
) -> None:
    from routing.demo import seed_demo_provider
    from routing.gateway.catalog_cache import catalog_cache_clear
    from tests.routing.servers import gateway_idle, usage_stream_settled

    settings.STARTER_CREDITS_USD = Decimal("5")
    settings.DEMO_UPSTREAM_URL = fake_server.url
    seed_demo_provider(Organization(name="Demo"))
    catalog_cache_clear()
    client = Client()
    _signup(client, "first.request")
    created = client.post("/dashboard/keys/", {"name": "first", "scope": "inference"})
    key = re.search(r'id="new-key"[^>]*>\s*([^<\s]+)', created.content.decode())
    assert key, created.content.decode()[:2000]

    response = httpx.post(
        f"{gateway_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.group(1)}"},
        json={"model": "demo/small", "messages": [{"role": "user", "content": "2+2?"}]},
        timeout=15,
    )

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    gateway_idle()
    usage_stream_settled(settings.REDIS_URL)


@pytest.mark.django_db
def test_starter_credits_come_once_per_person_not_per_organization_they_create(
    settings: Any,
) -> None:
    """One signed-up person creating organization after organization (the dashboard's "New
    organization" form) gets starter credits once: before, each new organization was granted
    them, an unbounded supply of free credits for one confirmed address."""
    settings.STARTER_CREDITS_USD = Decimal("5")
    client = Client()
    first = _signup(client, "farmer")

    for name in ("Farm 1", "Farm 2", "Farm 3"):
        assert client.post("/dashboard/organization/new", {"name": name}).status_code == 302
    owned = Organization.objects.filter(memberships__user=first.memberships.get().user)

    assert owned.count() == 4
    balances = [CreditAccount.objects.get(organization=o).balance for o in owned.order_by("pk")]
    assert balances == [Decimal("5"), Decimal("0"), Decimal("0"), Decimal("0")]
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_organizations_of_one_person_get_starter_credits_once(settings: Any) -> None:
    require_postgres()
    settings.STARTER_CREDITS_USD = Decimal("2")
    owner = user_make()
    failures = _at_once(4, lambda i: organization_create(name=f"Parallel {i}", owner=owner))

    assert failures == []
    assert Organization.objects.filter(memberships__user=owner).count() == 4
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 1
    assert sum(a.balance for a in CreditAccount.objects.all()) == Decimal("2")


@pytest.mark.django_db
def test_starter_credits_granted_per_organization_before_are_not_granted_again(
    settings: Any,
) -> None:
    """Starter credits were once keyed by organization (``starter-credits:<organization>``): a
    person granted them so, in an organization created before creators were recorded (the
    migration's backfill names its founding member), gets none with their next organization."""
    backfill = importlib.import_module("accounts.migrations.0007_organization_created_by_backfill")
    settings.STARTER_CREDITS_USD = Decimal("0")
    person, newcomer = user_make(), user_make()
    legacy = organization_make(owner=person, name="Granted before")
    Organization.objects.filter(pk=legacy.pk).update(created_by=None)
    ledger_post(organization=legacy, kind=LedgerKind.PROMOTION, amount=Decimal("5"),
                idempotency_key=f"starter-credits:{legacy.pk}")  # fmt: skip
    backfill.creators_backfill(django_apps, None)
    settings.STARTER_CREDITS_USD = Decimal("5")

    later = organization_create(name="Next one", owner=person)
    theirs = organization_create(name="A newcomer's", owner=newcomer)

    assert not LedgerEntry.objects.filter(organization=later).exists()
    assert CreditAccount.objects.get(organization=theirs).balance == Decimal("5")
    assert LedgerEntry.objects.filter(kind=LedgerKind.PROMOTION).count() == 2
