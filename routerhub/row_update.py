"""``row_update``: change some fields of a row without writing back the rest of what was read.

A settings form or ``PATCH`` reads a row, then saves it. ``instance.save()`` writes every column
as it was read, undoing a change another request made to another field meanwhile (a rollback,
a toggle, a budget). Here the row is re-read under ``SELECT … FOR UPDATE`` and only the fields
the caller changes are written (``update_fields``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db import models, transaction

_Row = TypeVar("_Row", bound=models.Model)


def row_update(
    instance: _Row,
    *,
    changes: dict[str, Any],
    fields: Iterable[str],
    check: Callable[[_Row], None] | None = None,
    gone: Exception | None = None,
) -> _Row:
    """Write ``changes`` to ``instance``'s row, locked, and return the row as written: only the
    names in ``fields`` whose value differs from the locked row's are written (with any
    ``auto_now`` field). ``check`` sees the locked row first and may raise to refuse; a row deleted since it was
    read raises ``gone`` (else ``ObjectDoesNotExist``)."""
    with transaction.atomic():
        locked = type(instance)._default_manager.select_for_update().filter(pk=instance.pk).first()
        if locked is None:
            raise gone or ObjectDoesNotExist(f"{type(instance).__name__} {instance.pk} is gone.")
        if check is not None:
            check(locked)
        written = [f for f in fields if f in changes and getattr(locked, f) != changes[f]]
        for field in written:
            setattr(locked, field, changes[field])
        if written:
            stamped = [
                f.name for f in locked._meta.concrete_fields if getattr(f, "auto_now", False)
            ]
            locked.save(update_fields=written + stamped)
    return locked
