"""Data migrations' half of ``routerhub.text``: names stored before input refused control
characters, bidi overrides and invisible format characters are rewritten with ``one_line``, so
a form that re-submits the stored name (the organization settings, a router's page) accepts it.

Batches of ``BATCH`` primary keys, each its own short transaction (the migrations are not atomic):
no lock is held across a whole table, and a rerun rewrites only what is still unclean."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from routerhub.text import has_control, one_line

BATCH = 1000
UNNAMED = "Unnamed"  # a required name that was nothing but control characters


def names_clean(model: Any, field: str = "name", *, batch: int = BATCH) -> int:
    """Rewrite ``model.<field>`` with ``one_line`` where ``has_control`` finds a character it
    refuses; the number of rows rewritten."""
    blank = model._meta.get_field(field).blank
    top = model.objects.aggregate(top=Max("pk"))["top"] or 0
    rewritten = 0
    for start in range(0, top, batch):
        with transaction.atomic():
            rows = model.objects.filter(pk__gt=start, pk__lte=start + batch)
            for pk, value in rows.values_list("pk", field):
                if has_control(value):
                    clean = one_line(value) or ("" if blank else UNNAMED)
                    model.objects.filter(pk=pk).update(**{field: clean})
                    rewritten += 1
    return rewritten
