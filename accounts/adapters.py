"""allauth integration: every new user gets a personal organization in the signup transaction."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.db import transaction
from django.http import HttpRequest

from accounts.services import organization_create_personal


class AccountAdapter(DefaultAccountAdapter):
    def clean_email(self, email: str) -> str:
        # A quoted local part ("mallory"@…, which Django's validator accepts) is one more
        # spelling of an inbox; email_limit_key reads it too, but no mailbox needs one.
        if email.strip().startswith('"'):
            raise forms.ValidationError(
                'Use an address without quotes: "name"@example.com is name@example.com.'
            )
        email = super().clean_email(email)
        return str(email)

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            if commit:
                organization_create_personal(user=user)
        return user
