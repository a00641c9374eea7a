"""The tests' one way to set Celery configuration (``tests/celery_conf.py``) leaves the app as
it found it, so a later test's Django override of a ``CELERY_*`` setting reaches the app."""

from __future__ import annotations

from typing import Any

from tests.celery_conf import celery_conf


def test_a_django_override_reaches_the_app_again_after_the_helper(settings: Any) -> None:
    from routerhub.celery import app

    with celery_conf(task_always_eager=True):
        settings.CELERY_TASK_ALWAYS_EAGER = False
        assert app.conf.task_always_eager is True  # the explicit value wins inside the block

    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert app.conf.task_always_eager is True
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert app.conf.task_always_eager is False
    assert "task_always_eager" not in app.conf.changes


def test_an_explicit_value_set_before_the_helper_is_set_back(settings: Any) -> None:
    from routerhub.celery import app

    with celery_conf(task_eager_propagates="before"):
        with celery_conf(task_eager_propagates=True):
            assert app.conf.task_eager_propagates is True
        assert app.conf.changes["task_eager_propagates"] == "before"
    assert "task_eager_propagates" not in app.conf.changes
