"""Celery entry points of billing, and the budget alert emails they send.

Periodic tasks: settle expired holds and orphaned usage drafts, and email owners whose monthly
spend crossed 50, 80 or 100 % of their budget (and emit the ``budget.threshold`` webhook event
with the same threshold). Each threshold is emailed once per calendar month
(UTC): ``CreditAccount.budget_alert_sent`` maps ``"YYYY-MM"`` to the highest threshold already
sent; crossing several thresholds at once sends one email, for the highest. The Stripe automatic
top-up task lives in ``billing.stripe.tasks``. All are safe to run concurrently and repeatedly.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import Membership, Organization, Role
from billing.models import CreditAccount, UsageRecord
from billing.outbox import usage_outbox_drain
from billing.partitions import partitions_ensure, usage_partitions_drop
from billing.retention import prompts_expire
from billing.services import credit_account_for, reservations_sweep
from billing.window_repair import key_windows_reconcile as windows_reconcile
from routerhub.money import ZERO
from routerhub.text import one_line
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)


@shared_task(name="billing.sweep_reservations", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_reservations() -> int:
    """Settle expired holds whose usage never arrived: released when the gateway marked them
    free, else charged at their held amount. The outbox is drained first, so that only drafts
    that are truly lost (not just waiting in Redis) are charged that way; while Redis cannot be
    read, holds are only released, and charged by a later sweep."""
    try:
        usage_outbox_drain()
    except (RedisError, OSError) as exc:
        logger.warning(
            "usage outbox unreadable (%s); charging no expired hold this time", type(exc).__name__
        )
        return reservations_sweep(charge=False)
    return reservations_sweep()


@shared_task(
    name="billing.key_windows_reconcile", acks_late=True, soft_time_limit=60, time_limit=90
)
def key_windows_reconcile() -> int:
    """Set a bounded batch of key spend windows' ``reserved`` to their open holds
    (``billing.window_repair``); returns how many it corrected."""
    return windows_reconcile()


@shared_task(name="billing.drain_usage_outbox", acks_late=True, soft_time_limit=120, time_limit=180)
def drain_usage_outbox() -> int:
    """Settle usage drafts orphaned by gateway workers that died after answering."""
    return usage_outbox_drain()


@shared_task(name="billing.expire_prompts", acks_late=True, soft_time_limit=120, time_limit=180)
def expire_prompts() -> int:
    """Blank stored prompts older than USAGE_PROMPT_RETENTION_DAYS (bounded batches)."""
    return prompts_expire()


@shared_task(name="billing.partitions_ensure", acks_late=True, soft_time_limit=300, time_limit=360)
def ensure_partitions() -> int:
    """Create the next months' usage and ledger partitions; drop usage months past
    USAGE_RECORD_RETENTION_MONTHS (off by default). Returns how many partitions changed."""
    return len(partitions_ensure()) + len(usage_partitions_drop())


@shared_task(name="billing.budget_alerts", acks_late=True, soft_time_limit=300, time_limit=360)
def budget_alerts() -> int:
    """Email owners of organizations that crossed 50/80/100 % of their monthly budget."""
    return budget_alerts_check_all()


# --- budget alerts --------------------------------------------------------------------------------

BUDGET_ALERT_THRESHOLDS = (50, 80, 100)


def _month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_to_date_spend(*, organization: Organization, now: datetime) -> Decimal:
    total = UsageRecord.objects.filter(
        organization=organization, created_at__gte=_month_start(now), created_at__lte=now
    ).aggregate(total=Sum("cost"))["total"]
    return total or ZERO


def _claim(organization: Organization, month: str, threshold: int) -> bool:
    """Record the alert before sending it, so two checkers cannot both send it."""
    credit_account_for(organization.pk)
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().get(organization=organization)
        sent = dict(account.budget_alert_sent or {})
        if int(sent.get(month, 0)) >= threshold:
            return False
        # Only the current month matters; earlier months are dropped to keep the field small.
        account.budget_alert_sent = {month: threshold}
        account.save(update_fields=["budget_alert_sent", "updated_at"])
        return True


def budget_alerts_check(*, organization: Organization, now: datetime | None = None) -> int | None:
    """Email the owners when spend crossed a new threshold this month; returns that threshold."""
    budget = organization.monthly_budget
    if budget is None or budget <= 0:
        return None
    now = now or timezone.now()
    spend = month_to_date_spend(organization=organization, now=now)
    percent = spend * 100 / budget
    crossed = [t for t in BUDGET_ALERT_THRESHOLDS if percent >= t]
    if not crossed:
        return None
    threshold, month = crossed[-1], _month_start(now).strftime("%Y-%m")
    if not _claim(organization, month, threshold):
        return None
    webhook_event_emit(
        organization.pk,
        WebhookEvent.BUDGET_THRESHOLD,
        {
            "scope": "organization",
            "percent": threshold,
            "spend": str(spend),
            "budget": str(budget),
            "month": month,
        },
    )
    owners = Membership.objects.filter(organization=organization, role=Role.OWNER)
    recipients = sorted({m.user.email for m in owners.select_related("user") if m.user.email})
    context = {
        "organization": organization,
        "threshold": threshold,
        "spend": spend,
        "budget": budget,
        "month": month,
        "site_url": settings.SITE_URL,
    }
    subject = (
        f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{one_line(organization.name)} "
        f"used {threshold}% of its monthly budget"
    )
    body = render_to_string("billing/budget_alert_email.txt", context)
    for email in recipients:
        # One message per owner: addresses are not shared, and one bad address fails alone.
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email])
        except Exception:
            logger.exception("budget alert to %s for %s failed", email, organization.slug)
    return threshold


def budget_alerts_check_all(*, now: datetime | None = None) -> int:
    """Check every organization with a budget; returns how many alerts were sent."""
    sent = 0
    for organization in Organization.objects.filter(monthly_budget__gt=0).iterator():
        if budget_alerts_check(organization=organization, now=now) is not None:
            sent += 1
    return sent
