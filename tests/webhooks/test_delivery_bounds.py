"""A webhook receiver is a tenant's host, and the delivery worker is shared by every tenant: an
attempt must end within its bound however the receiver answers (status line and headers dripped
a byte at a time, each byte inside the per-read timeout), and an attempt whose worker dies (the
task's hard time limit, a killed process) counts as an attempt, so it is not redelivered forever
(but a live one is not counted, and a dead one answering late does not overwrite a newer one).
Once a 2xx status is in, it is the outcome, however the body ends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from routerhub.celery import app
from tests.celery_conf import celery_conf
from tests.factories import tenants_make
from tests.security.raw_upstream import RawUpstream
from tests.webhooks.test_deliveries import emit, endpoint_create
from webhooks.delivery import (
    Outcome,
    _record,
    webhook_deliveries_retry_due,
    webhook_delivery_attempt,
)
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

DRIP_SECONDS = 10.0  # far past the attempt's bound (three 0.5 s timeouts)


class DrippingReceiver:
    """Reads the request, then sends the status line and one header a byte every 50 ms for
    ``DRIP_SECONDS`` (each byte well inside the read timeout), then ends a 200 answer."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.gave_up_early = threading.Event()  # the client hung up before the answer ended
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._drip(conn)

    def _drip(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, body = request.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += conn.recv(65536)
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(int(DRIP_SECONDS / 0.05)):
                if self.stop.wait(0.05):
                    return
                conn.sendall(b"a")
            conn.sendall(b"\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            self.gave_up_early.set()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def dripping() -> Iterator[DrippingReceiver]:
    receiver = DrippingReceiver()
    yield receiver
    receiver.close()


def test_a_receiver_dripping_its_headers_is_cut_at_the_attempts_bound(
    dripping: DrippingReceiver, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    tenants = tenants_make()
    endpoint_create(tenants.organization, dripping.url, ["router.promoted"])

    delivery = emit(tenants.organization, django_capture_on_commit_callbacks)

    # Before: the headers took the whole drip (each byte inside the read timeout) and the
    # attempt "succeeded" after 10 s; a receiver dripping for hours held a worker for hours.
    assert (delivery.status, delivery.response_code) == ("pending", None)
    assert "took longer than" in delivery.error
    assert delivery.latency_ms is not None


def test_an_attempt_whose_worker_dies_counts_and_is_not_redelivered_forever(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    tenants = tenants_make()
    endpoint_create(tenants.organization, "http://127.0.0.1:9/closed", ["router.promoted"])
    first = emit(tenants.organization, django_capture_on_commit_callbacks)
    assert (first.status, first.attempts) == ("pending", 1)

    queued_per_sweep = []
    # Tasks go to the broker from here on (and are purged): no worker takes them.
    with celery_conf(task_always_eager=False):
        for _ in range(6):
            queued = webhook_deliveries_retry_due(now=timezone.now() + timedelta(days=1))
            queued_per_sweep.append(len(queued))
            # A worker claims each queued attempt and dies mid-send (its hard time limit): the
            # row stays ``sending`` until a sweep finds it stuck.
            for pk, attempt in queued:
                WebhookDelivery.objects.filter(pk=pk, attempts=attempt - 1).update(
                    status="sending", attempts=attempt, last_attempt_at=timezone.now()
                )
        app.control.purge()
    delivery = WebhookDelivery.objects.get(pk=first.pk)

    # Before: the sweep put the dead attempt back uncounted and queued it again, every sweep.
    assert queued_per_sweep == [1, 1, 0, 0, 0, 0]
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "did not finish" in delivery.error
    assert webhook_delivery_attempt(delivery_id=first.pk, attempt=4) is None


def stuck_after(settings: Any) -> timedelta:
    """How long an attempt stays ``sending`` before the sweep counts it as dead (README): past
    the task's hard time limit, so a live attempt is never counted twice."""
    return timedelta(seconds=4 * settings.WEBHOOK_TIMEOUT_SECONDS + 60)


def test_a_live_attempt_is_not_counted_dead_until_its_bound_has_long_passed(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    tenants = tenants_make()
    endpoint_create(tenants.organization, "http://127.0.0.1:9/closed", ["router.promoted"])
    first = emit(tenants.organization, django_capture_on_commit_callbacks)
    started = timezone.now()
    # A worker has claimed attempt 2 and is still sending it.
    WebhookDelivery.objects.filter(pk=first.pk).update(
        status="sending", attempts=2, last_attempt_at=started
    )

    just_before = webhook_deliveries_retry_due(
        now=started + stuck_after(settings) - timedelta(seconds=1)
    )
    live = WebhookDelivery.objects.get(pk=first.pk)
    just_after = webhook_deliveries_retry_due(
        now=started + stuck_after(settings) + timedelta(seconds=1)
    )
    dead = WebhookDelivery.objects.get(pk=first.pk)

    assert just_before == []
    assert (live.status, live.attempts, live.error) == ("sending", 2, first.error)
    # Counted: attempt 2 is over, and attempt 3 was queued (and made, eagerly, to a closed port).
    assert just_after == [(first.pk, 3)]
    assert (dead.status, dead.attempts) == ("pending", 3)


def test_a_late_attempts_outcome_does_not_overwrite_a_newer_attempt(
    django_capture_on_commit_callbacks: Any,
) -> None:
    tenants = tenants_make()
    endpoint_create(tenants.organization, "http://127.0.0.1:9/closed", ["router.promoted"])
    first = emit(tenants.organization, django_capture_on_commit_callbacks)
    # Attempt 2 was counted dead by the sweep, and attempt 3 is now being sent.
    WebhookDelivery.objects.filter(pk=first.pk).update(status="sending", attempts=3)
    late = Outcome(200, "ok", "", 12.0)  # attempt 2's worker answers after all

    written = _record(first.pk, 2, late)
    row = WebhookDelivery.objects.get(pk=first.pk)

    # Before: attempt 2's success was written over attempt 3 (which then wrote its own outcome).
    assert written is None
    assert (row.status, row.attempts, row.response_code) == ("sending", 3, None)


def answers_200_and_stalls(server: RawUpstream, connection: socket.socket) -> None:
    """A 200 whose body stops after two of its ten bytes, and nothing more until the test ends."""
    server.read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    server.stopped.wait()


def answers_200_and_hangs_up(server: RawUpstream, connection: socket.socket) -> None:
    """A 200 whose body stops after two of its ten bytes: the connection is closed."""
    server.read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    connection.close()


@pytest.mark.parametrize("answer", [answers_200_and_stalls, answers_200_and_hangs_up])
def test_a_2xx_status_is_the_outcome_however_its_body_ends(
    answer: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver = RawUpstream(answer)
    try:
        tenants = tenants_make()
        endpoint_create(tenants.organization, f"{receiver.url()}/hooks", ["router.promoted"])
        delivery = emit(tenants.organization, django_capture_on_commit_callbacks)
    finally:
        receiver.stop()

    # The receiver said 200: it has the event, and a retry would deliver it twice. Before, a
    # connection dropped mid-body made the 200 a retryable connection error.
    assert len(receiver.bodies) == 1
    assert (delivery.status, delivery.response_code) == ("succeeded", 200)
    assert (delivery.response_excerpt, delivery.error) == ("ok", "")
