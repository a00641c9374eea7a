"""Synchronous training resources: datasets, routers (versions, reports, select) and runs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

from routerhub_client._http import clean_params
from routerhub_client._payloads import (
    UNSET,
    DatasetSource,
    dataset_settled,
    dataset_upload_request,
    given_fields,
    run_finished,
    run_signature,
)
from routerhub_client._sync_account import SyncResource
from routerhub_client.errors import WaitTimeoutError
from routerhub_client.types import (
    Calibration,
    Dataset,
    DriftCheck,
    Experiment,
    FeedbackRetrain,
    Message,
    Report,
    Router,
    RouterEvent,
    RouterLifecycle,
    RouterVersion,
    RunProgress,
    Selection,
    Tradeoff,
    TrainingRun,
    UploadProgress,
)


class Datasets(SyncResource):
    """Evaluation datasets: one row per prompt, scores (and costs) per candidate model."""

    def upload(
        self,
        source: DatasetSource,
        *,
        name: str | None = None,
        columns: Mapping[str, Any] | None = None,
        maximize: bool | None = None,
        progress: UploadProgress | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> Dataset:
        """Upload a CSV/JSONL/Parquet file (path or bytes), a pandas DataFrame, or rows as
        dicts; ``progress(sent, total)`` follows the bytes. With ``wait`` (default), returns
        once validated and raises ``DatasetInvalidError`` listing the rows to fix."""
        with dataset_upload_request(
            source, name=name, columns=columns, maximize=maximize, progress=progress
        ) as request:
            dataset = cast(Dataset, self._json("POST", "/api/v1/datasets", **request))
        return self.wait(dataset["id"], timeout=timeout) if wait else dataset

    def get(self, dataset_id: int) -> Dataset:
        return cast(Dataset, self._json("GET", f"/api/v1/datasets/{dataset_id}"))

    def wait(self, dataset_id: int, *, timeout: float = 600.0, interval: float = 1.0) -> Dataset:
        """Poll until validation is over; raises ``DatasetInvalidError`` if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            dataset = self.get(dataset_id)
            if dataset_settled(dataset):
                return dataset
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(f"dataset {dataset_id} still validating after {timeout} s")
            time.sleep(interval)

    def delete(self, dataset_id: int) -> None:
        self._t.request("DELETE", f"/api/v1/datasets/{dataset_id}")

    def list(self, *, page_size: int | None = None) -> Iterator[Dataset]:
        return self._pages("/api/v1/datasets", {"limit": page_size})


class TrainingRuns(SyncResource):
    """``/api/v1/training-runs/{id}``: status, stage, progress, metrics; cancel; wait."""

    def get(self, run_id: int) -> TrainingRun:
        return cast(TrainingRun, self._json("GET", f"/api/v1/training-runs/{run_id}"))

    def cancel(self, run_id: int) -> TrainingRun:
        return cast(TrainingRun, self._json("POST", f"/api/v1/training-runs/{run_id}/cancel"))

    def wait(
        self,
        run_id: int,
        *,
        progress: RunProgress | None = None,
        timeout: float = 3600.0,
        interval: float = 2.0,
    ) -> TrainingRun:
        """Poll until the run succeeds (raises ``TrainingFailedError`` if it fails or is
        cancelled); ``progress(run)`` hears every change of status, stage or progress."""
        deadline = time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        while True:
            run = self.get(run_id)
            if progress is not None and run_signature(run) != seen:
                seen = run_signature(run)
                progress(run)
            if run_finished(run):
                return run
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(f"training run {run_id} unfinished after {timeout} s")
            time.sleep(interval)


