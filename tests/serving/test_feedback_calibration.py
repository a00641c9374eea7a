"""Online learning from feedback: per-model biases of the serving router version, bounded per
sender. 1,000 adversarial feedback events from one key move a bias no further than
W / (W + K), and decisions only where their utility margin is below it; feedback from many keys
moves it to the bound B; the generation page's and the playground's buttons send feedback."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from accounts.models import ApiKey, Membership, Role
from billing.models import UsageRecord
from routing.calibration import calibration_bias
from routing.feedback import feedback_record
from routing.models import Feedback
from routing.routers import router_cache_clear, router_decide, router_row
from tests.factories import dashboard_client, key_client, key_make
from tests.routing.world import World
from tests.serving.test_router_serving import DEAR, MATH_PROMPT, PROSE_PROMPT, chat, train_router
from training.serving import predictor_for_version

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

PROMPTS = [
    PROSE_PROMPT,
    MATH_PROMPT,
    "Write a haiku about the sea at night.",
    "What is 12 * 7 - 5?",
    "Describe a quiet morning in a small town, in three sentences.",
]
TRADEOFFS = [i / 20 for i in range(21)]


def copies_of(record: UsageRecord, n: int, tag: str, key_id: int | None = None) -> list[str]:
    """``n`` usage records like ``record`` (served by the same router version and model; by the
    key ``key_id`` when given: an inference key rates only what it served)."""
    fields = {f.attname: getattr(record, f.attname) for f in UsageRecord._meta.concrete_fields}
    fields.pop("id")
    if key_id is not None:
        fields["key_id"] = key_id
    rows = [UsageRecord(**(fields | {"generation_id": f"gen-{tag}-{i}"})) for i in range(n)]
    UsageRecord.objects.bulk_create(rows)
    return [row.generation_id for row in rows]


def sweep(organization_id: int) -> tuple[list[str], list[float]]:
    """The model each (prompt, tradeoff) is routed to, and the top two utilities' margin."""
    router_cache_clear()
    row = router_row(organization_id, "support")
    assert row is not None and row.version is not None
    predictor = predictor_for_version(row.version)
    chosen, margins = [], []
    for prompt in PROMPTS:
        for tradeoff in TRADEOFFS:
            decision = router_decide(organization_id=organization_id, model_id="router/support",
                                     prompt=prompt, tradeoff=tradeoff, candidates=None,
                                     catalog=None, row=row)  # fmt: skip
            chosen.append(decision.chosen)
            ranked = predictor.rank(prompt, tradeoff, list(row.candidates))
            margins.append(ranked[0].utility - ranked[1].utility)
    return chosen, margins


def flipped(before: list[str], after: list[str]) -> list[int]:
    return [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]


def post_bad(client: Any, generation_id: str) -> None:
    response = client.post("/api/v1/feedback", {"generation_id": generation_id, "score": False},
                           format="json")  # fmt: skip
    assert response.status_code == 201, response.json()


def test_one_key_cannot_swing_routing_and_many_keys_can(world: World) -> None:
    train_router(world)
    served = chat(world, PROSE_PROMPT, extra_body={"router": {"tradeoff": 0}})
    record = world.usage_record(served.id)
    assert record.model == DEAR
    predicted = next(
        r["score"] for r in record.trace_data["routing"]["ranked"] if r["model"] == DEAR
    )
    w, k, b = (settings.FEEDBACK_CALIBRATION_DAILY_WEIGHT, settings.FEEDBACK_CALIBRATION_PRIOR_WEIGHT,
               settings.FEEDBACK_CALIBRATION_MAX_BIAS)  # fmt: skip
    one_key_bound = w / (w + k)
    assert one_key_bound < b  # so the per-key cap, not the clip, is what the first half tests
    before, margins = sweep(world.organization.pk)

    adversary = key_client(world.key)
    key_id = ApiKey.objects.get(prefix=world.key[:16]).pk
    burst = copies_of(record, 1000, "adversary")
    for generation_id in burst[:20]:  # through the API; the rest through the same service call
        post_bad(adversary, generation_id)
    for generation_id in burst[20:]:
        feedback_record(organization_id=world.organization.pk, generation_id=generation_id,
                        score=0.0, key_id=key_id)  # fmt: skip

    bias = calibration_bias(record.router_id, record.router_version)[DEAR]
    assert bias == pytest.approx(w * max(-1.0, -predicted) / (w + k))
    assert -one_key_bound <= bias < 0
    after_one, _ = sweep(world.organization.pk)
    moved_by_one = flipped(before, after_one)
    assert all(margins[i] <= -bias + 1e-9 for i in moved_by_one)
    assert Feedback.objects.filter(calibration_weight__gt=0).count() == w  # the rest weigh 0

    for i in range(25):  # each key of the crowd rates a request it served
        plaintext = key_make(world.organization)
        crowd_key = ApiKey.objects.get(prefix=plaintext[:16]).pk
        post_bad(key_client(plaintext), copies_of(record, 1, f"crowd-{i}", crowd_key)[0])

    crowd_bias = calibration_bias(record.router_id, record.router_version)[DEAR]
    assert crowd_bias == pytest.approx(-b)
    after_many, _ = sweep(world.organization.pk)
    moved_by_many = flipped(before, after_many)
    assert len(moved_by_many) > len(moved_by_one)
    assert all(margins[i] <= b + 1e-9 for i in moved_by_many)
    routed = chat(world, PROSE_PROMPT, extra_body={"router": {"tradeoff": 0}})
    dear = next(r for r in routed.model_extra["routing"]["ranked"] if r["model"] == DEAR)
    assert dear["bias"] == pytest.approx(-b)


def test_the_generation_page_and_playground_buttons_send_feedback_and_the_last_word_counts(
    world: World,
) -> None:
    train_router(world)
    record = world.usage_record(chat(world, PROSE_PROMPT).id)
    owner = Membership.objects.get(organization=world.organization, role=Role.OWNER).user
    browser = dashboard_client(owner, world.organization)
    page = browser.get(f"/dashboard/generations/{record.generation_id}/")
    assert b'id="gen-feedback-good"' in page.content

    from_page = browser.post(f"/dashboard/feedback/{record.generation_id}", {"score": "bad"})
    from_playground = browser.post(f"/dashboard/feedback/{record.generation_id}", {"score": "good"},
                                   HTTP_ACCEPT="application/json")  # fmt: skip
    nonsense = browser.post(f"/dashboard/feedback/{record.generation_id}", {"score": "meh"})

    assert from_page.status_code == 302
    assert from_playground.json() == {"generation_id": record.generation_id, "score": 1.0}
    assert nonsense.status_code == 400
    feedback = Feedback.objects.get(usage_id=record.generation_id)
    assert feedback.key_id is None and feedback.score == 1 and feedback.calibration_weight == 1
    # The thumbs-down was taken back when the thumbs-up replaced it: only the last word counts.
    bias = calibration_bias(record.router_id, record.router_version)
    assert bias[record.model] > 0
    assert calibration_bias(record.router_id, record.router_version + 1) == {}  # a retrain resets
