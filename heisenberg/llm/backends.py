"""The factory that picks an LLM backend from ``llm.backend``."""

from __future__ import annotations

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import ConfigError
from heisenberg.llm.backend import LLMBackend
from heisenberg.llm.llava import LlavaLLM
from heisenberg.llm.ollama import OllamaLLM
from heisenberg.llm.openai_compat import OpenAICompatLLM
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.llm.vlm_server import VLMServerLLM

BACKENDS: dict[str, type[LLMBackend]] = {
    cls.name: cls for cls in (LlamaCppLLM, OpenAICompatLLM, LlavaLLM, VLMServerLLM, OllamaLLM)}


def backend_url(config: LLMConfig) -> str:
    """The URL a backend talks to; empty means: start a managed llama.cpp server."""
    url = config.llava_url or config.url if config.backend == "llava" else config.url
    if not url and config.backend != "llamacpp":
        key = "llm.llava_url (or LLAVA_SERVER_URL)" if config.backend == "llava" else "llm.url"
        raise ConfigError(f"{key} must be set for llm.backend = {config.backend!r}")
    return url


def create_backend(config: LLMConfig, base_url: str) -> LLMBackend:
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise ConfigError(f"llm.backend: {config.backend!r} is not available "
                          f"(available: {', '.join(BACKENDS)})") from None
    return cls(config, base_url)
