"""The factory that picks an LLM backend from ``llm.backend``."""

from __future__ import annotations

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import ConfigError
from heisenberg.llm.backend import LLMBackend
from heisenberg.llm.stream import LlamaCppLLM

BACKENDS: dict[str, type[LLMBackend]] = {LlamaCppLLM.name: LlamaCppLLM}


def create_backend(config: LLMConfig, base_url: str) -> LLMBackend:
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise ConfigError(f"llm.backend: {config.backend!r} is not available "
                          f"(available: {', '.join(BACKENDS)})") from None
    return cls(config, base_url)
