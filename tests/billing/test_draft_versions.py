"""Rolling deploys: while two releases run side by side, a settler may read a usage draft that
the other release wrote. Drafts with fields this release does not know (a newer gateway's) and
drafts without fields it added (an older gateway's) both settle through the real outbox, with
PostgreSQL and Redis; only a draft without what every release wrote is set aside."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import orjson
import pytest

from billing.drafts import UsageDraft
from billing.models import CreditAccount, UsageDecision, UsageRecord, UsageStep
from billing.outbox import STREAM, usage_outbox_drain
from billing.outbox_entries import DEAD_STREAM

CREATED = "2026-12-05T10:00:00+00:00"


def _settle(redis_client: Any, payload: dict[str, Any]) -> None:
    redis_client.xadd(STREAM, {"d": orjson.dumps(payload)})
    assert usage_outbox_drain(idle_ms=0) == 1


def _newer_release_draft(organization_id: int) -> dict[str, Any]:
    """This release's pipeline draft with a decision, plus fields a later release might add."""
    draft = UsageDraft(
        generation_id="gen-newer",
        organization_id=organization_id,
        key_id=None,
        status="succeeded",
        cost=Decimal("0.3"),
        model="test/gpt",
        steps=[
            {"step": 0, "model": "test/gpt", "provider": "fake", "status": "succeeded",
             "gate": "passed", "prompt_tokens": 5, "completion_tokens": 7, "cost": "0.3",
             "latency_ms": 12}
        ],
        decision={"router_id": 4, "served_version": 2, "served_model": "test/gpt",
                  "greedy_model": "test/gpt", "propensity": 1.0, "shadow_version": None,
                  "shadow_model": "", "predicted": {"test/gpt": [0.9, 0.001]}},
    )  # fmt: skip
    payload = draft.to_json()
    payload |= {"service_tier": "flex", "energy_wh": 11, "carbon_g": 0.2}
    payload["steps"][0]["energy_wh"] = 3
    payload["decision"]["context_bucket"] = "long"
    return payload


def test_a_draft_with_fields_this_release_does_not_know_settles_and_they_are_ignored(
    redis_client: Any, funded: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="billing.drafts")

    _settle(redis_client, _newer_release_draft(funded.pk))

    record = UsageRecord.objects.get(generation_id="gen-newer")
    assert record.cost == Decimal("0.3") and record.model == "test/gpt"
    [step] = UsageStep.objects.filter(generation_id="gen-newer")
    assert (step.gate, step.completion_tokens, step.latency_ms) == ("passed", 7, 12)
    assert UsageDecision.objects.get(generation_id="gen-newer").served_version == 2
    assert CreditAccount.objects.get(organization=funded).balance == Decimal("9.7")
    assert redis_client.xlen(DEAD_STREAM) == 0
    assert "['carbon_g', 'energy_wh', 'service_tier']" in caplog.text


def test_a_draft_without_the_fields_this_release_added_settles_with_their_defaults(
    redis_client: Any, funded: Any
) -> None:
    # What a gateway before routers, BYOK, traces and pipelines' gates wrote: no router_id,
    # reasoning or first-token fields, a step without gate or latency, a decision without the
    # shadow's choice, the predictions or the task hint.
    older = {
        "generation_id": "gen-older",
        "organization_id": funded.pk,
        "key_id": None,
        "status": "succeeded",
        "cost": "0.25000000",
        "model": "test/gpt",
        "requested_model": "pipeline/p",
        "provider": "fake",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "latency_ms": 30,
        "error_type": "",
        "streamed": False,
        "prompt": "",
        "created_at": CREATED,
        "steps": [{"step": 0, "model": "test/gpt", "provider": "fake", "status": "succeeded",
                   "prompt_tokens": 5, "completion_tokens": 7, "cost": "0.25"}],
        "decision": {"router_id": 4, "served_version": 1, "served_model": "test/gpt",
                     "greedy_model": "test/gpt", "propensity": 1.0},
    }  # fmt: skip

    _settle(redis_client, older)

    record = UsageRecord.objects.get(generation_id="gen-older")
    assert record.cost == Decimal("0.25") and record.router_id is None
    assert (record.reasoning_tokens, record.ttft_ms, record.is_byok) == (0, None, False)
    [step] = UsageStep.objects.filter(generation_id="gen-older")
    assert (step.gate, step.latency_ms, step.cost) == ("", None, Decimal("0.25"))
    decision = UsageDecision.objects.get(generation_id="gen-older")
    assert (decision.shadow_version, decision.shadow_model, decision.predicted) == (None, "", "{}")
    assert decision.task_hint == ""  # named by no request before the decision log kept it
    assert redis_client.xlen(DEAD_STREAM) == 0


@pytest.mark.parametrize("missing", ["generation_id", "organization_id", "cost", "created_at"])
def test_a_draft_without_what_every_release_wrote_is_set_aside_not_guessed(
    redis_client: Any, funded: Any, missing: str
) -> None:
    payload = _newer_release_draft(funded.pk)
    del payload[missing]

    _settle(redis_client, payload)

    assert not UsageRecord.objects.exists()  # never charged at a default cost of 0
    assert CreditAccount.objects.get(organization=funded).balance == Decimal("10")
    assert redis_client.xlen(DEAD_STREAM) == 1
