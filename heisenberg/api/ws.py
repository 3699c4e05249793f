"""``WS /ws/stream``: every bus event out, and frames and questions in (seed 001's real-time
streaming).

Out: each bus event as JSON (``{type, turn_id, timestamp_ms, ...}``), and the replies to what
the client sent: ``{"type": "description", description, cached, hash, vision}`` for a frame,
``{"type": "answer", ...}`` (the ``/ask`` JSON) for a question, ``{"type": "dropped", ...}``
for a frame replaced by a newer one before it was described, ``{"type": "rejected",
"detail"}`` for a message that could not be used (the connection stays open).

In: a binary message is an image file (JPEG, PNG, ...); a text message is JSON,
``{"type": "frame", "image": "<base64 or data URI>", "prompt"?, "session_id"?}`` or
``{"type": "ask", "text": "...", "session_id"?}``.

Bounded: a message is at most ``api.max_body_mb`` (an image ``api.max_image_mb``); frames are
described one at a time and at most ``api.ws_max_fps`` a second, a newer frame replacing one
that waits (the latest scene is what matters); one question at a time; the frame cache spares
the model an unchanged scene; every reply and event goes through the client's bounded queue
(``api.ws_queue``), and a client that falls that far behind is closed (1008). The handshake
passes the same Host, Origin and token checks as every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from heisenberg.core.bus import Subscription
from heisenberg.core.errors import AssistantBusyError
from heisenberg.core.events import Event
from heisenberg.core.tasks import TaskSet

if TYPE_CHECKING:
    from heisenberg.api.server import API

log = logging.getLogger(__name__)


def detail(exc: web.HTTPException) -> str:
    """The ``{"detail"}`` of an HTTP error the API's helpers raised."""
    return str(json.loads(exc.text or "{}").get("detail", exc.reason))


class StreamConnection:
    def __init__(self, api: API, request: web.Request) -> None:
        self.api = api
        self.config = api.api
        self.request = request
        self.ws = web.WebSocketResponse(heartbeat=20.0,
                                        max_msg_size=int(self.config.max_body_mb * 1_000_000))
        self.out: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.config.ws_queue)
        self.too_slow = asyncio.Event()
        self._pending: tuple[bytes | str, str, str | None] | None = None
        self._frame_ready = asyncio.Event()
        self._asking = False
        self._tasks = TaskSet("ws")
        self._sub: Subscription | None = None
        self.dropped_frames = 0

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.out.put_nowait(message)
        except asyncio.QueueFull:
            self.too_slow.set()

    async def forward(self, event: Event) -> None:
        self.send(event.to_dict())

    async def run(self) -> web.WebSocketResponse:
        await self.ws.prepare(self.request)
        sub = self._sub = self.api.bus.subscribe(self.forward, name="ws",
                                                 max_queue=self.config.ws_queue * 2)
        sender = self._tasks.spawn(self._send_all(), "send")
        reader = self._tasks.spawn(self._read_all(), "read")
        self._tasks.spawn(self._describe_frames(), "frames")
        slow = asyncio.ensure_future(self.too_slow.wait())
        try:
            await asyncio.wait({sender, reader, slow}, return_when=asyncio.FIRST_COMPLETED)
            if slow.done():
                self.api.ws_dropped += 1
                log.warning("API: a WebSocket client fell %d events behind; dropped",
                            self.config.ws_queue)
        finally:
            slow.cancel()
            await self._tasks.close(1.0)
            await self.api.bus.unsubscribe(sub)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(
                    code=1008 if self.too_slow.is_set() else 1000,
                    message=b"too slow" if self.too_slow.is_set() else b""), 1.0)
        return self.ws

    async def _send_all(self) -> None:
        while True:
            await self.ws.send_json(await self.out.get())

    async def _read_all(self) -> None:
        async for message in self.ws:
            if message.type is WSMsgType.BINARY:
                self._offer_frame(message.data, "", None)
            elif message.type is WSMsgType.TEXT:
                self._on_text(message.data)
            elif message.type is WSMsgType.ERROR:
                log.info("API: WebSocket closed with an error: %s", self.ws.exception())
                return

    def _reject(self, detail: str) -> None:
        self.send({"type": "rejected", "detail": detail})

    def _on_text(self, text: str) -> None:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            self._reject("a text message must be JSON: {\"type\": \"frame\" | \"ask\", ...}")
            return
        if not isinstance(data, dict):
            self._reject("a text message must be a JSON object")
            return
        try:
            session_id = self.api.session_id(data)
        except web.HTTPException as exc:
            self._reject(detail(exc))
            return
        kind = data.get("type")
        if kind == "frame":
            image, prompt = data.get("image"), data.get("prompt") or ""
            if not isinstance(image, str) or not isinstance(prompt, str):
                self._reject("a frame needs 'image' (base64 or a data URI); 'prompt' is text")
                return
            self._offer_frame(image, prompt, session_id)
        elif kind == "ask":
            question = data.get("text")
            if not isinstance(question, str) or not question.strip():
                self._reject("a question needs 'text'")
            elif self._asking:
                self._reject("one question at a time on a connection: wait for its answer")
            else:
                self._asking = True
                self._tasks.spawn(self._ask(question, session_id), "ask")
        else:
            self._reject(f"unknown message type {str(kind)[:50]!r} (expected 'frame' or 'ask')")

    def _offer_frame(self, image: bytes | str, prompt: str, session_id: str | None) -> None:
        """The newest frame waits to be described; one that was waiting is dropped."""
        if self._pending is not None:
            self.dropped_frames += 1
            self.send({"type": "dropped", "reason": "a newer frame arrived before it was "
                                                    "described", "dropped": self.dropped_frames})
        self._pending = (image, prompt, session_id)
        self._frame_ready.set()

    async def _describe_frames(self) -> None:
        from heisenberg.api.server import SCENE_PROMPT

        min_interval_s = 1.0 / self.config.ws_max_fps
        last_s = -min_interval_s
        while True:
            await self._frame_ready.wait()
            # At most ws_max_fps: wait out the interval (a newer frame may replace this one).
            await asyncio.sleep(max(0.0, last_s + min_interval_s - time.monotonic()))
            self._frame_ready.clear()
            pending, self._pending = self._pending, None
            if pending is None:
                continue
            last_s = time.monotonic()
            image, prompt, session_id = pending
            try:
                async with self.api.slot():
                    frame, key = await self.api.decode(image)
                    reply = await self.api.describe_frame(frame, key, prompt or SCENE_PROMPT,
                                                          session_id)
            except web.HTTPException as exc:
                self._reject(detail(exc))
                continue
            self.send({"type": "description", **reply})

    async def _ask(self, question: str, session_id: str | None) -> None:
        try:
            async with self.api.slot():
                await self.api.assistant.wait_until_heard(
                    self.api.config.states.listening_timeout_s)
                turn = self.api.assistant.turn(question, source="api", session_id=session_id)
                try:
                    async with turn:
                        async for _ in turn:  # its events reach the client from the bus
                            pass
                except AssistantBusyError as exc:
                    self._reject(exc.message)
                    return
            if self._sub is not None:  # the answer follows its turn's events, not overtakes them
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._sub.drained(), 5.0)
            self.send({"type": "answer", **self.api.answer(turn.outcome)})
        except web.HTTPException as exc:
            self._reject(detail(exc))
        finally:
            self._asking = False
