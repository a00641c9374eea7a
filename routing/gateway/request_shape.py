"""The shape of a chat request: its validation (what it may cost is ``token_bounds``)."""

from __future__ import annotations

from routerhub.errors import BadRequest
from routing.providers.base import (
    CLIENT_TOOL_TYPES,
    JSON,
    STANDARD_SERVICE_TIERS,
    data_url_split,
    media_type_guess,
    parts_cap_problem,
)
from routing.providers.cache_marks import marks_problem
from routing.providers.media import data_url_problem, is_base64

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_MAX_CHOICES = 128  # OpenAI's own bound on n; it also keeps the credit hold a sane number
# Each tool is checked and translated per attempt. Not OpenAI's 128: Anthropic documents no cap
# and clients with many MCP tools send hundreds (an upstream with a lower cap answers its own 400).
MAX_TOOLS = 1024
_NUMBERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")


def _is_content(content: object) -> bool:
    return (
        content is None
        or isinstance(content, str)
        or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
    )


def _part_problem(part: JSON) -> str | None:
    """What is wrong with one content part that every adapter reads, if anything."""
    kind = part.get("type")
    if not isinstance(kind, str):
        return "needs a type (a string)"
    if kind == "text" and not isinstance(part.get("text"), str):
        return "is a text part: give text (a string)"
    if kind == "refusal" and not isinstance(part.get("refusal"), str):
        return "is a refusal part: give refusal (a string)"
    if kind == "image_url":
        image = part.get("image_url")
        if not (
            isinstance(image, str)
            or (isinstance(image, dict) and isinstance(image.get("url"), str))
        ):
            return "is an image part: give image_url.url (a string)"
        return _image_type_problem(image if isinstance(image, str) else image["url"])
    if kind == "file":
        return _file_problem(part.get("file"))
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("format"), str):
            return "is an audio part: give input_audio.data (base64) and input_audio.format"
        if not is_base64(audio.get("data")):
            return "is an audio part: input_audio.data must be valid base64"
    return None


def _tool_part_problem(message: JSON, part: JSON) -> str | None:
    """A tool message's part other than text, an image or a document (a screenshot, a PDF the
    tool fetched): those reach Anthropic inside its ``tool_result`` and other providers in a user
    message after the tool messages (``routing/providers/tool_media.py``), as ``/v1/messages``
    sends a ``tool_result``'s; audio no provider reads from a tool."""
    if message.get("role") != "tool" or part.get("type") in ("text", "image_url", "file"):
        return None
    return (
        f"is a tool message's {part.get('type')} part: a tool message holds text, image_url "
        "and file parts; send other media in a user message after the tool messages"
    )


def _image_type_problem(url: str) -> str | None:
    """An image part must be an image: Gemini reads its type from a data URL (or a URL's
    extension) and would read a PDF's pages at 258 tokens each, while the hold counts one image
    (OpenAI and Anthropic refuse it). A document goes in a ``file`` part, held by its bytes."""
    inline = data_url_split(url)
    media_type = inline[0] if inline is not None else media_type_guess(url)
    if media_type.lower().startswith("image/"):
        return None
    return (
        f"is an image part of type {media_type[:60]!r}, not an image: send a PDF or other"
        " document as a file part (file.file_data, a data: URL)"
    )


def _file_problem(file: object) -> str | None:
    """A file part names an uploaded file (``file_id``) or carries its bytes as a data URL."""
    if not isinstance(file, dict):
        return "is a file part: give file (an object with file_id or file_data)"
    if file.get("filename") is not None and not isinstance(file["filename"], str):
        return "is a file part: file.filename must be a string"
    if file.get("file_data") is None:
        if isinstance(file.get("file_id"), str):
            return None
        return "is a file part: give file.file_id (a string) or file.file_data (a data: URL)"
    problem = data_url_problem(file["file_data"], "file.file_data")
    return f"is a file part that {problem}" if problem else None


def _tool_call_problem(call: object) -> str | None:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return "must be an object with a function"
    function = call["function"]
    if not isinstance(function.get("name"), str):
        return "needs function.name (a string)"
    if not isinstance(function.get("arguments", ""), str):
        return "needs function.arguments as a JSON string"
    if not isinstance(call.get("id", ""), str):
        return "needs an id that is a string"
    return None


