"""Webhook fixtures: eager Celery (deliveries run in the test's process) and a receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.training.conftest import eager_celery, media
from tests.webhooks.receiver import Receiver

__all__ = ["eager_celery", "media"]


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[list[int]], Receiver]]:
    started: list[Receiver] = []

    def make(codes: list[int]) -> Receiver:
        started.append(Receiver(codes).start())
        return started[-1]

    yield make
    for receiver in started:
        receiver.stop()
