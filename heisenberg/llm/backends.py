"""The factory that picks an LLM backend from ``llm.backend``."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

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


def create_backend(config: LLMConfig, base_url: str, server_key: str = "") -> LLMBackend:
    try:
        cls = BACKENDS[config.backend]
    except KeyError:
        raise ConfigError(f"llm.backend: {config.backend!r} is not available "
                          f"(available: {', '.join(BACKENDS)})") from None
    return cls(config, base_url, server_key=server_key)


@dataclass(frozen=True)
class Health:
    reachable: bool
    model_loaded: bool
    detail: str


def _says_not_loaded(body: str) -> bool:
    """The VLM server answers 200 with ``{"model_loaded": false}`` while it loads."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("model_loaded") is False


async def probe_health(backend: str, url: str, timeout_s: float = 2.0) -> Health:
    """Ask the server whether it is up and its model loaded. Protocols without a health
    endpoint (LLaVA) are reported reachable, unprobed."""
    path = BACKENDS[backend].health_path if backend in BACKENDS else None
    if path is None:
        return Health(True, True, "not probed (no health endpoint in this protocol)")
    try:
        async with aiohttp.ClientSession() as session, session.get(
                url.rstrip("/") + path, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            status, body = resp.status, (await resp.text())[:2000]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Health(False, False, f"unreachable ({type(exc).__name__}: {exc})")
    if status == 200 and _says_not_loaded(body):
        return Health(True, False, f"reachable, but {path} says the model is not loaded")
    if status == 200:
        return Health(True, True, "reachable, model loaded")
    if status == 503:
        return Health(True, False, "reachable, model still loading")
    return Health(True, False, f"{path} answered HTTP {status}: {body}")
