"""Brute force on the login form: failed logins are throttled per email and per client IP."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.test import Client

from tests.factories import PASSWORD, user_make

pytestmark = pytest.mark.django_db
THROTTLED = "Too many failed login attempts"


def _ip() -> str:
    """A client address of this test alone: the limits live in the (shared) cache for minutes."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def _login(email: str, password: str, ip: str) -> Any:
    client = Client(REMOTE_ADDR=ip)
    response = client.post("/accounts/login/", {"login": email, "password": password})
    response.signed_in = "_auth_user_id" in client.session  # type: ignore[attr-defined]
    return response


def _admin_login(email: str, password: str, ip: str) -> Any:
    client = Client(REMOTE_ADDR=ip)
    response = client.post(
        "/admin/login/", {"username": email, "password": password, "next": "/admin/"}
    )
    response.signed_in = "_auth_user_id" in client.session  # type: ignore[attr-defined]
    return response


def _staff(email: str) -> Any:
    user = user_make(email)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def _email() -> str:
    return f"brute-{secrets.token_hex(6)}@example.com"


def test_five_failed_logins_for_an_email_lock_it_even_with_the_right_password() -> None:
    victim = user_make(_email())
    ip = _ip()

    failures = [_login(victim.email, f"guess-{n}", ip) for n in range(5)]
    locked = _login(victim.email, PASSWORD, _ip())  # from another address too

    assert [THROTTLED in r.content.decode() for r in failures] == [False] * 5
    assert not any(r.signed_in for r in failures)
    assert THROTTLED in locked.content.decode() and not locked.signed_in
    other = user_make(_email())
    assert _login(other.email, PASSWORD, ip).signed_in  # other accounts are not locked


def test_ten_failed_logins_from_one_ip_in_a_minute_throttle_that_ip() -> None:
    ip = _ip()
    users = [user_make(_email()) for _ in range(11)]

    failures = [_login(user.email, "wrong-password", ip) for user in users[:10]]
    throttled = _login(users[10].email, PASSWORD, ip)
    elsewhere = _login(users[10].email, PASSWORD, _ip())

    assert not any(THROTTLED in r.content.decode() for r in failures)
    assert THROTTLED in throttled.content.decode() and not throttled.signed_in
    assert elsewhere.signed_in


def test_five_failed_admin_logins_lock_the_email_on_the_admin_and_the_dashboard() -> None:
    victim = _staff(_email())
    ip = _ip()

    failures = [_admin_login(victim.email, f"guess-{n}", ip) for n in range(5)]
    admin_locked = _admin_login(victim.email, PASSWORD, _ip())
    dashboard_locked = _login(victim.email, PASSWORD, _ip())

    assert [THROTTLED in r.content.decode() for r in failures] == [False] * 5
    assert not any(r.signed_in for r in failures)
    assert THROTTLED in admin_locked.content.decode() and not admin_locked.signed_in
    assert THROTTLED in dashboard_locked.content.decode() and not dashboard_locked.signed_in


def test_ten_failed_admin_logins_from_one_ip_throttle_that_ip() -> None:
    ip = _ip()
    staff = [_staff(_email()) for _ in range(11)]

    failures = [_admin_login(user.email, "wrong-password", ip) for user in staff[:10]]
    throttled = _admin_login(staff[10].email, PASSWORD, ip)
    elsewhere = _admin_login(staff[10].email, PASSWORD, _ip())

    assert not any(THROTTLED in r.content.decode() for r in failures)
    assert THROTTLED in throttled.content.decode() and not throttled.signed_in
    assert elsewhere.signed_in and elsewhere.status_code == 302


def test_the_admin_still_refuses_people_who_are_not_staff() -> None:
    person = user_make(_email())

    response = _admin_login(person.email, PASSWORD, _ip())

    assert response.status_code == 200 and not response.signed_in
    assert "staff account" in response.content.decode()
