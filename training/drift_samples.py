"""Live prompts' features for the drift check, gathered without touching a request's latency.

A routed request is sampled with probability ``DRIFT_SAMPLE_RATE``; a sampled prompt is only
appended to an in-process buffer (a deque append: no I/O, no featurizing). A daemon thread per
serving process wakes every ``FLUSH_SECONDS``, featurizes the buffered prompts with the router
version's own featurizer (``Featurizer.transform``: the dense vector of SVD projection and text
statistics the models see) and appends the float32 vectors to a capped Redis list per version
(``DRIFT_MAX_SAMPLES``). No prompt text leaves the process; the check task
(``training.drift``) takes the vectors from Redis. Without ``REDIS_URL`` nothing is sampled.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import deque
from typing import Any

import numpy as np
from django.conf import settings

from training.models import RouterVersion

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
BUFFER_LIMIT = 2000  # prompts waiting in one process; more are dropped until the next flush
KEY_TTL_SECONDS = 14 * 24 * 3600  # a version nobody checks (no longer active) is forgotten


def drift_samples_key(version_id: int) -> str:
    return f"rh:drift:v{version_id}"


class _State:
    lock = threading.Lock()
    pending: deque[tuple[RouterVersion, str]] = deque(maxlen=BUFFER_LIMIT)
    flusher_pid: int | None = None
    client: Any = None


def drift_sample_observe(version: RouterVersion, prompt: str) -> None:
    """On a routed request: maybe keep ``prompt`` for the drift check (cheap, never raises)."""
    rate = settings.DRIFT_SAMPLE_RATE
    if rate <= 0 or not settings.REDIS_URL or random.random() >= rate:
        return
    _State.pending.append((version, prompt))  # deque.append is atomic under the GIL
    if _State.flusher_pid != os.getpid():
        _flusher_start()


def _flusher_start() -> None:
    with _State.lock:
        if _State.flusher_pid == os.getpid():
            return
        _State.flusher_pid = os.getpid()  # a forked child starts its own
        _State.client = None
        threading.Thread(target=_flush_forever, name="drift-samples", daemon=True).start()


def _flush_forever() -> None:
    stop = threading.Event()
    while not stop.wait(FLUSH_SECONDS):
        try:
            drift_samples_flush()
        except Exception:
            logger.exception("drift samples could not be stored; dropped")


def _redis() -> Any:
    if _State.client is None:
        from routerhub.redis_clients import redis_client

        _State.client = redis_client()
    return _State.client


def _vectors_by_version() -> dict[int, list[bytes]]:
    from training.predictor import predictor_for_version, predictor_is_loaded

    taken: list[tuple[RouterVersion, str]] = []
    while _State.pending:
        taken.append(_State.pending.popleft())
    vectors: dict[int, list[bytes]] = {}
    for version, prompt in taken:
        if not predictor_is_loaded(version):
            continue  # evicted since it decided: never read storage for a sample
        featurizer = predictor_for_version(version).router.featurizer
        dense = featurizer.transform(prompt)[2]
        vectors.setdefault(version.pk, []).append(np.asarray(dense, np.float32).tobytes())
    return vectors


def drift_samples_flush() -> int:
    """Featurize the buffered prompts and append their vectors to Redis; returns how many."""
    vectors = _vectors_by_version()
    if not vectors:
        return 0
    pipe = _redis().pipeline(transaction=False)
    for version_id, rows in vectors.items():
        key = drift_samples_key(version_id)
        pipe.rpush(key, *rows)
        pipe.ltrim(key, -settings.DRIFT_MAX_SAMPLES, -1)
        pipe.expire(key, KEY_TTL_SECONDS)
    pipe.execute()
    return sum(len(rows) for rows in vectors.values())


def drift_samples_take(version_id: int, *, minimum: int) -> np.ndarray | None:
    """Every stored vector of the version as an (n, d) array, removed from Redis, once there are
    at least ``minimum``; None (and nothing removed) before that."""
    client, key = _redis(), drift_samples_key(version_id)
    if client.llen(key) < minimum:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    rows, _ = pipe.execute()
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        return None
    return np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(rows), -1)
