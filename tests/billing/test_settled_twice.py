"""One draft in the hands of two settlers at once: a settler claimed it from another whose batch
outlived ``CLAIM_IDLE_MS`` and is still open. It is charged once, and neither settler sets it
aside as refused. Settlers never share a consumer name, so that a settler re-reading its own
pending drafts takes none of another live settler's, and consumers left behind are forgotten
once nothing is pending for them (never before: that would drop their pending drafts); a
failure to forget them (a Redis refusing scripts) costs nothing else. Real settlers on
PostgreSQL and Redis; one settler's batch waits inside its transaction for an account row that
another transaction holds (``_HeldOpen``) while the other settler works."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
import redis
from django.db import connection, transaction
from django.db.models import Sum

from billing.drafts import UsageDraft
from billing.models import CreditAccount, LedgerEntry, UsageRecord
from billing.outbox import GROUP, STREAM, usage_outbox_drain, usage_settler_run
from billing.outbox_consumers import consumers_forget
from billing.outbox_entries import DEAD_STREAM
from billing.services import ReservationRequest, credits_reserve
from tests.conftest import require_postgres
from tests.db_locks import backend_pid, backends_waiting_for, waiting_for
from tests.routing.servers import SETTLE_TIMEOUT, poll


def _draft(organization: Any, generation_id: str, **fields: Any) -> UsageDraft:
    return UsageDraft(generation_id=generation_id, organization_id=organization.pk, key_id=None,
                      status="succeeded", cost=Decimal("0.25"), model="demo/small", **fields)  # fmt: skip


def _append(redis_client: Any, draft: UsageDraft) -> bytes:
    entry_id: bytes = redis_client.xadd(STREAM, {"d": orjson.dumps(draft.to_json())})
    return entry_id


class _AckOrder:
    """What one thread did, in order: its SQL statements (``sql``, an execute wrapper) and the
    stream entries it deleted (``XDEL`` in a pipeline)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, Any]] = []
        self.thread: threading.Thread | None = None
        execute = redis.client.Pipeline.execute

        def recorded(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is self.thread:
                for command, *rest in (c for c, _ in pipe.command_stack):
                    if command == "XDEL":
                        self.events.append(("xdel", rest[1:]))
            return execute(pipe, *args, **kwargs)

        monkeypatch.setattr(redis.client.Pipeline, "execute", recorded)

    def sql(self, execute: Any, sql: str, params: Any, *args: Any) -> Any:
        flush = "pg_current_wal_flush_lsn" in sql
        self.events.append(("flush", None) if flush else ("sql", repr(params)))
        return execute(sql, params, *args)

    def waited_before_deleting(self, entry_id: bytes, generation_id: str) -> bool:
        """Whether the thread checked that the WAL was flushed after its last statement about
        ``generation_id`` (the one that found it settled) and before it deleted ``entry_id``."""
        deleted = next(i for i, (kind, ids) in enumerate(self.events)
                       if kind == "xdel" and entry_id in ids)  # fmt: skip
        before = self.events[:deleted]
        seen = max(i for i, (kind, params) in enumerate(before)
                   if kind == "sql" and generation_id in params)  # fmt: skip
        return ("flush", None) in before[seen:]


class _HeldOpen:
    """A settler (``usage_settler_run`` in a thread) whose first batch waits inside its
    transaction, its usage records written (their generation ids claimed), for the account row
    of ``organization``, which another transaction (a top-up, another settler) holds until
    ``release``: the batch that outlives ``CLAIM_IDLE_MS``. ``pid``: the settler's backend."""

    def __init__(self, organization: Any) -> None:
        self.held, self.release, self.stop = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.holder_pid = self.pid = 0
        self.holder = threading.Thread(target=self._hold, args=(organization.pk,), daemon=True)
        self.thread = threading.Thread(target=usage_settler_run, args=(self.stop,), daemon=True)

    def _hold(self, organization_id: int) -> None:
        try:
            with transaction.atomic():
                # NO KEY: what settlement's charge takes (FOR UPDATE) waits, a foreign key's
                # check (FOR KEY SHARE) does not.
                CreditAccount.objects.select_for_update(no_key=True).get(
                    organization_id=organization_id
                )
                self.holder_pid = backend_pid()
                self.held.set()
                self.release.wait(SETTLE_TIMEOUT)
        finally:
            connection.close()

    def start(self) -> None:
        self.holder.start()
        assert self.held.wait(SETTLE_TIMEOUT)
        self.thread.start()
        [self.pid] = poll(lambda: backends_waiting_for(self.holder_pid))

    def end(self) -> None:
        self.release.set()
        self.stop.set()
        for thread in (self.holder, self.thread):
            thread.join(SETTLE_TIMEOUT)
            assert not thread.is_alive()


def _assert_charged_once(organization: Any, generation_id: str) -> None:
    account = CreditAccount.objects.get(organization=organization)
    assert (account.balance, account.reserved) == (Decimal("9.75"), 0)
    ledger = LedgerEntry.objects.filter(organization=organization)
    assert ledger.aggregate(total=Sum("amount"))["total"] == account.balance
    assert ledger.filter(kind="usage").count() == 1
    assert ledger.filter(idempotency_key=f"usage:{generation_id}").count() == 1
    assert list(UsageRecord.objects.values_list("generation_id", flat=True)) == [generation_id]


@pytest.mark.parametrize("with_hold", [False, True], ids=["no-hold-row", "hold-row"])
def test_a_draft_claimed_while_its_first_settler_is_still_at_it_is_charged_once_not_set_aside(
    redis_client: Any, funded: Any, monkeypatch: pytest.MonkeyPatch, with_hold: bool
) -> None:
    """The second settler's batch also holds a draft the database refuses, so it is retried
    draft by draft while the first settler's transaction is still open: the claimed draft's
    retry waits for that transaction, then fails on its generation id, settled by the first.
    That is "already settled" (acknowledged), not a refused draft; the refused one still goes
    to the dead letters. With a hold row the second settler's batch waits on the hold's lock
    before it writes anything, so its retries start only once the first settler committed.

    The first settler commits without waiting for the disk: the second, which only saw that
    commit, waits for the WAL to be flushed before it deletes the draft from the stream (a
    database crash in between would lose the charge, with the draft gone). Without a hold row
    it saw the commit as an ``IntegrityError`` (``_settled_by_another``), with one as a
    generation id already settled (``usage_settle_batch`` with nothing left to settle)."""
    require_postgres()
    twice = _draft(funded, "gen-twice")
    if with_hold:
        credits_reserve(ReservationRequest(organization_id=funded.pk, generation_id="gen-twice",
                                           amount=Decimal("0.5")))  # fmt: skip
    refused = _draft(funded, "gen-refused", created_at=twice.created_at - timedelta(seconds=1))
    # Longer than its column: a DataError. Older, so first in the batch's COPY: the batch fails
    # at once, before the claimed draft's row waits for the first settler (had it waited, the
    # retries would start after that commit and find the draft settled).
    refused.model = "m" * 500
    first, order = _HeldOpen(funded), _AckOrder(monkeypatch)
    twice_entry = _append(redis_client, twice)
    first.start()
    _append(redis_client, refused)
    drained: list[int] = []

    def drain() -> None:
        try:  # idle_ms=0: the first settler's batch has outlived CLAIM_IDLE_MS
            with connection.execute_wrapper(order.sql):
                drained.append(usage_outbox_drain(idle_ms=0))
        finally:
            connection.close()

    second = order.thread = threading.Thread(target=drain)
    second.start()
    try:
        poll(lambda: waiting_for(first.pid))  # the second settler waits for the first's batch
    finally:
        first.release.set()
        second.join(SETTLE_TIMEOUT)
        first.end()

    dead = [
        orjson.loads(fields[b"d"])["generation_id"]
        for _, fields in redis_client.xrange(DEAD_STREAM)
    ]
    assert dead == ["gen-refused"]
    assert drained == [2]
    _assert_charged_once(funded, "gen-twice")
    assert redis_client.xlen(STREAM) == 0 and redis_client.xpending(STREAM, GROUP)["pending"] == 0
    assert order.waited_before_deleting(twice_entry, "gen-twice"), (
        "deleted before the WAL reached the disk"
    )


class _OneRound(threading.Event):
    """A settler's stop event that stops it after its first round (its first pause)."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_a_second_settler_in_the_same_process_takes_none_of_a_live_settlers_drafts(
    redis_client: Any, funded: Any
) -> None:
    """A settler starts by re-reading its own pending drafts (those of a batch that failed). A
    second settler in the process (one started while the first still finished its batch after
    ``usage_settlers_stop`` gave up waiting) must not take the first's as its own: they are in
    the first's open transaction. Both consumers are forgotten when their settlers stop."""
    require_postgres()
    first = _HeldOpen(funded)
    _append(redis_client, _draft(funded, "gen-live"))
    first.start()
    second = threading.Thread(target=usage_settler_run, args=(_OneRound(),), daemon=True)
    second.start()
    try:
        poll(lambda: not second.is_alive() or waiting_for(first.pid))
        took_it = waiting_for(first.pid)
    finally:
        first.release.set()
        second.join(SETTLE_TIMEOUT)
        first.end()

    assert not took_it, "the second settler settled the first settler's draft a second time"
    _assert_charged_once(funded, "gen-live")
    assert redis_client.xinfo_consumers(STREAM, GROUP) == []


def test_a_dead_settlers_drafts_are_claimed_and_consumers_with_nothing_pending_forgotten(
    redis_client: Any, funded: Any
) -> None:
    """A settler that died holding a draft leaves it pending under its consumer name, which no
    settler shares: it is claimed after ``CLAIM_IDLE_MS`` (``idle_ms=0`` here) and settled.
    Consumers idle that long with nothing pending (the dead one, once claimed from) are deleted
    from the group, so that they do not pile up in ``XINFO CONSUMERS`` one per dead settler."""
    _append(redis_client, _draft(funded, "gen-orphan"))
    assert redis_client.xreadgroup(GROUP, "settler-dead-1", {STREAM: ">"}, count=1)
    redis_client.xgroup_createconsumer(STREAM, GROUP, "settler-dead-2")  # read nothing, died

    assert usage_outbox_drain(idle_ms=0) == 1

    _assert_charged_once(funded, "gen-orphan")
    assert redis_client.xinfo_consumers(STREAM, GROUP) == []


def test_a_settler_whose_redis_refuses_scripts_still_settles(
    redis_client: Any, funded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumers are forgotten by a Lua script, which a Redis may refuse (an ACL without
    scripting, another script running long). That costs the forgetting only: the settler's
    round goes on to its reads and settles, and the drain reports what it settled."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise redis.ResponseError("NOPERM this user has no permissions to run the 'eval' command")

    monkeypatch.setattr(redis.Redis, "eval", refused)
    _append(redis_client, _draft(funded, "gen-noscript"))
    settler = threading.Thread(target=usage_settler_run, args=(_OneRound(),), daemon=True)

    settler.start()
    settler.join(SETTLE_TIMEOUT)

    _assert_charged_once(funded, "gen-noscript")
    assert redis_client.xlen(STREAM) == 0
    _append(redis_client, _draft(funded, "gen-drained"))
    assert usage_outbox_drain(idle_ms=0) == 1


def test_a_consumer_with_drafts_pending_is_never_forgotten(redis_client: Any) -> None:
    """Deleting a consumer drops its pending entries: a consumer holding one stays, even idle
    past ``idle_ms`` and named as the one ``leaving``; one with nothing pending goes."""
    redis_client.xadd(STREAM, {"d": b"{}"})
    assert redis_client.xreadgroup(GROUP, "settler-busy", {STREAM: ">"}, count=1)
    redis_client.xgroup_createconsumer(STREAM, GROUP, "settler-idle")

    consumers_forget(redis_client, idle_ms=0, leaving="settler-busy")

    consumers = redis_client.xinfo_consumers(STREAM, GROUP)
    assert [(c["name"], c["pending"]) for c in consumers] == [(b"settler-busy", 1)]
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 1
