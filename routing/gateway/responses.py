"""``POST /v1/responses``, OpenAI's Responses API, served as a chat request.

The request's ``input`` items, ``instructions``, flat function tools and ``text.format`` become
a chat request, which takes chat's whole path (``routing.gateway.chat``: plan, hold, fallbacks,
billing), as ``/v1/completions`` does; its answers — whole or streamed — are rewritten on their
way out into the ``response`` shape and the Responses event stream (``responses_answer``).
Answers are stored unless ``store`` is false, and ``previous_response_id`` continues a stored
one (``responses_store``); conversations are refused with a 400, and so are OpenAI's hosted
tools (web search, file search, computer use...).
"""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest
from routing.gateway.allowed_tools import allowed_tools_applied, responses_allowed_tools
from routing.gateway.chat import chat_serve, counted_model_check
from routing.gateway.exchange import authenticate
from routing.gateway.http import GatewayRequest, RewritingSend
from routing.gateway.limits import rate_limit_admit
from routing.gateway.responses_answer import ResponseEventWriter, response_from_chat
from routing.gateway.responses_store import (
    ResponseStore,
    conversation_before,
    references_resolved,
    response_delete,
    response_get,
    response_input_items,
)
from routing.gateway.token_bounds import estimate_counted_tokens
from routing.providers.base import GATEWAY_PARAMETERS, JSON

# Parameters this gateway cannot honour: refused rather than silently ignored.
_UNSUPPORTED = {
    "conversation": "conversation objects are not supported; continue a stored response with "
    "previous_response_id, or send the whole conversation in input.",
    "background": "background responses are not supported; stream the response instead.",
    "prompt": "prompt templates are not supported; send instructions and input.",
    "top_logprobs": "top_logprobs is not supported on /v1/responses; use /v1/chat/completions.",
}
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Accepted and without effect here: ``include`` asks for what is never produced here, the input
# is never truncated by the gateway, and the rest only tag or tune OpenAI's own service.
_IGNORED = (
    "include",
    "truncation",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "max_tool_calls",
    "stream_options",
)
# Chat parameters of the same name and meaning, and RouterHub's own (models, provider, router).
_COPIED = (
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "stream",
    "service_tier",  # chat's rules: a standard tier on the platform's keys (request_shape)
    *sorted(GATEWAY_PARAMETERS - {"messages", "usage"}),
)
_TRANSLATED = (
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "max_output_tokens",
    "reasoning",
    "store",
    "previous_response_id",
)
_KNOWN = frozenset((*_UNSUPPORTED, *_IGNORED, *_COPIED, *_TRANSLATED))
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


async def responses(req: GatewayRequest) -> None:
    key = await authenticate(req, anthropic=False)
    body = await req.json()  # size-limited
    # Counted before any stored item is read: a key over its limit costs no database look-up.
    # Its prompt tokens are counted by ``chat_serve`` once the stored turns are known.
    await rate_limit_admit(key, 0)
    body = await references_resolved(key, body)
    earlier = await conversation_before(key, body)
    chat = chat_body_from_response(body, earlier)
    store = ResponseStore(key, body, earlier)
    events = ResponseEventWriter(body, store.finish)
    rewrite = req.relayed(
        lambda send: RewritingSend(
            send,
            lambda chat: store.finish(response_from_chat(chat, body)),
            events.rewrite,
            store.flush,
        )
    )
    await chat_serve(rewrite, key, chat, anthropic=False, admitted=True)


