"""Provider adapters by API style; the canonical form is OpenAI Chat Completions."""

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import ProviderAdapter
from routing.providers.gemini import GeminiAdapter
from routing.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAICompatAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
}
