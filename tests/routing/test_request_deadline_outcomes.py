"""What a request stopped by its deadline answers (``attempts.deadline_stop``): a pipeline's 502
or 408 from what happened, not from the time left; the step that was stopped named; paused
candidates not counted as tried (503); the "not tried" 408 in each ingress's shape; and a stream
cut by our deadline mid-body not held against its provider.

As in ``test_request_deadline``, ``CALL_MIN_SECONDS`` is raised to 3 s where a call must not be
started, and a fault's delay is a lower bound on a call's time: no assertion is on a duration.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from routerhub.errors import NoProviderAvailable
from routing.gateway import attempts, health
from tests.routing.servers import poll
from tests.routing.test_request_deadline import _candidates, _passed, _post, _settled
from tests.routing.world import World, base_catalog, endpoint, model

_HI = [{"role": "user", "content": "Say hi"}]


def _pipeline(world: World, kind: str, first: str) -> httpx.Response:
    """``pipeline/p`` of two steps, test/weak (at ``first``'s fault) then test/strong."""
    from accounts.models import KeyScope
    from tests.factories import key_client

    data = base_catalog(world.fake_url)
    data["models"] += [model("test/weak"), model("test/strong")]
    data["endpoints"] += [
        endpoint("test/weak", "fake-openai", f"gpt-4o-mini@{first}", "1", "2"),
        endpoint("test/strong", "fake-openai-b", "gpt-5", "5", "20"),
    ]
    world.catalog(data)
    steps: list[dict[str, Any]] = [{"model": "test/weak"}, {"model": "test/strong"}]
    if kind == "cascade":
        steps[0]["gate"] = {"type": "non_empty"}
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    created = admin.post("/api/v1/pipelines", {"slug": "p", "kind": kind, "steps": steps},
                         format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    return _post(world, "/v1/chat/completions", {"model": "pipeline/p", "messages": _HI})


def test_a_cascade_whose_step_failed_near_the_deadline_is_a_502(
    world: World, settings: Any, call_min: float
) -> None:
    """Step 1's endpoint fails (a 500) after 3.5 s of a 6 s deadline; step 2 is not called. Its
    failure was a 500, not a timeout: a 502 (chat's rule), saying step 2 was not called. Before,
    the 408 was chosen from the time left when the pipeline gave up."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 6.0

    response = _pipeline(world, "cascade", "status=500,delay=3500")

    assert response.status_code == 502, response.text
    assert response.json()["error"]["message"] == (
        "Every step of pipeline/p failed to answer. Step 2 (test/strong) of pipeline/p was"
        f" not called: {_passed(6.0, call_min)}."
    )


def test_a_series_step_stopped_by_the_deadline_is_named(
    world: World, settings: Any, call_min: float
) -> None:
    """Step 1 answers after 3.5 s of a 6 s deadline (billed); step 2 is not called. The 408 names
    step 2. Before, it said no step answered, though step 1 had and was billed."""
    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 6.0

    response = _pipeline(world, "series", "delay=3500")

    assert response.status_code == 408, response.text
    error = response.json()["error"]
    assert error["message"] == (
        f"Step 2 (test/strong) of pipeline/p was not called: {_passed(6.0, call_min)}."
    )
    assert _settled(error["metadata"]["generation_id"]).cost > 0  # step 1's answer


def test_only_paused_candidates_before_the_deadline_stop_is_a_503_with_retry_after(
    settings: Any,
) -> None:
    """The first candidate was skipped (its breaker open for 12 s), then the deadline stopped the
    second: nothing was tried, so it is the 503 of paused providers with ``Retry-After`` (the
    skip takes no time, so this is checked on ``deadline_stop`` itself). Before, a 408 "No
    provider was tried", which hid that the providers were paused."""
    settings.GATEWAY_TOTAL_TIMEOUT = 5.0
    ex = SimpleNamespace(
        req=SimpleNamespace(started=time.monotonic() - 10),
        plan=SimpleNamespace(candidates=[object(), object()]),
        attempts=[],
        skipped_for=[11.2],
        generation_id="gen-1",
    )

    error = attempts.deadline_stop(ex, 1)  # type: ignore[arg-type]

    assert isinstance(error, NoProviderAvailable)
    assert error.headers == {"Retry-After": "12"}
    assert error.message.endswith("1 more provider was not tried: " + _passed(5.0, 0.5) + ".")


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        (
            "/v1/messages",
            {"max_tokens": 50, "messages": _HI, "stream": True},
            {"type": "error", "error": {"type": "timeout_error"}},
        ),
        ("/v1/responses", {"input": "Say hi"}, {"error": {"type": "upstream_timeout"}}),
    ],
    ids=["messages-streamed", "responses"],
)
def test_not_tried_is_a_408_in_each_ingress_shape(
    world: World, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any], shape: Any
) -> None:
    """With more than the whole deadline needed to start a call, none is: each ingress answers
    the 408 "No provider was tried" in its own error shape (Anthropic's ``timeout_error``)."""
    monkeypatch.setattr(attempts, "CALL_MIN_SECONDS", 1000.0)
    _candidates(world, "", "")

    response = _post(world, path, {"model": "test/slow", **body})

    assert response.status_code == 408, response.text
    answer = response.json()
    assert answer["error"]["type"] == shape["error"]["type"]
    assert answer.get("type") == shape.get("type")
    assert answer["error"]["message"].startswith("No provider was tried: the request's deadline")
    assert world.upstream_requests("/v1") == []


