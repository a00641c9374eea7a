"""A fake LLM provider for the demo and tests: OpenAI, Anthropic and Gemini wire formats.

Deterministic answers (bigger models answer longer and more often correctly), deterministic
token counts, fault injection per request, and a record of every request it received.
Run it with ``python -m routing.fake_upstream --port 8001``.
"""
