"""The local HTTP/WebSocket API (aiohttp, in the daemon's process and event loop).

Questions asked here go through the same ``Assistant`` as spoken ones: the same PromptBuilder,
history, backend and state machine, one turn at a time. Every blocking step (Piper, image
decoding) runs in a worker thread, so the API stays responsive while a voice turn runs.
Errors are ``{"detail": "..."}`` with the status the problem deserves; nothing here can stop
the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import wave
from collections.abc import Callable, Coroutine
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from heisenberg import __version__
from heisenberg.api.frames import (
    BadImageError,
    FrameCache,
    decode_bytes,
    decode_image,
    phash,
)
from heisenberg.api.metrics import TurnMetrics
from heisenberg.api.middleware import fail, middlewares
from heisenberg.api.openapi import openapi_document
from heisenberg.api.ws import StreamConnection
from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.core.config import Config, is_loopback
from heisenberg.core.errors import (
    AssistantBusyError,
    AudioDeviceError,
    LLMConnectionError,
    LLMError,
    LLMLoadingError,
    TimerError,
    TurnTimeoutError,
    VisionUnavailableError,
)
from heisenberg.core.events import LLMToken
from heisenberg.core.tasks import TaskSet
from heisenberg.llm.backends import Health, probe_health
from heisenberg.orchestrator.assistant import Assistant, Turn, TurnOutcome, Voice
from heisenberg.orchestrator.history import HistoryError
from heisenberg.vision.camera import Frame
from heisenberg.voice.tts import TextToSpeech, sentences_of

log = logging.getLogger(__name__)

#: Swagger UI's files that /docs uses, and their types.
SWAGGER_FILES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
                 "favicon-32x32.png": "image/png"}
SCENE_PROMPT = "Describe the scene in this image in one or two short sentences."
MAX_HISTORY_LIMIT = 10_000


def llm_failure(exc: LLMError | TurnTimeoutError) -> web.HTTPException:
    """The HTTP error for a model that could not answer, by the failure's type."""
    if isinstance(exc, LLMConnectionError):
        return fail(503, f"the LLM is not reachable: {exc}")
    if isinstance(exc, LLMLoadingError | TurnTimeoutError):
        return fail(503, exc.message)
    if isinstance(exc, VisionUnavailableError):
        return fail(422, exc.message)
    return fail(502, exc.message)


