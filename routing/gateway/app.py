"""The gateway ASGI app: routes ``/v1/*`` to handlers and renders errors in API.md's format."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from django.db import InterfaceError, OperationalError

from billing import metering
from routerhub.db import DatabaseThreadPool
from routerhub.errors import ApiError, ServiceUnavailable, error_body
from routerhub.ttl_cache import refresh_ahead_enable, refresh_ahead_stop
from routing.gateway import chat, completions, embeddings, listing, model_select, responses
from routing.gateway.http import ClientGone, GatewayRequest, InFlight, Receive, Scope, Send
from routing.gateway.limits_redis import rate_limit_close
from routing.gateway.openrouter import openrouter, openrouter_route
from routing.gateway.upstream import http_client_close
from routing.ingress.anthropic import anthropic_error
from routing.routers import routers_watch_activations

logger = logging.getLogger(__name__)


def requests_in_flight() -> int:
    """For graceful shutdown and tests: 0 once every request, settlement included, is done."""
    return InFlight.count


# Each event loop's handlers still running (a server's own: shutdown waits for them). Keyed by
# loop, not a process-wide count: a test process runs several servers, and a handler another
# one left running must never hold this one's shutdown.
_running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


async def gateway_app(scope: Scope, receive: Receive, send: Send) -> None:
    InFlight.count += 1
    loop = asyncio.get_running_loop()
    running, done = _running.setdefault(loop, set()), loop.create_future()
    running.add(done)
    try:
        await _handle(GatewayRequest(scope, receive, send))
    finally:
        InFlight.count -= 1
        running.discard(done)
        done.set_result(None)  # no callback but a shutdown's wait: never needs a closed loop


async def _handle(req: GatewayRequest) -> None:
    anthropic = req.path.rstrip("/") in ("/v1/messages", "/v1/messages/count_tokens")
    try:
        await _route(req)
    except ApiError as error:
        if not req.response_started:
            await req.respond_error(error, anthropic=anthropic)
    except ClientGone:
        return
    except (OperationalError, InterfaceError):
        # The database is down or restarting: a retryable 503, not a 500. Nothing was half
        # written (every write is one transaction) and the pool reconnects when it is back.
        logger.warning("database unavailable on %s (request %s)", req.path, req.request_id)
        if not req.response_started:
            unavailable = ServiceUnavailable(
                "The service is temporarily unavailable; retry in a moment.",
                headers={"Retry-After": "1"},
            )
            await req.respond_error(unavailable, anthropic=anthropic)
    except Exception:
        logger.exception(
            "gateway error on %s %s (request %s)", req.method, req.path, req.request_id
        )
        if not req.response_started:
            body = error_body(
                500, "internal_error", "Internal error; the request id identifies it."
            )
            await req.respond_json(
                500, anthropic_error(body, req.request_id) if anthropic else body
            )


Handler = Callable[[GatewayRequest], Awaitable[None]]
# A templated route's handler: the request and the path's rest after the part before ``{``.
RestHandler = Callable[[GatewayRequest, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """One route of the gateway: ``methods`` its Allow header, ``path`` as the schema names it.
    A path with a ``{…}`` part matches by what precedes and follows it (the part may hold
    slashes: a model id is ``author/slug``); its handler gets the path's rest after the prefix."""

    methods: str
    path: str
    handler: Handler | RestHandler


# Every route ``_route`` serves under ``/v1`` (OpenRouter's ``/api/v1`` ones are in
# ``routing.gateway.openrouter``): the dispatcher and the OpenAPI schema's description
# (``routerhub.schema.gateway_routes``) both read this table.
GATEWAY_ROUTES: tuple[GatewayRoute, ...] = (
    GatewayRoute("POST", "/v1/chat/completions", chat.chat_completions),
    GatewayRoute("POST", "/v1/completions", completions.completions),
    GatewayRoute("POST", "/v1/responses", responses.responses),
    # Exact, so it wins over the ``/v1/responses/{id}`` template (matched only after ``_EXACT``).
    GatewayRoute("POST", "/v1/responses/input_tokens", responses.responses_input_tokens),
    GatewayRoute("POST", "/v1/embeddings", embeddings.embeddings),
    GatewayRoute("POST", "/v1/messages", chat.messages),
    GatewayRoute("POST", "/v1/messages/count_tokens", chat.messages_count_tokens),
    GatewayRoute("GET", "/v1/models", listing.models_list),
    GatewayRoute("GET, DELETE", "/v1/responses/{id}", responses.stored_response),
    GatewayRoute("GET", "/v1/responses/{id}/input_items", responses.stored_response),
    GatewayRoute("GET", "/v1/models/{id}", listing.model_detail),
)

