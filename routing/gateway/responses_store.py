"""Stored ``/v1/responses`` answers: ``store`` (OpenAI's default: true), ``previous_response_id``,
``GET`` and ``DELETE /v1/responses/{id}``.

A stored row (``routing.models.StoredResponse``) belongs to the organization of the key that
created it; every read and delete filters on it, so another organization's id is a 404 like an
unknown one. A row holds the response object and the conversation up to it as Responses input
items (earlier turns, this request's input, this answer's output): a request naming it as
``previous_response_id`` continues from those items (its ``instructions`` are not carried over,
as at OpenAI). Rows expire after ``RESPONSES_RETENTION_DAYS`` (reads ignore expired rows; the
``routing.responses_purge`` beat task deletes them); a conversation larger than
``RESPONSES_STORE_MAX_BYTES`` is answered with ``store: false`` and not kept.

The row is written before the answer's last bytes leave (``ResponseStore.flush``), so a client
that continues at once always finds it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from accounts.keys import AuthenticatedKey
from routerhub.errors import BadRequest, NotFound, PayloadTooLarge
from routerhub.text import decimal_number
from routing.gateway.http import GatewayRequest
from routing.models import StoredResponse
from routing.providers.base import JSON

logger = logging.getLogger(__name__)

_PURGE_BATCH = 1000
_MAX_ITEMS_PAGE = 100  # OpenAI's bound on an input_items page
_MAX_QUERY_CHARS = 4096
_MAX_REFERENCED_RESPONSES = 64  # stored responses one request's item_reference items may name
_SEARCHED_RESPONSES = 1000  # an fc_ reference is looked for among the newest live responses
_MAX_SEARCHED_ITEMS = 8  # fc_ (not msg_) references one request may make: each is a search


class ResponseStore:
    """One request's part in the store: the conversation it continues and, once its answer is
    known, the row to write."""

    def __init__(self, key: AuthenticatedKey, body: JSON, earlier: list[JSON]) -> None:
        self._organization_id = key.organization_id
        self.requested = body.get("store") is not False and settings.RESPONSES_RETENTION_DAYS > 0
        self.previous_id = body.get("previous_response_id")
        self._items = earlier + _input_items(body.get("input"))
        self._pending: StoredResponse | None = None

    def finish(self, response: JSON) -> JSON:
        """The answer as sent: ``store`` says whether it is kept (the row is written by
        ``flush``). Failed and cut-off answers are kept too, as at OpenAI."""
        response = response | {"previous_response_id": self.previous_id, "store": False}
        if not self.requested:
            return response
        items = self._items + [_as_input(item) for item in response.get("output") or []]
        stored = response | {"store": True}
        size = len(orjson.dumps(items)) + len(orjson.dumps(stored))
        if size > settings.RESPONSES_STORE_MAX_BYTES:
            return response
        expires = timezone.now() + timedelta(days=settings.RESPONSES_RETENTION_DAYS)
        self._pending = StoredResponse(
            id=response["id"],
            organization_id=self._organization_id,
            expires_at=expires,
            response=stored,
            items=items,
        )
        return stored

    async def flush(self) -> None:
        """Write the row ``finish`` prepared (once). A database failure is logged, not raised:
        the answer is already paid for; only its retrieval is lost."""
        row, self._pending = self._pending, None
        if row is None:
            return
        try:
            await sync_to_async(row.save, thread_sensitive=False)(force_insert=True)
        except DatabaseError:
            logger.warning("response %s not stored: database error", row.id, exc_info=True)


def _input_items(input_: object) -> list[JSON]:
    if isinstance(input_, str):
        return [{"type": "message", "role": "user", "content": input_}]
    return list(input_) if isinstance(input_, list) else []


def _as_input(item: JSON) -> JSON:
    """An output item as the input item that repeats it (ids and statuses dropped)."""
    if item.get("type") == "function_call":
        return {name: item[name] for name in ("type", "call_id", "name", "arguments")}
    return {"type": "message", "role": "assistant", "content": item.get("content") or []}


async def references_resolved(key: AuthenticatedKey, body: JSON) -> JSON:
    """The body with each ``{"type": "item_reference", "id": …}`` input item replaced by the
    stored item it names: the AI SDK's OpenAI provider (``store`` on by default) sends an
    earlier answer's message back so. A stored answer's message is ``msg_<generation id>``,
    found in the organization's response ``resp_<generation id>``; any other item id (``fc_<call
    id>``) is looked up among the organization's ``_SEARCHED_RESPONSES`` newest live responses
    (at most ``_MAX_SEARCHED_ITEMS`` such look-ups; an id several of them hold is a 400 unless
    exactly one of them is a response this input's ``msg_`` references name).
    An id not stored (never, ``store: false``, deleted, expired, another organization's) is a
    404 naming it; the same id twice is a 400 (OpenAI's "Duplicate item"), and the resolved
    items together are bounded by ``GATEWAY_MAX_BODY_BYTES`` (413): a small body cannot expand
    into an unbounded prompt."""
    input_ = body.get("input")
    if not isinstance(input_, list) or not any(_is_reference(item) for item in input_):
        return body
    preferred = {
        f"resp_{item['id'][4:]}"
        for item in input_
        if _is_reference(item) and isinstance(item.get("id"), str) and item["id"][:4] == "msg_"
    }
    stored = _StoredItems(key.organization_id, preferred)
    items, seen, size = [], set(), 0
    for index, item in enumerate(input_):
        if not _is_reference(item):
            items.append(item)
            continue
        reference = item.get("id")
        if not isinstance(reference, str):
            raise BadRequest(f"input[{index}].id must be a string.", param="input")
        if reference in seen:
            raise BadRequest(f"Duplicate item found with id {reference}.", param="input")
        seen.add(reference)
        resolved, item_size = await stored.item(reference, index)
        size += item_size
        if size > settings.GATEWAY_MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"input: the referenced items come to more than {settings.GATEWAY_MAX_BODY_BYTES} "
                "bytes (GATEWAY_MAX_BODY_BYTES); send fewer item_reference items.",
                param="input",
            )
        items.append(resolved)
    return body | {"input": items}


def _is_reference(item: object) -> bool:
    return isinstance(item, dict) and item.get("type") == "item_reference"


class _StoredItems:
    """The output items of the stored responses one request's references named, by id (each
    row's items indexed once, with their size as input items); at most
    ``_MAX_REFERENCED_RESPONSES`` look-ups, of which at most ``_MAX_SEARCHED_ITEMS`` searches
    (references other than ``msg_``). ``preferred``: the rows the request's ``msg_``
    references name, which settle an item id several stored responses hold."""

    def __init__(self, organization_id: int, preferred: set[str]) -> None:
        self._organization_id = organization_id
        self._preferred = preferred
        self._looked_up: set[str] = set()  # response ids (msg_ references) and other item ids
        self._searches = 0
        self._indexed: set[str] = set()  # rows whose items are in _by_id
        self._by_id: dict[str, tuple[JSON, int]] = {}

    async def item(self, reference: str, index: int) -> tuple[JSON, int]:
        response_id = f"resp_{reference[4:]}" if reference.startswith("msg_") else None
        if reference not in self._by_id and (response_id or reference) not in self._looked_up:
            if len(self._looked_up) >= _MAX_REFERENCED_RESPONSES:
                raise BadRequest(
                    f"input refers to items of more than {_MAX_REFERENCED_RESPONSES} responses.",
                    param="input",
                )
            self._looked_up.add(response_id or reference)
            if response_id is None:
                self._searches += 1
                if self._searches > _MAX_SEARCHED_ITEMS:
                    raise BadRequest(
                        f"input: more than {_MAX_SEARCHED_ITEMS} item_reference items other than "
                        "messages (msg_…); send those items themselves, or continue with "
                        "previous_response_id.",
                        param="input",
                    )
            find = sync_to_async(_rows_holding, thread_sensitive=False)
            rows = await find(self._organization_id, response_id, reference, self._preferred)
            if len(rows) > 1:
                raise BadRequest(
                    f"input[{index}]: item '{reference}' is in more than one stored response; "
                    "refer to its response's message (msg_…) too, send the item itself, or "
                    "continue with previous_response_id.",
                    param="input",
                )
            for row in rows:
                self._index(row)
        if reference not in self._by_id:
            raise NotFound(
                f"input[{index}]: no stored item with id '{reference}' (items of responses "
                "created with store: false, deleted or expired ones are not kept).",
                param="input",
            )
        return self._by_id[reference]

    def _index(self, row: StoredResponse) -> None:
        if row.id in self._indexed:
            return
        self._indexed.add(row.id)
        for item in row.response.get("output") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                as_input = _as_input(item)
                self._by_id.setdefault(item["id"], (as_input, len(orjson.dumps(as_input))))


def _rows_holding(
    organization_id: int, response_id: str | None, item_id: str, preferred: set[str]
) -> list[StoredResponse]:
    """The organization's live response ``response_id``, or (without one) those of its
    ``_SEARCHED_RESPONSES`` newest live responses with an output item ``item_id``: the newest
    two (more than one is ambiguous), or the one of ``preferred`` holding it."""
    if response_id is not None:
        row = _live_row(organization_id, response_id)
        return [] if row is None else [row]
    live = StoredResponse.objects.filter(
        organization_id=organization_id, expires_at__gt=timezone.now()
    )
    newest = live.order_by("-created_at").values("id")[:_SEARCHED_RESPONSES]
    holding = StoredResponse.objects.filter(
        id__in=newest, response__contains={"output": [{"id": item_id}]}
    )
    rows = list(holding.order_by("-created_at")[:2])
    if len(rows) > 1 and preferred:
        chosen = list(holding.filter(id__in=preferred)[:2])
        if len(chosen) == 1:
            return chosen
    return rows


async def conversation_before(key: AuthenticatedKey, body: JSON) -> list[JSON]:
    """The stored items a request's ``previous_response_id`` continues ([] without one)."""
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str):
        raise BadRequest(
            "previous_response_id must be a response id (a string).", param="previous_response_id"
        )
    row = await _row(key, previous)
    if row is None:
        raise NotFound(
            f"Previous response with id '{previous}' not found (or expired).",
            param="previous_response_id",
        )
    items: list[JSON] = row.items
    return items


async def _row(key: AuthenticatedKey, response_id: str) -> StoredResponse | None:
    return await sync_to_async(_live_row, thread_sensitive=False)(key.organization_id, response_id)


def _live_row(organization_id: int, response_id: str) -> StoredResponse | None:
    rows = StoredResponse.objects.filter(
        id=response_id, organization_id=organization_id, expires_at__gt=timezone.now()
    )
    return rows.first()


def _delete_row(organization_id: int, response_id: str) -> int:
    rows = StoredResponse.objects.filter(id=response_id, organization_id=organization_id)
    return rows.delete()[0]


async def response_get(req: GatewayRequest, key: AuthenticatedKey, response_id: str) -> None:
    row = await _row(key, response_id)
    if row is None:
        raise _not_found(response_id)
    await req.respond_json(200, row.response)


async def response_delete(req: GatewayRequest, key: AuthenticatedKey, response_id: str) -> None:
    delete = sync_to_async(_delete_row, thread_sensitive=False)
    if not await delete(key.organization_id, response_id):
        raise _not_found(response_id)
    await req.respond_json(200, {"id": response_id, "object": "response", "deleted": True})


async def response_input_items(
    req: GatewayRequest, key: AuthenticatedKey, response_id: str
) -> None:
    """``GET /v1/responses/{id}/input_items``: the items the response answered (earlier turns
    and its request's input, not its output), a page at a time as at OpenAI (``limit`` 1 to 100,
    default 20; ``order`` ``desc``, the default, or ``asc``; ``after`` an item id of a page)."""
    limit, order, after = _page_query(req.scope.get("query_string", b""))
    row = await _row(key, response_id)
    if row is None:
        raise _not_found(response_id)
    items = _with_ids(row.items[: len(row.items) - len(row.response.get("output") or [])])
    if order == "desc":
        items.reverse()
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise BadRequest(f"after: no input item '{after}' in this response.", param="after")
        start = ids.index(after) + 1
    page = items[start : start + limit]
    await req.respond_json(
        200,
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items),
        },
    )


