"""``openai`` backend: any OpenAI-compatible server (seed 003's "Custom URL"): llama-server,
llamafile, vLLM, LM Studio, Ollama's /v1. ``POST /v1/chat/completions`` with SSE streaming;
images go as ``image_url`` data URIs in the last user message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from heisenberg.llm.backend import LLMBackend, Usage
from heisenberg.llm.http import post
from heisenberg.llm.prompts import Prompt
from heisenberg.llm.stream import chat_payload, chat_sse


def api_root(url: str) -> str:
    """``http://h:p`` or ``http://h:p/v1`` -> ``http://h:p/v1``."""
    return url if url.endswith("/v1") else url + "/v1"


class OpenAICompatLLM(LLMBackend):
    name = "openai"

    async def _detect_vision(self) -> bool:
        """``GET /v1/models``: llama-server lists ``architecture.input_modalities``, Ollama and
        others ``capabilities``. A server that says nothing is given the benefit of the doubt;
        if it then refuses the image, the turn is retried as text (``LLMBackend.stream``)."""
        try:
            async with self.session.get(api_root(self.base_url) + "/models",
                                        headers=self.headers(),
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                listing = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return True
        models = listing.get("data") or listing.get("models") or []
        chosen = next((m for m in models if self.config.model in (m.get("id"), m.get("name"))),
                      models[0] if models else {})
        modalities = (chosen.get("architecture") or {}).get("input_modalities")
        if modalities is not None:
            return "image" in modalities
        capabilities = chosen.get("capabilities")
        if capabilities is not None:
            return bool({"vision", "multimodal", "image"} & set(capabilities))
        return True

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        url = api_root(self.base_url) + "/chat/completions"
        resp = await post(self.session, url, chat_payload(self.config, prompt, image),
                          headers=self.headers(),
                          client_timeout=self.timeout, max_retries=self.config.max_retries,
                          retry_backoff_s=self.config.retry_backoff_s)
        async for piece in chat_sse(resp, url, usage):
            yield piece
