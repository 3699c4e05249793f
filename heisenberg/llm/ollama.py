"""``ollama`` backend (seed 003): Ollama's native ``POST /api/chat``, streamed as NDJSON
(``{"message": {"content": ...}, "done": false}`` ... ``{"done": true, ...}``). Images go as
base64 in the ``images`` list of the last user message; ``POST /api/show`` lists the model's
``capabilities`` (``vision``)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from heisenberg.core.errors import LLMIncompleteError, LLMServerError
from heisenberg.llm.backend import LLMBackend, Usage
from heisenberg.llm.http import finish_response, ndjson, post
from heisenberg.llm.prompts import Prompt


class OllamaLLM(LLMBackend):
    name = "ollama"

    async def _detect_vision(self) -> bool:
        try:
            async with self.session.post(self.base_url + "/api/show",
                                         json={"model": self.config.model},
                                         timeout=aiohttp.ClientTimeout(total=5)) as resp:
                info = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return "vision" in (info.get("capabilities") or [])

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        messages: list[dict[str, Any]] = [dict(m) for m in prompt.messages]
        if image is not None:
            messages[-1]["images"] = [base64.b64encode(image).decode("ascii")]
        payload = {"model": self.config.model, "messages": messages, "stream": True,
                   "options": {"temperature": self.config.temperature,
                               "top_p": self.config.top_p,
                               "num_predict": self.config.max_tokens}}
        url = self.base_url + "/api/chat"
        resp = await post(self.session, url, payload, headers=self.headers(),
                          client_timeout=self.timeout, max_retries=self.config.max_retries,
                          retry_backoff_s=self.config.retry_backoff_s)
        done = False
        try:
            async for event in ndjson(resp, url):
                if "error" in event:
                    raise LLMServerError(500, str(event["error"]))
                piece = (event.get("message") or {}).get("content") or ""
                if piece:
                    yield piece
                if event.get("done"):
                    usage.prompt_tokens = int(event.get("prompt_eval_count", 0))
                    usage.completion_tokens = int(event.get("eval_count", 0))
                    usage.stop_reason = str(event.get("done_reason", "stop"))
                    done = True
                    break
            if not done:
                raise LLMIncompleteError(f"stream from {url} ended without \"done\": true")
        finally:
            finish_response(resp, done)