async def responses_input_tokens(req: GatewayRequest) -> None:
    """``POST /v1/responses/input_tokens`` (the openai SDK's ``responses.input_tokens.count``):
    what ``messages/count_tokens`` answers, for the chat request a Responses request becomes,
    stored turns of ``previous_response_id`` included. Free, counted as a request by the rate
    limiter; the same estimate for every model (``x-routerhub-token-count: estimate``)."""
    key = await authenticate(req, anthropic=False)
    body = await req.json()  # size-limited
    model = body.pop("model", None)
    if model is not None and (not isinstance(model, str) or not model):
        raise BadRequest("model must be a model id (a string).", param="model")
    body.pop("personality", None)  # a preset of OpenAI's own models: no effect on this count
    await rate_limit_admit(key, 0)  # before any stored item is read, as ``responses`` does
    if model is not None:
        await counted_model_check(key, model)
    body = await references_resolved(key, body)
    # The SDK's input is optional: a count of instructions or of stored turns alone is asked.
    optional = body.get("previous_response_id") is not None or body.get("instructions") is not None
    earlier = await conversation_before(key, body)
    chat = allowed_tools_applied(chat_body_from_response(body, earlier, input_optional=optional))
    count = {"object": "response.input_tokens", "input_tokens": estimate_counted_tokens(chat)}
    await req.respond_json(200, count, headers={"x-routerhub-token-count": "estimate"})


async def stored_response(req: GatewayRequest, response_id: str) -> None:
    """``GET`` or ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``: the
    organization's stored response."""
    key = await authenticate(req, anthropic=False)
    if response_id.endswith("/input_items"):
        await response_input_items(req, key, response_id.removesuffix("/input_items"))
    elif req.method == "DELETE":
        await response_delete(req, key, response_id)
    else:
        await response_get(req, key, response_id)


def chat_body_from_response(
    body: JSON, earlier: list[JSON] | None = None, *, input_optional: bool = False
) -> JSON:
    """The chat request for a Responses request continuing the ``earlier`` stored items, or a
    400 naming the field. ``input_optional``: a missing ``input`` adds no turn (a count's)."""
    for name, message in _UNSUPPORTED.items():
        if body.get(name) not in (None, False):
            raise BadRequest(message, param=name)
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise BadRequest(f"Unknown parameter '{unknown[0]}' for /v1/responses.", param=unknown[0])
    include = body.get("include")
    if isinstance(include, list) and _LOGPROBS_INCLUDE in include:
        # The other values ask for what is never produced here (and agents send them by default).
        raise BadRequest(
            f"include {_LOGPROBS_INCLUDE} is not supported on /v1/responses (its output_text "
            "carries no logprobs); use /v1/chat/completions with logprobs.",
            param="include",
        )
    if not isinstance(body.get("store", False), bool):
        raise BadRequest("store must be true or false.", param="store")
    chat: JSON = {name: body[name] for name in _COPIED if name in body}
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("instructions must be a string.", param="instructions")
    system = [{"role": "system", "content": instructions}] if instructions is not None else []
    input_ = [] if input_optional and body.get("input") is None else body.get("input")
    chat["messages"] = system + _messages_from_input(earlier or [], input_, input_optional)
    if body.get("tools") is not None:
        chat["tools"] = _chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest(
                "max_output_tokens must be a positive integer.", param="max_output_tokens"
            )
        chat["max_tokens"] = limit
    chat |= _chat_format(body.get("text"))
    effort = _reasoning_effort(body.get("reasoning"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    if chat.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}  # response.completed carries usage
    return chat


def _messages_from_input(earlier: list[JSON], input_: object, optional: bool = False) -> list[JSON]:
    if isinstance(input_, str):
        input_ = [{"role": "user", "content": input_}]
    if not isinstance(input_, list) or not (input_ or optional):
        raise BadRequest("input is required: a string or a non-empty list of items.", param="input")
    messages: list[JSON] = []
    for index, item in enumerate(earlier + input_):
        where = f"input[{index - len(earlier)}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object.", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item["role"]) if isinstance(item.get("role"), str) else None
            if role is None:
                raise BadRequest(
                    f"{where}.role must be user, assistant, system or developer.", param="input"
                )
            content = _chat_content(item.get("content"), where, role == "assistant")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            function = {
                "name": _string(item, "name", where),
                "arguments": _string(item, "arguments", where),
            }
            call = {"id": _string(item, "call_id", where), "type": "function", "function": function}
            last = messages[-1] if messages else {}
            if last.get("role") == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls are one assistant turn in chat
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            content = _tool_output(item.get("output"), where)
            call_id = _string(item, "call_id", where)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind != "reasoning":  # a previous turn's reasoning: providers take back only their own
            raise BadRequest(
                f"{where}.type '{kind}' is not supported; use message, function_call "
                "or function_call_output.",
                param="input",
            )
    return messages