def _page_query(raw: bytes) -> tuple[int, str, str | None]:
    query = parse_qs(raw.decode("latin-1")[:_MAX_QUERY_CHARS])
    limit_text = query.get("limit", ["20"])[-1]
    if not 1 <= (decimal_number(limit_text) or 0) <= _MAX_ITEMS_PAGE:
        raise BadRequest(f"limit must be an integer from 1 to {_MAX_ITEMS_PAGE}.", param="limit")
    order = query.get("order", ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", param="order")
    after = query.get("after", [None])[-1]
    return int(limit_text), order, after


def _with_ids(items: list[JSON]) -> list[JSON]:
    """Input items as OpenAI lists them: each with an id (its position: stored items have none)
    and a message's text as ``input_text``/``output_text`` parts."""
    listed = []
    for index, item in enumerate(items):
        entry = {"type": "message", **item, "id": item.get("id") or f"item_{index}"}
        if entry["type"] == "message" and isinstance(entry.get("content"), str):
            kind = "output_text" if entry.get("role") == "assistant" else "input_text"
            entry["content"] = [{"type": kind, "text": entry["content"]}]
        listed.append(entry)
    return listed


def _not_found(response_id: str) -> NotFound:
    return NotFound(
        f"No stored response with id '{response_id}' (responses created with "
        "store: false, deleted or expired ones are not kept)."
    )


def responses_purge(limit_batches: int = 100) -> int:
    """Delete expired rows, ``_PURGE_BATCH`` at a time and at most ``limit_batches`` batches per
    call (the beat task runs hourly); how many were deleted."""
    total = 0
    for _ in range(limit_batches):
        ids = list(
            StoredResponse.objects.filter(expires_at__lte=timezone.now()).values_list(
                "id", flat=True
            )[:_PURGE_BATCH]
        )
        if not ids:
            break
        deleted, _ = StoredResponse.objects.filter(id__in=ids).delete()
        total += deleted
    return total
