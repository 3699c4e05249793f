"""``llava`` backend (seed 000): a local LLaVA-style HTTP endpoint.

``POST LLAVA_SERVER_URL`` with ``{"prompt": "...", "image": "<base64>"}`` and, when set,
``Authorization: Bearer LLAVA_AUTH_TOKEN``; the answer is JSON with a ``text`` field. The
server does not stream: the whole answer arrives as one piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from heisenberg.core.errors import LLMProtocolError
from heisenberg.llm.backend import LLMBackend, Usage, encode_image
from heisenberg.llm.http import parse_json
from heisenberg.llm.prompts import Prompt


class LlavaLLM(LLMBackend):
    name = "llava"
    streams = False

    async def _detect_vision(self) -> bool | None:
        return True  # the endpoint exists to look at images

    async def _generate(self, prompt: Prompt, image: bytes | None,
                        usage: Usage) -> AsyncIterator[str]:
        url = self.config.llava_url or self.base_url
        question_only = self.config.llava_prompt == "question"
        payload: dict[str, Any] = {"prompt": prompt.question if question_only
                                   else prompt.as_text()}
        if image is not None:
            payload["image"] = encode_image(image)
        resp = await self._post(url, payload, self.config.llava_token or self.config.api_key)
        async with resp:
            body = (await resp.read()).decode("utf-8", "replace")
        text = parse_json(body, url).get("text")
        if not isinstance(text, str):
            raise LLMProtocolError(f"LLaVA server at {url} answered without a valid 'text' "
                                   f"field: {body[:200]!r}")
        usage.stop_reason = "stop"
        yield text
