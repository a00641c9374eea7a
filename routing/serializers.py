"""Input and output shapes of ``/api/v1/provider-keys`` (the secret is write-only)."""

from __future__ import annotations

from rest_framework import serializers

from routing.models import ProviderKey


class ProviderKeyCreateInput(serializers.Serializer):  # type: ignore[type-arg]
    provider = serializers.SlugField(help_text="Provider slug, e.g. 'openai' (see GET /v1/models).")
    secret = serializers.CharField(
        write_only=True, min_length=8, max_length=2000, trim_whitespace=True
    )
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    base_url = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="OpenAI-compatible providers only: the host to call with this key instead of "
        "the provider's (e.g. your proxy). Must resolve to public addresses.",
    )


class ProviderKeyOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    provider = serializers.CharField(source="provider.slug", read_only=True)

    class Meta:
        model = ProviderKey
        fields = ("id", "provider", "name", "base_url", "last4", "created_at")
        read_only_fields = fields