class Routers(SyncResource):
    """Routers: create, train, versions and their reports, activate or roll back, select."""

    def __init__(self, transport: Any, runs: TrainingRuns) -> None:
        super().__init__(transport)
        self._runs = runs

    def create(
        self,
        slug: str,
        *,
        name: str | None = None,
        candidates: list[str] | None = None,
        default_tradeoff: float | None = None,
        auto_activate: bool | None = None,
    ) -> Router:
        body = clean_params({"slug": slug, "name": name, "candidates": candidates,
                             "default_tradeoff": default_tradeoff, "auto_activate": auto_activate})  # fmt: skip
        return cast(Router, self._json("POST", "/api/v1/routers", json=body))

    def get(self, slug: str) -> Router:
        return cast(Router, self._json("GET", f"/api/v1/routers/{slug}"))

    def update(
        self,
        slug: str,
        *,
        new_slug: str = UNSET,
        name: str = UNSET,
        candidates: list[str] = UNSET,
        default_tradeoff: float = UNSET,
        auto_activate: bool = UNSET,
    ) -> Router:
        """Change the given fields (``new_slug`` renames the router)."""
        body = given_fields(slug=new_slug, name=name, candidates=candidates,
                            default_tradeoff=default_tradeoff, auto_activate=auto_activate)  # fmt: skip
        return cast(Router, self._json("PATCH", f"/api/v1/routers/{slug}", json=body))

    def delete(self, slug: str) -> None:
        self._t.request("DELETE", f"/api/v1/routers/{slug}")

    def train(
        self, slug: str, dataset: int, *, options: Mapping[str, Any] | None = None
    ) -> TrainingRun:
        """Start a training run (``202``); see ``train_and_wait`` to block until it is done."""
        body = clean_params({"dataset": dataset, "options": options})
        return cast(TrainingRun, self._json("POST", f"/api/v1/routers/{slug}/train", json=body))

    def train_and_wait(
        self,
        slug: str,
        dataset: int,
        *,
        options: Mapping[str, Any] | None = None,
        progress: RunProgress | None = None,
        timeout: float = 3600.0,
        interval: float = 2.0,
    ) -> TrainingRun:
        run = self.train(slug, dataset, options=options)
        return self._runs.wait(run["id"], progress=progress, timeout=timeout, interval=interval)

    def retrain_from_feedback(self, slug: str) -> FeedbackRetrain:
        """Feedback on served requests becomes a new dataset version and a training run."""
        path = f"/api/v1/routers/{slug}/retrain-from-feedback"
        return cast(FeedbackRetrain, self._json("POST", path))

    def drift(self, slug: str, *, page_size: int | None = None) -> Iterator[DriftCheck]:
        """The router's drift checks, newest first (README "Drift of live prompts")."""
        return self._pages(f"/api/v1/routers/{slug}/drift", {"limit": page_size})

    def versions(self, slug: str, *, page_size: int | None = None) -> Iterator[RouterVersion]:
        return self._pages(f"/api/v1/routers/{slug}/versions", {"limit": page_size})

    def report(self, slug: str, version: int) -> Report:
        """The held-out evaluation report of one version (curve, APGR/CPT or AIQ)."""
        return cast(Report, self._json("GET", f"/api/v1/routers/{slug}/versions/{version}/report"))

    def calibrate(self, slug: str, strong_share: float) -> Calibration:
        """RouteLLM's threshold for ``router-<slug>-<threshold>`` that sends ``strong_share`` (0..1)
        of the router's data to its strong model; the answer's ``model`` is ready to call."""
        path = f"/api/v1/routers/{slug}/calibrate"
        body = {"strong_share": strong_share}
        return cast(Calibration, self._json("POST", path, json=body))

    def activate(self, slug: str, version: int) -> Router:
        path = f"/api/v1/routers/{slug}/versions/{version}/activate"
        return cast(Router, self._json("POST", path))

    def rollback(self, slug: str) -> Router:
        """Serve again the version that served before the last activation, promotion or
        rollback (audited; the newest older version when the audit log has none)."""
        return cast(Router, self._json("POST", f"/api/v1/routers/{slug}/rollback"))

    def lifecycle(self, slug: str) -> RouterLifecycle:
        """The router's experiment settings: shadow or A/B challenger, exploration, rule."""
        return cast(RouterLifecycle, self._json("GET", f"/api/v1/routers/{slug}/lifecycle"))

    def lifecycle_update(self, slug: str, **changes: Any) -> RouterLifecycle:
        """Change experiment settings (``shadow_version=2``, ``challenger_version=None``, ...)."""
        path = f"/api/v1/routers/{slug}/lifecycle"
        return cast(RouterLifecycle, self._json("PATCH", path, json=changes))

    def experiment(self, slug: str) -> Experiment:
        """The live report of the running shadow or A/B experiment, with 95% intervals."""
        return cast(Experiment, self._json("GET", f"/api/v1/routers/{slug}/experiment"))

    def events(self, slug: str, *, page_size: int | None = None) -> Iterator[RouterEvent]:
        """The router's audit log, newest first: activations, promotions, rollbacks."""
        return self._pages(f"/api/v1/routers/{slug}/events", {"limit": page_size})

    def select(
        self,
        slug: str,
        messages: list[Message] | None = None,
        *,
        prompt: str | None = None,
        tradeoff: Tradeoff | None = None,
        candidates: list[str] | None = None,
    ) -> Selection:
        """The model the router picks for these messages, without calling it."""
        body = clean_params({"messages": messages, "prompt": prompt, "tradeoff": tradeoff,
                             "candidates": candidates})  # fmt: skip
        return cast(Selection, self._json("POST", f"/api/v1/routers/{slug}/select", json=body))

    def list(self, *, page_size: int | None = None) -> Iterator[Router]:
        return self._pages("/api/v1/routers", {"limit": page_size})
