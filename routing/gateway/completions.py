"""``POST /v1/completions``, OpenAI's legacy text completions, served as a chat request.

The prompt becomes one user message and the request takes chat's whole path
(``routing.gateway.chat``: plan, hold, fallbacks, billing); its answers — whole or streamed —
are rewritten on their way out into the ``text_completion`` shape (``choices[].text``).
"""

from __future__ import annotations

from typing import Any

import orjson

from routerhub.errors import BadRequest
from routing.gateway.chat import _serve
from routing.gateway.exchange import authenticate
from routing.gateway.http import GatewayRequest, RewritingSend
from routing.providers.base import JSON, text_of

# Legacy parameters chat models cannot honour: refused rather than silently ignored.
_UNSUPPORTED = {
    "echo": "echo is not supported: the prompt is sent to a chat model.",
    "suffix": "suffix (insertion) is not supported: the prompt is sent to a chat model.",
    "logprobs": "logprobs is not supported on /v1/completions; use /v1/chat/completions.",
    # Legacy completions have no tools (OpenAI's never had them): say so rather than forward them.
    **{
        name: f"{name} is not supported on /v1/completions; use /v1/chat/completions."
        for name in ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")
    },
}


def chat_body_from_completion(body: JSON) -> JSON:
    """The chat request for a legacy completion request, or a 400 naming the field."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise BadRequest(
            "prompt lists more than one prompt; send one prompt per request.", param="prompt"
        )
    if not isinstance(prompt, str):
        raise BadRequest(
            "prompt is required: a string (token arrays are not supported).", param="prompt"
        )
    for name, message in _UNSUPPORTED.items():
        if body.get(name) not in (None, False):
            raise BadRequest(message, param=name)
    best_of = body.get("best_of")
    if best_of is not None and best_of != body.get("n", 1):
        raise BadRequest(
            "best_of is not supported; use n for several completions.", param="best_of"
        )
    chat = {k: v for k, v in body.items() if k not in ("prompt", "best_of", *_UNSUPPORTED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


async def completions(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=False)
    body = chat_body_from_completion(await req.json())
    rewrite = req.relayed(lambda send: RewritingSend(send, _text_completion, _rewrite_events))
    await _serve(rewrite, key, body, anthropic=False)


def _rewrite_events(data: bytes) -> bytes:
    # Chat writes whole events, one or more per write (the last chunk, then [DONE]).
    out = []
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: {"):
            chunk = orjson.loads(event.removeprefix(b"data: "))
            if "choices" in chunk:  # not an error event
                event = b"data: " + orjson.dumps(_text_completion(chunk))
        out.append(event)
    return b"\n\n".join(out)


def _text_completion(chat: JSON) -> JSON:
    """A chat completion (or chunk) as a text completion (or chunk): same id, model, usage."""
    choices: list[Any] = []
    for choice in chat.get("choices") or []:
        part = choice.get("message") or choice.get("delta") or {}
        choices.append(
            {
                "index": choice.get("index", 0),
                "text": text_of(part.get("content")),
                "finish_reason": choice.get("finish_reason"),
                "logprobs": None,
            }
        )
    return chat | {"object": "text_completion", "choices": choices}
