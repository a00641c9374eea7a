"""Prompt-cache writes (Anthropic's ``cache_creation_input_tokens``) are kept apart on the usage
record and shown apart wherever a request's usage is shown: the generation API, the CSV
export, the dashboard's request log and generation page, a pipeline's usage, and the Responses
API's ``input_tokens_details``."""

from __future__ import annotations

import csv
import io

from accounts.models import KeyScope, Role
from routing.gateway.responses_answer import response_from_chat
from tests.factories import dashboard_client, key_client, member_add
from tests.routing.test_prompt_caching import long_context, marked_request
from tests.routing.world import World


def test_cache_writes_are_their_own_column_and_are_shown_apart(world: World) -> None:
    request = marked_request(long_context())
    first = world.anthropic_client().messages.create(**request)
    second = world.anthropic_client().messages.create(**request)

    written = first.usage.cache_creation_input_tokens
    assert written and written > 1000
    record, later = world.usage_record(first.id), world.usage_record(second.id)
    assert (record.cache_write_tokens, record.cached_tokens) == (
        written,
        first.usage.cache_read_input_tokens,
    )
    assert (later.cache_write_tokens, later.cached_tokens) == (
        0,
        second.usage.cache_read_input_tokens,
    )
    assert later.cached_tokens >= written  # what the first call wrote, the second read
    reads = first.usage.cache_read_input_tokens
    assert record.prompt_tokens == first.usage.input_tokens + reads + written

    shown = key_client(world.key).get(f"/api/v1/generation?id={first.id}").json()
    assert (shown["cache_write_tokens"], shown["cached_tokens"]) == (written, reads)
    manage = key_client(world.key_for(scope=KeyScope.MANAGE))
    rows = csv.DictReader(io.StringIO(manage.get("/api/v1/usage/export.csv").getvalue().decode()))
    exported = {row["id"]: row for row in rows}
    assert exported[first.id]["cache_write_tokens"] == str(written)
    assert exported[second.id]["cache_write_tokens"] == "0"
    groups = manage.get("/api/v1/usage?group_by=model").json()["results"]
    claude = next(group for group in groups if group["group"] == "test/claude")
    assert claude["cache_write_tokens"] == written  # the second call read, it did not write


def test_the_dashboard_shows_cache_writes_apart(world: World) -> None:
    owner = member_add(world.organization, Role.OWNER)
    owner_client = dashboard_client(owner, world.organization)
    first = world.anthropic_client().messages.create(**marked_request(long_context()))
    written = first.usage.cache_creation_input_tokens
    record = world.usage_record(first.id)

    page = owner_client.get(f"/dashboard/generations/{first.id}/").content.decode()
    read = record.cached_tokens
    assert f"{read} / {written} / 0" in page  # cache read / cache write / reasoning
    log = owner_client.get("/dashboard/usage/").content.decode()
    assert f"{written} cache write, {read} cache read" in log
    assert f'<td class="num by-model-cache-writes">{written}</td>' in log


def _pipeline(world: World, slug: str) -> None:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    steps = [{"model": "test/claude"}]
    created = admin.post(
        "/api/v1/pipelines", {"slug": slug, "kind": "cascade", "steps": steps}, format="json"
    )
    assert created.status_code == 201, created.content


def test_a_pipeline_keeps_its_calls_cache_writes_apart(world: World) -> None:
    _pipeline(world, "cached")

    answer = world.anthropic_client().messages.create(
        **marked_request(long_context()) | {"model": "pipeline/cached"}
    )

    written = answer.usage.cache_creation_input_tokens
    assert written and written > 1000
    assert world.usage_record(answer.id).cache_write_tokens == written
    assert answer.usage.cache_creation.ephemeral_1h_input_tokens == 0


def test_a_pipeline_shows_its_calls_hour_long_cache_writes(world: World) -> None:
    _pipeline(world, "hour")
    request = marked_request(long_context(), "1h") | {"model": "pipeline/hour"}
    del request["tools"]  # a tool cached for an hour would be read by the session's later tests
    answer = world.anthropic_client().messages.create(**request)
    written = answer.usage.cache_creation_input_tokens
    hour = answer.usage.cache_creation.ephemeral_1h_input_tokens
    assert hour > 1000  # the system prompt, marked for an hour
    assert hour + answer.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert world.usage_record(answer.id).cache_write_tokens == written


def test_responses_usage_keeps_openai_reads_and_adds_writes_apart() -> None:
    chat = {
        "id": "gen-1",
        "created": 0,
        "model": "test/claude",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 3010,
            "completion_tokens": 5,
            "total_tokens": 3015,
            "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 3000},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    usage = response_from_chat(chat, {"model": "test/claude"})["usage"]
    assert usage["input_tokens"] == 3010  # OpenAI's contract: reads and writes are input tokens
    assert usage["input_tokens_details"] == {"cached_tokens": 10, "cache_write_tokens": 3000}
