"""Input and output serializers of ``/api/v1/webhooks``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from routerhub.text import validate_no_control_characters
from webhooks.models import DisabledReason, WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointOutput(serializers.ModelSerializer[WebhookEndpoint]):
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices))
    created_by = serializers.EmailField(
        source="created_by.email",
        read_only=True,
        allow_null=True,
        help_text="Email of the member who answers for the endpoint: who created it, or last "
        "re-enabled it or changed its URL. Their removal from the organization disables it. "
        "Null for endpoints created before this was recorded (never disabled so).",
    )
    disabled_reason = serializers.ChoiceField(
        choices=DisabledReason.choices,
        read_only=True,
        allow_null=True,
        help_text="Why RouterHub disabled the endpoint (`creator_removed`: its creator was "
        "removed from the organization); null when enabled or disabled by an admin. An admin "
        "re-enabling it (`enabled: true`) clears it and becomes its creator.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_reason",
            "created_by",
            "secret_hint",
            "created_at",
        ]

    def to_representation(self, instance: WebhookEndpoint) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["disabled_reason"] = instance.disabled_reason or None
        return data


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
    possibly_lost = serializers.BooleanField(
        read_only=True,
        help_text="True while the pending delivery's queued attempt (queued_at) has waited "
        "longer than a whole attempt may last (4 × WEBHOOK_TIMEOUT_SECONDS + 1 min) without a "
        "worker starting it: the workers may be busy, or the broker lost the task. RouterHub "
        "queues it again once the broker's redelivery window (an hour by default) has passed.",
    )

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
            "queued_at",
            "possibly_lost",
            "last_attempt_at",
            "created_at",
            "payload",
        ]
        extra_kwargs = {
            "next_retry_at": {
                "help_text": "When a pending delivery's next attempt is due; null once that "
                "attempt is queued (queued_at) and for a finished delivery."
            },
            "queued_at": {
                "help_text": "When the pending delivery's next attempt was queued for a worker "
                "(it runs once one is free); null when no attempt is queued."
            },
        }

    def to_representation(self, instance: WebhookDelivery) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.queued_at is not None:  # its next_retry_at is the sweep's, not a retry's
            data["next_retry_at"] = None
        return data
