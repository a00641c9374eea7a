"""Clients' ``_``-prefixed message and content-part keys, dropped on every ingress: the
gateway's own marks are never keys (``IngressMarks``), so no client key can pose as one."""

from __future__ import annotations

from routing.providers.base import JSON


def _private(item: object) -> bool:
    return isinstance(item, dict) and any(isinstance(k, str) and k.startswith("_") for k in item)


def _public(item: object) -> object:
    """``item`` without its ``_``-prefixed keys; the very object when it has none."""
    if not isinstance(item, dict) or not _private(item):
        return item
    return {k: v for k, v in item.items() if not (isinstance(k, str) and k.startswith("_"))}


def private_keys_dropped(body: JSON) -> JSON:
    """The request without ``_``-prefixed keys on its messages and their content parts, on every
    ingress: never sent upstream, dropped silently as clients' other unknown message keys are
    ignored (SDKs and agent frameworks add their own). They mean nothing to the gateway: its own
    marks are never keys (``IngressMarks``, carried beside the messages). Messages and parts
    without such keys stay the very objects the ingress made."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(
        _private(m) or (isinstance(m, dict) and any(map(_private, _parts(m)))) for m in messages
    ):
        return body
    public = []
    for message in messages:
        if isinstance(message, dict) and any(map(_private, _parts(message))):
            message = message | {"content": [_public(part) for part in message["content"]]}
        public.append(_public(message))
    return body | {"messages": public}


def _parts(message: JSON) -> list[object]:
    content = message.get("content")
    return content if isinstance(content, list) else []
