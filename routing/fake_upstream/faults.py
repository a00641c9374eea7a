"""Per-request fault injection for the fake upstream.

Selected by the ``X-Fake-Fault`` header or by a model-name suffix after ``@`` (the gateway does
not forward client headers, so tests put faults in an endpoint's upstream model name):
``demo-small@status=500``, ``x@timeout``, ``x@delay=200``, ``x@disconnect_after=3``,
``x@malformed``, ``x@chunk_delay=50``, ``x@hang_after=2``, ``x@cached=10``; combine with ``,``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    status: int | None = None
    timeout: bool = False
    delay_ms: int = 0
    disconnect_after: int | None = None
    malformed: bool = False
    chunk_delay_ms: int = 0
    hang_after: int | None = None
    cached_tokens: int = 0


def fault_parse(spec: str) -> Fault:
    fault = Fault()
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
        elif name == "malformed":
            fault.malformed = True
        elif name == "chunk_delay":
            fault.chunk_delay_ms = int(value)
        elif name == "hang_after":
            fault.hang_after = int(value)
        elif name == "cached":
            fault.cached_tokens = int(value)
    return fault


def model_and_fault(model: str, header: str | None) -> tuple[str, Fault]:
    """``"demo-small@status=500"`` → ``("demo-small", Fault(status=500))``; the header wins."""
    name, _, suffix = model.partition("@")
    return name, fault_parse(header if header else suffix)
