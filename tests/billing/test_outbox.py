"""The usage outbox: drafts are settled in batches by a background settler, and a draft left
behind by a dead process is claimed and settled exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from decimal import Decimal

import orjson
from asgiref.sync import sync_to_async

from billing import metering
from billing.drafts import UsageDraft
from billing.models import CreditAccount, LedgerEntry, UsageRecord
from billing.outbox import (
    BATCH_SIZE,
    GROUP,
    SETTLER_PAUSE_S,
    SETTLER_PAUSE_SHORT_S,
    SETTLER_SMALL_BATCH,
    STREAM,
    usage_outbox_drain,
    usage_outbox_flush,
    usage_record_async,
    usage_settler_run,
)
from billing.outbox_entries import DEAD_STREAM
from billing.services import ReservationRequest, credits_reserve
from tests.routing.servers import SETTLE_TIMEOUT


def _draft(organization, generation_id: str, cost: str = "0.25") -> UsageDraft:
    return UsageDraft(
        generation_id=generation_id,
        organization_id=organization.pk,
        key_id=None,
        status="succeeded",
        cost=Decimal(cost),
        model="demo/small",
    )


def test_drafts_are_settled_in_the_background_and_leave_the_stream(redis_client, funded):
    ids = [f"gen-bg-{i}" for i in range(20)]
    for generation_id in ids:
        credits_reserve(
            ReservationRequest(
                organization_id=funded.pk, generation_id=generation_id, amount=Decimal("0.3")
            )
        )

    async def serve_and_wait() -> None:
        for generation_id in ids:
            await usage_record_async(_draft(funded, generation_id))
        settled = sync_to_async(UsageRecord.objects.filter(generation_id__in=ids).count)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while await settled() < len(ids):
            assert time.monotonic() < deadline, "drafts were not settled in time"
            await asyncio.sleep(0.02)
        await usage_outbox_flush()

    asyncio.run(serve_and_wait())

    account = CreditAccount.objects.get(organization=funded)
    assert account.balance == Decimal("5") and account.reserved == 0
    assert LedgerEntry.objects.filter(kind="usage", organization=funded).count() == 20
    assert redis_client.xlen(STREAM) == 0


def test_a_draft_left_by_a_dead_process_is_claimed_and_settled_once(redis_client, funded):
    credits_reserve(
        ReservationRequest(
            organization_id=funded.pk, generation_id="gen-orphan", amount=Decimal("0.5")
        )
    )
    with contextlib.suppress(Exception):  # the group may exist already
        redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    redis_client.xadd(STREAM, {"d": orjson.dumps(_draft(funded, "gen-orphan").to_json())})
    # A gateway process read it, then died before settling and acknowledging it.
    assert redis_client.xreadgroup(GROUP, "dead-process", {STREAM: ">"}, count=10)

    first = usage_outbox_drain(idle_ms=0)
    again = usage_outbox_drain(idle_ms=0)

    assert (first, again) == (1, 0)
    assert UsageRecord.objects.filter(generation_id="gen-orphan").count() == 1
    assert LedgerEntry.objects.filter(idempotency_key="usage:gen-orphan").count() == 1
    assert CreditAccount.objects.get(organization=funded).reserved == 0
    assert redis_client.xlen(STREAM) == 0


def _poisoned_stream(redis_client, funded) -> list[str]:
    """Good drafts around two the database must refuse and one that is not a draft at all."""
    good = [f"gen-good-{i}" for i in range(4)]
    with contextlib.suppress(Exception):
        redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    ghost = UsageDraft(generation_id="gen-ghost-org", organization_id=987654, key_id=None,
                       status="succeeded", cost=Decimal("0.1"))  # fmt: skip
    too_long = _draft(funded, "gen-too-long")
    too_long.model = "m" * 500  # longer than the column
    payloads = [
        orjson.dumps(_draft(funded, good[0]).to_json()),
        orjson.dumps(ghost.to_json()),
        orjson.dumps(_draft(funded, good[1]).to_json()),
        b"{not json",
        orjson.dumps(too_long.to_json()),
        orjson.dumps(_draft(funded, good[2]).to_json()),
        orjson.dumps(_draft(funded, good[3]).to_json()),
    ]
    for payload in payloads:
        redis_client.xadd(STREAM, {"d": payload})
    return good


def _assert_poison_set_aside(redis_client, funded, good: list[str]) -> None:
    records = set(UsageRecord.objects.values_list("generation_id", flat=True))
    assert records == set(good)
    assert CreditAccount.objects.get(organization=funded).balance == Decimal("9")
    dead = redis_client.xrange(DEAD_STREAM)
    reasons = sorted(fields[b"error"].decode().split(":")[0] for _, fields in dead)
    assert reasons == ["DataError", "IntegrityError", "JSONDecodeError"], reasons
    assert redis_client.xlen(STREAM) == 0


def test_a_draft_the_database_refuses_is_set_aside_and_never_blocks_the_rest(
    redis_client, funded, caplog
):
    good = _poisoned_stream(redis_client, funded)

    handled = usage_outbox_drain(idle_ms=0)

    assert handled == 7
    _assert_poison_set_aside(redis_client, funded, good)
    assert "gen-ghost-org cannot be settled (IntegrityError)" in caplog.text
    assert "m" * 50 not in caplog.text  # the refused value itself is never logged


def test_the_background_settler_sets_poison_aside_and_keeps_settling(redis_client, funded):
    good = _poisoned_stream(redis_client, funded)
    stop = threading.Event()
    settler = threading.Thread(target=usage_settler_run, args=(stop,), daemon=True)
    settler.start()
    try:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while UsageRecord.objects.count() < len(good) or redis_client.xlen(STREAM):
            assert time.monotonic() < deadline, "the settler stalled behind a refused draft"
            time.sleep(0.05)
    finally:
        stop.set()
        settler.join(SETTLE_TIMEOUT)
    assert not settler.is_alive()
    _assert_poison_set_aside(redis_client, funded, good)
    pending = redis_client.xpending(STREAM, GROUP)["pending"]
    assert pending == 0


class _ScriptedStop(threading.Event):
    """The settler's stop event, scripted: each pause the settler takes (``stop.wait``) is
    recorded and hands the stream its next batch of drafts; after the last batch, the event is
    set and the settler stops."""

    def __init__(self, redis_client, batches: list[list[bytes]]) -> None:
        super().__init__()
        self.client, self.batches, self.pauses = redis_client, batches, []

    def feed(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for payload in self.batches.pop(0):
            pipe.xadd(STREAM, {"d": payload})
        pipe.execute()

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        if self.batches:
            self.feed()
        else:
            self.set()
        return self.is_set()


def test_the_settler_pauses_briefly_after_a_small_batch_and_longer_after_a_large_one(
    redis_client, funded
):
    """Light traffic: a short pause, so each batch is a short burst beside the requests; busy:
    a longer one, so a batch's fixed cost is shared by more drafts; a full batch: none (README,
    "Issue 21"). The last batch is one draft past a full batch: read as a full batch, then one."""
    sizes = [1, SETTLER_SMALL_BATCH - 1, SETTLER_SMALL_BATCH, 100, BATCH_SIZE + 1]
    payloads = iter([orjson.dumps(_draft(funded, f"gen-pause-{n}", "0.01").to_json())
                     for n in range(sum(sizes))])  # fmt: skip
    batches = [list(itertools.islice(payloads, size)) for size in sizes]
    stop = _ScriptedStop(redis_client, batches)
    stop.feed()
    settler = threading.Thread(target=usage_settler_run, args=(stop,), daemon=True)
    settler.start()
    settler.join(SETTLE_TIMEOUT)
    stop.set()
    settler.join(SETTLE_TIMEOUT)

    short, long = SETTLER_PAUSE_SHORT_S, SETTLER_PAUSE_S
    assert short < long
    assert stop.pauses == [short, short, long, long, short]
    assert UsageRecord.objects.filter(organization=funded).count() == sum(sizes)


def test_dead_letters_are_listed_and_requeued_by_an_operator(redis_client, funded):
    from io import StringIO

    from django.core.management import call_command

    good = _poisoned_stream(redis_client, funded)
    usage_outbox_drain(idle_ms=0)
    listing = StringIO()
    call_command("usage_dead_letters", stdout=listing)
    assert "gen-ghost-org  IntegrityError" in listing.getvalue()
    assert "Found 3 draft(s)." in listing.getvalue()

    call_command("usage_dead_letters", "--requeue", stdout=StringIO())

    assert redis_client.xlen(DEAD_STREAM) == 0 and redis_client.xlen(STREAM) == 3
    usage_outbox_drain(idle_ms=0)  # still refused: back where an operator sees them
    assert redis_client.xlen(DEAD_STREAM) == 3
    assert set(UsageRecord.objects.values_list("generation_id", flat=True)) == set(good)


def test_a_logged_prompt_with_a_nul_character_is_stored(funded):
    from billing.settlement import usage_settle_batch

    draft = _draft(funded, "gen-nul")
    draft.prompt = "user: before\x00after"

    assert usage_settle_batch([draft]) == ["gen-nul"]

    assert UsageRecord.objects.get(generation_id="gen-nul").prompt == "user: before\ufffdafter"


def test_the_reservation_sweep_settles_a_late_draft_at_its_cost_before_charging_holds(
    redis_client, funded
):
    """A draft still waiting in the stream when its hold expires (the settler was down) is
    settled at its real cost by the sweep task, which drains the outbox before it charges the
    holds whose drafts never arrived at their held amount."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import Reservation
    from billing.tasks import sweep_reservations

    waiting, lost = "gen-sweep-waiting", "gen-sweep-lost"
    for generation_id in (waiting, lost):
        credits_reserve(ReservationRequest(organization_id=funded.pk, generation_id=generation_id,
                                           amount=Decimal("0.5")))  # fmt: skip
    Reservation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    redis_client.xadd(STREAM, {"d": orjson.dumps(_draft(funded, waiting, "0.2").to_json())})

    assert sweep_reservations() == 1

    records = {r.generation_id: r for r in UsageRecord.objects.all()}
    assert (records[waiting].cost, records[waiting].flags) == (Decimal("0.2"), "")
    assert (records[lost].cost, records[lost].flags) == (Decimal("0.5"), "reconciled_from_hold")
    assert CreditAccount.objects.get(organization=funded).balance == Decimal("9.3")
    assert redis_client.xlen(STREAM) == 0


