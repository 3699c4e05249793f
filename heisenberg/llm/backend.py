"""The one interface every LLM backend implements: a stream of text pieces.

``LLMBackend.stream`` wraps a backend's raw ``_generate`` with what they all share: the
``on_token`` / ``on_complete`` callbacks (seed 004), timing of the first token, the final
``LLMResult``. Closing the stream early (``aclose``/cancel) closes the HTTP connection, which
is how llama-server learns to free the slot.
"""

from __future__ import annotations

import inspect
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import LLMServerError
from heisenberg.llm.http import stream_timeout
from heisenberg.llm.prompts import Prompt


@dataclass
class Usage:
    """Filled in by a backend while it streams."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""
    server_prompt: str = ""
    """The prompt as the server saw it, when the server echoes it (llama.cpp /completion)."""
    timings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LLMResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    first_token_ms: float
    """Milliseconds from sending the request to the first non-empty piece."""
    total_ms: float
    stop_reason: str
    server_prompt: str = ""
    timings: dict[str, Any] = field(default_factory=dict)


log = logging.getLogger(__name__)

TokenCallback = Callable[[str], Awaitable[None] | None]
CompleteCallback = Callable[[LLMResult], Awaitable[None] | None]


async def _call(callback: Callable[[Any], Any] | None, arg: Any) -> None:
    if callback is not None:
        result = callback(arg)
        if inspect.isawaitable(result):
            await result


def image_refused(message: str) -> bool:
    """Whether an error message says that the model cannot take images."""
    text = message.lower()
    return "image" in text and any(w in text for w in ("not supported", "unsupported",
                                                        "multimodal", "vision", "mmproj"))


class LLMBackend(ABC):
    name: ClassVar[str]

    def __init__(self, config: LLMConfig, base_url: str, *,
                 on_token: TokenCallback | None = None,
                 on_complete: CompleteCallback | None = None,
                 server_key: str = "") -> None:
        """``server_key``: the key of a managed server (made at its start), used instead of
        ``llm.api_key``."""
        self.config = config
        self.server_key = server_key
        self.base_url = base_url.rstrip("/")
        self.on_token = on_token
        self.on_complete = on_complete
        self.last_result: LLMResult | None = None
        self.vision: bool | None = None
        """Whether the server accepts images; None until asked."""
        self._vision_warned = False
        self._session: aiohttp.ClientSession | None = None
        self.timeout = stream_timeout(config.connect_timeout_s, config.stall_timeout_s)

    def reconfigure(self, config: LLMConfig) -> None:
        """New sampling, prompt and timeout settings for the next request (config reload)."""
        self.config = config
        self.timeout = stream_timeout(config.connect_timeout_s, config.stall_timeout_s)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No keep-alive: llama-server closes a connection after a streamed answer, and a
            # pooled connection it closed fails the next request ("Can not write request
            # body"). A fresh loopback connection costs well under a millisecond.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    def headers(self, token: str | None = None) -> dict[str, str]:
        token = (self.server_key or self.config.api_key) if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def stream(self, prompt: Prompt,
                     image: bytes | None = None) -> AsyncGenerator[str, None]:
        """Yield the answer piece by piece. ``image`` is a JPEG for vision-capable servers."""
        start = time.perf_counter()
        first_ms = 0.0
        pieces: list[str] = []
        usage = Usage()
        self.last_result = None
        if image is not None and not await self.supports_vision():
            self._no_vision("the server does not report image input")
            image = None
        while True:
            try:
                async for piece in self._generate(prompt, image, usage):
                    if not piece:
                        continue
                    if not pieces:
                        first_ms = (time.perf_counter() - start) * 1000
                    pieces.append(piece)
                    await _call(self.on_token, piece)
                    yield piece
                break
            except LLMServerError as exc:
                # llama-server without --mmproj answers 500 "image input is not supported";
                # other servers say it in their own words.
                if image is None or pieces or not image_refused(exc.server_message):
                    raise
                self.vision = False
                self._no_vision(exc.server_message)
                image, usage = None, Usage()
        result = LLMResult("".join(pieces), usage.prompt_tokens,
                           usage.completion_tokens or len(pieces), first_ms,
                           (time.perf_counter() - start) * 1000, usage.stop_reason,
                           usage.server_prompt, usage.timings)
        self.last_result = result
        await _call(self.on_complete, result)

    async def supports_vision(self) -> bool:
        """Whether the server accepts images; asked once, then remembered in ``vision``."""
        if self.vision is None:
            self.vision = await self._detect_vision()
        return self.vision

    async def _detect_vision(self) -> bool:
        return False

    def _no_vision(self, why: str) -> None:
        if not self._vision_warned:
            self._vision_warned = True
            log.warning("vision unavailable (%s): questions go to the model as text only", why)

    async def complete(self, prompt: Prompt, image: bytes | None = None) -> LLMResult:
        async for _ in self.stream(prompt, image):
            pass
        assert self.last_result is not None
        return self.last_result

    @abstractmethod
    def _generate(self, prompt: Prompt, image: bytes | None,
                  usage: Usage) -> AsyncIterator[str]:
        """Raw pieces of the answer; fills ``usage``; raises an ``LLMError`` on failure."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
