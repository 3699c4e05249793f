"""``ollama`` backend (seed 003): Ollama's native ``POST /api/chat``, streamed as NDJSON
(``{"message": {"content": ...}, "done": false}`` ... ``{"done": true, ...}``). Images go as
base64 in the ``images`` list of the last user message; ``POST /api/show`` lists the model's
``capabilities`` (``vision``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from heisenberg.core.errors import LLMIncompleteError, LLMServerError
from heisenberg.llm.backend import LLMBackend, Usage, encode_image
from heisenberg.llm.http import finish_response, ndjson
from heisenberg.llm.prompts import Prompt


class OllamaLLM(LLMBackend):
    name = "ollama"
    health_path = "/api/tags"

    async def _detect_vision(self) -> bool | None:
        """``POST /api/show``: the model's ``capabilities`` list ``vision`` when it sees."""
        info = await self._get_json(self.base_url + "/api/show", {"model": self.config.model})
        if not isinstance(info, dict) or "capabilities" not in info:
            return None
        return "vision" in (info.get("capabilities") or [])

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        messages: list[dict[str, Any]] = [dict(m) for m in prompt.messages]
        if image is not None:
            messages[-1]["images"] = [encode_image(image)]
        payload = {"model": self.config.model, "messages": messages, "stream": True,
                   "options": {"temperature": self.config.temperature,
                               "top_p": self.config.top_p,
                               "num_predict": self.config.max_tokens}}
        url = self.base_url + "/api/chat"
        resp = await self._post(url, payload)
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
