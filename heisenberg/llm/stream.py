"""``LlamaCppLLM``: streaming client of llama.cpp's server.

Two endpoints:
- native ``POST /completion``: SSE ``data: {"content": ..., "stop": false}``; the last event
  has ``"stop": true`` and a ``timings`` object; there is no ``[DONE]``.
- ``POST /v1/chat/completions`` with ``stream: true``: ``choices[0].delta.content`` pieces,
  ended by ``data: [DONE]``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from heisenberg.core.errors import LLMIncompleteError, LLMProtocolError
from heisenberg.llm.backend import LLMBackend, Usage
from heisenberg.llm.http import parse_json, post, sse_data
from heisenberg.llm.prompts import Prompt

log = logging.getLogger(__name__)


class LlamaCppLLM(LLMBackend):
    name = "llamacpp"

    async def _open(self, path: str, payload: dict[str, Any]) -> tuple[str, aiohttp.ClientResponse]:
        url = self.base_url + path
        resp = await post(self.session, url, payload, headers=self.headers(),
                          client_timeout=self.timeout, max_retries=self.config.max_retries,
                          retry_backoff_s=self.config.retry_backoff_s)
        return url, resp

    def _generate(self, prompt: Prompt, image: bytes | None,
                  usage: Usage) -> AsyncIterator[str]:
        if self.config.endpoint == "chat":
            return self._chat(prompt, usage)
        return self._completion(prompt, usage)

    async def _completion(self, prompt: Prompt, usage: Usage) -> AsyncIterator[str]:
        text = prompt.text or _messages_as_plain(prompt)
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
            _finish(resp, done)

    async def _chat(self, prompt: Prompt, usage: Usage) -> AsyncIterator[str]:
        payload: dict[str, Any] = {
            "messages": prompt.messages, "stream": True,
            "max_tokens": self.config.max_tokens, "temperature": self.config.temperature,
            "top_p": self.config.top_p, "stream_options": {"include_usage": True},
        }
        if self.config.model:
            payload["model"] = self.config.model
        url, resp = await self._open("/v1/chat/completions", payload)
        async for piece in chat_sse(resp, url, usage):
            yield piece


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
        _finish(resp, done)


def _finish(resp: aiohttp.ClientResponse, done: bool) -> None:
    # A stream left early is closed hard: llama-server notices the dropped connection and
    # stops generating, which frees the slot for the next request.
    if done:
        resp.release()
    else:
        resp.close()


def _messages_as_plain(prompt: Prompt) -> str:
    """A chat-only prompt sent to /completion: render it in the plain format."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in prompt.messages]
    return "\n\n".join([*lines, "Assistant:"])
