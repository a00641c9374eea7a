"""Webhook endpoints of an organization and the log of every delivery made to them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import TenantModel


class WebhookEvent(models.TextChoices):
    TRAINING_FINISHED = "training.finished", "Training finished"
    TRAINING_FAILED = "training.failed", "Training failed"
    ROUTER_PROMOTED = "router.promoted", "Router version promoted"
    ROUTER_DRIFT = "router.drift", "Router drift alert"
    BUDGET_THRESHOLD = "budget.threshold", "Budget threshold crossed"
    AUTO_TOPUP_CAPPED = "credits.auto_topup_capped", "Automatic top-up held back by the daily cap"


class DisabledReason(models.TextChoices):
    CREATOR_REMOVED = "creator_removed", "Its creator was removed from the organization"


class WebhookEndpoint(TenantModel):
    """A receiver URL, the events it subscribes to and its signing secret (Fernet-encrypted:
    routing.provider_secrets; the plaintext is shown once, at creation). ``created_by``: the
    member who vouches for the URL (made it, last re-enabled it or changed its URL); their
    removal disables it (``webhook_endpoints_disable_for_removed``)."""

    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)  # WebhookEvent values
    description = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.BinaryField()
    secret_hint = models.CharField(max_length=12)  # the secret's last characters, for display
    enabled = models.BooleanField(default=True)
    # Null for endpoints created before it was recorded (webhooks 0004): never auto-disabled.
    # No database constraint and no index of its own: ``REFERENCES`` would lock the user table
    # (every signed-in request reads it) for the migration, and an organization's endpoints are
    # few (read by ``organization`` first); the ORM still nulls it when a user is deleted.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    disabled_reason = models.CharField(
        max_length=20, choices=DisabledReason.choices, blank=True, default="", db_default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "enabled"])]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # queued (queued_at), or waiting for its next attempt
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"  # a 4xx, a refused target, or every attempt used


class WebhookDelivery(TenantModel):
    """One event sent (or to be sent) to one endpoint; each attempt updates the row."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=40)  # shared by every endpoint's copy of the event
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=1024, blank=True)
    error = models.CharField(max_length=300, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    # For a pending row: when its next attempt is due; once that attempt is queued
    # (queued_at), when the sweep takes its task for lost (services.queued_lost_after).
    next_retry_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    queued_at = models.DateTimeField(null=True, blank=True)  # its pending attempt's task queued
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["status", "next_retry_at"]),
        ]
