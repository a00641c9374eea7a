"""The adapter interface and the canonical form every adapter translates to and from.

Canonical = OpenAI Chat Completions: requests are the client's JSON (a dict), responses are
``Completion`` (choices + usage), and streams are lists of OpenAI ``chat.completion.chunk``
choices. An adapter is stateless; per-request state lives in ``UpstreamRequest.context`` and in
its ``StreamDecoder``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

JSON = dict[str, Any]

# Every parameter an OpenAI-style request may carry that an adapter might forward.
COMMON_PARAMETERS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "user",
        "stream",
        "stream_options",
    }
)
OPENAI_PARAMETERS = COMMON_PARAMETERS | {
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "reasoning_effort",
    "top_k",
    "min_p",
    "repetition_penalty",
    "prediction",
    "service_tier",
    "metadata",
    "store",
}
# ``service_tier`` values priced as the catalog prices: "auto" (the project's own tier, the
# standard one on the platform's accounts), OpenAI's "default" and Groq's "on_demand". Flex and
# Priority processing cost another price the catalog does not list, so the platform's keys
# never take them to an OpenAI-style host (``platform_refusal``; no other adapter sends a tier);
# an organization's own key sends any tier (it pays its provider).
STANDARD_SERVICE_TIERS = frozenset({"auto", "default", "on_demand"})
# The tiers an answer may say it was served at that the catalog's price is for: OpenAI's
# "default", Groq's "on_demand" (its standard), and none said. Any other on the platform's keys
# (a project whose own tier is another) is billed the catalog's price and flagged
# ``unpriced_tier`` for a person to look at (``routing.gateway.exchange.bill``).
STANDARD_TIERS_SERVED = frozenset({"", "default", "standard", "on_demand", "auto"})
# What a provider keeps of a request (OpenAI's stored completions, tagged by ``metadata``):
# sent only on an organization's own key, never on the platform's accounts, which keep nothing
# of a tenant's prompts (README, "Parameters that change the price or what the provider keeps").
RETENTION_PARAMETERS = frozenset({"store", "metadata"})


def fields_not_sent(request: JSON, api_style: str, own_key: bool) -> list[str]:
    """The price and retention fields of ``request`` an endpoint of ``api_style`` is not sent,
    for the answer's ``x-routerhub-dropped``: ``store`` and ``metadata`` on the platform's keys
    (``RETENTION_PARAMETERS``), and all three to hosts other than OpenAI-style, whose adapters
    have no such fields (Anthropic's ``metadata`` is built from ``user``). ``store: false``
    asks for what not sending it gives: not named."""
    if api_style == "openai":
        names = [] if own_key else ["store", "metadata"]
    else:
        names = ["service_tier", "store", "metadata"]
    return [name for name in names if request.get(name) not in (None, False)]


# Tool types every OpenAI-style host serves as the client's own tools: anything else is a host's
# built-in tool (Groq's ``browser_search``, ``code_interpreter``), billed by the host per use.
CLIENT_TOOL_TYPES = frozenset({"function", "custom"})
# Parameters that only steer RouterHub (OpenRouter names); never forwarded upstream.
GATEWAY_PARAMETERS = frozenset(
    {"model", "messages", "models", "provider", "router", "route", "transforms", "usage", "plugins"}
)


# More tokens than any model's context window holds: a count above it is a broken report.
MAX_REPORTED_TOKENS = 10_000_000
# Content parts (blocks) a message, and a request in all, may hold; an Anthropic tool_result's
# own blocks count toward its turn (they join its user message). Clients send tens a message
# (Anthropic takes 100 images a request, OpenAI 500); every part costs work per request.
MAX_MESSAGE_PARTS = 1_000
MAX_REQUEST_PARTS = 10_000


def parts_cap_problem(counts: list[tuple[str, int]]) -> str | None:
    """Why content parts counted ``(where, how many)`` a message are over the caps, if they are;
    checked before any part is read."""
    for where, count in counts:
        if count > MAX_MESSAGE_PARTS:
            return (
                f"{where} holds {count} content parts; at most {MAX_MESSAGE_PARTS} a message "
                "(MAX_MESSAGE_PARTS): split it over several requests, or join text parts."
            )
    total = sum(count for _, count in counts)
    if total > MAX_REQUEST_PARTS:
        return (
            f"messages hold {total} content parts in all; at most {MAX_REQUEST_PARTS} a request "
            "(MAX_REQUEST_PARTS): send fewer, or join text parts."
        )
    return None


@dataclass(slots=True)
class Usage:
    """Token counts; ``completion_tokens`` includes reasoning tokens (OpenAI's convention).
    ``clamped``: the provider reported a count that cannot be true, read as 0 (see
    ``reported_tokens``); the gateway bills an estimate from the text in its place."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    clamped: bool = False
    # Prompt tokens written to a provider's prompt cache (Anthropic's cache_creation), of which
    # ``cache_write_1h_tokens`` for an hour: billed at the write multipliers (billing.pricing).
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # The tier the provider says it served (OpenAI's response ``service_tier``); "" unsaid.
    service_tier: str = ""
    # The calls these counts sum (a list of prompts on /v1/completions): each is priced at its
    # own prompt's long-context tier (``metering.price``), as the hold and the provider price it.
    parts: tuple[Usage, ...] = ()
    # A prompt count the price tier is chosen from when above ``prompt_tokens``: an own host's
    # prompt estimate (``usage_estimate.own_host_floor``); the count billed is unchanged.
    tier_prompt_tokens: int = 0

    def to_openai(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,  # OpenRouter's name
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def reported_tokens(data: JSON, name: str, usage: Usage) -> int:
    """One token count of a provider's usage object (0 when absent). A count that cannot be
    true — negative, not a whole number, not a number, above ``MAX_REPORTED_TOKENS`` — reads
    as 0 and marks ``usage`` clamped: a tenant's own host (or a broken provider) must neither
    make the request unbillable nor set its price."""
    value = data.get(name)
    if value is None:
        return 0
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or not 0 <= value <= MAX_REPORTED_TOKENS:
        usage.clamped = True
        return 0
    return int(value)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as what one request goes: an endpoint resolved with its credential."""

    base_url: str
    upstream_model: str
    api_key: str | None
    max_tokens: int
    options: JSON = field(default_factory=dict)
    # The ``tool_call_id``s whose tool result is an error (``IngressMarks.failed_tools``).
    failed_tools: frozenset[str] = frozenset()
    # The organization's own key (BYOK): what the provider bills or keeps is the tenant's choice.
    own_key: bool = False


@dataclass(frozen=True, slots=True)
class IngressMarks:
    """What an ingress knows of its canonical messages that their OpenAI shape cannot say,
    carried beside them (``Exchange.marks``), never in them: JSON cannot spell a mark, so no key a
    client sends can pose as one. ``failed_tools``: the ``tool_call_id``s whose tool result is an
    error (an Anthropic ``tool_result`` with ``is_error``; its ids are unique in a conversation):
    Anthropic gets ``is_error`` back, Gemini a ``functionResponse`` whose response is
    ``{"error": …}``, and OpenAI's wire, which has no such field, the text prefixed "Error: "
    (``tool_error_marked``). ``tool_media``: the content parts (these objects, by identity) the
    Anthropic ingress lifted out of a tool result (a screenshot): media an agent's tool returned,
    which a model that cannot read it gets as a placeholder instead of a 400 (``needs``).
    ``parts_counted``: the ingress counted the content parts against the caps on the client's
    own blocks, which hold at least as many a message and in all as the canonical messages, so
    the shared request check (``request_shape``) does not count them a second time."""

    failed_tools: frozenset[str] = frozenset()
    tool_media: tuple[JSON, ...] = ()
    parts_counted: bool = False
    # ``id``s of ``tool_media``, which keeps those objects alive (so the ids stay theirs): one
    # set lookup a part, not a scan of every tool media object (O(N²) over a turn's parts).
    _tool_media_ids: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tool_media_ids", frozenset(map(id, self.tool_media)))

    def is_tool_media(self, part: object) -> bool:
        return id(part) in self._tool_media_ids


NO_MARKS = IngressMarks()


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: JSON
    # Per-request facts the response translation needs (e.g. an emulated JSON-mode tool).
    context: JSON = field(default_factory=dict)

    def content(self) -> bytes:
        return orjson.dumps(self.body)


@dataclass(slots=True)
class Completion:
    """A whole (non-streamed) answer in canonical form."""

    choices: list[JSON]
    usage: Usage | None
    upstream_id: str = ""
    # The tier the provider says it served (OpenAI's ``service_tier``), passed on to the
    # client as OpenAI gives it; "" unsaid.
    service_tier: str = ""
    # Characters generated that no message text counts, as ``StreamDecoder.unrelayed_chars``.
    unrelayed_chars: int = 0


class UpstreamError(Exception):
    """The provider reported an error inside a 200 response or a stream."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class StreamDecoder(ABC):
    """Turns one provider's SSE events into canonical chunk choices, collecting usage."""

    def __init__(self, request: UpstreamRequest) -> None:
        self.request = request
        self.usage: Usage | None = None
        self.finished = False
        # The provider sent its final count (not only an early one, as Anthropic's message_start
        # is): billed as reported. ``finished`` alone is not that: a stream may end without one.
        self.usage_final = False
        self.service_tier = ""  # the tier a chunk said it was served at (``Completion``'s)
        # Characters the provider generated that no relayed text counts (thinking the request
        # excluded, Anthropic's encrypted redacted thinking): billed like relayed ones when the
        # stream is cut before its usage report.
        self.unrelayed_chars = 0

    @abstractmethod
    def feed(self, event: str | None, data: str) -> list[JSON]:
        """One SSE event in; zero or more ``{"index", "delta", "finish_reason"}`` out."""


class ProviderAdapter(ABC):
    style: ClassVar[str]
    supported_parameters: ClassVar[frozenset[str]]
    # The kinds of content part (``content_part_kinds``) it can send on; None: every kind, as
    # they are (an OpenAI-compatible host reads OpenAI's own parts).
    content_kinds: ClassVar[frozenset[str] | None] = None

    @abstractmethod
    def build_request(self, request: JSON, target: Target, *, stream: bool) -> UpstreamRequest:
        """Canonical request → the provider's URL, headers and JSON body."""

    @abstractmethod
    def parse_response(self, body: JSON, request: UpstreamRequest) -> Completion:
        """The provider's JSON response → canonical choices and usage."""

    @abstractmethod
    def stream_decoder(self, request: UpstreamRequest) -> StreamDecoder: ...

    def error_message(self, body: bytes) -> str:
        """A person-readable message from a provider's error body (all three nest ``error``)."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body[:300].decode(errors="replace")
        if isinstance(data, list) and data:
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500]
        return str(error or data)[:500]


async def sse_events(
    chunks: AsyncIterator[bytes], *, max_event: int
) -> AsyncIterator[tuple[str | None, str]]:
    """Parse a ``text/event-stream`` body into ``(event, data)`` pairs (data lines joined).

    Linear in the stream: each read is searched once, from where the last search ended (a
    buffer searched again from its start at every read made one endless event of a tenant's
    own host — 256 MiB from a few KiB of gzip — hours of the event loop every organization
    shares). An event past ``max_event`` bytes raises ``UpstreamError`` instead of growing."""
    buffer = bytearray()
    carried_cr = False  # a read that ended in "\r": the next may begin with its "\n"
    async for chunk in chunks:
        if carried_cr:
            chunk = b"\r" + chunk
        carried_cr = chunk.endswith(b"\r")
        searched = max(len(buffer) - 1, 0)  # a "\n" ending the last read may end an event
        buffer += (chunk[:-1] if carried_cr else chunk).replace(b"\r\n", b"\n")
        start = 0
        while (end := buffer.find(b"\n\n", searched)) >= 0:
            parsed = _sse_parse(bytes(buffer[start:end]))
            start = searched = end + 2
            if parsed is not None:
                yield parsed
        del buffer[:start]
        if len(buffer) > max_event:
            raise UpstreamError(f"an event of the stream is larger than {max_event} bytes")
    if carried_cr:
        buffer += b"\r"
    if buffer.strip():
        parsed = _sse_parse(bytes(buffer))
        if parsed is not None:
            yield parsed


def _sse_parse(raw: bytes) -> tuple[str | None, str] | None:
    event: str | None = None
    data: list[str] = []
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise UpstreamError("The provider sent a stream event that is not UTF-8.") from None
    for line in text.split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if not data and event is None:
        return None  # a comment or keepalive
    return event, "\n".join(data)


def tool_failed(message: JSON, failed_tools: frozenset[str]) -> bool:
    """A tool message whose result is an error (``IngressMarks.failed_tools``)."""
    return message.get("role") == "tool" and message.get("tool_call_id") in failed_tools


def tool_error_marked(message: JSON, failed_tools: frozenset[str]) -> JSON:
    """A message as OpenAI's wire carries it: a failed tool's text first saying "Error: " (the
    one way a chat model is told its tool failed)."""
    if not tool_failed(message, failed_tools):
        return message
    message = dict(message)
    content = message.get("content")
    if isinstance(content, list):
        message["content"] = [{"type": "text", "text": "Error: "}, *content]
    else:
        message["content"] = f"Error: {text_of(content)}"
    return message


def text_of(content: Any) -> str:
    """The text of an OpenAI message content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "")
        for part in content
        if isinstance(part, dict) and part.get("type") == "text"
    )


def content_parts(content: Any) -> list[JSON]:
    """OpenAI content as a list of parts, whatever form it came in."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [part for part in content if isinstance(part, dict)]


def content_part_kinds(messages: Any) -> frozenset[str]:
    """The kinds of non-text content part in OpenAI messages: a part's ``type``, except that a
    ``file`` part is ``file`` with its bytes inline (``file_data``) and ``file_id`` when it only
    names a file uploaded to some provider's Files API."""
    kinds: set[str] = set()
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "file":
                file = part.get("file")
                inline = isinstance(file, dict) and isinstance(file.get("file_data"), str)
                kinds.add("file" if inline else "file_id")
            elif isinstance(kind, str) and kind not in ("text", "refusal"):  # refusal: text too
                kinds.add(kind)
    return frozenset(kinds)


def data_url_split(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` → ``("image/png", "AAAA")``; None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, _, data = url[5:].partition(",")
    media_type = header.split(";")[0] or "application/octet-stream"
    return media_type, data


def media_type_guess(url: str) -> str:
    lowered = url.lower().split("?")[0]
    for suffix, media_type in (
        (".png", "image/png"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
        (".pdf", "application/pdf"),
    ):
        if lowered.endswith(suffix):
            return media_type
    return "image/jpeg"


def json_loads_lenient(text: str) -> Any:
    """Tool-call arguments as an object; models sometimes emit invalid JSON, keep it visible."""
    if not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"_unparsed_arguments": text}


def finish_chunk(finish_reason: str | None) -> JSON:
    return {"index": 0, "delta": {}, "finish_reason": finish_reason}
