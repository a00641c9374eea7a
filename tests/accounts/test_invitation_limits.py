"""Invitation emails go out from the platform's sender with an organization name its owner
chose: an organization mails at most INVITATIONS_PER_ORGANIZATION_PER_HOUR invitations an hour,
keeps at most INVITATIONS_OPEN_PER_ORGANIZATION_MAX open, and mails one address again only after
INVITATION_RESEND_COOLDOWN_SECONDS. Past a limit the dashboard's form says which and nothing
is mailed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail

from accounts.invitation_limits import email_limit_key
from accounts.models import Invitation
from tests.factories import Tenants, dashboard_client, mails_sent

pytestmark = pytest.mark.django_db


def _invite(tenants: Tenants, email: str) -> Any:
    owner = dashboard_client(tenants.owner, tenants.organization)
    with mails_sent():
        return owner.post("/dashboard/organization/", {"email": email, "role": "member"})


def test_the_invitation_past_the_hourly_limit_is_refused_and_not_mailed(
    tenants: Tenants, settings: Any
) -> None:
    settings.INVITATIONS_PER_ORGANIZATION_PER_HOUR = 3
    sent = [_invite(tenants, f"person{i}@example.com") for i in range(3)]

    refused = _invite(tenants, "person3@example.com")

    assert [r.status_code for r in sent] == [302, 302, 302]
    assert refused.status_code == 200
    assert "INVITATIONS_PER_ORGANIZATION_PER_HOUR" in refused.text
    assert len(mail.outbox) == 3
    assert not Invitation.objects.filter(email="person3@example.com").exists()


def test_invitations_sent_over_an_hour_ago_do_not_count(tenants: Tenants, settings: Any) -> None:
    settings.INVITATIONS_PER_ORGANIZATION_PER_HOUR = 1
    _invite(tenants, "early@example.com")
    Invitation.objects.update(created_at=Invitation.objects.get().created_at - timedelta(hours=2))

    later = _invite(tenants, "later@example.com")

    assert later.status_code == 302 and len(mail.outbox) == 2


def test_no_invitation_past_the_open_invitations_cap(tenants: Tenants, settings: Any) -> None:
    settings.INVITATIONS_OPEN_PER_ORGANIZATION_MAX = 2
    _invite(tenants, "a@example.com")
    _invite(tenants, "b@example.com")

    refused = _invite(tenants, "c@example.com")

    assert refused.status_code == 200
    assert "INVITATIONS_OPEN_PER_ORGANIZATION_MAX" in refused.text
    assert "cancel some before inviting more" in refused.text
    assert len(mail.outbox) == 2


def test_the_same_address_is_mailed_again_only_after_the_cooldown(tenants: Tenants) -> None:
    _invite(tenants, "again@example.com")

    too_soon = _invite(tenants, "Again@Example.com")
    first = Invitation.objects.get(email="again@example.com")
    Invitation.objects.filter(pk=first.pk).update(
        created_at=first.created_at - timedelta(minutes=11)
    )
    after_cooldown = _invite(tenants, "again@example.com")

    assert too_soon.status_code == 200
    assert "INVITATION_RESEND_COOLDOWN_SECONDS" in too_soon.text
    assert after_cooldown.status_code == 302
    assert len(mail.outbox) == 2
    first.refresh_from_db()
    assert first.cancelled_at is not None  # the re-invite replaced it


@pytest.mark.parametrize(
    ("first", "variant"),
    [
        ("ann.lee@gmail.com", "annlee@gmail.com"),
        ("annlee@gmail.com", "Ann.Lee+work@googlemail.com"),
        ("ann@example.com", "ann+x@example.com"),
    ],
)
def test_an_address_variant_reaching_the_same_inbox_waits_for_the_cooldown(
    tenants: Tenants, first: str, variant: str
) -> None:
    """Gmail ignores dots and +tags (and googlemail.com is gmail.com); +tags reach the same
    inbox at most providers. Old code: each variant was a new address, mailed at once."""
    _invite(tenants, first)

    too_soon = _invite(tenants, variant)

    assert too_soon.status_code == 200
    assert "INVITATION_RESEND_COOLDOWN_SECONDS" in too_soon.text
    assert len(mail.outbox) == 1
    # Stored as typed (the address mailed and admitted); only the limit's key is normalised.
    assert Invitation.objects.get().email == first


def test_the_cooldown_key_normalises_only_what_reaches_one_inbox() -> None:
    assert email_limit_key(" A.B+Tag@GoogleMail.com ") == "ab@gmail.com"
    assert email_limit_key("a.b+tag@example.com") == "a.b@example.com"
    assert email_limit_key("a.b@gmail.com.evil.example") == "a.b@gmail.com.evil.example"


def test_the_cooldown_key_reads_quoted_local_parts_idn_domains_and_casefolds() -> None:
    # Each was one more key for one inbox (Django's EmailValidator accepts the quoted forms).
    assert email_limit_key('"mallory"@gmail.com') == "mallory@gmail.com"
    assert email_limit_key('"m\\allory"@gmail.com') == "mallory@gmail.com"
    assert email_limit_key('"Mal.Lory+x"@GoogleMail.com') == "mallory@gmail.com"
    assert email_limit_key("a@bücher.de") == email_limit_key("a@xn--bcher-kva.de")
    assert email_limit_key("a@BÜCHER.de.") == "a@xn--bcher-kva.de"
    assert email_limit_key("STRASSE@example.com") == email_limit_key("straße@example.com")
    assert email_limit_key("a@bad..domain") == "a@bad..domain"  # no IDNA form: as given


def test_an_invitation_written_before_the_key_existed_still_holds_the_cooldown(
    tenants: Tenants,
) -> None:
    _invite(tenants, "old@example.com")
    Invitation.objects.update(email_key="")  # as the previous release wrote it

    too_soon = _invite(tenants, "Old@Example.com")

    assert "INVITATION_RESEND_COOLDOWN_SECONDS" in too_soon.text and len(mail.outbox) == 1
