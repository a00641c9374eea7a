"""An earlier answer's refusal, sent back in a conversation's history, in each wire's terms.

Chat carries it as an assistant message's ``refusal`` field or ``refusal`` content part, as
OpenAI answers it and takes it back (OpenAI gets it so: its provider's ``takes_refusals``
option). Anthropic, Gemini and the other OpenAI-style hosts have no such field: a refusal there
is the model's text (Claude refuses in words), so their adapters send it as the assistant turn's
text rather than dropping it."""

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


def refusal_as_text(message: JSON) -> JSON:
    """An assistant message as an OpenAI-style host other than OpenAI takes it: its refusal
    (``refusal`` parts, the ``refusal`` field) as text. Many (Mistral, Groq, Together, vLLM…)
    refuse a part type or field they do not know; the very message when it has no refusal."""
    content = message.get("content")
    refused_parts = isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "refusal" for part in content
    )
    refusal = message.get("refusal")
    if not refused_parts and not isinstance(refusal, str):
        return message
    rest = {name: value for name, value in message.items() if name != "refusal"}
    if isinstance(content, list):
        return rest | {"content": assistant_parts(message)}
    # A string stays a string: some hosts take an assistant's content as a string only.
    texts = [text for text in (content, refusal) if isinstance(text, str) and text]
    return rest | {"content": "\n\n".join(texts)}
