"""Mount the gateway beside Django: ``/v1/*``, keyed JSON calls of
``POST /api/v1/routers/{slug}/select`` and OpenRouter's inference and model paths under
``/api/v1`` (``routing.gateway.openrouter``) go to the lean gateway app, the rest to Django."""

from __future__ import annotations

from typing import Any

from routing.gateway.app import gateway_app, gateway_lifespan
from routing.gateway.http import Receive, Scope, Send
from routing.gateway.model_select import select_route
from routing.gateway.openrouter import openrouter_route

ASGIApp = Any


def with_gateway(django_app: ASGIApp) -> ASGIApp:
    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"].startswith("/v1/")
            or scope["path"] == "/v1"
            or select_route(scope)
            or openrouter_route(scope)
        ):
            await gateway_app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await gateway_lifespan(receive, send)
        else:
            await django_app(scope, receive, send)

    return application
