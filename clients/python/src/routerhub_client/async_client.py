"""``AsyncRouterHub``: the asynchronous client (``await``-able resources, ``async for`` lists,
``client.openai`` an ``openai.AsyncOpenAI``)."""

from __future__ import annotations

from functools import cached_property

import httpx
from openai import AsyncOpenAI

from routerhub_client._async_account import (
    CreditsResource,
    FeedbackResource,
    Generations,
    Keys,
    ProviderKeys,
    UsageResource,
)
from routerhub_client._async_training import Datasets, Routers, TrainingRuns
from routerhub_client._http import AsyncTransport
from routerhub_client._pipelines import AsyncPipelines
from routerhub_client._webhooks import AsyncWebhooks
from routerhub_client.client import client_options, openai_arguments


class AsyncRouterHub:
    """The asynchronous twin of ``RouterHub``, with the same resources and arguments."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        default_headers: dict[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.options = client_options(
            base_url, api_key, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )  # fmt: skip
        self._transport = AsyncTransport(self.options, http_client)
        self.keys = Keys(self._transport)
        self.credits = CreditsResource(self._transport)
        self.usage = UsageResource(self._transport)
        self.generations = Generations(self._transport)
        self.feedback = FeedbackResource(self._transport)
        self.provider_keys = ProviderKeys(self._transport)
        self.datasets = Datasets(self._transport)
        self.training_runs = TrainingRuns(self._transport)
        self.routers = Routers(self._transport, self.training_runs)
        self.pipelines = AsyncPipelines(self._transport)
        self.webhooks = AsyncWebhooks(self._transport)

    @cached_property
    def openai(self) -> AsyncOpenAI:
        """The official asynchronous OpenAI client for ``/v1``."""
        return AsyncOpenAI(**openai_arguments(self.options))

    async def close(self) -> None:
        await self._transport.close()
        if "openai" in self.__dict__:
            await self.openai.close()

    async def __aenter__(self) -> AsyncRouterHub:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
