"""Celery configuration for the length of one test, leaving the app exactly as it was found.

The app reads the Django settings live (``config_from_object("django.conf:settings")``): a value
set on ``app.conf`` lands in its ``changes`` and shadows the Django setting from then on. Setting
the old value back afterwards is not undoing it: the value stays in ``changes``, and a later
test's ``settings.CELERY_TASK_ALWAYS_EAGER`` override no longer reaches the app. So a key that
was not in ``changes`` before is removed again, and one that was gets its old value back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ABSENT = object()


@contextmanager
def celery_conf(**values: Any) -> Iterator[None]:
    """``app.conf`` with ``values`` set explicitly, until the block ends."""
    from routerhub.celery import app

    # The first read replaces a pending configuration with the loaded one (``app.conf`` is then
    # another object): load it before looking at its ``changes``.
    app.conf.finalize()
    conf = app.conf
    before = {key: conf.changes.get(key, _ABSENT) for key in values}
    for key, value in values.items():
        conf[key] = value
    try:
        yield
    finally:
        for key, value in before.items():
            if value is _ABSENT:
                conf.changes.pop(key, None)
            else:
                conf.changes[key] = value