class API:
    def __init__(self, config: Config, assistant: Assistant, *,
                 tts: TextToSpeech | None = None, sink: AudioSink | None = None,
                 devices: Callable[[], dict[str, str]] | None = None) -> None:
        self.config = config
        self.api = config.api
        self.assistant = assistant
        self.bus = assistant.bus
        self.tts = tts
        self.sink = sink
        self.devices = devices or (lambda: {})
        self.metrics = TurnMetrics()
        self.frames = FrameCache(self.api.frame_cache_size, self.api.frame_cache_ttl_s,
                                 self.api.frame_hash_distance)
        self.started_s = time.monotonic()
        self._pending = 0
        self._health: tuple[float, Health] | None = None
        self._health_lock = asyncio.Lock()
        self._tasks = TaskSet("api")
        self._streams: set[asyncio.Task[Any]] = set()
        """The handlers streaming an answer (stopped first, with a last event, by ``stop``)."""
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.ws_dropped = 0

    # --- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=int(self.api.max_body_mb * 1_000_000),
                              middlewares=middlewares(self.api))
        app.router.add_get("/", self.dashboard)
        app.router.add_get("/dashboard.js", self.dashboard_js)
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_get("/api/v1/health", self.health)
        app.router.add_post("/api/v1/ask", self.ask)
        app.router.add_post("/api/v1/process-frame", self.process_frame)
        app.router.add_post("/api/v1/speak", self.speak)
        app.router.add_get("/api/v1/history", self.history)
        app.router.add_delete("/api/v1/history", self.clear_history)
        app.router.add_get("/api/v1/timers", self.list_timers)
        app.router.add_post("/api/v1/timers", self.set_timer)
        app.router.add_delete("/api/v1/timers/{timer_id}", self.cancel_timer)
        app.router.add_get("/api/v1/frame", self.last_frame)
        app.router.add_get("/api/v1/openapi.json", self.openapi)
        app.router.add_get("/docs", self.docs)
        app.router.add_get("/docs/{name}", self.docs_asset)
        app.router.add_get("/ws/stream", self.stream)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def start(self) -> str:
        if not is_loopback(self.api.host):
            log.warning("API: listening on %r, reachable from other machines%s", self.api.host,
                        "" if self.api.token else
                        " WITHOUT a token (api.allow_open): anyone there can use it")
        self.bus.subscribe(self.metrics, name="metrics")
        # keepalive_timeout also closes connections that sent a request only in part.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0,
                                     keepalive_timeout=self.api.request_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.api.host, self.api.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.api.host}:{port}"
        self._spawn(self._clean_frames(), "frames")
        log.info("API and dashboard at %s", self.url)
        return self.url

    async def stop(self) -> None:
        # Streamed answers first, while their connections are open: each says why it ends
        # (aiohttp's own shutdown would close the socket before a handler could write).
        streams, self._streams = set(self._streams), set()
        for task in streams:
            task.cancel()
        if streams:
            await asyncio.wait(streams, timeout=2.0)
        await self._tasks.close(1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.spawn(coro, name)

    async def _clean_frames(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.api.frame_cache_ttl_s / 4))
            self.frames.expire()

    # --- helpers --------------------------------------------------------------------------

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.api.request_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise fail(408, f"the request body took longer than "
                            f"{self.api.request_timeout_s:g}s to arrive "
                            "(api.request_timeout_s)") from None
        try:
            body = json.loads(raw)
        except RecursionError:
            raise fail(400, "the body is JSON nested too deeply") from None
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise fail(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise fail(400, "the body must be a JSON object")
        return body

    @staticmethod
    def _flag(body: dict[str, Any], key: str) -> bool:
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise fail(400, f"{key!r} must be true or false, not {json.dumps(value)[:40]}")
        return value

    @staticmethod
    def _text(body: dict[str, Any], key: str) -> str:
        value = body.get(key)
        if value is None:
            raise fail(400, f"missing field {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise fail(400, f"{key!r} must be a non-empty string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # JSON lets "\ud800" through: no engine can take it
            raise fail(400, f"{key!r} is not valid Unicode (a lone surrogate)") from None
        return value.strip()

    async def _image(self, body: dict[str, Any],
                     required: bool = False) -> tuple[Frame | None, int]:
        """The request's image as a JPEG frame for the model, and its perceptual hash."""
        data = body.get("image")
        if data is None:
            if required:
                raise fail(400, "missing field 'image'")
            return None, 0
        return await self.decode(data)

    async def decode(self, data: str | bytes) -> tuple[Frame, int]:
        """An image (base64 text, or the file's bytes) as a JPEG frame and its perceptual
        hash, decoded off the loop after the size checks; 400 when it is not one."""
        max_bytes = int(self.api.max_image_mb * 1_000_000)
        try:
            if isinstance(data, bytes):
                frame, image = await asyncio.to_thread(
                    decode_bytes, data, max_bytes, self.config.camera, self.api.max_image_pixels)
            else:
                frame, image = await asyncio.to_thread(
                    decode_image, data, max_bytes, self.config.camera, self.api.max_image_pixels)
        except BadImageError as exc:
            raise fail(400, exc.message) from None
        return frame, await asyncio.to_thread(phash, image)

    async def llm_health(self) -> Health:
        """The server's health, probed at most once a second (health must answer fast)."""
        async with self._health_lock:
            now = time.monotonic()
            if self._health is None or now - self._health[0] > 1.0:
                backend = self.assistant.backend
                self._health = (now, await probe_health(self.config.llm.backend,
                                                        backend.base_url, timeout_s=1.0))
            return self._health[1]

    @contextlib.asynccontextmanager
    async def slot(self) -> Any:
        """Bound the questions running or waiting; over the bound: 429."""
        if self._pending >= self.api.max_queue:
            raise fail(429, f"too many questions in progress ({self._pending}, api.max_queue); "
                            "try again shortly")
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1

    # --- endpoints ------------------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        page = resources.files("heisenberg.api").joinpath("static", "index.html")
        return web.Response(text=page.read_text("utf-8"), content_type="text/html")

    async def dashboard_js(self, request: web.Request) -> web.Response:
        script = resources.files("heisenberg.api").joinpath("static", "dashboard.js")
        return web.Response(text=script.read_text("utf-8"), content_type="text/javascript")

    async def docs(self, request: web.Request) -> web.Response:
        page = resources.files("heisenberg.api").joinpath("static", "docs.html")
        return web.Response(text=page.read_text("utf-8"), content_type="text/html")

    async def docs_asset(self, request: web.Request) -> web.Response:
        """Swagger UI's files, from the swagger-ui-bundle package; only these names."""
        name = request.match_info["name"]
        if name == "docs.js":
            path = Path(str(resources.files("heisenberg.api").joinpath("static", name)))
        elif name in SWAGGER_FILES:
            path = Path(swagger_ui_path) / name
        else:
            raise fail(404, f"no such file: {name[:100]!r}")
        return web.Response(body=await asyncio.to_thread(path.read_bytes),
                            content_type=SWAGGER_FILES.get(name, "text/javascript"),
                            headers={"Cache-Control": "max-age=86400"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(__version__))

    async def status(self, request: web.Request) -> web.Response:
        recent = [t.as_dict() for t in self.metrics.recent]
        return web.json_response({
            "name": "heisenberg", "version": __version__, "state": str(self.assistant.state),
            "uptime_s": round(time.monotonic() - self.started_s, 1),
            "session_id": self.assistant.session.session_id,
            "last_turn": recent[-1] if recent else None, "recent_turns": recent})

    async def health(self, request: web.Request) -> web.Response:
        llm = await self.llm_health()
        vision = self.assistant.backend.vision
        healthy = llm.reachable and llm.model_loaded
        session = self.assistant.session
        if session.store_error is not None:
            await asyncio.to_thread(session.flush)  # the store may work again
        history = session.store_error
        devices = self.devices()
        # The microphone and the speaker are what a voice assistant is; a missing camera
        # only means questions go without an image (it is shown, not counted).
        broken = [name for name in ("microphone", "speaker")
                  if ": error: " in devices.get(name, "")]
        status = ("unavailable" if not healthy else "degraded" if history or broken
                  else "ok")
        body = {"status": status,
                "llm": {"reachable": llm.reachable, "model_loaded": llm.model_loaded,
                        "detail": llm.detail},
                "history": {"saving": history is None, "detail": history or "ok",
                            "unsaved_turns": session.unsaved},
                "vision": vision, "state": str(self.assistant.state),
                **devices, "uptime_s": round(time.monotonic() - self.started_s, 1)}
        return web.json_response(body, status=200 if healthy else 503)

    async def ask(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        text = self._text(body, "text")
        speak = self._flag(body, "speak")
        if speak and (self.tts is None or self.sink is None):
            raise fail(400, "speak: this process has no voice output")
        session_id = self.session_id(body)
        stream = self._flag(body, "stream") or "text/event-stream" in request.headers.get(
            "Accept", "")
        async with self.slot():
            frame, _ = await self._image(body)  # decoded in the slot: bounded memory
            llm = await self.llm_health()
            if not (llm.reachable and llm.model_loaded):
                raise fail(503, f"the LLM is not ready: {llm.detail}")
            # A typed question waits while a spoken one is being heard.
            await self.assistant.wait_until_heard(self.config.states.listening_timeout_s)
            voice = Voice(self.tts, self.sink) if speak and self.tts and self.sink else None
            turn = self.assistant.turn(text, image=frame.jpeg if frame else None,
                                       source="api", voice=voice,
                                       session_id=session_id, show=frame)
            try:
                async with turn:
                    if stream:
                        return await self._stream_answer(request, turn)
                    async for _ in turn:
                        pass
            except AssistantBusyError as exc:
                raise fail(409, exc.message) from None
            return web.json_response(self.answer(self._checked(turn.outcome)))

    @staticmethod
    def session_id(body: dict[str, Any]) -> str | None:
        session_id = body.get("session_id")
        if session_id is not None and (not isinstance(session_id, str)
                                       or len(session_id) > 200):
            raise fail(400, "'session_id' must be a string of at most 200 characters")
        return session_id or None

    @staticmethod
    def _checked(outcome: TurnOutcome) -> TurnOutcome:
        """A turn whose LLM could not be used at all is the server's problem: 503."""
        if isinstance(outcome.error, LLMConnectionError | LLMLoadingError):
            raise llm_failure(outcome.error)
        return outcome

    def answer(self, outcome: TurnOutcome) -> dict[str, Any]:
        result = outcome.result
        return {"turn_id": outcome.turn_id, "answer": outcome.answer,
                "error": str(outcome.error) if outcome.error else None,
                "session_id": outcome.session_id, "spoken": outcome.spoken,
                "speech_error": outcome.speech_error or None,
                "usage": {"prompt_tokens": result.prompt_tokens if result else 0,
                          "completion_tokens": result.completion_tokens if result else 0},
                "image_dropped": result.image_dropped or None if result else None,
                "first_token_ms": round(result.first_token_ms) if result else None,
                "total_ms": round(result.total_ms) if result else None}

    async def _stream_answer(self, request: web.Request, turn: Turn) -> web.StreamResponse:
        """The turn as server-sent events: ``data: {"token"}`` per piece, then ``event:
        done`` (the answer) or ``event: error``. A client that goes away ends the turn (the
        write fails; leaving the turn stops the LLM stream)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        handler = asyncio.current_task()
        if handler is not None:
            self._streams.add(handler)
        try:
            async for event in turn:
                if isinstance(event, LLMToken):
                    await response.write(f"data: {json.dumps({'token': event.text})}\n\n"
                                         .encode())
        except asyncio.CancelledError:  # the daemon stops: say so, not just EOF
            stopping = json.dumps({"detail": "the assistant is stopping; ask again when it "
                                             "is back"})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._end_stream(
                    response, f"event: error\ndata: {stopping}\n\n"), 0.5)
            raise
        finally:
            self._streams.discard(handler)
        try:
            done = self.answer(self._checked(turn.outcome))
            await response.write(f"event: done\ndata: {json.dumps(done)}\n\n".encode())
        except web.HTTPException as exc:
            await response.write(f"event: error\ndata: {exc.text}\n\n".encode())
        await response.write_eof()
        return response

    @staticmethod
    async def _end_stream(response: web.StreamResponse, last: str) -> None:
        await response.write(last.encode())
        await response.write_eof()

    async def process_frame(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        prompt_text = body.get("prompt") or SCENE_PROMPT
        if not isinstance(prompt_text, str):
            raise fail(400, "'prompt' must be a string")
        session_id = self.session_id(body)
        async with self.slot():
            frame, key = await self._image(body, required=True)
            assert frame is not None
            return web.json_response(await self.describe_frame(frame, key, prompt_text,
                                                               session_id))

    async def describe_frame(self, frame: Frame, key: int, prompt_text: str,
                             session_id: str | None) -> dict[str, Any]:
        """What the model sees in ``frame`` (``key``: its perceptual hash), from the cache
        when the scene is unchanged; raises the HTTP error the failure deserves."""
        cached = self.frames.get(key)
        if cached is not None:  # only descriptions made from the image are kept
            self.assistant.session.set_scene(frame.jpeg, cached, session_id)
            return {"description": cached, "cached": True, "hash": f"{key:016x}",
                    "vision": True}
        llm = await self.llm_health()
        if not (llm.reachable and llm.model_loaded):
            raise fail(503, f"the LLM is not ready: {llm.detail}")
        self.assistant.show_frame(frame)
        try:
            result = await self.assistant.describe(prompt_text, frame.jpeg, session_id)
        except (LLMError, TurnTimeoutError) as exc:
            raise llm_failure(exc) from None
        description = result.text.strip()
        if description:  # an empty answer is not a description of the scene
            self.frames.put(key, description)
        return {"description": description, "cached": False, "hash": f"{key:016x}",
                "vision": True}

    async def speak(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        text = self._text(body, "text")
        if len(text) > self.api.max_speak_chars:
            raise fail(400, f"'text' is {len(text)} characters, more than the "
                            f"{self.api.max_speak_chars} of api.max_speak_chars")
        play = self._flag(body, "play")
        if self.tts is None:
            raise fail(503, "text-to-speech is not loaded in this process")
        tts = self.tts
        sentences = sentences_of(text, self.config.language)
        if not sentences:
            raise fail(400, "'text' has nothing speakable in it")
        async with self.slot():  # Piper shares the machine with the spoken turns
            chunks = [await asyncio.to_thread(tts.synthesize, s) for s in sentences]
        samples = np.concatenate([c.array() for c in chunks])
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(tts.rate_hz)
            wav.writeframes(samples.astype(np.int16).tobytes())
        headers = {}
        if play:  # the WAV is the answer either way; the headers say whether it was played
            try:
                if self.sink is None:
                    raise AudioDeviceError("this process has no speaker")
                await self.sink.ready()
            except AudioDeviceError as exc:
                headers = {"Heisenberg-Played": "no", "Heisenberg-Play-Error": exc.message}
            else:
                headers = {"Heisenberg-Played": "yes"}
                self._spawn(self._play(self.sink, list(zip(sentences, chunks, strict=True))),
                            "play")
        return web.Response(body=buffer.getvalue(), content_type="audio/wav",
                            headers=headers)

    @staticmethod
    async def _play(sink: AudioSink, said: list[tuple[str, AudioChunk]]) -> None:
        try:
            for sentence, chunk in said:  # in order, one after the other
                await sink.play_text(chunk, sentence)
        except AudioDeviceError as exc:  # it was ready a moment ago: unplugged meanwhile
            log.error("API: /speak could not play: %s", exc.message)

    async def history(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise fail(400, "'limit' must be an integer") from None
        if not 0 <= limit <= MAX_HISTORY_LIMIT:
            raise fail(400, f"'limit' must be between 0 and {MAX_HISTORY_LIMIT}")
        wanted = request.query.get("session_id") or None
        session = self.assistant.session
        rows = await asyncio.to_thread(session.saved_turns, limit, wanted)
        # Without a session_id: every conversation's turns, each with its own id (the
        # top-level id is then none: it would mislabel the others).
        return web.json_response({"session_id": wanted,
                                  "current_session_id": session.session_id, "turns": [
            {"turn_id": t.turn_id, "session_id": s, "timestamp_s": t.timestamp_s,
             "user": t.user, "assistant": t.assistant, "interrupted": t.interrupted,
             "outcome": t.outcome}
            for s, t in rows]})

    async def clear_history(self, request: web.Request) -> web.Response:
        try:
            deleted = await asyncio.to_thread(self.assistant.session.clear)
        except HistoryError as exc:
            raise fail(503, exc.message) from None
        return web.json_response({"deleted": deleted})

    def _timers_body(self) -> dict[str, Any]:
        timers = self.assistant.timers
        now = timers.clock()
        return {"timers": [t.as_dict(now) for t in timers.all()],
                "saving": timers.store_error is None, "detail": timers.store_error or "ok"}

    async def list_timers(self, request: web.Request) -> web.Response:
        return web.json_response(self._timers_body())

    async def set_timer(self, request: web.Request) -> web.Response:
        """{"seconds": 300, "name": "pasta"}: a timer, as if asked aloud."""
        body = await self._json(request)
        unknown = set(body) - {"seconds", "name"}
        if unknown:
            raise fail(400, f"unknown field(s) {', '.join(sorted(unknown))} (a timer has "
                            "'seconds' and an optional 'name')")
        if "seconds" not in body:
            raise fail(400, "missing field 'seconds'")
        try:
            timer = self.assistant.timers.add(body["seconds"], body.get("name", ""))
        except TimerError as exc:
            raise fail(400, exc.message) from None
        return web.json_response(timer.as_dict(self.assistant.timers.clock()), status=201)

    async def cancel_timer(self, request: web.Request) -> web.Response:
        """Cancel a timer; a ringing one is stopped."""
        timers = self.assistant.timers
        timer_id = request.match_info["timer_id"]
        timer = timers.get(timer_id)
        if timer is None:
            raise fail(404, f"no timer {timer_id[:40]!r}")
        timers.cancel(timer_id, "api" if timer.status == "ringing" else "cancelled")
        return web.json_response(timer.as_dict(timers.clock()))

    async def last_frame(self, request: web.Request) -> web.Response:
        if self.assistant.last_image is None:
            raise fail(404, "no frame captured yet")
        return web.Response(body=self.assistant.last_image, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        return await StreamConnection(self, request).run()
