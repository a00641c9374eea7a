"""A prompt a provider had when it timed out is billed its estimate, and the record's tokens carry
that estimate too: whatever path wrote the record (a fallback that answered, a stream, one that
failed mid-stream, a list of prompts on ``/v1/completions``, a pipeline's call), its tokens
explain its cost in ``GET /api/v1/generation``, the usage CSV and the dashboard.

Both endpoints have the same prices, so a record's cost is exactly its tokens at those prices.
Before, a record with a timed-out attempt besides the answer that served it (or besides a stream
that failed, or a client that left) had the estimate in its cost but not in its prompt tokens.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from accounts.models import KeyScope
from billing.models import UsageRecord, UsageStep
from routerhub.money import money
from tests.factories import key_client
from tests.routing.world import World, base_catalog, endpoint, model, provider

PROMPT = "Describe how every kind of cloud forms, season by season, HANG. " * 200
M = Decimal(1_000_000)
ORDER = {"order": ["slow-0", "slow-1"], "allow_fallbacks": True}


def _catalog(world: World, served: str = "gpt-4o") -> None:
    """``test/slow``: ``slow-0`` times out on a request saying HANG (after it was written),
    ``slow-1`` answers as ``served`` says; both at 10 and 50 USD per 1M tokens."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/slow"))
    for index, upstream in enumerate(("gpt-4o@timeout,when=HANG", served)):
        data["providers"].append(provider(f"slow-{index}", "openai", world.fake_url))
        data["endpoints"].append(endpoint("test/slow", f"slow-{index}", upstream, "10", "50"))
    world.catalog(data)


def _post(world: World, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{world.gateway_url}{path}",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/slow", "provider": ORDER, "max_tokens": 10, **body},
        timeout=30,
    )


def _generation(world: World, generation_id: str) -> dict[str, Any]:
    world.usage_record(generation_id)  # settled
    answer = httpx.get(
        f"{world.gateway_url}/api/v1/generation",
        params={"id": generation_id},
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text[:300]
    return answer.json()


def _explained(tokens: dict[str, Any], cost: Any) -> None:
    """The cost is the tokens at the one price both endpoints have."""
    priced = (Decimal(tokens["prompt_tokens"]) * 10 + tokens["completion_tokens"] * 50) / M
    assert Decimal(str(cost)) == money(priced), (tokens, cost)


def _timed_out_billed(record: UsageRecord) -> int:
    (timed_out, *_) = record.trace_data["fallbacks"]
    assert (timed_out["provider"], timed_out["error"]) == ("slow-0", "timeout")
    assert timed_out["billed"]["prompt_tokens"] > 1000  # the provider had the whole prompt
    return int(timed_out["billed"]["prompt_tokens"])


_CHAT = {"messages": [{"role": "user", "content": PROMPT}]}
_PATHS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "chat": ("gpt-4o", "/v1/chat/completions", _CHAT, "succeeded"),
    "stream": ("gpt-4o", "/v1/chat/completions", {"stream": True, **_CHAT}, "succeeded"),
    "stream_failed": (
        "gpt-4o@disconnect_after=3", "/v1/chat/completions", {"stream": True, **_CHAT}, "failed"
    ),
    "prompts": ("gpt-4o", "/v1/completions", {"prompt": [PROMPT, "Say hi"]}, "succeeded"),
}  # fmt: skip


@pytest.mark.parametrize("path", list(_PATHS))
def test_a_timed_out_prompts_estimate_is_in_the_records_tokens(
    world: World, settings, path: str
) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    served, url, body, status = _PATHS[path]
    _catalog(world, served)

    answer = _post(world, url, body)

    assert answer.status_code == 200, answer.text[:300]
    generation_id = answer.headers["x-generation-id"]
    record = world.usage_record(generation_id)
    assert (record.status, record.provider) == (status, "slow-1")
    assert "usage_estimated" in record.flag_list
    billed = _timed_out_billed(record)
    generation = _generation(world, generation_id)
    assert generation["prompt_tokens"] == record.prompt_tokens > billed
    _explained(generation, generation["cost"])


def test_a_pipeline_calls_timed_out_prompt_is_in_its_steps_tokens(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _catalog(world)
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    spec = {"slug": "one", "kind": "series", "steps": [{"model": "test/slow"}]}
    assert admin.post("/api/v1/pipelines", spec, format="json").status_code == 201

    answer = _post(world, "/v1/chat/completions", {"model": "pipeline/one", **_CHAT})

    assert answer.status_code == 200, answer.text[:300]
    served = answer.json()
    record = world.usage_record(served["id"])
    billed = _timed_out_billed(record)
    (step,) = UsageStep.objects.filter(generation_id=record.generation_id)
    assert (step.provider, step.prompt_tokens) == ("slow-1", record.prompt_tokens)
    assert step.prompt_tokens > billed
    _explained({"prompt_tokens": step.prompt_tokens, "completion_tokens": step.completion_tokens},
               step.cost)  # fmt: skip
    _explained(served["usage"], served["usage"]["cost"])  # the pipeline's answer sums its calls
    _explained(_generation(world, record.generation_id), record.cost)
