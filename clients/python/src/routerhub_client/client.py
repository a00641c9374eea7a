"""``RouterHub``: the synchronous client. Inference goes through the official ``openai`` SDK,
configured for RouterHub; the management API through typed resources."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import httpx
from openai import AsyncOpenAI, OpenAI

from routerhub_client._http import (
    DEFAULT_TIMEOUT,
    ClientOptions,
    SyncTransport,
    normalize_base_url,
)
from routerhub_client._pipelines import Pipelines
from routerhub_client._sync_account import (
    CreditsResource,
    FeedbackResource,
    Generations,
    Keys,
    ProviderKeys,
    UsageResource,
)
from routerhub_client._sync_training import Datasets, Routers, TrainingRuns
from routerhub_client._webhooks import Webhooks


def client_options(
    base_url: str | None,
    api_key: str | None,
    *,
    timeout: float | httpx.Timeout | None,
    max_retries: int,
    default_headers: dict[str, str] | None,
) -> ClientOptions:
    """Options from the arguments, else ``ROUTERHUB_BASE_URL`` / ``ROUTERHUB_API_KEY``."""
    base_url = base_url or os.environ.get("ROUTERHUB_BASE_URL")
    api_key = api_key or os.environ.get("ROUTERHUB_API_KEY")
    if not base_url:
        raise ValueError(
            "pass base_url= or set ROUTERHUB_BASE_URL (e.g. https://routerhub.example)"
        )
    if not api_key:
        raise ValueError("pass api_key= or set ROUTERHUB_API_KEY (a key starting with rh-)")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout)
    return ClientOptions(
        base_url=normalize_base_url(base_url),
        api_key=api_key,
        timeout=timeout,
        max_retries=max_retries,
        default_headers=dict(default_headers or {}),
    )


class RouterHub:
    """RouterHub's API with one key.

    ``client.openai`` is an ``openai.OpenAI`` pointed at ``<base_url>/v1`` (needs an
    ``inference`` key); ``keys``, ``credits``, ``usage``, ``datasets``, ``routers`` … call the
    management API (most need a ``manage`` key; ``routers.select``, ``feedback``,
    ``generations`` and ``keys.current`` also work with an inference key).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        default_headers: dict[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.options = client_options(
            base_url, api_key, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )  # fmt: skip
        self._transport = SyncTransport(self.options, http_client)
        self.keys = Keys(self._transport)
        self.credits = CreditsResource(self._transport)
        self.usage = UsageResource(self._transport)
        self.generations = Generations(self._transport)
        self.feedback = FeedbackResource(self._transport)
        self.provider_keys = ProviderKeys(self._transport)
        self.datasets = Datasets(self._transport)
        self.training_runs = TrainingRuns(self._transport)
        self.routers = Routers(self._transport, self.training_runs)
        self.pipelines = Pipelines(self._transport)
        self.webhooks = Webhooks(self._transport)

    @cached_property
    def openai(self) -> OpenAI:
        """The official OpenAI client for ``/v1`` (chat, embeddings, models, responses)."""
        return OpenAI(**openai_arguments(self.options))

    @cached_property
    def async_openai(self) -> AsyncOpenAI:
        """The official asynchronous OpenAI client for ``/v1``."""
        return AsyncOpenAI(**openai_arguments(self.options))

    def close(self) -> None:
        self._transport.close()
        if "openai" in self.__dict__:
            self.openai.close()

    def __enter__(self) -> RouterHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def openai_arguments(options: ClientOptions) -> dict[str, Any]:
    """The ``openai`` SDK's settings for RouterHub's gateway (its own retries on 429/5xx)."""
    t = options.timeout
    return {
        "base_url": f"{options.base_url}/v1",
        "api_key": options.api_key,
        # A tuple, not the httpx object: openai 3.x runs on its own copy of httpx (``httpx2``).
        "timeout": (t.connect, t.read, t.write, t.pool),
        "max_retries": options.max_retries,
        "default_headers": dict(options.default_headers),
    }
