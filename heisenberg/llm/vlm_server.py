"""``vlm-server`` backend (seed 002): ``POST /api/v1/generate`` of the VLM server
(Qwen2.5-VL). The request is ``messages`` whose content mixes ``text`` and ``image`` items
(images as data URIs) plus ``max_new_tokens``/``temperature``/``top_p``; the answer is
``{"response", "usage": {"input_tokens", "output_tokens"}, "processing_time"}``, not streamed.
Errors are ``{"detail": "..."}`` with 400, 503 (model not loaded: retried) or 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from heisenberg.core.errors import LLMProtocolError
from heisenberg.llm.backend import LLMBackend, Usage, data_uri
from heisenberg.llm.http import parse_json
from heisenberg.llm.prompts import Prompt


def vlm_messages(messages: list[dict[str, str]], image: bytes | None) -> list[dict[str, Any]]:
    if image is None:
        return list(messages)
    last = messages[-1]
    content = [{"type": "image", "image": data_uri(image)},
               {"type": "text", "text": last["content"]}]
    return [*messages[:-1], {"role": last["role"], "content": content}]


class VLMServerLLM(LLMBackend):
    name = "vlm-server"
    streams = False
    health_path = "/health"

    async def _detect_vision(self) -> bool | None:
        """``GET /health``: the server is a vision model; it can take images once loaded."""
        health = await self._get_json(self.base_url + "/health")
        if not isinstance(health, dict) or "model_loaded" not in health:
            return None
        return bool(health["model_loaded"])

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        url = self.base_url + "/api/v1/generate"
        payload = {"messages": vlm_messages(prompt.messages, image),
                   "max_new_tokens": self.config.max_tokens,
                   "temperature": self.config.temperature, "top_p": self.config.top_p}
        resp = await self._post(url, payload)
        async with resp:
            body = (await resp.read()).decode("utf-8", "replace")
        data = parse_json(body, url)
        text = data.get("response")
        if not isinstance(text, str):
            raise LLMProtocolError(f"VLM server at {url} answered without a 'response' "
                                   f"field: {body[:200]!r}")
        used = data.get("usage") or {}
        usage.prompt_tokens = int(used.get("input_tokens", 0))
        usage.completion_tokens = int(used.get("output_tokens", 0))
        usage.timings = {"processing_time_s": data.get("processing_time")}
        usage.stop_reason = "stop"
        yield text
