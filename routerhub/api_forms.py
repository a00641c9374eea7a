"""Dashboard forms that the API's own input serializer checks: each limit (a list's length, a
number's range, a rule between two fields) has one home, the serializer, so a dashboard form
never accepts what the API refuses, nor hands the database a number it cannot store (a 500)."""

from __future__ import annotations

from typing import Any

from django import forms
from rest_framework import serializers

from routerhub.errors import ApiError


class ApiCheckedForm(forms.Form):
    """A form whose cleaned data, once its own fields are valid, goes through ``api_input()``;
    the serializer's errors become the form's, on the field of the same name."""

    def api_input(self) -> type[serializers.Serializer[Any]]:
        raise NotImplementedError

    def api_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The API's request body for this cleaned data (override to rename or translate)."""
        return cleaned

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:  # the form's own messages first
            return cleaned
        checked = self.api_input()(data=self.api_data(cleaned))
        try:
            valid = checked.is_valid()
        except ApiError as exc:  # a serializer applying its service's rule (AutoTopupInput)
            self.add_error(exc.param if exc.param in self.fields else None, exc.message)
            return cleaned
        if not valid:
            for field, errors in checked.errors.items():
                self.add_error(field if field in self.fields else None, _messages(errors))
        return cleaned


def _messages(errors: Any, where: str = "") -> list[str]:
    """DRF's errors flattened: a list's item errors (``{index: [...]}``) name the item."""
    if isinstance(errors, dict):
        return [
            message
            for key, value in errors.items()
            for message in _messages(value, f"item {int(key) + 1}: " if str(key).isdigit() else "")
        ]
    if isinstance(errors, list):
        return [message for error in errors for message in _messages(error, where)]
    return [f"{where}{errors}"]
