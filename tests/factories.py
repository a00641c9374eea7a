"""Factories for tests: people, organizations with roles and credits, keys and authenticated
clients."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from allauth.account.models import EmailAddress
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import key_lineage, services
from accounts.models import ApiKey, KeyScope, Membership, Organization, Role, User
from billing.drafts import UsageDraft
from billing.models import UsageRecord
from billing.services import ReservationRequest, credits_reserve, ledger_post
from billing.settlement import usage_settle
from tests.celery_conf import celery_conf
from tests.log_hygiene import secret_register

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


@contextmanager
def mails_sent() -> Iterator[None]:
    """Celery eager, and the block's on-commit callbacks run when it ends (at once when nothing
    wraps the block in a transaction): the invitation emails it queued are in ``mail.outbox``
    when it ends, sent by the mail task as a worker sends them."""
    from django.test import TestCase

    with celery_conf(task_always_eager=True), TestCase.captureOnCommitCallbacks(execute=True):
        yield


def invitation_token_mailed(email: str) -> str:
    """The token of the accept link in the newest invitation email to ``email``."""
    from django.core import mail

    [body, *_] = [m.body for m in reversed(mail.outbox) if email in m.to]
    return str(body).split("/invitations/", 1)[1].split("/", 1)[0]


def user_make(email: str | None = None) -> User:
    email = email or f"user{next(_counter)}@example.com"
    user = User.objects.create_user(email, PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def organization_make(owner: User | None = None, name: str | None = None) -> Organization:
    owner = owner or user_make()
    return services.organization_create(name=name or f"Org {next(_counter)}", owner=owner)


def funded_organization_make(amount: str) -> Organization:
    """An organization granted ``amount`` USD of credits (a promotion in its ledger)."""
    organization = organization_make()
    ledger_post(organization=organization, kind="promotion", amount=Decimal(amount),
                idempotency_key=f"grant:{organization.pk}")  # fmt: skip
    return organization


def member_add(
    organization: Organization, role: Role = Role.MEMBER, user: User | None = None
) -> User:
    user = user or user_make()
    Membership.objects.create(user=user, organization=organization, role=role)
    return user


def key_make(
    organization: Organization,
    scope: str = KeyScope.INFERENCE,
    created_by: User | None = None,
    **fields: Any,
) -> str:
    """A key created by ``created_by`` (default: the organization's first owner), who a key's
    authority follows (``accounts.keys.key_role``)."""
    fields.setdefault("name", f"key {next(_counter)}")
    if created_by is None:
        owners = Membership.objects.filter(organization=organization, role=Role.OWNER)
        created_by = owners.select_related("user").earliest("pk").user
    plaintext = services.api_key_create(
        organization=organization, created_by=created_by, scope=scope, **fields
    ).plaintext
    return secret_register(plaintext, "API key")


def key_row_make(
    organization: Organization,
    scope: str = KeyScope.INFERENCE,
    created_by: User | None = None,
    **fields: Any,
) -> tuple[str, ApiKey]:
    """``key_make``'s key and its row."""
    plaintext = key_make(organization, scope, created_by, **fields)
    return plaintext, ApiKey.objects.get(prefix=plaintext[:16])


def child_key_make(parent: ApiKey, **requested: Any) -> tuple[str, ApiKey]:
    """A key ``parent`` made, as ``POST /api/v1/keys`` makes it (``api_key_create_bounded``)."""
    created = key_lineage.api_key_create_bounded(
        acting_key_id=parent.pk,
        organization=parent.organization,
        created_by=parent.created_by,
        created_by_role=parent.created_by_role,
        requested={"name": f"child {next(_counter)}", **requested},
    )
    return secret_register(created.plaintext, "API key"), created.key


def key_client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def session_client(user: User, organization: Organization | None = None) -> APIClient:
    """A logged-in browser-like client that enforces CSRF like a real browser would."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    if organization is not None:
        session = client.session
        session["current_organization_id"] = organization.pk
        session.save()
    return client


def dashboard_client(user: User, organization: Organization | None = None) -> Client:
    """A signed-in browser-like client for dashboard pages (Django's test client, no CSRF)."""
    client = Client()
    client.force_login(user)
    if organization is not None:
        session = client.session
        session["current_organization_id"] = organization.pk
        session.save()
    return client


@dataclass
class Tenants:
    """An owner organization (with an admin and a member) and an outsider organization."""

    owner: User
    admin: User
    member: User
    organization: Organization
    outsider: User
    outsider_organization: Organization


def tenants_make() -> Tenants:
    owner = user_make()
    organization = organization_make(owner, "Acme")
    admin = member_add(organization, Role.ADMIN)
    member = member_add(organization, Role.MEMBER)
    outsider = user_make()
    outsider_organization = organization_make(outsider, "Outsider Inc")
    return Tenants(owner, admin, member, organization, outsider, outsider_organization)


def usage_served(
    organization, key: ApiKey | None, model: str, cost: str, when=None, router: str = ""
) -> str:
    """A request served and settled for ``organization`` (by ``key``): its generation id."""
    generation_id = f"gen-{model.replace('/', '-')}-{UsageRecord.objects.count()}"
    credits_reserve(
        ReservationRequest(
            organization_id=organization.pk, generation_id=generation_id, amount=Decimal(cost)
        )
    )
    usage_settle(
        UsageDraft(
            generation_id=generation_id,
            organization_id=organization.pk,
            key_id=key.pk if key else None,
            status="succeeded",
            cost=Decimal(cost),
            model=model,
            provider="demo",
            router=router,
            prompt_tokens=100,
            completion_tokens=50,
            created_at=when or timezone.now(),
        )
    )
    return generation_id
