"""Per-request fault injection for the fake upstream.

Selected by the ``X-Fake-Fault`` header or by a model-name suffix after ``@`` (the gateway does
not forward client headers, so tests put faults in an endpoint's upstream model name):
``demo-small@status=500``, ``x@timeout``, ``x@delay=200``, ``x@disconnect_after=3``,
``x@malformed``, ``x@chunk_delay=50``, ``x@hang_after=2``, ``x@cached=10``; combine with ``,``.
``x@end_after=3`` ends a stream cleanly after 3 events, without the rest or its terminator (a
proxy or provider that closes a stream early); a non-streamed answer gets half its JSON.
``x@tokenizer=bytes`` counts the prompt as a token per UTF-8 byte (a byte-level BPE
tokenizer's worst case); ``x@report_prompt=-5,report_completion=1.5`` reports those values
(any JSON) as the prompt and completion counts, as a broken provider or host might;
``x@delta_usage=none`` sends an Anthropic stream's message_delta without its usage (its final
count: only message_start's early one arrives); ``x@shape=refusal`` reshapes a whole OpenAI
answer (``openai_shapes``) and stops an Anthropic one with ``stop_reason: refusal``;
``x@tier=priority`` answers that ``service_tier`` whatever was asked (a project whose own tier is
another); ``x@tier_in=first`` / ``x@tier_in=usage`` says it in a stream's first chunk only, or
in its final usage chunk only (a provider that reports it once); ``x@empty`` answers with no content and no tool call; ``x@reply=PASS`` answers exactly that
text (a judge with a fixed verdict; ``_`` in the value is a space), ``x@reply=W,repeat=8`` that
text 8 times, space-separated (a word of 150 letters is one token to the fake: an answer of
long tokens).
``x@status=401,echo`` makes the error message quote the credential and the request body, as
some providers do: what the gateway must neither log nor hand to its client (the credential).
``x@fail_rate=0.3,seed=7`` fails 30% of requests at random, each with one of ``status=500``,
``status=429``, ``timeout``, a cut connection (``disconnect_after=0..3``; a non-streamed
answer is cut halfway through its body) or an early end (``end_after=0..3``); the draw
depends only on the seed and the request body, so a request fails the same way whatever order
requests arrive in. ``x@status=500,when=BOOM`` injects its faults only into requests whose body
contains ``BOOM`` (``_`` is a space), others are answered: one prompt of several failing.
Time, for deadline tests: ``x@delay=800`` answers after 800 ms and ``x@status=500,delay=800``
fails after 800 ms, in the provider's own error shape (both hold the response's head too: the
time to connect); ``x@first_event_delay=800`` sends a stream's 200 head at once and its first
event 800 ms later (the time to first content). With ``when=`` they time one prompt or one model.
Alternatives are separated by ``|``: ``x@status=400,when=BOOM|delay=300`` refuses at once a
request saying BOOM and answers the others late; the first alternative whose ``when`` matches
(or that has none) applies.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Any

import orjson


@dataclass
class Fault:
    status: int | None = None
    timeout: bool = False
    delay_ms: int = 0
    disconnect_after: int | None = None
    end_after: int | None = None
    malformed: bool = False
    chunk_delay_ms: int = 0
    first_event_delay_ms: int = 0
    hang_after: int | None = None
    cached_tokens: int = 0
    echo: bool = False
    tokenizer: str = ""
    reported: dict[str, Any] = field(default_factory=dict)
    empty: bool = False
    reply: str = ""
    repeat: int = 1  # the reply's copies, space-separated (a long answer in a short model name)
    tier: str = ""
    delta_usage: bool = True  # an Anthropic stream's message_delta carries its usage
    shape: str = ""  # a whole OpenAI answer's message shape (``openai_shapes.message_shaped``)
    tier_in: str = ""  # "first" or "usage": the one stream chunk that says service_tier
    fail_rate: float = 0.0
    seed: int = 0
    when: str = ""
    otherwise: Fault | None = None  # the next alternative (``|``): for what this one misses


def fault_parse(spec: str) -> Fault:
    spec, _, rest = spec.partition("|")
    fault = Fault(otherwise=fault_parse(rest) if rest else None)
    for item in spec.replace(";", ",").split(","):
        name, _, value = item.strip().partition("=")
        if name == "status":
            fault.status = int(value)
        elif name == "timeout":
            fault.timeout = True
        elif name == "delay":
            fault.delay_ms = int(value)
        elif name == "disconnect_after":
            fault.disconnect_after = int(value)
        elif name == "end_after":
            fault.end_after = int(value)
        elif name == "malformed":
            fault.malformed = True
        elif name == "chunk_delay":
            fault.chunk_delay_ms = int(value)
        elif name == "first_event_delay":
            fault.first_event_delay_ms = int(value)
        elif name == "hang_after":
            fault.hang_after = int(value)
        elif name == "cached":
            fault.cached_tokens = int(value)
        elif name == "echo":
            fault.echo = True
        elif name == "tokenizer":
            fault.tokenizer = value
        elif name in ("report_prompt", "report_completion"):
            fault.reported[name.removeprefix("report_")] = orjson.loads(value)
        elif name == "empty":
            fault.empty = True
        elif name == "delta_usage":
            fault.delta_usage = value != "none"
        elif name == "tier":
            fault.tier = value
        elif name == "shape":
            fault.shape = value
        elif name == "tier_in":
            fault.tier_in = value
        elif name == "reply":
            fault.reply = value.replace("_", " ")
        elif name == "repeat":
            fault.repeat = int(value)
        elif name == "fail_rate":
            fault.fail_rate = float(value)
        elif name == "seed":
            fault.seed = int(value)
        elif name == "when":
            fault.when = value.replace("_", " ")
    return fault


def fault_draw(fault: Fault, body: bytes, model: str = "") -> tuple[Fault, str]:
    """Resolve ``fail_rate`` and ``when`` for one request: the fault to inject and its spec ("" for
    none). ``when`` looks at the body without ``model`` (the name with its fault suffix)."""
    if fault.when and fault.when.encode() not in body.replace(model.encode(), b""):
        return fault_draw(fault.otherwise, body, model) if fault.otherwise else (Fault(), "")
    if fault.fail_rate <= 0:
        return fault, ""
    digest = hashlib.sha256(str(fault.seed).encode() + b"\x1f" + body).digest()
    draw = random.Random(int.from_bytes(digest[:8], "big"))
    if draw.random() >= fault.fail_rate:
        return fault, ""
    kind = draw.randrange(5)
    if kind == 0:
        return replace(fault, status=500), "status=500"
    if kind == 1:
        return replace(fault, status=429), "status=429"
    if kind == 2:
        return replace(fault, timeout=True), "timeout"
    cut = draw.randrange(4)
    if kind == 3:
        return replace(fault, disconnect_after=cut), f"disconnect_after={cut}"
    return replace(fault, end_after=cut), f"end_after={cut}"


def model_and_fault(model: str, header: str | None) -> tuple[str, Fault]:
    """``"demo-small@status=500"`` → ``("demo-small", Fault(status=500))``; the header wins."""
    name, _, suffix = model.partition("@")
    return name, fault_parse(header if header else suffix)
