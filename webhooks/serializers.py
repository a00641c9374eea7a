"""Input and output serializers of ``/api/v1/webhooks``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routerhub.text import validate_no_control_characters
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointOutput(serializers.ModelSerializer[WebhookEndpoint]):
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices))

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "enabled", "secret_hint", "created_at"]


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_…). Shown once; RouterHub keeps it encrypted."
    )

    class Meta(WebhookEndpointOutput.Meta):
        fields = [*WebhookEndpointOutput.Meta.fields, "secret"]


class WebhookEndpointInput(serializers.Serializer[Any]):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), min_length=1, max_length=16
    )
    description = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        validators=[validate_no_control_characters],
    )
    enabled = serializers.BooleanField(required=False, default=True)


class WebhookDeliveryOutput(serializers.ModelSerializer[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "response_code",
            "response_excerpt",
            "error",
            "latency_ms",
            "next_retry_at",
            "last_attempt_at",
            "created_at",
            "payload",
        ]
