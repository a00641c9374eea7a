"""Bounding the deliveries of a late-acknowledged task (``acks_late``: a task whose worker dies is
delivered again). Each delivery is counted on the task's row before the work starts, so one
whose worker died still counts, and past a bound the caller gives the row up with a reason
instead of it being delivered forever. Used by dataset validation and invitation mails."""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet


def delivery_count(rows: QuerySet[Any], field: str, **changes: Any) -> int | None:
    """Count one more delivery on the row ``rows`` selects (one conditional ``UPDATE`` of the
    counter ``field``, with ``changes`` written in the same statement); the count now, or None
    when no row matched (the work was done or ended meanwhile: nothing to do). ``rows`` should
    select by the state that still needs the work, so a redelivery of finished work counts
    nothing, and by the claim the task was queued with (e.g. the invitation's ``mail_ticket``),
    so a task a newer queueing superseded counts nothing and does nothing."""
    if not rows.update(**{field: F(field) + 1}, **changes):
        return None
    count = rows.values_list(field, flat=True).first()
    return None if count is None else int(count)
