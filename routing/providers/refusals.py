"""An earlier answer's refusal, sent back in a conversation's history, in each wire's terms.

Chat carries it as an assistant message's ``refusal`` field or ``refusal`` content part, as
OpenAI answers it and takes it back (OpenAI-style hosts get it so). Anthropic and Gemini have no
such field: a refusal there is the model's text (Claude refuses in words), so their adapters send
it as the assistant turn's text rather than dropping it."""

from __future__ import annotations

from routing.providers.base import JSON, content_parts


def assistant_parts(message: JSON) -> list[JSON]:
    """An assistant message's content parts with its refusal as text: ``refusal`` parts as text
    parts, and the message's ``refusal`` field (a string) after its content."""
    parts = [
        {"type": "text", "text": part["refusal"]}
        if part.get("type") == "refusal" and isinstance(part.get("refusal"), str)
        else part
        for part in content_parts(message.get("content"))
    ]
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append({"type": "text", "text": refusal})
    return parts
