"""Settling what a settler read from the usage stream: its entries' drafts in one batch, and
draft by draft when the database refuses the batch, a draft refused on its own set aside in
``DEAD_STREAM`` for an operator (``manage.py usage_dead_letters``) instead of holding back
everybody else's settlement (``billing.outbox``)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DataError, IntegrityError

from billing.drafts import UsageDraft, draft_decode
from billing.settlement import usage_settle_batch, usage_settled_before
from billing.wal import wal_wait_durable

logger = logging.getLogger(__name__)

DEAD_STREAM = "rh:usage-dead"  # drafts the database refused; see entries_settle
# Errors that come from a draft itself, not from the database or Redis being unreachable.
UNSETTLABLE = (IntegrityError, DataError, ValueError, TypeError, KeyError, ArithmeticError)


def _drafts(
    client: Any, entries: list[Any]
) -> tuple[list[bytes], list[tuple[bytes, bytes, UsageDraft]]]:
    """The entries' ids, and (id, payload, draft) for each entry that still holds a draft; an
    entry that cannot be read as a draft is set aside (``_dead_letter``), never retried."""
    ids, drafts = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        if not fields:  # an entry deleted while pending has no fields: nothing to settle
            continue
        payload = fields.get(b"d", b"")
        try:
            drafts.append((entry_id, payload, draft_decode(payload)))
        except UNSETTLABLE as exc:
            _dead_letter(client, entry_id, payload, exc, generation_id="?")
    return ids, drafts


def entries_settle(client: Any, entries: list[Any], *, wait_durable: bool) -> list[bytes]:
    """Settle the drafts of ``entries``; returns the entry ids that may now be acknowledged.

    A draft the database refuses (``UNSETTLABLE``: a constraint or a value it cannot store)
    would fail every batch it is in, and a batch that fails is retried: one such draft would
    stop settlement for everybody. So a refused batch is settled draft by draft, and a draft
    refused on its own is moved to ``DEAD_STREAM`` (logged; ``manage.py usage_dead_letters``
    lists and requeues them). Any other error (the database or Redis unreachable) propagates
    and the whole batch is retried.

    ``wait_durable``: return once what was settled is on disk, including a settlement only seen
    here (``_settled_by_another``): the other settler committed without waiting for the disk,
    and a draft acknowledged before its charge is flushed is lost with a database crash. Else
    the caller waits for the WAL position it reads after this returns (``_acknowledge_durable``).
    """
    ids, drafts = _drafts(client, entries)
    if not drafts:
        return ids
    try:
        usage_settle_batch([draft for _, _, draft in drafts], wait_durable=wait_durable)
    except UNSETTLABLE:
        seen = False
        for entry_id, payload, draft in drafts:
            try:
                usage_settle_batch([draft], wait_durable=wait_durable)
            except UNSETTLABLE as exc:
                if _settled_by_another(draft, exc):
                    seen = True
                else:
                    _dead_letter(client, entry_id, payload, exc, generation_id=draft.generation_id)
        if seen and wait_durable:
            wal_wait_durable()
    return ids


def _settled_by_another(draft: UsageDraft, exc: Exception) -> bool:
    """Whether ``exc`` only says that another settler settled ``draft`` meanwhile (it claimed
    the draft from this one, or this one from it): then it is charged, to be acknowledged.

    PostgreSQL makes a second claim of a generation id wait for the first's transaction and
    refuses it once that committed: visible by now. Another ``IntegrityError`` (a row the draft
    names is gone) leaves the generation id unclaimed: a refused draft."""
    if not isinstance(exc, IntegrityError) or not usage_settled_before([draft.generation_id]):
        return False
    logger.info("usage draft %s was settled by another settler meanwhile", draft.generation_id)
    return True


def _dead_letter(
    client: Any, entry_id: bytes, payload: bytes, exc: Exception, *, generation_id: str
) -> None:
    # Only the error's class and first line: database errors quote the values they refused,
    # and a draft may carry a logged prompt.
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    client.xadd(DEAD_STREAM, {"d": payload, "error": reason, "entry": entry_id})
    logger.error(
        "usage draft %s cannot be settled (%s); moved to %s for an operator",
        generation_id,
        type(exc).__name__,
        DEAD_STREAM,
    )
