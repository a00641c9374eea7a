"""Pipelines (``/api/v1/pipelines``): cascades, series chains and parallel ensembles of models,
served as ``model: "pipeline/<slug>"``. Each definition posted is a new version, active at once.
A parallel pipeline needs ``aggregate`` (``{"type": "majority"}``, ``fastest``, ``first_valid``
with an optional ``gate``, or ``judge`` / ``synthesize`` with a ``model``) and may set
``branch_timeout_s``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypedDict, cast

from routerhub_client._async_account import AsyncResource
from routerhub_client._http import clean_params
from routerhub_client._sync_account import SyncResource

PipelineKind = Literal["cascade", "series", "parallel"]


class Pipeline(TypedDict, total=False):
    slug: str
    model: str  # "pipeline/<slug>", what /v1/chat/completions takes
    name: str
    version: int | None
    kind: PipelineKind | None
    steps: list[dict[str, Any]]
    aggregate: dict[str, Any]  # parallel pipelines
    branch_timeout_s: float  # when the pipeline set one
    created_at: str


class PipelineVersion(TypedDict, total=False):
    version: int
    kind: PipelineKind
    steps: list[dict[str, Any]]
    aggregate: dict[str, Any]
    branch_timeout_s: float
    created_at: str


class PipelineReport(TypedDict, total=False):
    """A cascade replayed on a router's held-out rows (``GET /api/v1/pipelines/{slug}/report``):
    ``curve`` per pre-call gate threshold, ``configured`` as defined, beside ``router_curve``."""

    pipeline: str
    version: int
    router: str
    router_version: int
    evaluation: dict[str, Any]
    note: str
    steps: list[str]
    curve: list[dict[str, Any]]  # {min_score, score, cost, share: [per step]}
    configured: dict[str, Any]
    router_curve: list[dict[str, Any]]  # {tradeoff, score, cost, share}
    models: list[dict[str, Any]]
    aiq: dict[str, float | None] | None


def _definition(
    kind: PipelineKind,
    steps: list[dict[str, Any]],
    aggregate: dict[str, Any] | None,
    branch_timeout_s: float | None,
) -> dict[str, Any]:
    body = {
        "kind": kind,
        "steps": steps,
        "aggregate": aggregate,
        "branch_timeout_s": branch_timeout_s,
    }
    return {name: value for name, value in body.items() if value is not None}


def _ubiops_body(
    slug: str,
    ubiops: dict[str, Any],
    deployments: dict[str, str],
    name: str | None,
    aggregate: dict[str, Any] | None,
    branch_timeout_s: float | None,
) -> dict[str, Any]:
    body = {"slug": slug, "ubiops": ubiops, "deployments": deployments, "name": name,
            "aggregate": aggregate, "branch_timeout_s": branch_timeout_s}  # fmt: skip
    return {key: value for key, value in body.items() if value is not None}


class Pipelines(SyncResource):
    def create(
        self,
        slug: str,
        kind: PipelineKind,
        steps: list[dict[str, Any]],
        *,
        name: str | None = None,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        definition = _definition(kind, steps, aggregate, branch_timeout_s)
        body = clean_params({"slug": slug, "name": name, **definition})
        return cast(Pipeline, self._json("POST", "/api/v1/pipelines", json=body))

    def import_ubiops(
        self,
        slug: str,
        ubiops: dict[str, Any],
        deployments: dict[str, str],
        *,
        name: str | None = None,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        """A new pipeline from a UbiOps pipeline version (its objects and attachments) and a
        map of each UbiOps deployment name to a model id or ``router/<slug>``."""
        body = _ubiops_body(slug, ubiops, deployments, name, aggregate, branch_timeout_s)
        return cast(Pipeline, self._json("POST", "/api/v1/pipelines/import", json=body))

    def get(self, slug: str) -> Pipeline:
        return cast(Pipeline, self._json("GET", f"/api/v1/pipelines/{slug}"))

    def delete(self, slug: str) -> None:
        self._t.request("DELETE", f"/api/v1/pipelines/{slug}")

    def versions(self, slug: str) -> list[PipelineVersion]:
        """Every version, newest first (the endpoint pages them: 50 a page by default)."""
        return list(self._pages(f"/api/v1/pipelines/{slug}/versions"))

    def update(
        self,
        slug: str,
        kind: PipelineKind,
        steps: list[dict[str, Any]],
        *,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        """Post a new definition: it becomes the active version."""
        path = f"/api/v1/pipelines/{slug}/versions"
        definition = _definition(kind, steps, aggregate, branch_timeout_s)
        return cast(Pipeline, self._json("POST", path, json=definition))

    def report(self, slug: str, *, router: str | None = None) -> PipelineReport:
        """The cascade's expected score and cost on ``router``'s held-out rows (default: the
        router its pre-call gates name), per gate threshold, beside the router's curve."""
        path = f"/api/v1/pipelines/{slug}/report"
        return cast(
            PipelineReport, self._json("GET", path, params=clean_params({"router": router}))
        )

    def list(self, *, page_size: int | None = None) -> Iterator[Pipeline]:
        return self._pages("/api/v1/pipelines", {"limit": page_size})


class AsyncPipelines(AsyncResource):
    async def create(
        self,
        slug: str,
        kind: PipelineKind,
        steps: list[dict[str, Any]],
        *,
        name: str | None = None,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        definition = _definition(kind, steps, aggregate, branch_timeout_s)
        body = clean_params({"slug": slug, "name": name, **definition})
        return cast(Pipeline, await self._json("POST", "/api/v1/pipelines", json=body))

    async def import_ubiops(
        self,
        slug: str,
        ubiops: dict[str, Any],
        deployments: dict[str, str],
        *,
        name: str | None = None,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        """A new pipeline from a UbiOps pipeline version (its objects and attachments) and a
        map of each UbiOps deployment name to a model id or ``router/<slug>``."""
        body = _ubiops_body(slug, ubiops, deployments, name, aggregate, branch_timeout_s)
        return cast(Pipeline, await self._json("POST", "/api/v1/pipelines/import", json=body))

    async def get(self, slug: str) -> Pipeline:
        return cast(Pipeline, await self._json("GET", f"/api/v1/pipelines/{slug}"))

    async def delete(self, slug: str) -> None:
        await self._t.request("DELETE", f"/api/v1/pipelines/{slug}")

    async def versions(self, slug: str) -> list[PipelineVersion]:
        """Every version, newest first (the endpoint pages them: 50 a page by default)."""
        return [v async for v in self._pages(f"/api/v1/pipelines/{slug}/versions")]

    async def update(
        self,
        slug: str,
        kind: PipelineKind,
        steps: list[dict[str, Any]],
        *,
        aggregate: dict[str, Any] | None = None,
        branch_timeout_s: float | None = None,
    ) -> Pipeline:
        """Post a new definition: it becomes the active version."""
        path = f"/api/v1/pipelines/{slug}/versions"
        definition = _definition(kind, steps, aggregate, branch_timeout_s)
        return cast(Pipeline, await self._json("POST", path, json=definition))

    async def report(self, slug: str, *, router: str | None = None) -> PipelineReport:
        """The cascade's expected score and cost on ``router``'s held-out rows (default: the
        router its pre-call gates name), per gate threshold, beside the router's curve."""
        path = f"/api/v1/pipelines/{slug}/report"
        params = clean_params({"router": router})
        return cast(PipelineReport, await self._json("GET", path, params=params))

    def list(self, *, page_size: int | None = None) -> AsyncIterator[Pipeline]:
        return self._pages("/api/v1/pipelines", {"limit": page_size})
