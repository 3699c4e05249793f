"""``LlamaCppLLM``: streaming client of llama.cpp's server (seed 004).

Two endpoints:
- native ``POST /completion``: SSE ``data: {"content": ..., "stop": false}``; the last event
  has ``"stop": true`` and a ``timings`` object; there is no ``[DONE]``.
- ``POST /v1/chat/completions`` with ``stream: true``: ``choices[0].delta.content`` pieces,
  ended by ``data: [DONE]``.

Seed 004's callbacks: ``LlamaCppLLM(config, url, on_token=..., on_complete=...)`` and
``await llm.generate(prompt)``, a thin loop over ``stream`` that calls ``on_token`` with each
piece and ``on_complete`` with the result (either may be a coroutine function).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import LLMIncompleteError, LLMProtocolError, LLMServerError
from heisenberg.llm.backend import LLMBackend, LLMResult, Usage, data_uri, encode_image
from heisenberg.llm.http import finish_response, parse_json, sse_data
from heisenberg.llm.prompts import Prompt

log = logging.getLogger(__name__)

TokenCallback = Callable[[str], Awaitable[None] | None]
CompleteCallback = Callable[[LLMResult], Awaitable[None] | None]


async def _call(callback: Callable[[Any], Any] | None, arg: Any) -> None:
    if callback is not None:
        result = callback(arg)
        if inspect.isawaitable(result):
            await result


class LlamaCppLLM(LLMBackend):
    name = "llamacpp"
    health_path = "/health"
    _media_marker = "<__media__>"

    def __init__(self, config: LLMConfig, base_url: str, *,
                 on_token: TokenCallback | None = None,
                 on_complete: CompleteCallback | None = None, server_key: str = "") -> None:
        super().__init__(config, base_url, server_key=server_key)
        self.on_token = on_token
        self.on_complete = on_complete

    async def generate(self, prompt: Prompt, image: bytes | None = None) -> LLMResult:
        """The answer, with ``on_token`` called for each piece and ``on_complete`` at the end."""
        result: LLMResult | None = None
        async for item in self.stream(prompt, image):
            if isinstance(item, LLMResult):
                result = item
            else:
                await _call(self.on_token, item)
        assert result is not None  # a stream always ends with its result
        await _call(self.on_complete, result)
        return result

    async def _open(self, path: str, payload: dict[str, Any]) -> tuple[str, aiohttp.ClientResponse]:
        url = self.base_url + path
        return url, await self._post(url, payload)

    async def _detect_vision(self) -> bool | None:
        """``GET /props``: ``modalities.vision`` says whether an mmproj is loaded, and
        ``media_marker`` (random per server start) is where an image goes in a prompt."""
        props = await self._get_json(self.base_url + "/props")
        if not isinstance(props, dict):
            return None
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
                    "multimodal_data": [encode_image(image)]}
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
    """Pieces of an OpenAI-style chat completion stream.

    It ends with ``[DONE]``; a stream that ends without it but after a ``finish_reason`` is
    complete too (some servers omit it). An ``error`` object in the stream is the server's
    failure, reported in its words, even when ``[DONE]`` follows it.
    """
    done = finished = False
    try:
        async for data in sse_data(resp, url):
            if data.strip() == "[DONE]":
                done = True
                break
            event = parse_json(data, url)
            if event.get("error"):
                error = event["error"]
                message = error.get("message", error) if isinstance(error, dict) else error
                code = error.get("code") if isinstance(error, dict) else None
                raise LLMServerError(code if isinstance(code, int) else 500, str(message))
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    yield piece
                if choice.get("finish_reason"):
                    usage.stop_reason = str(choice["finish_reason"])
                    finished = True
            if event.get("usage"):
                usage.prompt_tokens = int(event["usage"].get("prompt_tokens", 0))
                usage.completion_tokens = int(event["usage"].get("completion_tokens", 0))
            if event.get("timings"):
                usage.timings = event["timings"]
        if not done and not finished:
            raise LLMIncompleteError(f"stream from {url} ended without [DONE] (and without a "
                                     "finish_reason): the answer is incomplete")
        done = True
    finally:
        finish_response(resp, done)


def with_image(messages: list[dict[str, Any]], image: bytes | None) -> list[dict[str, Any]]:
    """OpenAI-style messages whose last user turn carries ``image`` as a data URI."""
    if image is None:
        return messages
    last = messages[-1]
    content = [{"type": "image_url", "image_url": {"url": data_uri(image)}},
               {"type": "text", "text": last["content"]}]
    return [*messages[:-1], {"role": last["role"], "content": content}]
