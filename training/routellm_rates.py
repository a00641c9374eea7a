"""RouteLLM's strong/weak pair of a trained version and its strong-win rates over the version's
training prompts (routing.routellm serves and calibrates with them).

The rates behind ``calibrate`` and ``router-<slug>-<P>%`` are computed once per version: at
training, else by the first call that needs them, under the version's row lock (concurrent first
calls wait for that one), and stored as a ``RouteLLMCalibration`` row, so a deleted dataset
leaves them servable. Each process keeps the last few in memory, loading each version once at
a time and versions independently (one slow version's load holds up no other's lookups).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from routerhub.errors import BadRequest
from training import serving
from training.models import RouteLLMCalibration, RouterVersion

logger = logging.getLogger(__name__)

CALIBRATION_MAX_PROMPTS = 20_000
_PROCESS_CACHE_SIZE = 8  # up to 20,000 floats each


@dataclass(frozen=True)
class Pair:
    strong: str
    weak: str


def version_pair(version: RouterVersion) -> Pair:
    """The strong and weak models of a trained version (see routing.routellm)."""
    report = version.report or {}
    rows = [r for r in report.get("models", []) if r.get("id") in version.candidates]
    if len(rows) < 2:
        raise BadRequest("RouteLLM routing needs a router version with at least 2 candidates.")
    maximize = version.dataset.maximize if version.dataset is not None else True
    sign = 1.0 if maximize else -1.0
    strong = max(rows, key=lambda r: sign * float(r["mean_score"]))
    others = [r for r in rows if r is not strong]
    if all(r.get("mean_cost") is not None for r in others):
        weak = min(others, key=lambda r: float(r["mean_cost"]))
    else:
        weak = min(others, key=lambda r: sign * float(r["mean_score"]))
    return Pair(strong=str(strong["id"]), weak=str(weak["id"]))


def strong_win_rates(version: RouterVersion, pair: Pair, prompts: list[str]) -> np.ndarray:
    """The strong-win rate (0..1) of each prompt under ``version``."""
    router = serving.predictor_for_version(version).router
    strong, weak = router.models.index(pair.strong), router.models.index(pair.weak)
    predicted = router.predict_many(prompts)
    rates: np.ndarray = np.clip((1.0 + predicted[:, strong] - predicted[:, weak]) / 2.0, 0.0, 1.0)
    return rates


def _calibration_prompts(version: RouterVersion) -> list[str]:
    if version.dataset is None:
        raise BadRequest("The active version's dataset was deleted; retrain to calibrate.")
    prompts = serving.dataset_prompts(version.dataset)
    if len(prompts) > CALIBRATION_MAX_PROMPTS:
        step = len(prompts) / CALIBRATION_MAX_PROMPTS
        prompts = [prompts[int(i * step)] for i in range(CALIBRATION_MAX_PROMPTS)]
    return prompts


def calibration_store(version: RouterVersion) -> RouteLLMCalibration:
    """Compute and store the version's pair and sorted rates (``version`` with its dataset)."""
    pair = version_pair(version)
    rates = np.sort(strong_win_rates(version, pair, _calibration_prompts(version)))
    row, _ = RouteLLMCalibration.objects.update_or_create(
        version_id=version.pk,
        defaults={
            "checksum": version.checksum,
            "strong": pair.strong,
            "weak": pair.weak,
            "rates": rates.astype(np.float64).tobytes(),
        },
    )
    return row


def calibration_store_after_training(version: RouterVersion) -> None:
    """``calibration_store`` for a new version when it has a pair; a failure is logged, and the
    first call that needs the rates computes them."""
    if len(version.candidates) < 2:
        return
    try:
        calibration_store(version)
    except Exception:
        logger.exception("RouteLLM rates of router version %s not stored", version.pk)


def _stored_or_computed(version_id: int, checksum: str) -> RouteLLMCalibration:
    row = RouteLLMCalibration.objects.filter(version_id=version_id, checksum=checksum).first()
    if row is not None:
        return row
    with transaction.atomic():
        version = (
            RouterVersion.objects.select_for_update(of=("self",))
            .select_related("dataset")
            .get(pk=version_id)
        )
        row = RouteLLMCalibration.objects.filter(
            version_id=version_id, checksum=version.checksum
        ).first()
        return row if row is not None else calibration_store(version)


_calibrations: OrderedDict[tuple[int, str], tuple[Pair, np.ndarray]] = OrderedDict()
# A lock per version being loaded, held only while it loads: the threads of one process wait for
# one load of a version, not one each, and a slow load of one version (a computation, a row lock
# of a calibration elsewhere) holds up no other. Entries live while their load does: at most one
# per thread. ``_guard`` is held only to read or change the two dicts, never over a load.
_loading: dict[tuple[int, str], threading.Lock] = {}
_guard = threading.Lock()


def _cached(key: tuple[int, str]) -> tuple[Pair, np.ndarray] | None:
    with _guard:
        cached = _calibrations.get(key)
        if cached is not None:
            _calibrations.move_to_end(key)
        return cached


def _load(key: tuple[int, str]) -> tuple[Pair, np.ndarray]:
    row = _stored_or_computed(*key)
    loaded = (Pair(row.strong, row.weak), np.frombuffer(bytes(row.rates), dtype=np.float64))
    with _guard:
        _calibrations[key] = loaded
        while len(_calibrations) > _PROCESS_CACHE_SIZE:
            _calibrations.popitem(last=False)
    return loaded


def calibration_rates(version_id: int, checksum: str) -> tuple[Pair, np.ndarray]:
    """The version's pair and sorted rates over its training prompts: from this process's
    memory, else stored, else computed once and stored."""
    key = (version_id, checksum)
    cached = _cached(key)
    if cached is not None:
        return cached
    with _guard:
        lock = _loading.setdefault(key, threading.Lock())
    with lock:
        try:
            cached = _cached(key)  # loaded by the thread this one waited for
            return cached if cached is not None else _load(key)
        finally:
            with _guard:
                if _loading.get(key) is lock:
                    del _loading[key]
