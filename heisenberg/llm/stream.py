"""``LlamaCppLLM``: streaming client of llama.cpp's server.

Two endpoints:
- native ``POST /completion``: SSE ``data: {"content": ..., "stop": false}``; the last event
  has ``"stop": true`` and a ``timings`` object; there is no ``[DONE]``.
- ``POST /v1/chat/completions`` with ``stream: true``: ``choices[0].delta.content`` pieces,
  ended by ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import LLMIncompleteError, LLMProtocolError
from heisenberg.llm.backend import LLMBackend, Usage
from heisenberg.llm.http import finish_response, parse_json, post, sse_data
from heisenberg.llm.prompts import Prompt

log = logging.getLogger(__name__)


class LlamaCppLLM(LLMBackend):
    name = "llamacpp"
    _media_marker = "<__media__>"

    async def _open(self, path: str, payload: dict[str, Any]) -> tuple[str, aiohttp.ClientResponse]:
        url = self.base_url + path
        resp = await post(self.session, url, payload, headers=self.headers(),
                          client_timeout=self.timeout, max_retries=self.config.max_retries,
                          retry_backoff_s=self.config.retry_backoff_s)
        return url, resp

    async def _detect_vision(self) -> bool:
        """``GET /props``: ``modalities.vision`` says whether an mmproj is loaded, and
        ``media_marker`` (random per server start) is where an image goes in a prompt."""
        url = self.base_url + "/props"
        try:
            async with self.session.get(url, headers=self.headers(),
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                props = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("llm: could not read %s: %s", url, exc)
            return False
        self._media_marker = str(props.get("media_marker") or "<__media__>")
        return bool((props.get("modalities") or {}).get("vision"))

    def _generate(self, prompt: Prompt, image: bytes | None,
                  usage: Usage) -> AsyncIterator[str]:
        if self.config.endpoint == "chat":
            return self._chat(prompt, usage, image)
        return self._completion(prompt, usage, image)

    async def _completion(self, prompt: Prompt, usage: Usage,
                          image: bytes | None = None) -> AsyncIterator[str]:
        text: str | dict[str, Any] = prompt.as_text()
        if image is not None:
            # The image goes where the question starts, as the server's media marker.
            head, found, tail = str(text).rpartition(prompt.question)
            with_marker = (f"{head}{self._media_marker}\n{found}{tail}" if found
                           else f"{self._media_marker}\n{text}")
            text = {"prompt_string": with_marker,
                    "multimodal_data": [base64.b64encode(image).decode("ascii")]}
        payload = {
            "prompt": text, "stream": True, "n_predict": self.config.max_tokens,
            "temperature": self.config.temperature, "top_p": self.config.top_p,
            "stop": prompt.stop, "cache_prompt": True,
        }
        url, resp = await self._open("/completion", payload)
        done = False
        try:
            async for data in sse_data(resp, url):
                event = parse_json(data, url)
                piece = event.get("content", "")
                if not isinstance(piece, str):
                    raise LLMProtocolError(f"'content' is not text in {data[:200]!r}")
                if piece:
                    yield piece
                if event.get("stop"):
                    timings = event.get("timings") or {}
                    usage.timings = timings
                    usage.prompt_tokens = int(event.get("tokens_evaluated")
                                              or timings.get("prompt_n", 0))
                    usage.completion_tokens = int(event.get("tokens_predicted")
                                                  or timings.get("predicted_n", 0))
                    usage.stop_reason = str(event.get("stop_type", "stop"))
                    usage.server_prompt = str(event.get("prompt", ""))
                    done = True
                    break
            if not done:
                raise LLMIncompleteError(f"stream from {url} ended without a stop event")
        finally:
            finish_response(resp, done)

    async def _chat(self, prompt: Prompt, usage: Usage,
                    image: bytes | None = None) -> AsyncIterator[str]:
        url, resp = await self._open("/v1/chat/completions",
                                     chat_payload(self.config, prompt, image))
        async for piece in chat_sse(resp, url, usage):
            yield piece


def chat_payload(config: LLMConfig, prompt: Prompt, image: bytes | None) -> dict[str, Any]:
    """An OpenAI-style streaming chat request."""
    payload: dict[str, Any] = {
        "messages": with_image(prompt.messages, image), "stream": True,
        "max_tokens": config.max_tokens, "temperature": config.temperature,
        "top_p": config.top_p, "stream_options": {"include_usage": True},
    }
    if config.model:
        payload["model"] = config.model
    return payload


async def chat_sse(resp: aiohttp.ClientResponse, url: str, usage: Usage) -> AsyncIterator[str]:
    """Pieces of an OpenAI-style chat completion stream, which must end with ``[DONE]``."""
    done = False
    try:
        async for data in sse_data(resp, url):
            if data.strip() == "[DONE]":
                done = True
                break
            event = parse_json(data, url)
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    yield piece
                if choice.get("finish_reason"):
                    usage.stop_reason = str(choice["finish_reason"])
            if event.get("usage"):
                usage.prompt_tokens = int(event["usage"].get("prompt_tokens", 0))
                usage.completion_tokens = int(event["usage"].get("completion_tokens", 0))
            if event.get("timings"):
                usage.timings = event["timings"]
        if not done:
            raise LLMIncompleteError(f"stream from {url} ended without [DONE]")
    finally:
        finish_response(resp, done)


def with_image(messages: list[dict[str, Any]], image: bytes | None) -> list[dict[str, Any]]:
    """OpenAI-style messages whose last user turn carries ``image`` as a data URI."""
    if image is None:
        return messages
    uri = "data:image/jpeg;base64," + base64.b64encode(image).decode("ascii")
    last = messages[-1]
    content = [{"type": "image_url", "image_url": {"url": uri}},
               {"type": "text", "text": last["content"]}]
    return [*messages[:-1], {"role": last["role"], "content": content}]
