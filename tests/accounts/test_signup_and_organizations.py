"""Signup with email confirmation, the personal organization, invitations and switching."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core import mail
from django.test import Client
from django.utils.html import escape

from accounts.models import Membership, Organization, Role, User
from accounts.services import membership_remove, membership_set_role
from tests.factories import (
    PASSWORD,
    dashboard_client,
    mails_sent,
    member_add,
    organization_make,
    user_make,
)

pytestmark = pytest.mark.django_db


def _link(message: str) -> str:
    match = re.search(r"https?://[^\s]+", message)
    assert match, message
    return match.group(0).split("testserver", 1)[-1].replace("http://127.0.0.1:8000", "")


def test_signup_confirm_email_and_land_in_a_personal_organization():
    client = Client()
    # An address of this run alone: allauth sends one confirmation per address per 3 minutes,
    # counted in the (shared, Redis) cache, so a rerun within that window would get no email.
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"

    signup = client.post(
        "/accounts/signup/",
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
    )

    assert signup.status_code == 302
    user = User.objects.get(email=email)
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER and membership.organization.is_personal
    assert client.get("/dashboard/").status_code == 302  # not confirmed yet: back to login
    confirm_path = _link(mail.outbox[-1].body)
    assert client.post(confirm_path).status_code == 302
    login = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert login.status_code == 302
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert escape(membership.organization.name) in page.content.decode()


def test_password_reset_sends_a_working_link():
    user_make("grace@example.com")
    client = Client()

    client.post("/accounts/password/reset/", {"email": "grace@example.com"})

    reset_path = _link(mail.outbox[-1].body)
    form_page = client.get(reset_path, follow=True)
    assert form_page.status_code == 200
    done = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else reset_path,
        {"password1": "a-new-long-password-1", "password2": "a-new-long-password-1"},
    )
    assert done.status_code == 302
    assert Client().login(email="grace@example.com", password="a-new-long-password-1")


def test_invitation_by_email_adds_the_member_with_the_role():
    owner = user_make()
    organization = organization_make(owner, "Team")
    invitee = user_make("new@example.com")
    owner_client = Client()
    owner_client.force_login(owner)
    session = owner_client.session
    session["current_organization_id"] = organization.pk
    session.save()

    with mails_sent():
        owner_client.post("/dashboard/organization/", {"email": "new@example.com", "role": "admin"})

    accept_path = _link(mail.outbox[-1].body)
    invitee_client = Client()
    invitee_client.force_login(invitee)
    assert invitee_client.post(accept_path).status_code == 302
    assert Membership.objects.get(user=invitee, organization=organization).role == Role.ADMIN
    assert invitee_client.post(accept_path).status_code == 302  # used: no second membership
    assert Membership.objects.filter(user=invitee, organization=organization).count() == 1


@pytest.mark.parametrize("change", ["removed", "demoted"])
def test_an_invitation_admits_nobody_once_its_sender_may_no_longer_invite(change: str):
    # An owner about to be removed invites their other address as owner: after the removal
    # (or a demotion) the invitation must not make them an owner again.
    founder = user_make()
    organization = organization_make(founder, "Team")
    leaving = member_add(organization, Role.OWNER)
    client = dashboard_client(leaving, organization)
    with mails_sent():
        client.post("/dashboard/organization/", {"email": "alt@example.com", "role": "owner"})
    accept_path = _link(mail.outbox[-1].body)
    membership = Membership.objects.get(user=leaving, organization=organization)
    if change == "removed":
        membership_remove(organization=organization, membership_id=membership.pk)
    else:
        membership_set_role(organization=organization, membership_id=membership.pk, role="admin")

    alt = Client()
    alt.force_login(user_make("alt@example.com"))
    alt.post(accept_path)

    assert not Membership.objects.filter(user__email="alt@example.com").exists()


def test_switcher_only_switches_to_organizations_the_user_belongs_to():
    user = user_make()
    mine = organization_make(user, "Mine")
    other = organization_make(name="Not mine")
    client = Client()
    client.force_login(user)

    ok = client.post("/dashboard/organization/switch", {"organization": mine.pk})
    refused = client.post("/dashboard/organization/switch", {"organization": other.pk})

    assert ok.status_code == 302
    assert refused.status_code == 404
    assert client.session["current_organization_id"] == mine.pk


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/x", "javascript:alert(1)", "/\\evil.example"],
)
def test_switcher_never_redirects_off_site(next_url: str):
    user = user_make()
    mine = organization_make(user, "Mine")
    client = Client()
    client.force_login(user)

    response = client.post(
        "/dashboard/organization/switch", {"organization": mine.pk, "next": next_url}
    )

    assert response.status_code == 302 and response["Location"] == "/dashboard/"


def test_switcher_returns_to_a_page_of_this_site():
    user = user_make()
    mine = organization_make(user, "Mine")
    client = Client()
    client.force_login(user)

    response = client.post(
        "/dashboard/organization/switch", {"organization": mine.pk, "next": "/dashboard/keys/"}
    )

    assert response.status_code == 302 and response["Location"] == "/dashboard/keys/"


def test_last_owner_cannot_be_demoted():
    owner = user_make()
    organization = organization_make(owner)
    member_add(organization, Role.MEMBER)
    client = Client()
    client.force_login(owner)
    owner_membership = Membership.objects.get(user=owner, organization=organization)

    client.post(f"/dashboard/members/{owner_membership.pk}", {"role": "member"})

    assert Membership.objects.get(pk=owner_membership.pk).role == Role.OWNER
    assert Organization.objects.filter(pk=organization.pk).exists()


def test_member_sees_403_page_on_member_management_actions(tenants):
    client = Client()
    client.force_login(tenants.member)
    target = Membership.objects.get(user=tenants.admin)

    response = client.post(f"/dashboard/members/{target.pk}", {"role": "member"})

    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()