# The table as the hot path reads it: exact paths in a dict (one lookup), then the few
# templated ones scanned in order, the longest suffix first (``{id}/input_items`` before ``{id}``).
_EXACT: dict[str, tuple[str, Handler]] = {
    r.path: (r.methods, cast(Handler, r.handler)) for r in GATEWAY_ROUTES if "{" not in r.path
}


def _templated(route: GatewayRoute) -> tuple[str, str, str, RestHandler]:
    """``route``'s prefix (before ``{``), suffix (after ``}``), methods and handler."""
    prefix, suffix = route.path[: route.path.index("{")], route.path[route.path.index("}") + 1 :]
    return prefix, suffix, route.methods, cast(RestHandler, route.handler)


_TEMPLATED = tuple(
    sorted((_templated(r) for r in GATEWAY_ROUTES if "{" in r.path), key=lambda t: -len(t[1]))
)


async def _route(req: GatewayRequest) -> None:
    path, method = req.path.rstrip("/"), req.method
    if path.startswith("/api/"):  # only what select_route or openrouter_route chose comes here
        if openrouter_route(req.scope):
            await openrouter(req, _allow)
        else:
            await model_select.router_select(req)
        return
    exact = _EXACT.get(path)
    if exact is not None:
        allowed, handler = exact
        _allow(method, allowed)
        await handler(req)
        return
    for prefix, suffix, allowed, rest_handler in _TEMPLATED:
        if path.startswith(prefix) and path.endswith(suffix):
            _allow(method, allowed)
            await rest_handler(req, path.removeprefix(prefix))
            return
    raise _RouteNotFound(f"No route matches {method} {req.path}.{_doubled_v1_hint(path)}")


def _doubled_v1_hint(path: str) -> str:
    """For ``/v1/v1/messages``: a base URL given with ``/v1`` to a client that adds it itself
    (the anthropic SDK, litellm's ``anthropic/`` models)."""
    single = path.removeprefix("/v1")
    if not path.startswith("/v1/v1/") or single not in _EXACT:
        return ""
    return (
        f" The route is {single}: the client adds /v1 itself, so give it the base URL without "
        "/v1 (the gateway's origin)."
    )


class _RouteNotFound(ApiError):
    status, type = 404, "not_found"


class _MethodNotAllowed(ApiError):
    status, type = 405, "method_not_allowed"


def _allow(method: str, allowed: str) -> None:
    """405 unless ``method`` is one of ``allowed`` (an Allow header: "GET" or "GET, DELETE")."""
    if method != allowed and method not in allowed.split(", "):
        raise _MethodNotAllowed(
            f"Method {method} is not allowed here; use {allowed}.", headers={"Allow": allowed}
        )


def _gc_tune() -> None:
    """Move everything loaded at startup (Django, the catalog, modules) out of the garbage
    collector's reach and collect young objects less often: full collections walked that whole
    heap in the middle of requests, a visible share of the tail latency (``make bench``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


async def handlers_drain(timeout: float) -> None:
    """At shutdown, wait (at most ``timeout`` s) for this loop's handlers still running: those
    uvicorn cancelled after its graceful timeout are settling what they got (billed
    ``server_cancelled``, ``exchange.exchange_run``). Before, billing was closed under them and
    the worker exited first: the prompt a provider had went unbilled. Past the bound the shutdown
    goes on; the reservation sweep settles their holds."""
    running = set(_running.get(asyncio.get_running_loop(), ()))
    await metering.settled_within(running, timeout, "request handler(s)")


async def gateway_lifespan(receive: Receive, send: Send) -> None:
    """ASGI lifespan for the whole server: keep routers warm while up, close the pooled
    clients on shutdown."""
    warmer: asyncio.Task[None] | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Blocking database calls run in this pool, which drops connections a database
            # restart left broken (routerhub.db).
            asyncio.get_running_loop().set_default_executor(DatabaseThreadPool())
            _gc_tune()
            refresh_ahead_enable()
            warmer = asyncio.create_task(routers_watch_activations())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if warmer is not None:
                warmer.cancel()
            await refresh_ahead_stop()
            drain = settings.GATEWAY_SHUTDOWN_DRAIN_SECONDS
            await handlers_drain(drain)
            await metering.close(drain)  # settle what this process has read before exiting
            await http_client_close()
            await rate_limit_close()
            await send({"type": "lifespan.shutdown.complete"})
            return
