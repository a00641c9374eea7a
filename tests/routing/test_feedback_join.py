"""Feedback reaches a router through the id its usage record names, never through the router's
name: a router made later under a reused slug does not inherit another router's feedback."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection

from billing.models import UsageRecord
from routing.feedback import feedback_record, router_feedback
from tests.factories import organization_make, user_make
from training.models import Router

pytestmark = pytest.mark.django_db


def served(router: Router, generation_id: str, model: str) -> UsageRecord:
    return UsageRecord.objects.create(
        organization=router.organization,
        generation_id=generation_id,
        model=model,
        router=f"router/{router.slug}",
        router_id=router.pk,
        status="succeeded",
        prompt=f"prompt of {generation_id}",
        cost="0.001",
        created_at=datetime.now(UTC),
    )


def test_a_router_reusing_a_deleted_routers_slug_starts_without_its_feedback():
    organization = organization_make(user_make(), "Acme")
    first = Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    served(first, "gen-first", "a")
    feedback_record(organization_id=organization.pk, generation_id="gen-first", score=1.0,
                    key_id=None)  # fmt: skip
    first.delete()
    second = Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])

    assert router_feedback(second) == []


def test_a_routers_feedback_is_what_its_requests_received():
    organization = organization_make(user_make(), "Acme")
    router = Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    served(router, "gen-1", "b")
    feedback_record(organization_id=organization.pk, generation_id="gen-1", score=0.25,
                    key_id=None)  # fmt: skip

    [example] = router_feedback(router)

    assert (example.prompt, example.model, example.score) == ("prompt of gen-1", "b", 0.25)
    assert example.cost == pytest.approx(0.001)


def test_a_routers_feedback_carries_the_task_its_request_named():
    organization = organization_make(user_make(), "Acme")
    router = Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    named = served(router, "gen-named", "a")
    # The trace a routed request keeps (routing.gateway.trace): the hint as it was decided with.
    routing = {"router": "router/support", "task_hint": {"task": "writing", "applied": None,
                                                         "reason": "no hint row"}}  # fmt: skip
    UsageRecord.objects.filter(pk=named.pk).update(
        trace=orjson.dumps({"routing": routing}).decode()
    )
    served(router, "gen-unnamed", "b")
    for generation_id in ("gen-named", "gen-unnamed"):
        feedback_record(organization_id=organization.pk, generation_id=generation_id, score=1.0,
                        key_id=None)  # fmt: skip

    tasks = {example.prompt: example.task for example in router_feedback(router)}

    assert tasks == {"prompt of gen-named": "writing", "prompt of gen-unnamed": ""}


def test_retraining_reads_the_task_hint_in_the_database_never_the_whole_trace():
    organization = organization_make(user_make(), "Acme")
    router = Router.objects.create(organization=organization, slug="support", candidates=["a", "b"])
    for index in range(3):
        record = served(router, f"gen-{index}", "a")
        routing = {"router": "router/support", "ranked": ["a", "b"] * 2000}  # a long trace
        if index == 0:
            routing["task_hint"] = {"task": "coding", "applied": "coding", "reason": None}
        UsageRecord.objects.filter(pk=record.pk).update(
            trace=orjson.dumps({"routing": routing}).decode()
        )
        feedback_record(organization_id=organization.pk, generation_id=f"gen-{index}",
                        score=1.0, key_id=None)  # fmt: skip
    columns: list[str] = []

    def record_columns(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        result = execute(sql, params, many, context)
        description = context["cursor"].description or []
        columns.extend(column.name for column in description)
        return result

    with connection.execute_wrapper(record_columns):
        tasks = {example.prompt: example.task for example in router_feedback(router)}

    assert tasks == {"prompt of gen-0": "coding", "prompt of gen-1": "", "prompt of gen-2": ""}
    assert "prompt" in columns and "trace" not in columns
