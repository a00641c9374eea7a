"""Signup speaks as RouterHub: branded emails and pages, and confirming the address signs you in."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _signup(client: Client) -> tuple[str, str]:
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    message = [m for m in mail.outbox if email in m.to][-1]
    link = re.search(r"https?://\S+", message.body)
    assert link, message.body
    return email, "/accounts/" + link.group(0).split("/accounts/", 1)[1]


def test_the_confirmation_email_is_branded_and_says_what_to_do() -> None:
    email, _ = _signup(Client(HTTP_HOST="127.0.0.1:8731"))

    message = [m for m in mail.outbox if email in m.to][-1]
    assert message.subject == "[RouterHub] Confirm your email address to finish signing up"
    assert message.body.startswith("Hello from RouterHub!")
    assert f"Welcome to RouterHub! Open this link to confirm {email}" in message.body
    assert "127.0.0.1:8731!" not in message.body and "has given your email" not in message.body


def test_confirming_signs_the_person_in_without_a_second_login() -> None:
    client = Client()
    email, confirm_path = _signup(client)

    page = client.get(confirm_path).content.decode()
    confirmed = client.post(confirm_path)

    assert f"Confirm <strong>{email}</strong> as the address of your RouterHub account" in page
    assert "is an email address for user" not in page
    assert confirmed.status_code == 302 and confirmed["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_check_your_email_page_says_where_mail_goes_when_it_is_only_printed(
    settings: Any,
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    page = Client().get("/accounts/confirm-email/").content.decode()

    assert "This server does not send email" in page and "make run" in page
    assert "spam folder" not in page


def test_signup_refuses_a_quoted_address_and_says_how_to_write_it() -> None:
    email = f'"ada.{uuid.uuid4().hex[:8]}"@example.com'  # Django's EmailValidator accepts it

    response = Client().post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )

    assert response.status_code == 200
    assert "without quotes" in response.content.decode()
    assert not User.objects.filter(email=email).exists()