def _string(item: JSON, name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{name} must be a string.", param="input")
    return value


def _chat_content(content: object, where: str, assistant: bool = False) -> str | list[JSON]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of parts.", param="input")
    parts = [
        _chat_part(part, f"{where}.content[{index}]", assistant)
        for index, part in enumerate(content)
    ]
    if len(parts) == 1:
        return parts
    # OpenAI's assistant message takes text parts or exactly one refusal part, never a mix:
    # beside other parts, a refusal is the turn's text.
    return [{"type": "text", "text": p["refusal"]} if p["type"] == "refusal" else p for p in parts]


def _chat_part(part: object, where: str, assistant: bool = False) -> JSON:
    if isinstance(part, dict):
        kind = part.get("type")
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            return {"type": "text", "text": part["text"]}
        if assistant and kind == "refusal" and isinstance(part.get("refusal"), str):
            # An earlier answer's refusal, sent back (previous_response_id, or its output
            # replayed as input): chat's refusal part, which OpenAI takes as such and the other
            # adapters send as the turn's text (``routing/providers/refusals.py``).
            return {"type": "refusal", "refusal": part["refusal"]}
        if kind == "input_image" and isinstance(part.get("image_url"), str):
            detail = part.get("detail") if isinstance(part.get("detail"), str) else "auto"
            return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": detail}}
    raise BadRequest(
        f"{where} must be an input_text or output_text part with text, an "
        "input_image part with image_url (a string), or (an assistant's) a refusal part.",
        param="input",
    )


def _tool_output(output: object, where: str) -> str:
    """A function call's output as chat's tool message content: text only, as chat's tool
    message (``request_shape``): an image is a 400 naming it (before, dropped unsaid)."""
    content = _chat_content(output, f"{where}.output")
    if isinstance(content, str):
        return content
    for index, part in enumerate(content):
        if part["type"] != "text":
            raise BadRequest(
                f"{where}.output[{index}] is a function_call_output's image: a tool's output "
                "holds text only here; send what the tool returned besides text in a user "
                "message after the function_call_output items.",
                param="input",
            )
    return "".join(part["text"] for part in content)


def _chat_tools(tools: object) -> list[JSON]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list of objects.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or kind != "function":
            raise BadRequest(
                f"tools[{index}]: tool type '{kind}' is not supported on this "
                "gateway; only function tools are.",
                param="tools",
            )
        names = ("name", "description", "parameters", "strict")
        function = {name: tool[name] for name in names if tool.get(name) is not None}
        out.append({"type": "function", "function": function})
    return out


def _chat_tool_choice(choice: object) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("name"), str)
    ):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return responses_allowed_tools(choice)
    raise BadRequest(
        "tool_choice must be 'auto', 'none', 'required' or "
        '{"type": "function", "name": ...}.',
        param="tool_choice",
    )


def _chat_format(text: object) -> JSON:
    """``text.format`` as chat's ``response_format`` (nothing for plain text)."""
    if text is None:
        return {}
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if not isinstance(text, dict) or (fmt is not None and kind not in _FORMATS):
        raise BadRequest(
            "text.format must be {type: text}, {type: json_object} or "
            "{type: json_schema, name, schema}.",
            param="text",
        )
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema" and isinstance(fmt, dict):
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise BadRequest(
                "text.format json_schema needs name (a string) and schema (an object).",
                param="text",
            )
        names = ("name", "schema", "strict", "description")
        schema = {name: fmt[name] for name in names if fmt.get(name) is not None}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    return {}


_FORMATS = ("text", "json_object", "json_schema")


def _reasoning_effort(reasoning: object) -> str | None:
    if reasoning is None:
        return None
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if not isinstance(reasoning, dict) or not isinstance(effort, str | None):
        raise BadRequest(
            "reasoning must be an object; reasoning.effort a string.", param="reasoning"
        )
    return effort