def _parts_cap_check(messages_: list[object]) -> None:
    problem = parts_cap_problem(
        [
            (f"messages[{index}].content", len(m["content"]))
            for index, m in enumerate(messages_)
            if isinstance(m, dict) and isinstance(m.get("content"), list)
        ]
    )
    if problem:
        raise BadRequest(problem, param="messages")


def _messages_validate(messages_: object, *, parts_counted: bool) -> None:
    if not isinstance(messages_, list) or not messages_:
        raise BadRequest("messages must be a non-empty list.", param="messages")
    if not parts_counted:
        _parts_cap_check(messages_)
    for index, message in enumerate(messages_):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(
                f"messages[{index}] needs a role among {', '.join(sorted(_ROLES))}.",
                param="messages",
            )
        content = message.get("content")
        if not _is_content(content):
            raise BadRequest(
                f"messages[{index}].content must be a string or a list of content parts.",
                param="messages",
            )
        for part_index, part in enumerate(content if isinstance(content, list) else []):
            problem = _part_problem(part) or _tool_part_problem(message, part)
            if problem:
                raise BadRequest(
                    f"messages[{index}].content[{part_index}] {problem}.", param="messages"
                )
        for name in ("name", "tool_call_id", "refusal"):
            if message.get(name) is not None and not isinstance(message[name], str):
                raise BadRequest(f"messages[{index}].{name} must be a string.", param="messages")
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise BadRequest(f"messages[{index}].tool_calls must be a list.", param="messages")
            for call_index, call in enumerate(calls):
                problem = _tool_call_problem(call)
                if problem:
                    raise BadRequest(
                        f"messages[{index}].tool_calls[{call_index}] {problem}.",
                        param="messages",
                    )


def _tools_validate(body: JSON) -> None:
    tools_validate(body.get("tools"))
    _tool_choice_validate(body.get("tool_choice"))


def tools_validate(tools: object) -> None:
    """A chat ``tools`` list: objects, each with a string ``type``; a function tool with a
    string ``function.name`` (an ``allowed_tools`` choice narrows them only after this)."""
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise BadRequest("tools must be a list of objects.", param="tools")
    if len(tools) > MAX_TOOLS:
        raise BadRequest(f"tools may list at most {MAX_TOOLS} tools.", param="tools")
    for index, tool in enumerate(tools):
        kind = tool.get("type", "function")
        if not isinstance(kind, str):
            raise BadRequest(f"tools[{index}].type must be a string.", param="tools")
        if kind != "function":
            continue  # other tool types go to OpenAI-style providers as they are
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(
                f"tools[{index}] is a function tool: give function.name (a string).",
                param="tools",
            )
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise BadRequest(
                f"tools[{index}].function.parameters must be a JSON Schema object.", param="tools"
            )
        if function.get("description") is not None and not isinstance(function["description"], str):
            raise BadRequest(
                f"tools[{index}].function.description must be a string.", param="tools"
            )


