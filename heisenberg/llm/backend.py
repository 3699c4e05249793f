"""The one interface every LLM backend implements: a stream of text pieces, then the result.

``LLMBackend.stream`` wraps a backend's raw ``_generate`` with what they all share: timing of
the first token, the fallback to text when a server refuses an image, and the final
``LLMResult`` as the stream's last item. The base also holds what the five protocols have in
common: the POST with retries and the auth header (``_post``), one image encoder
(``encode_image``), where the health check is (``health_path``) and one policy for vision
(``supports_vision``). Closing the stream early (``aclose``/cancel) closes the HTTP
connection, which is how llama-server learns to free the slot.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import LLMServerError, VisionUnavailableError
from heisenberg.llm.http import post, stream_timeout
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
    image_dropped: str = ""
    """Why an image given with the question did not reach the model (empty: it did, or
    there was none)."""


log = logging.getLogger(__name__)

VISION_RECHECK_S = 60.0
"""How long "cannot see" (or "did not say") is believed before the server is asked again:
a server that was loading, or was restarted with a vision projector, is found out."""


def encode_image(image: bytes) -> str:
    """A JPEG as the base64 text every protocol carries images in."""
    return base64.b64encode(image).decode("ascii")


def data_uri(image: bytes) -> str:
    return "data:image/jpeg;base64," + encode_image(image)


#: A line where someone else starts speaking in a plain transcript: "User:", "Bob:", "Dr Who:".
SPEAKER_LINE = re.compile(r"\n[ \t]*[A-Z][A-Za-z]{0,20}(?: [A-Z][A-Za-z]{0,20})?:")
#: What may still become such a line: a newline and the start of a name.
_SPEAKER_START = re.compile(r"\n[ \t]*(?:[A-Z][A-Za-z]{0,20}(?: (?:[A-Z][A-Za-z]{0,20})?)?)?")


class SpeakerTurnGuard:
    """Cuts an answer where the model starts another speaker's line ("\nBob: ..."), which a
    stop string cannot catch (the names are the model's own). Text after a newline is held
    back while it could still be such a line, so nothing of an invented turn is released."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = 0
        self.cut = False

    def feed(self, piece: str) -> str:
        """The part of the answer that can be released now."""
        self.text += piece
        if (found := SPEAKER_LINE.search(self.text)) is not None:
            self.cut = True
            return self._release(found.start())
        hold = self.text.rfind("\n", self.sent)
        if hold == -1 or not _SPEAKER_START.fullmatch(self.text, hold):
            hold = len(self.text)
        return self._release(hold)

    def flush(self) -> str:
        """The end of the answer (held text that turned out to be the answer's own)."""
        return "" if self.cut else self._release(len(self.text))

    def _release(self, end: int) -> str:
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out


def image_refused(message: str) -> bool:
    """Whether an error message says that the model cannot take images."""
    text = message.lower()
    return "image" in text and any(w in text for w in ("not supported", "unsupported",
                                                        "multimodal", "vision", "mmproj"))


class LLMBackend(ABC):
    name: ClassVar[str]
    health_path: ClassVar[str | None] = None
    """Where the server says "I am up": 200 ready, 503 loading; None: the protocol has none."""
    streams: ClassVar[bool] = True
    """False: the whole answer comes at once, after as long as the model takes (no stall
    timeout then: the turn's ``states.thinking_timeout_s`` is the one limit)."""

    def __init__(self, config: LLMConfig, base_url: str, *, server_key: str = "") -> None:
        """``server_key``: the key of a managed server (made at its start), used instead of
        ``llm.api_key``."""
        self.config = config
        self.server_key = server_key
        self.base_url = base_url.rstrip("/")
        self.vision: bool | None = None
        """Whether the server accepts images; None until asked."""
        self._vision_asked_s: float | None = None
        self._vision_said = False
        """The server itself said (not a guess, not a refusal to one image)."""
        self._vision_warned = False
        self._session: aiohttp.ClientSession | None = None
        self.timeout = self._timeout(config)

    def _timeout(self, config: LLMConfig) -> aiohttp.ClientTimeout:
        return stream_timeout(config.connect_timeout_s,
                              config.stall_timeout_s if self.streams else None)

    def reconfigure(self, config: LLMConfig) -> None:
        """New sampling, prompt and timeout settings for the next request (config reload)."""
        self.config = config
        self.timeout = self._timeout(config)

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

    async def _post(self, url: str, payload: dict[str, Any],
                    token: str | None = None) -> aiohttp.ClientResponse:
        """POST with the auth header, the stream timeouts and the 503 retries (``http.post``)."""
        return await post(self.session, url, payload, headers=self.headers(token),
                          client_timeout=self.timeout, max_retries=self.config.max_retries,
                          retry_backoff_s=self.config.retry_backoff_s)

    async def _get_json(self, url: str, payload: dict[str, Any] | None = None) -> Any:
        """A small JSON request (a capability probe): the body, or None on any failure."""
        try:
            request = (self.session.post(url, json=payload, headers=self.headers(),
                                         timeout=aiohttp.ClientTimeout(total=5))
                       if payload is not None else
                       self.session.get(url, headers=self.headers(),
                                        timeout=aiohttp.ClientTimeout(total=5)))
            async with request as resp:
                return await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("llm: could not read %s: %s", url, exc)
            return None

    async def stream(self, prompt: Prompt, image: bytes | None = None, *,
                     require_image: bool = False) -> AsyncGenerator[str | LLMResult, None]:
        """Yield the answer piece by piece (``str``), then its ``LLMResult`` as the last item.
        ``image`` is a JPEG for vision-capable servers; a server that cannot take it gets the
        question as text, unless ``require_image`` (then ``VisionUnavailableError``)."""
        start = time.perf_counter()
        first_ms = 0.0
        pieces: list[str] = []
        usage = Usage()
        dropped = ""
        if image is not None and not await self.supports_vision():
            if require_image:
                raise VisionUnavailableError(self._cannot_see())
            dropped = self._no_vision("the server does not report image input")
            image = None
        while True:
            # A plain transcript invites the model to go on writing it ("Bob: ...").
            guard = SpeakerTurnGuard() if prompt.format == "plain" else None
            try:
                raw = self._generate(prompt, image, usage)
                async with contextlib.aclosing(raw):  # type: ignore[type-var]
                    async for piece in raw:
                        if guard is not None:
                            piece = guard.feed(piece)
                        if piece:
                            if not pieces:
                                first_ms = (time.perf_counter() - start) * 1000
                            pieces.append(piece)
                            yield piece
                        if guard is not None and guard.cut:
                            usage.stop_reason = "speaker_turn"  # closing the stream stops it
                            break
                if guard is not None and (rest := guard.flush()):
                    pieces.append(rest)
                    yield rest
                break
            except LLMServerError as exc:
                # llama-server without --mmproj answers 500 "image input is not supported";
                # other servers say it in their own words.
                if image is None or pieces or not image_refused(exc.server_message):
                    raise
                self.vision, self._vision_said = False, False
                self._vision_asked_s = time.monotonic()
                if require_image:
                    raise VisionUnavailableError(self._cannot_see()) from exc
                dropped = self._no_vision(exc.server_message)
                image, usage = None, Usage()
        yield LLMResult("".join(pieces), usage.prompt_tokens,
                        usage.completion_tokens or len(pieces), first_ms,
                        (time.perf_counter() - start) * 1000, usage.stop_reason,
                        usage.server_prompt, usage.timings, dropped)

    async def supports_vision(self) -> bool:
        """Whether the server accepts images, remembered in ``vision``.

        One policy for every backend: what the server says about itself decides; a server
        that says nothing (or cannot be asked) is given the benefit of the doubt, and if it
        then refuses the image, the question is asked again as text (``stream``). Anything
        but a "yes" from the server itself is asked again after ``VISION_RECHECK_S``."""
        now = time.monotonic()
        stale = self._vision_asked_s is None or (
            not (self.vision and self._vision_said)
            and now - self._vision_asked_s > VISION_RECHECK_S)
        if stale:
            said = await self._detect_vision()
            self._vision_asked_s, self._vision_said = now, said is not None
            if said and self.vision is False:
                log.info("vision available again: images go to the model")
                self._vision_warned = False
            self.vision = True if said is None else said
        return bool(self.vision)

    async def _detect_vision(self) -> bool | None:
        """What the server says about image input; None when it does not say."""
        return None

    def _cannot_see(self) -> str:
        return (f"the model at {self.base_url} cannot see images: serve it with a vision "
                "projector (llama-server --mmproj, server.mmproj_path) or use a vision model")

    def _no_vision(self, why: str) -> str:
        """Say (loudly once, then at info level) that an image is not sent; returns why."""
        if not self._vision_warned:
            self._vision_warned = True
            log.warning("vision unavailable (%s): questions go to the model as text only", why)
        else:
            log.info("image not sent: vision unavailable (%s)", why)
        return f"vision unavailable: {why}"

    async def complete(self, prompt: Prompt, image: bytes | None = None, *,
                       require_image: bool = False) -> LLMResult:
        """The whole answer at once: the stream's last item."""
        stream = self.stream(prompt, image, require_image=require_image)
        async with contextlib.aclosing(stream) as items:
            async for item in items:
                if isinstance(item, LLMResult):
                    return item
        raise AssertionError("a stream always ends with its result")

    @abstractmethod
    def _generate(self, prompt: Prompt, image: bytes | None,
                  usage: Usage) -> AsyncIterator[str]:
        """Raw pieces of the answer; fills ``usage``; raises an ``LLMError`` on failure."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