def test_a_hand_over_cancelled_midway_still_reaches_the_stream(redis_client, funded):
    """A request's handler is cancelled (its server shutting down) while it hands a free draft
    over — after its hold is marked free, before the draft is appended: the hand-over goes on,
    and ``metering.close`` waits for it, so the draft is settled. Before, the cancellation
    stopped it midway: the draft was never appended, and the request had no usage record."""
    credits_reserve(
        ReservationRequest(organization_id=funded.pk, generation_id="gen-cut", amount=Decimal("1"))
    )
    draft = _draft(funded, "gen-cut", cost="0")
    draft.status = "aborted"

    async def cancelled_then_closed() -> None:
        handler = asyncio.ensure_future(metering.record(draft, alone=True))
        await asyncio.sleep(0)  # the hand-over has started
        handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
        await metering.close()  # a worker's shutdown

    asyncio.run(cancelled_then_closed())
    usage_outbox_drain(idle_ms=0)  # what the stopped settler left, as the beat task would

    record = UsageRecord.objects.get(generation_id="gen-cut")
    assert (record.status, record.cost) == ("aborted", 0)
    assert not LedgerEntry.objects.filter(idempotency_key="usage:gen-cut").exists()
    assert CreditAccount.objects.get(organization=funded).reserved == 0


def test_close_drains_while_another_loop_adds_hand_overs(redis_client):
    """``metering.close`` picks its loop's hand-overs from the process-wide set, which other
    loops' threads change meanwhile: one starts a hand-over while close looks through the set
    (here, deterministically, from the ``get_loop`` close calls). Before, close iterated the set
    itself: "RuntimeError: Set changed size during iteration", the worker's drain skipped."""
    elsewhere = asyncio.new_event_loop()

    class OtherLoopsHandOver:
        def get_loop(self) -> asyncio.AbstractEventLoop:
            metering._handing_over.add(asyncio.Future(loop=elsewhere))  # another thread's
            return elsewhere

    before = set(metering._handing_over)
    metering._handing_over.add(OtherLoopsHandOver())  # type: ignore[arg-type]
    try:
        asyncio.run(metering.close(timeout=1))
    finally:
        metering._handing_over.intersection_update(before)
        elsewhere.close()
