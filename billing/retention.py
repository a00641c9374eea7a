"""Retention of prompt text in usage records (kept only for organizations that opted in).

``prompts_expire`` blanks the prompts of records older than ``USAGE_PROMPT_RETENTION_DAYS`` in
batches of ``BATCH_ROWS`` (one short transaction each, found through a partial index of the
records that still hold a prompt) until none is left or ``budget_s`` is spent; the hourly task
picks up where it stopped. The record itself (its tokens, cost and ledger entry) is kept.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from billing.models import UsageRecord

BATCH_ROWS = 5000


def prompts_expire(
    *, now: datetime | None = None, budget_s: float = 60.0, model: type[Model] = UsageRecord
) -> int:
    """Blank expired prompts; returns how many rows were changed (0 when retention is off).
    ``model``: any with ``created_at`` and ``prompt`` under the same promise (Not Diamond's
    model-select sessions, ``routing.notdiamond.session_prompts_expire``)."""
    days = settings.USAGE_PROMPT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deadline = time.monotonic() + budget_s
    changed = 0
    rows = model._default_manager
    while time.monotonic() < deadline:
        batch = list(
            rows.filter(created_at__lt=cutoff)
            .exclude(prompt="")
            .values_list("pk", flat=True)[:BATCH_ROWS]
        )
        if not batch:
            break
        changed += rows.filter(pk__in=batch).update(prompt="")
    return changed
