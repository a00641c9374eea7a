"""Not Diamond model-select sessions keep their prompts no longer than usage records do.

``USAGE_PROMPT_RETENTION_DAYS`` promises that no prompt is kept past it: the hourly
``billing.expire_prompts`` blanked usage records' prompts, but a ``SelectionSession`` (written on
every ``modelSelect`` of an organization that logs prompts, free and unmetered) kept its prompt
forever on the old code. The hourly ``routing.session_prompts_expire`` blanks them too.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routerhub.celery import app
from routing.models import SelectionSession
from routing.tasks import session_prompts_expire
from tests.conftest import require_postgres
from tests.factories import organization_make


def session(organization: Any, prompt: str, age: timedelta) -> SelectionSession:
    row = SelectionSession.objects.create(
        id=uuid.uuid4(), organization=organization, router="router/r", chosen="a/b",
        candidates=["a/b"], prompt=prompt,
    )  # fmt: skip
    SelectionSession.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


@pytest.mark.django_db
def test_session_prompts_past_the_retention_are_blanked_hourly(settings: Any) -> None:
    settings.USAGE_PROMPT_RETENTION_DAYS = 30
    organization = organization_make()
    old = session(organization, "an old secret prompt", timedelta(days=31))
    recent = session(organization, "a recent prompt", timedelta(days=29))

    changed = session_prompts_expire.apply().get()

    assert changed == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.prompt, recent.prompt) == ("", "a recent prompt")
    assert old.chosen == "a/b"  # the session and its feedback stay; only the text goes
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled["routing.session_prompts_expire"] == 3600.0


@pytest.mark.django_db
def test_without_a_retention_session_prompts_are_kept(settings: Any) -> None:
    settings.USAGE_PROMPT_RETENTION_DAYS = 0
    row = session(organization_make(), "kept", timedelta(days=400))

    assert session_prompts_expire.apply().get() == 0
    row.refresh_from_db()
    assert row.prompt == "kept"


@pytest.mark.django_db
def test_the_retention_finds_kept_prompts_through_a_partial_index(settings: Any) -> None:
    """Each batch's ``created_at < cutoff AND prompt <> ''`` read the whole table on the old code
    (its only index leads with the organization): a sequential scan of every session, hourly and
    per batch. ``session_prompt_kept`` indexes only the sessions still holding a prompt."""
    require_postgres()
    settings.USAGE_PROMPT_RETENTION_DAYS = 30
    organization = organization_make()
    old = timezone.now() - timedelta(days=60)
    SelectionSession.objects.bulk_create(
        SelectionSession(
            id=uuid.uuid4(),
            organization=organization,
            router="router/r",
            chosen="a/b",
            candidates=["a/b"],
            prompt="kept" if i % 200 == 0 else "",
        )
        for i in range(10_000)
    )
    SelectionSession.objects.update(created_at=old)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_selectionsession")
    with CaptureQueriesContext(connection) as queries:
        assert session_prompts_expire.apply().get() == 50
    batch_read = next(q["sql"] for q in queries if q["sql"].startswith("SELECT"))

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {batch_read}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "session_prompt_kept" in plan, plan
    assert "Seq Scan" not in plan, plan
