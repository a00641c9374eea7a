"""``/v1/completions`` with a list of prompts: what an endpoint answered is billed, whatever ends
the request — a refusal (4xx) of another prompt, every endpoint failing, or the client leaving —
and the client can see it (``metadata.generation_id``, ``x-generation-id``, the sentence saying
how many prompts were answered and billed).

The client leaving is driven deterministically: the gateway is served behind an ASGI wrapper
whose ``receive`` reports the client gone once a condition on the gateway's own event loop holds
(the provider calls still under way, ``attempts.attempt``), not after a delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from accounts.models import ApiKey
from billing.models import LedgerEntry, Reservation, UsageRecord
from routerhub.redis_clients import redis_client
from routing.gateway import limits
from routing.models import Provider
from routing.services import provider_key_create
from tests.conftest import require_redis
from tests.routing.servers import LeavesWhen, ServerThread, poll
from tests.routing.world import World, endpoint, model


def _multi(world: World, upstream: str, **prices: str) -> None:
    """``test/multi``: one endpoint at fake-openai (1 and 2 USD per 1M tokens), faults in
    ``upstream`` (``routing.fake_upstream.faults``)."""
    world.catalog(
        {
            "models": [model("test/multi")],
            "endpoints": [endpoint("test/multi", "fake-openai", upstream, "1", "2", **prices)],
        }
    )


def _own_key(world: World, base_url: str = "") -> None:
    """The organization's own fake-openai key (to its own host at ``base_url``, if given):
    called instead of the platform's."""
    provider = Provider.objects.get(slug="fake-openai")
    provider_key_create(
        organization=world.organization, provider=provider, secret="sk-own-9999", base_url=base_url
    )


def _asked_alone(world: World, prompts: list[str]) -> list[UsageRecord]:
    """The records of ``prompts`` asked one by one: what their answers are billed."""
    client = world.openai_client()
    return [
        world.usage_record(client.completions.create(model="test/multi", prompt=p).id)
        for p in prompts
    ]


def _error_of(
    world: World, kind: type[openai.APIStatusError], prompts: list[str]
) -> tuple[dict[str, Any], openai.APIStatusError]:
    """The error body (and the error) of asking ``prompts`` in one request, which fails ``kind``."""
    with pytest.raises(kind) as raised:
        world.openai_client().completions.create(model="test/multi", prompt=prompts)
    error = raised.value.body
    assert isinstance(error, dict)
    return error, raised.value


