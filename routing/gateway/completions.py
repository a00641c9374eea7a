"""``POST /v1/completions``, OpenAI's legacy text completions, served as a chat request.

One prompt becomes one user message and the request takes chat's whole path
(``routing.gateway.chat``: plan, hold, fallbacks, billing); its answers — whole or streamed —
are rewritten on their way out into the ``text_completion`` shape (``choices[].text``). A list
of prompts (at most ``COMPLETIONS_MAX_PROMPTS``, not streamed) is one generation under one hold:
``routing.gateway.completions_prompts``.
"""

from __future__ import annotations

import orjson
from django.conf import settings

from routerhub.errors import BadRequest
from routing.gateway.chat import chat_serve
from routing.gateway.completions_prompts import serve_prompts, text_choice
from routing.gateway.exchange import authenticate
from routing.gateway.http import GatewayRequest, RewritingSend
from routing.providers.base import JSON

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


def chat_bodies_from_completion(body: JSON) -> list[JSON]:
    """The chat request of each prompt of a legacy completion request, or a 400 naming the field."""
    prompts = _prompts(body)
    for name, message in _UNSUPPORTED.items():
        if body.get(name) not in (None, False):
            raise BadRequest(message, param=name)
    best_of = body.get("best_of")
    if best_of is not None and best_of != body.get("n", 1):
        raise BadRequest(
            "best_of is not supported; use n for several completions.", param="best_of"
        )
    if len(prompts) > 1 and body.get("stream"):
        raise BadRequest(
            "stream takes one prompt; send several prompts without stream, or one "
            "streamed request per prompt.",
            param="stream",
        )
    chat = {k: v for k, v in body.items() if k not in ("prompt", "best_of", *_UNSUPPORTED)}
    return [chat | {"messages": [{"role": "user", "content": prompt}]} for prompt in prompts]


def _prompts(body: JSON) -> list[str]:
    prompt = body.get("prompt")
    items: list[object] = prompt if isinstance(prompt, list) and prompt else [prompt]
    prompts = [p for p in items if isinstance(p, str)]
    if len(prompts) < len(items):
        raise BadRequest(
            "prompt is required: a string or a list of strings (token arrays are not supported).",
            param="prompt",
        )
    most = settings.COMPLETIONS_MAX_PROMPTS
    if len(prompts) > most:
        raise BadRequest(
            f"prompt lists {len(prompts)} prompts; at most {most} per request.", param="prompt"
        )
    return prompts


async def completions(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=False)
    bodies = chat_bodies_from_completion(await req.json())
    if len(bodies) > 1:
        await serve_prompts(req, key, bodies)
        return
    rewrite = req.relayed(lambda send: RewritingSend(send, _text_completion, _rewrite_events))
    await chat_serve(rewrite, key, bodies[0], anthropic=False)


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
    choices = [text_choice(choice, choice.get("index", 0)) for choice in chat.get("choices") or []]
    return chat | {"object": "text_completion", "choices": choices}