def _tool_choice_validate(choice: object) -> None:
    if choice is not None and not isinstance(choice, str):
        function = choice.get("function") if isinstance(choice, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(
                "tool_choice must be 'auto', 'none', 'required' or "
                '{"type": "function", "function": {"name": ...}}.',
                param="tool_choice",
            )


def _not_offered(body: JSON) -> None:
    """Refuse what no provider here would honour (it would be dropped, and the answer would
    silently lack it): web search, audio output and the deprecated ``functions``."""
    plugins = body.get("plugins")
    web_plugin = isinstance(plugins, list) and any(
        isinstance(p, dict) and p.get("id") == "web" for p in plugins
    )  # OpenRouter's; its other plugins (file-parser, …) change nothing here and pass
    if body.get("web_search_options") is not None or web_plugin:
        raise BadRequest(
            "Web search is not offered by RouterHub (web_search_options, the web plugin, the "
            ":online variant); search yourself and put the results in the messages.",
            param="plugins" if web_plugin else "web_search_options",
        )
    for name in ("functions", "function_call"):
        # OpenAI's deprecated function calling: dropped, a client offering functions would get
        # text where it waits for a function_call (as the "function" role is refused).
        if body.get(name) is not None:
            raise BadRequest(
                f"{name} (OpenAI's deprecated function calling) is not supported; send the "
                'functions as tools ({"type": "function", "function": {...}}) and function_call '
                "as tool_choice.",
                param=name,
            )
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise BadRequest(
            'Audio output is not offered by RouterHub; ask for text (modalities ["text"]) and '
            "leave audio out.",
            param="modalities" if body.get("audio") is None else "audio",
        )


def platform_refusal(body: JSON, api_style: str) -> tuple[str, str] | None:
    """Why the platform's provider keys cannot take this request to an endpoint of
    ``api_style``, as (message, param): what the provider would bill above the catalog's price.
    An organization's own key takes it (its provider bills the organization); planning skips
    the platform's endpoints for it and answers this 400 when nothing is left. Only
    OpenAI-style hosts are sent ``service_tier`` (the other adapters never send it, and the
    answer's ``x-routerhub-dropped`` names it). Shapes chat refuses first (``request_validate``)
    are not this function's: a ``tools`` that is not a list, or an item not an object, is
    ignored here, as embeddings ignore chat's tools (their tier is ``tier_refusal``'s)."""
    refusal = tier_refusal(body, api_style)
    if refusal is not None:
        return refusal
    tools = body.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type", "function") if isinstance(tool, dict) else "function"
        if kind not in CLIENT_TOOL_TYPES:
            return (
                f"tools[{index}] is a '{kind}' tool, a provider's built-in tool billed per use, "
                "which RouterHub's provider keys do not offer: give function (or custom) tools, "
                "or use your organization's own provider key (Provider keys).",
                "tools",
            )
    return None


def tier_refusal(body: JSON, api_style: str) -> tuple[str, str] | None:
    """Why the platform's provider keys cannot take ``body``'s ``service_tier`` to an endpoint
    of ``api_style`` (``platform_refusal``'s part that embeddings and responses share): only a
    standard tier on an OpenAI-style host, which is the catalog's price."""
    tier = body.get("service_tier")
    if api_style == "openai" and tier is not None and not _standard_tier(tier):
        return (
            f"service_tier '{tier}' is not offered on RouterHub's provider keys: the catalog "
            "prices the standard tier only, which 'auto', 'default', Groq's 'on_demand' or no "
            "service_tier give. Other tiers (OpenAI's 'flex' and 'priority') need your "
            "organization's own provider key (Provider keys), whose provider bills them to you.",
            "service_tier",
        )
    return None


def service_tier_validate(body: JSON) -> None:
    """A ``service_tier`` is a string (chat, responses and embeddings alike)."""
    if body.get("service_tier") is not None and not isinstance(body["service_tier"], str):
        raise BadRequest("service_tier must be a string.", param="service_tier")


def _standard_tier(tier: object) -> bool:
    return isinstance(tier, str) and tier in STANDARD_SERVICE_TIERS


def request_validate(body: JSON, *, parts_counted: bool = False) -> None:
    """Refuse what no adapter can send. ``parts_counted``: the ingress already held the content
    parts to their caps (``IngressMarks.parts_counted``)."""
    _messages_validate(body.get("messages"), parts_counted=parts_counted)
    _not_offered(body)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise BadRequest(f"{name} must be a positive integer.", param=name)
    if (body.get("n") or 1) > _MAX_CHOICES:
        raise BadRequest(f"n must be at most {_MAX_CHOICES}.", param="n")
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise BadRequest(f"{name} must be a number.", param=name)
    service_tier_validate(body)
    _prediction_validate(body.get("prediction"))
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise BadRequest("stream must be true or false.", param="stream")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise BadRequest("stop must be a string or a list of strings.", param="stop")
    for name in ("response_format", "stream_options"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise BadRequest(f"{name} must be an object.", param=name)
    schema = (body.get("response_format") or {}).get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema must be an object.", param="response_format")
    _tools_validate(body)
    problem = marks_problem(body)
    if problem is not None:
        raise BadRequest(problem[0], param=problem[1])


def _prediction_validate(prediction: object) -> None:
    """OpenAI's Predicted Outputs: ``{"type": "content", "content": text or text parts}``."""
    if prediction is None:
        return
    content = prediction.get("content") if isinstance(prediction, dict) else None
    parts_ok = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    )
    if not (isinstance(content, str) or parts_ok):
        raise BadRequest(
            'prediction must be {"type": "content", "content": <text or a list of text parts>}.',
            param="prediction",
        )
