"""``POST /api/v1/routers/{slug}/select`` at gateway speed: the answers of the DRF view, without
Django's request cycle (10-17 ms p50 there on this machine: middleware, DRF and the synchronous hop).

SDKs call it before every request, with a bearer key and a JSON body: those requests come here
(``select_route``). Everything else on that path — dashboard sessions, form or multipart bodies,
other ``Accept`` types, a body without ``Content-Length`` — still reaches the DRF view
(``routing.router_api.RouterSelectView``), which stays the contract and the OpenAPI schema. This
handler reuses what the view runs (key authentication, the parser, the ``SelectInput``
serializer, the router decision and the one error mapping), in the view's order, so both answer
every request alike (tests/serving/test_select_lean.py sends one matrix to both).
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.utils.json import strict_constant

from accounts.keys import bearer_token, key_authenticate_async
from routerhub.body_limits import MAX_JSON_DEPTH, nested_deeper_than
from routerhub.domain import InvalidInput
from routerhub.errors import NotFound, drf_exception_handler
from routerhub.parsers import JSONParser
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.http import GatewayRequest, Scope
from routing.gateway.select_limits import rate_limit_admit_select
from routing.router_request import (
    MAX_CANDIDATES,
    models_allowed_check,
    select_prompt,
    task_label,
)
from routing.routers import (
    PLATFORM_ROUTER_SLUG,
    router_candidates_allowed,
    router_decide_async,
    router_row_async,
    tradeoff_parse,
)
from routing.serializers import SelectInput

_PATH = re.compile(r"/api/v1/routers/(?P<slug>[-a-zA-Z0-9_]+)/select")  # Django's <slug:slug>
_JSON_TYPES = frozenset(
    {
        b"application/json",
        b"application/json; charset=utf-8",
        b"application/json;charset=utf-8",
        b"application/json; charset=UTF-8",
        b"application/json;charset=UTF-8",
    }
)
_JSON_ACCEPTS = frozenset({None, b"*/*", b"application/json"})  # DRF renders these as JSON
_INT_KEYS = orjson.OPT_NON_STR_KEYS
_DECIDING = (b"authorization", b"content-type", b"content-length", b"accept")


def select_route(scope: Scope) -> bool:
    """Whether this request is one the lean handler answers exactly as the DRF view would."""
    if scope["method"] != "POST" or _PATH.fullmatch(scope["path"]) is None:
        return False
    seen: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _DECIDING:
            if name in seen:
                return False  # repeated: Django joins them with commas; leave that to it
            seen[name] = value
    return (
        bool(seen.get(b"authorization", b"").strip())  # no key: a session, with CSRF
        and seen.get(b"content-type") in _JSON_TYPES
        and seen.get(b"content-length", b"").isdigit()  # DRF reads no body without it
        and seen.get(b"accept") in _JSON_ACCEPTS
    )


async def router_select(req: GatewayRequest) -> None:
    match = _PATH.fullmatch(req.path)
    assert match is not None, "select_route chose this request"
    slug = match["slug"]
    key = await key_authenticate_async(bearer_token(req.headers.get("authorization")))
    await rate_limit_admit_select(key)  # first, as the DRF view: a loop of selects is cheap to stop
    platform = slug == PLATFORM_ROUTER_SLUG
    row = await router_row_async(None if platform else key.organization_id, slug)
    if not platform and row is None:
        raise NotFound(f"No router '{slug}' in this organization.", param="slug")
    try:
        body = _validated(await _body(req))
    except (APIException, RecursionError) as exc:
        response = drf_exception_handler(exc, {})
        assert response is not None, "DRF errors always map"
        # A list item's errors are keyed by its index: an int key, rendered "0" as DRF does.
        await req.respond(response.status_code, orjson.dumps(response.data, option=_INT_KEYS))
        return
    candidates = body.get("candidates")
    own = router_candidates_allowed(key.allowed_models, f"router/{slug}", row)
    named = (("candidates", c) for c in candidates or ())
    models_allowed_check(key.allowed_models, named, router_candidates=own)
    decision = await router_decide_async(
        organization_id=key.organization_id,
        model_id=f"router/{slug}",
        prompt=select_prompt(body),
        tradeoff=tradeoff_parse(body.get("tradeoff"), param="tradeoff"),
        candidates=candidates,
        catalog=await catalog_get(),
        task=body.get("task"),
    )
    answer, headers = decision.as_selection()
    await req.respond_json(200, answer, headers=headers)


async def _body(req: GatewayRequest) -> Any:
    """The body as DRF's ``JSONParser`` reads it (Python's json: strict about NaN, big integers
    kept exact, nesting at most ``MAX_JSON_DEPTH`` deep), under Django's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    raw = await req.body(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if not raw:
        return {}
    try:  # what the parser does, without its stream reader (~50 µs of a 2 KB body)
        data = json.loads(raw.decode("utf-8"), parse_constant=strict_constant)
    except (ValueError, RecursionError):
        pass  # the parser itself words the error
    else:
        if not nested_deeper_than(raw, data, MAX_JSON_DEPTH):
            return data  # deeper: the parser refuses it, as the DRF view's does
    return JSONParser().parse(io.BytesIO(raw), parser_context={"encoding": "utf-8"})


def _validated(data: Any) -> dict[str, Any]:
    plain = _plainly_valid(data)
    if plain is not None:
        return plain
    serializer = SelectInput(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _plainly_valid(data: Any) -> dict[str, Any] | None:
    """``SelectInput``'s validated data for the bodies SDKs send, or None for anything the
    serializer must judge (it words every error). Building the serializer took ~0.2-0.5 ms, a
    quarter of the target for the whole exchange; this accepts only what it would accept
    unchanged (tests/serving/test_select_lean.py compares odd cases with the DRF view)."""
    if type(data) is not dict or ("messages" not in data and "prompt" not in data):
        return None
    out: dict[str, Any] = {}
    if "messages" in data:
        messages = data["messages"]
        if type(messages) is not list or not messages or any(type(m) is not dict for m in messages):
            return None
        out["messages"] = [dict(m) for m in messages]
    if "prompt" in data:
        if not _plain_text(data["prompt"]):
            return None
        out["prompt"] = data["prompt"]
    if "tradeoff" in data:
        tradeoff = data["tradeoff"]
        if type(tradeoff) not in (str, int, float) or not math.isfinite(
            tradeoff if type(tradeoff) is float else 0
        ):
            return None
        out["tradeoff"] = tradeoff
    if "task" in data:
        try:
            out["task"] = task_label(data["task"], "task")
        except InvalidInput:
            return None  # the view's serializer says why
    if "candidates" in data:
        candidates = data["candidates"]
        if (
            type(candidates) is not list
            or len(candidates) > MAX_CANDIDATES
            or not all(_plain_text(c) and c == c.strip() for c in candidates)
        ):
            return None
        out["candidates"] = list(candidates)
    return out


def _plain_text(value: Any) -> bool:
    """A string ``CharField`` keeps as it is: not blank, no NUL, no lone surrogate."""
    if type(value) is not str or not value or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