def _assert_settled(record: UsageRecord) -> None:
    (entry,) = LedgerEntry.objects.filter(idempotency_key=f"usage:{record.generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=record.generation_id).state == "settled"
    assert UsageRecord.objects.filter(generation_id=record.generation_id).count() == 1


@pytest.mark.parametrize(
    ("upstream", "prompts"),
    [
        # The refusal comes last: the other answers are in when it does.
        ("gpt-4o-mini@status=400,delay=300,when=BOOM", ["Say hi", "BOOM now", "Say bye"]),
        # The refusal comes first, while the other calls are at the provider (before, they were
        # cancelled and billed nothing: the charge depended on which answer came first).
        (
            "gpt-4o-mini@status=400,when=BOOM|delay=300",
            ["BOOM now", "Say hi", "Say bye", "Tell me about tea"],
        ),
    ],
    ids=["refused_last", "refused_first"],
)
def test_a_refused_prompt_bills_every_answer_the_others_got_and_the_400_says_so(
    world: World, upstream: str, prompts: list[str]
) -> None:
    _multi(world, upstream)
    error, raised = _error_of(world, openai.BadRequestError, prompts)
    answered = [p for p in prompts if "BOOM" not in p]
    assert (
        f"{len(answered)} of {len(prompts)} prompts were answered by fake-openai (test/multi)"
        " and are billed" in error["message"]
    )
    generation_id = error["metadata"]["generation_id"]
    assert raised.response.headers["x-generation-id"] == generation_id
    record = world.usage_record(generation_id)
    alone = _asked_alone(world, answered)
    assert (record.status, record.error_type, record.provider) == (
        "failed", "bad_request", "fake-openai",
    )  # fmt: skip
    assert record.cost == sum(r.cost for r in alone) > 0
    assert record.completion_tokens == sum(r.completion_tokens for r in alone)
    (entry,) = record.trace_data["fallbacks"]
    assert entry["answered"] == f"{len(answered)} of {len(prompts)} prompts"
    assert Decimal(entry["billed"]["cost"]) == record.cost
    _assert_settled(record)


def test_a_refusal_after_a_fallback_names_the_answers_of_every_endpoint_billed(
    world: World,
) -> None:
    """One endpoint fails "BOOM now" (a 500), the next refuses it (a 400): each one's answer to
    "Say hi" is billed at its price, in its own trace entry, and the 400 says both."""
    world.catalog(
        {
            "models": [model("test/multi")],
            "endpoints": [
                endpoint("test/multi", "fake-openai", "gpt-4o-mini@status=500,when=BOOM", "1", "2"),
                endpoint(
                    "test/multi", "fake-openai-b", "gpt-4o@status=400,delay=300,when=BOOM", "3", "5"
                ),
            ],
        }
    )
    error, _ = _error_of(world, openai.BadRequestError, ["Say hi", "BOOM now"])
    for provider in ("fake-openai", "fake-openai-b"):
        assert f"1 of 2 prompts were answered by {provider} (test/multi)" in error["message"]
    record = world.usage_record(error["metadata"]["generation_id"])
    first, second = record.trace_data["fallbacks"]
    assert (first["error"], second["error"]) == ("status_500", "refused")
    assert first["answered"] == second["answered"] == "1 of 2 prompts"
    assert record.cost == Decimal(first["billed"]["cost"]) + Decimal(second["billed"]["cost"])
    assert Decimal(first["billed"]["cost"]) < Decimal(second["billed"]["cost"])  # 1+2 < 3+5
    _assert_settled(record)


def test_a_refusal_beside_a_timed_out_prompt_has_its_own_entry_and_says_both_charges(
    world: World, settings
) -> None:  # type: ignore[no-untyped-def]
    """The prompt "BOOM now" is refused while "HANG on" times out at the same endpoint: the answer to
    "Say hi" is shown in the refusal's own entry (before, in the timed-out prompt's, and no
    ``refused`` entry), and the 400 says the timed-out prompt is billed too (before, it said only
    the answer was, though the charge had both)."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 0.5
    _multi(world, "gpt-4o-mini@status=400,when=BOOM|timeout,when=HANG")
    error, _ = _error_of(world, openai.BadRequestError, ["Say hi", "BOOM now", "HANG on"])
    assert "1 of 3 prompts were answered by fake-openai (test/multi)" in error["message"]
    assert (
        "1 prompt sent to fake-openai (test/multi) timed out unanswered and is billed"
        in error["message"]
    )
    record = world.usage_record(error["metadata"]["generation_id"])
    timed_out, refused = record.trace_data["fallbacks"]
    assert (timed_out["error"], refused["error"]) == ("timeout", "refused")
    assert "answered" not in timed_out and refused["answered"] == "1 of 3 prompts"
    (say_hi,) = _asked_alone(world, ["Say hi"])
    assert Decimal(refused["billed"]["cost"]) == say_hi.cost
    assert Decimal(timed_out["billed"]["cost"]) > 0
    assert record.cost == say_hi.cost + Decimal(timed_out["billed"]["cost"])
    assert record.prompt_tokens == say_hi.prompt_tokens + timed_out["billed"]["prompt_tokens"]
    _assert_settled(record)


@pytest.mark.parametrize("own", ["key", "host"])
def test_answers_an_own_key_gave_before_every_candidate_failed_are_billed_as_byok(
    world: World, settings: Any, own: str
) -> None:
    """The record made of discarded answers alone says whose key answered and what was cached,
    as the same prompts asked one by one do (the organization's key replaces the platform's).
    Its own host's cache reads are priced as prompt, as its answers' are (``metering.price``'s
    ``own_host``; before, the discarded ones at the cached price: a tenth)."""
    settings.ALLOW_PRIVATE_PROVIDER_URLS = True  # the "own host" is the local fake upstream
    _own_key(world, f"{world.fake_url}/v1" if own == "host" else "")
    _multi(world, "gpt-4o-mini@status=500,when=BOOM|cached=4", cached_input="0.1")
    error, _ = _error_of(world, openai.InternalServerError, ["Say hi", "BOOM now", "Say bye"])
    record = world.usage_record(error["metadata"]["generation_id"])
    alone = _asked_alone(world, ["Say hi", "Say bye"])
    assert all(r.is_byok and r.cached_tokens == 4 for r in alone)
    assert (record.status, record.is_byok) == ("failed", True)
    assert record.cached_tokens == 8
    assert record.cost == sum(r.cost for r in alone) > 0
    _assert_settled(record)


def _calls_under_way() -> int:
    """Provider calls of a list of prompts (each ``attempts.attempt`` in its own task) under way
    on the running loop."""
    return sum(1 for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "attempt")


def _leave_once(
    world: World,
    leaving: tuple[ServerThread, LeavesWhen],
    prompts: list[str],
    gone: Callable[[], bool],
    *,
    cancels: bool = False,
    key: str = "",
) -> UsageRecord:
    """POST ``prompts`` (with ``key``, or the world's), leave (or cancel the handler) once
    ``gone()`` holds, and return the request's usage record."""
    server, app = leaving
    app.gone, app.cancels = gone, cancels
    before = set(UsageRecord.objects.values_list("generation_id", flat=True))
    answer = httpx.post(
        f"{server.url}/v1/completions",
        headers={"Authorization": f"Bearer {key or world.key}"},
        json={"model": "test/multi", "prompt": prompts},
        timeout=30,
    )
    assert answer.status_code == 499  # the gateway answered nobody
    return poll(lambda: UsageRecord.objects.exclude(generation_id__in=before).first())


@pytest.mark.parametrize("stopped_by", ["client_disconnected", "server_cancelled"])
def test_a_request_stopped_mid_candidate_is_billed_the_answers_that_came_and_the_prompt_sent(
    world: World, settings, leaving: tuple[ServerThread, LeavesWhen], stopped_by: str
) -> None:  # type: ignore[no-untyped-def]
    """The client leaves (or the server cancels the request's handler: its shutdown, a deadline
    of its own) with "Say hi" answered and "BOOM now" at the provider: billed the answer at its
    reported usage plus the sent prompt's estimate, the same whoever stopped it. Before, both were
    billed as merely sent (their prompts estimated, the answer's completion tokens unbilled); then
    the answer's cost was billed but not its tokens (the record's tokens did not explain its
    cost); a cancelled handler first billed 0 (the record settled before the work said what was
    answered), then the answer but not the prompt the provider still had."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # "BOOM now" is under way until the client leaves
    _multi(world, "gpt-4o-mini@timeout,when=BOOM")
    sent = world.upstream_requests
    # The prompt alone, left once the provider has it: what its prompt is billed.
    left_one = _leave_once(world, leaving, ["BOOM now"], lambda: len(sent("/v1/")) == 1)
    world.fake.requests.clear()
    record = _leave_once(
        world,
        leaving,
        ["Say hi", "BOOM now"],
        lambda: len(sent("/v1/")) == 2 and _calls_under_way() == 1,  # "Say hi" answered
        cancels=stopped_by == "server_cancelled",
    )

    (say_hi,) = _asked_alone(world, ["Say hi"])
    assert (record.status, record.error_type) == ("aborted", stopped_by)
    assert (record.prompt_tokens, record.completion_tokens) == (
        left_one.prompt_tokens + say_hi.prompt_tokens, say_hi.completion_tokens,
    )  # fmt: skip
    assert say_hi.completion_tokens > 0
    assert record.cost == say_hi.cost + left_one.cost and left_one.cost > 0
    (entry,) = record.trace_data["fallbacks"]
    assert (entry["error"], entry["answered"]) == (stopped_by, "1 of 2 prompts")
    assert (Decimal(entry["billed"]["cost"]), entry["billed"]["completion_tokens"]) == (
        say_hi.cost, say_hi.completion_tokens,
    )  # fmt: skip
    _assert_settled(record)


def _tpm_counted(key: ApiKey, redis_url: str) -> int:
    """The tokens counted against ``key``'s tpm in every window: what Redis leased to this
    process, less what its leases have not spent (negative: spent beyond them, still to lease)."""
    client = redis_client(redis_url)
    try:
        pattern = f"rh:{{tree*}}:rl:{key.pk}:*:t"  # the key's own bucket in each window
        leased = sum(int(client.get(k) or 0) for k in client.keys(pattern))
    finally:
        client.close()
    unspent = sum(
        lease.tokens
        for (tag, _), lease in list(limits._leases.items())
        if f"}}:rl:{key.pk}:" in tag  # the key's own bucket: {tree<id>}:rl:<id>:<prefix>
    )
    return leased - unspent


def test_a_list_stopped_midway_counts_its_tokens_once_against_the_keys_tpm(
    world: World, settings, leaving: tuple[ServerThread, LeavesWhen]
) -> None:  # type: ignore[no-untyped-def]
    """The client leaves with "Say hi" answered and "BOOM now" at the provider: the key's tpm
    counts the request's tokens once — both prompts' estimates at admission, then what the record
    has beyond them. Before, the correction after the request took away only the estimate of the
    prompt still sent (``_prompts_sent`` had lowered it), counting "Say hi" twice."""
    if not world.redis_url:
        require_redis()
    settings.REDIS_URL = world.redis_url  # the counters every worker shares
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # "BOOM now" is under way until the client leaves
    _multi(world, "gpt-4o-mini@timeout,when=BOOM")
    plaintext = world.key_for(tpm=10_000_000)
    key = ApiKey.objects.filter(organization=world.organization).latest("pk")  # that one
    sent = world.upstream_requests
    record = _leave_once(
        world,
        leaving,
        ["Say hi " * 40, "BOOM now"],
        lambda: len(sent("/v1/")) == 2 and _calls_under_way() == 1,  # "Say hi" answered
        key=plaintext,
    )
    assert record.completion_tokens > 0 and "usage_estimated" in record.flag_list
    assert _tpm_counted(key, world.redis_url) == record.prompt_tokens + record.completion_tokens


def _two_candidates(world: World, first: str, second: str) -> None:
    """``test/multi`` at fake-openai (``first``, 1 and 2 USD per 1M tokens) then fake-openai-b
    (``second``, 3 and 5), each upstream model telling the fake how to fail."""
    world.catalog(
        {
            "models": [model("test/multi")],
            "endpoints": [
                endpoint("test/multi", "fake-openai", first, "1", "2"),
                endpoint("test/multi", "fake-openai-b", second, "3", "5"),
            ],
        }
    )


def _calls_to(world: World, upstream_model: str) -> dict[str, dict[str, Any]]:
    """The fake upstream's log of the calls to ``upstream_model``, by the prompt they asked."""
    return {
        r["body"]["messages"][-1]["content"]: r
        for r in world.upstream_requests("/v1/")
        if r.get("model") == upstream_model
    }


def test_candidates_share_one_deadline_for_a_slow_prompt(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    """Both endpoints stall on "SLOW down": the first has it until the request's deadline
    (``GATEWAY_TOTAL_TIMEOUT``), then there is no time left for the second, which is never
    called. Before, each endpoint had a whole GATEWAY_TOTAL_TIMEOUT of its own: the second got
    both prompts, and the request took the timeout twice."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0  # only the request's total deadline cuts "SLOW"
    settings.GATEWAY_TOTAL_TIMEOUT = 1.5
    _two_candidates(world, "gpt-4o-mini@timeout,when=SLOW", "gpt-4o@timeout,when=SLOW")

    error, raised = _error_of(world, openai.APIStatusError, ["Say hi", "SLOW down"])

    assert raised.status_code == 408
    assert _calls_to(world, "gpt-4o") == {}  # the second endpoint was never called
    assert (
        "1 more provider was not tried: the request's deadline (GATEWAY_TOTAL_TIMEOUT, 1.5 s)"
        " had passed (or was under 0.5 s away)." in error["message"]
    )  # before, it did not say so
    assert _calls_to(world, "gpt-4o-mini")["Say hi"]["completed"]
    # The fake sees the gateway hang up on its own loop, perhaps after the 408 came: wait for it.
    poll(lambda: _calls_to(world, "gpt-4o-mini")["SLOW down"]["disconnected"])
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.error_type) == ("failed", "upstream_timeout")
    (entry,) = record.trace_data["fallbacks"]
    assert (entry["provider"], entry["error"], entry["answered"]) == (
        "fake-openai", "timeout", "1 of 2 prompts",
    )  # fmt: skip
    (say_hi,) = _asked_alone(world, ["Say hi"])
    assert record.cost == Decimal(entry["billed"]["cost"]) > say_hi.cost  # the answer + "SLOW"
    assert record.prompt_tokens == entry["billed"]["prompt_tokens"] > say_hi.prompt_tokens
    _assert_settled(record)


def test_a_deadline_passed_before_any_provider_is_tried_says_so(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    """The request's deadline has passed once it is planned and held: no provider is called, and
    the error is a 408 that says why. Before, it was a 503 saying every provider was paused."""
    settings.GATEWAY_TOTAL_TIMEOUT = 1e-6  # over before the hold is taken
    _two_candidates(world, "gpt-4o-mini", "gpt-4o")

    error, raised = _error_of(world, openai.APIStatusError, ["Say hi", "Say bye"])

    assert raised.status_code == 408, error
    assert error["message"].startswith(
        "No provider was tried: the request's deadline (GATEWAY_TOTAL_TIMEOUT, 1e-06 s)"
        " had passed (or was under 0.5 s away)."
    )
    assert "paused" not in error["message"] and "retry-after" not in raised.response.headers
    assert world.upstream_requests("/v1/") == []
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.cost, record.prompt_tokens) == ("failed", 0, 0)
    assert Reservation.objects.get(generation_id=record.generation_id).state != "held"


def test_a_refusal_after_a_fallback_comes_by_the_requests_deadline(world: World, settings) -> None:  # type: ignore[no-untyped-def]
    """The first endpoint fails "BOOM now" (a 500) and answers "SLOW down" late; the second
    refuses "BOOM now" (a 400) and would answer "SLOW down" later still, past the request's
    deadline: the refusal comes then, "SLOW down" cut at the second endpoint and billed its
    prompt, every answer given billed once. Before, the second endpoint had a whole
    GATEWAY_TOTAL_TIMEOUT of its own: the refusal waited for its late answer."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = (
        2.5  # the first endpoint ends after 1 s, the second's would at 3
    )
    _two_candidates(
        world,
        "gpt-4o-mini@status=500,when=BOOM|delay=1000,when=SLOW",
        "gpt-4o@status=400,when=BOOM|delay=2000,when=SLOW",
    )

    error, _ = _error_of(world, openai.BadRequestError, ["Say hi", "SLOW down", "BOOM now"])

    assert "2 of 3 prompts were answered by fake-openai (test/multi)" in error["message"]
    assert "1 of 3 prompts were answered by fake-openai-b (test/multi)" in error["message"]
    assert (
        "1 prompt sent to fake-openai-b (test/multi) timed out unanswered and is billed"
        in error["message"]
    )
    assert _calls_to(world, "gpt-4o-mini")["SLOW down"]["completed"]
    poll(lambda: _calls_to(world, "gpt-4o")["SLOW down"]["disconnected"])
    assert not _calls_to(world, "gpt-4o")["SLOW down"]["completed"]
    record = world.usage_record(error["metadata"]["generation_id"])
    billed = {(e["provider"], e["error"]): e["billed"] for e in record.trace_data["fallbacks"]}
    assert set(billed) == {
        ("fake-openai", "status_500"), ("fake-openai-b", "timeout"), ("fake-openai-b", "refused"),
    }  # fmt: skip
    assert "completion_tokens" not in billed["fake-openai-b", "timeout"]  # a prompt, estimated
    assert record.cost == sum(Decimal(b["cost"]) for b in billed.values())
    assert record.prompt_tokens == sum(b["prompt_tokens"] for b in billed.values())
    _assert_settled(record)
