"""``openai`` backend: any OpenAI-compatible server (seed 003's "Custom URL"): llama-server,
llamafile, vLLM, LM Studio, Ollama's /v1. ``POST /v1/chat/completions`` with SSE streaming;
images go as ``image_url`` data URIs in the last user message."""

from __future__ import annotations

from collections.abc import AsyncIterator

from heisenberg.llm.backend import LLMBackend, Usage
from heisenberg.llm.prompts import Prompt
from heisenberg.llm.stream import chat_payload, chat_sse


def api_root(url: str) -> str:
    """``http://h:p`` or ``http://h:p/v1`` -> ``http://h:p/v1``."""
    return url if url.endswith("/v1") else url + "/v1"


class OpenAICompatLLM(LLMBackend):
    name = "openai"
    health_path = "/v1/models"

    async def _detect_vision(self) -> bool | None:
        """``GET /v1/models``: llama-server lists ``architecture.input_modalities``, Ollama and
        others ``capabilities``."""
        listing = await self._get_json(api_root(self.base_url) + "/models")
        if not isinstance(listing, dict):
            return None
        models = listing.get("data") or listing.get("models") or []
        chosen = next((m for m in models if self.config.model in (m.get("id"), m.get("name"))),
                      models[0] if models else {})
        modalities = (chosen.get("architecture") or {}).get("input_modalities")
        if modalities is not None:
            return "image" in modalities
        capabilities = chosen.get("capabilities")
        if capabilities is not None:
            return bool({"vision", "multimodal", "image"} & set(capabilities))
        return None

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        url = api_root(self.base_url) + "/chat/completions"
        resp = await self._post(url, chat_payload(self.config, prompt, image))
        async for piece in chat_sse(resp, url, usage):
            yield piece