def test_a_stream_cut_by_our_deadline_is_not_the_providers_failure(
    world: World, settings: Any
) -> None:
    """The provider sends two events and then nothing: our 3 s deadline cuts the stream. The
    SSE error says the deadline passed, and the provider's breaker (one failure opens it) stays
    closed. Before, it said "The provider failed mid-stream: TimeoutError" and paused it."""
    from routing.models import Endpoint

    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 3.0
    settings.GATEWAY_BREAKER_FAILURES = 1
    _candidates(world, "hang_after=2")
    body = {"model": "test/slow", "messages": _HI, "stream": True}

    response = _post(world, "/v1/chat/completions", body)

    assert response.status_code == 200
    assert (
        '"message":"The request\'s deadline (GATEWAY_TOTAL_TIMEOUT, 3 s) passed mid-stream."'
        in response.text
    ), response.text
    assert response.text.endswith("data: [DONE]\n\n")
    pk = Endpoint.objects.get(upstream_model="gpt-4o-mini@hang_after=2").pk
    assert health.breaker_open_for(pk) == 0
    poll(lambda: world.upstream_requests("/v1")[0]["disconnected"])


def test_a_judges_time_is_kept_from_branches_timed_to_the_whole_deadline(
    world: World, settings: Any, call_min: float
) -> None:
    """A parallel pipeline judged by a model, one branch never answering, ``branch_timeout_s``
    the whole 10 s deadline (as a stored spec may have): the branches are cut with twice
    CALL_MIN_SECONDS (6 s here) left, so the judge is still called and picks. Before, the
    branch ran to the deadline and the judge was never called (its record ``failed``)."""
    from accounts.models import KeyScope
    from billing.models import UsageStep
    from tests.factories import key_client

    settings.GATEWAY_FIRST_BYTE_TIMEOUT = 30.0
    settings.GATEWAY_TOTAL_TIMEOUT = 10.0
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/fast"), model("test/stuck"), model("test/judge")]
    data["endpoints"] += [
        endpoint("test/fast", "fake-openai", "gpt-4o-mini", "1", "2"),
        endpoint("test/stuck", "fake-openai-b", "gpt-4o@timeout", "3", "5"),
        endpoint("test/judge", "fake-openai-b", "gpt-5@reply=1", "5", "20"),
    ]
    world.catalog(data)
    spec = {"slug": "j", "kind": "parallel", "branch_timeout_s": 10,
            "steps": [{"model": "test/fast"}, {"model": "test/stuck"}],
            "aggregate": {"type": "judge", "model": "test/judge"}}  # fmt: skip
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    assert admin.post("/api/v1/pipelines", spec, format="json").status_code == 201

    response = _post(world, "/v1/chat/completions", {"model": "pipeline/j", "messages": _HI})

    assert response.status_code == 200, response.text
    generation_id = response.json()["id"]
    _settled(generation_id)
    judged = UsageStep.objects.get(generation_id=generation_id, model="test/judge")
    assert (judged.status, judged.gate) == ("succeeded", "judge")
