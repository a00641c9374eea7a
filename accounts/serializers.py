"""Input and output serializers of the accounts API, one small pair per endpoint."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from accounts.models import ApiKey, KeyScope, LimitReset, Membership, Role
from routerhub.text import validate_no_control_characters

MAX_ALLOWED_MODELS = 200


class ApiKeyParentOutput(serializers.ModelSerializer[ApiKey]):
    class Meta:
        model = ApiKey
        fields = ["id", "prefix"]


class ApiKeyOutput(serializers.ModelSerializer[ApiKey]):
    created_by: serializers.SlugRelatedField[ApiKey] = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )
    created_by_key = ApiKeyParentOutput(
        read_only=True,
        allow_null=True,
        help_text="The management key whose request made this key (null: a person made it). "
        "Revoking that key revokes this one.",
    )
    limit = serializers.DecimalField(
        max_digits=20, decimal_places=8, coerce_to_string=True, allow_null=True
    )
    is_active = serializers.BooleanField(read_only=True)
    allowed_models = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        read_only=True,
        help_text="The models it may call (empty or null: any). A narrowing of the key it was "
        'made from spreads to it; `["(none)"]`: none of its models were left, it can call no '
        "model.",
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "created_by",
            "created_by_key",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "is_active",
            "limit",
            "limit_reset",
            "allowed_models",
            "rpm",
            "tpm",
            "budget_aware",
        ]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The plaintext key. Shown once; store it now.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class _KeyFields(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=120, validators=[validate_no_control_characters])
    limit = serializers.DecimalField(
        max_digits=20, decimal_places=8, min_value=0, required=False, allow_null=True
    )
    limit_reset = serializers.ChoiceField(
        choices=LimitReset.choices, required=False, allow_null=True
    )
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="Null: never. Through a management key, it and limit, limit_reset, rpm, tpm "
        "and allowed_models give no key (that key included) more than that key has (403 naming "
        "the field); a create leaving them out takes that key's.",
    )
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=MAX_ALLOWED_MODELS,
    )
    rpm = serializers.IntegerField(
        min_value=1, max_value=1_000_000, required=False, allow_null=True
    )
    tpm = serializers.IntegerField(
        min_value=1, max_value=1_000_000_000, required=False, allow_null=True
    )

    budget_aware = serializers.BooleanField(
        required=False,
        help_text="Router requests move toward cheaper models as the limit window fills "
        "(README: budget-aware routing); needs a limit to have an effect.",
    )

    def validate_expires_at(self, value: Any) -> Any:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value


class ApiKeyCreateInput(_KeyFields):
    scope = serializers.ChoiceField(choices=KeyScope.choices, default=KeyScope.INFERENCE)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("limit_reset") and attrs.get("limit") is None:
            raise serializers.ValidationError(
                {"limit_reset": "a reset window needs a credit limit; set limit too"}
            )
        return attrs


class ApiKeyUpdateInput(_KeyFields):
    name = serializers.CharField(
        max_length=120, required=False, validators=[validate_no_control_characters]
    )


class MembershipOutput(serializers.ModelSerializer[Membership]):
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]


class InvitationInput(serializers.Serializer[Any]):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)
