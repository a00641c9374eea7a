"""A worker's lease of one rate-limit bucket's window (``routing.gateway.limits``): the slice
of quota it took from Redis and has not spent, and how large its next slice is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from redis.exceptions import TimeoutError as RedisTimeoutError

# How a lease call ended: its slices leased; Redis unreachable (the requests waiting on it are
# admitted uncounted); or Redis refused it, or the pool had no connection free (they are counted
# in this process alone).
Leasing = Literal["leased", "uncounted", "in-process"]

_LEASE_CAP = 0.01  # of the limit, per lease
_LEASE_PERIOD_S = 1.0  # a slice spent within this grows the next one; else it is sized to it


class Lease:
    """This worker's unspent slice of one key's window (tokens may run into debt: completion
    tokens are only known after admission; the next slice pays the debt first)."""

    __slots__ = (
        "charged_requests",
        "charged_tokens",
        "fetching",
        "leased_at",
        "request_slice",
        "requests",
        "requests_full_at",
        "taken_requests",
        "taken_tokens",
        "token_slice",
        "tokens",
        "tokens_full_at",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = 0
        self.request_slice = 1
        self.token_slice = 0
        self.leased_at = -1.0
        # The lease call in flight, shared by every request of this key in this worker.
        self.fetching: asyncio.Future[Leasing] | None = None
        # The rpm (tpm) at which Redis granted less than asked: the window is fully leased.
        self.requests_full_at = 0
        self.tokens_full_at = 0
        # What this worker admitted from its slices in the window (requests, tokens): a request
        # counted in-process (Redis refused) counts them too (``limits._admit_local``).
        self.taken_requests = 0
        self.taken_tokens = 0
        # What of the window's in-process count (``limits._local``: requests Redis refused)
        # this worker has charged to Redis since, or is charging in the lease call in flight.
        self.charged_requests = 0
        self.charged_tokens = 0

    def claim(self, counted: Sequence[int], rpm: int, tpm: int) -> tuple[int, int]:
        """What of ``counted`` (this process's in-process requests and tokens in the window)
        Redis has not been charged, claimed for the lease call about to be made: it adds them
        to Redis with its slices, or gives them back (``unclaim``). Without this, the requests
        counted while Redis refused were never in Redis: once it answered again, an rpm-1 key
        got a second request in the minute. 0 for a dimension without a limit. The script adds
        them apart from the slices, best effort (``limits_redis._LEASE``)."""
        requests = max(0, counted[0] - self.charged_requests) if rpm else 0
        tokens = max(0, counted[1] - self.charged_tokens) if tpm else 0
        self.charged_requests += requests
        self.charged_tokens += tokens
        return requests, tokens

    def unclaim(self, owed: tuple[int, int]) -> None:
        """The lease call that claimed ``owed`` never ran: the next one charges it."""
        self.charged_requests -= owed[0]
        self.charged_tokens -= owed[1]

    def short(self, rpm: int, tpm: int) -> int:
        """1 (2) when a request needs quota of rpm (tpm) that the window no longer has; else 0."""
        if rpm and self.requests < 1 and self.requests_full_at == rpm:
            return 1
        if tpm and self.tokens <= 0 and self.tokens_full_at == tpm:
            return 2
        return 0

    def wants(self, rpm: int, tpm: int, prompt_tokens: int, now: float) -> tuple[int, int]:
        """The slices to lease now (``now``: the limiter's monotonic clock)."""
        lasted = now - self.leased_at  # how long the last slice lasted (huge on the first)
        self.leased_at = now
        want_requests = want_tokens = 0
        if rpm and self.requests < 1:
            cap = max(1, int(rpm * _LEASE_CAP))
            self.request_slice = _next_slice(self.request_slice, lasted, 1, cap)
            want_requests = self.request_slice
        if tpm and self.tokens <= 0:
            cap = max(1, int(tpm * _LEASE_CAP))
            floor = max(1, prompt_tokens)
            self.token_slice = _next_slice(self.token_slice, lasted, floor, cap)
            want_tokens = self.token_slice - self.tokens  # and the debt
        return want_requests, want_tokens


def _next_slice(previous: int, lasted: float, floor: int, cap: int) -> int:
    """Double a slice spent within ``_LEASE_PERIOD_S``; else what the last pace spends in it."""
    fast = lasted < _LEASE_PERIOD_S
    return min(cap, max(floor, previous * 2 if fast else int(previous * _LEASE_PERIOD_S / lasted)))


def leases_granted(
    leases: list[Lease],
    limits: list[tuple[int, int]],
    asked: list[tuple[int, int]],
    owed: list[tuple[int, int]],
    granted: list[int],
) -> None:
    """Add what Redis granted a chain's ``leases`` (``limits``: each bucket's rpm, tpm) to them.
    A dimension granted less than ``asked`` has nothing left in the window; -1: not leased,
    because another bucket of the chain had nothing left. After the grants, what the script
    charged of each ``owed``: all of it is settled (``Lease.claim``), and a dimension charged
    less had reached its limit, so it too has nothing left (what it owed is moot)."""
    n = 2 * len(leases)
    for i, (lease, (rpm, tpm)) in enumerate(zip(leases, limits, strict=True)):
        requests, tokens = int(granted[2 * i]), int(granted[2 * i + 1])
        charged = int(granted[n + 2 * i]), int(granted[n + 2 * i + 1])
        lease.requests += max(0, requests)
        if 0 <= requests < asked[i][0] or charged[0] < owed[i][0]:
            lease.requests_full_at = rpm
        lease.tokens += max(0, tokens)
        if 0 <= tokens < asked[i][1] or charged[1] < owed[i][1]:
            lease.tokens_full_at = tpm


@contextmanager
def owing(
    leases: list[Lease],
    limits: list[tuple[int, int]],
    counted: Sequence[Sequence[int]],
    lock: threading.Lock,
) -> Iterator[list[tuple[int, int]]]:
    """What each lease's bucket (``limits``: rpm, tpm) owes Redis for one lease call: of its
    in-process count in the window (``counted``), what is not yet charged (``Lease.claim``).
    Given back if the call fails before the script could run (a refusal, cancellation); kept
    after a timeout: the script may have run, and charging it again would count those requests
    twice (if it did not run, Redis undercounts them: they were counted in this process)."""
    with lock:
        owed = [
            lease.claim(count, rpm, tpm)
            for lease, (rpm, tpm), count in zip(leases, limits, counted, strict=True)
        ]
    ran = False
    try:
        yield owed
        ran = True
    except RedisTimeoutError:
        ran = True
        raise
    finally:
        if not ran:
            with lock:
                for lease, owes in zip(leases, owed, strict=True):
                    lease.unclaim(owes)
