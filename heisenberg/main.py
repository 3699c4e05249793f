"""Wiring: config -> managed LLM server (if no URL) -> backend -> bus -> orchestrator,
and for the voice loop the engines, the audio source and the sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from heisenberg.audio.echo import EchoCanceller, EchoReference
from heisenberg.audio.sinks import AudioSink, NullSink, SpeakerSink, WavFileSink
from heisenberg.audio.sources import AudioSource, FileSource, MicrophoneSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config
from heisenberg.core.errors import AudioDeviceError, ConfigError
from heisenberg.core.events import ErrorEvent, Event
from heisenberg.core.logs import EventLogger
from heisenberg.llm.backends import backend_url, create_backend
from heisenberg.llm.server import ManagedLlamaServer
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.history import HistoryError, HistoryStore
from heisenberg.orchestrator.session import SessionManager
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.vision.camera import Camera, OpenCVCamera
from heisenberg.voice.stt import SpeechToText, WhisperSTT, add_transcript_check
from heisenberg.voice.tts import PiperTTS, TextToSpeech
from heisenberg.voice.vad import WebRtcVad
from heisenberg.voice.wakeword import OpenWakeWordEngine, VadGatedWakeWord, WakeWordEngine

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class VoiceEngines:
    wake: WakeWordEngine
    stt: SpeechToText
    tts: TextToSpeech


async def load_voice_engines(config: Config, deterministic_tts: bool = False) -> VoiceEngines:
    """Load the three models at once, each in a worker thread (they take ~0.1-5 s); a stage
    with ``engine = "wyoming"`` is the Wyoming service at its ``uri`` instead."""
    from heisenberg.voice.remote import WyomingSTT, WyomingTTS, WyomingWake

    ww, st, ts = config.wakeword, config.stt, config.tts
    for name, cfg in (("wakeword", ww), ("stt", st), ("tts", ts)):
        if cfg.engine == "wyoming" and not cfg.uri:
            raise ConfigError(f"{name}.uri must name the Wyoming service for {name}.engine = "
                              '"wyoming" (e.g. "tcp://192.168.1.20:10300")')
    wake, stt, tts = await asyncio.gather(
        asyncio.to_thread(OpenWakeWordEngine, ww) if ww.engine == "local" else
        asyncio.to_thread(WyomingWake, ww.uri, ww.models[0], ww.remote_timeout_s),
        asyncio.to_thread(WhisperSTT, st) if st.engine == "local" else
        asyncio.to_thread(WyomingSTT, st.uri, st.remote_timeout_s, st.language),
        asyncio.to_thread(PiperTTS, ts, deterministic_tts) if ts.engine == "local" else
        asyncio.to_thread(WyomingTTS, ts.uri, ts.remote_timeout_s))
    if config.language != "en" and ts.engine == "local" and not ts.voice_path:
        log.warning("language = %r but tts.voice_path is empty: answers are spoken by the "
                    "English voice; set tts.voice_path to a Piper voice of that language "
                    "(docs/VOICE.md, French)", config.language)
    # off the event loop: the acoustic check's set-up runs whisper's encoder once
    await asyncio.to_thread(add_transcript_check, wake, stt)
    engine: WakeWordEngine = wake
    if ww.vad_gate:
        engine = VadGatedWakeWord(wake, WebRtcVad(config.stt.vad_aggressiveness).any_speech)
    return VoiceEngines(engine, stt, tts)


def make_source(config: Config, record: Callable[[Event], None], input_path: str | None,
                realtime: bool = False) -> AudioSource:
    """``record``: where the microphone's failures go (``Assistant.record``)."""
    if input_path:
        return FileSource(input_path, realtime=realtime)
    return MicrophoneSource(
        config.audio.input_device,
        on_error=lambda message: record(ErrorEvent(code="audio_device", message=message)))


def make_sink(config: Config, output_path: str | None, rate_hz: int,
              null: bool = False) -> AudioSink:
    if null:
        return NullSink()
    if output_path:
        return WavFileSink(Path(output_path), rate_hz)
    return SpeakerSink(config.audio.output_device, rate_hz,
                       latency_s=config.audio.output_latency_ms / 1000)


class Runtime:
    """Everything one Heisenberg process runs, started and stopped together.

    ``async with Runtime(config) as rt: await rt.assistant.ask("...")``
    """

    def __init__(self, config: Config, resume: bool = True) -> None:
        """``resume``: continue the conversation the history store was in (the daemon); a
        one-shot command starts a new one (its turns are still saved)."""
        self.config = config
        self.resume = resume
        self.bus = EventBus()
        self.server: ManagedLlamaServer | None = None
        self._stack = contextlib.AsyncExitStack()
        self.assistant: Assistant

    async def __aenter__(self) -> Runtime:
        try:
            url = backend_url(self.config.llm)
            key = ""
            if not url:
                self.server = ManagedLlamaServer(self.config.server)
                await self._stack.enter_async_context(self.server)
                url, key = self.server.url, self.server.api_key
            backend = create_backend(self.config.llm, url, key)
            self._stack.push_async_callback(backend.close)
            self._stack.push_async_callback(self.bus.close)
            self.assistant = Assistant(self.config, self.bus, backend, self._session())
            if self.server is not None and self.config.server.pause_for_first_audio:
                self.assistant.hold_llm = self.server.paused
            self._stack.push_async_callback(self.assistant.close)
            if not self.resume:
                # A one-shot command's timers last as long as it does: the daemon owns the
                # stored ones (two processes replacing the same rows would drop each other's).
                self.assistant.timers.store = None
            await self.assistant.start()
            self.bus.subscribe(EventLogger(self.config.log.transcripts), name="log")
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def enter_async_context(self, context: contextlib.AbstractAsyncContextManager[T]
                                  ) -> T:
        """Enter ``context`` now; it is left at exit, before what was set up earlier."""
        return await self._stack.enter_async_context(context)

    def push_async_callback(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` at exit, before what was set up earlier is closed."""
        self._stack.push_async_callback(callback)

    def _session(self) -> SessionManager:
        """The conversation, kept in the history store when it can be: a store that cannot
        be opened leaves the history in memory (reported), never the assistant down."""
        loop = asyncio.get_running_loop()

        def report(message: str) -> None:  # called from the loop or from a worker thread
            loop.call_soon_threadsafe(self.bus.publish,
                                      ErrorEvent(code="history", message=message))

        store = None
        unusable: str | None = None  # why the store could not be opened
        if self.config.history.enabled:
            try:
                store = HistoryStore.from_config(self.config.history)
            except HistoryError as exc:
                unusable = (f"{exc.message}; the conversation is kept in memory only "
                            "until a restart")
                log.error("history: %s", unusable)
                report(unusable)
            else:
                self._stack.callback(store.close)
                if store.moved_aside is not None:
                    report(f"the history store {store.path} could not be read; it was moved "
                           f"to {store.moved_aside} and a new one started")
        return SessionManager(self.config.session.timeout_min * 60, store=store,
                              max_loaded=max(100, self.config.session.max_turns),
                              on_store_error=report, store_error=unusable,
                              resume=self.resume)

    def voice_loop(self, engines: VoiceEngines, source: AudioSource,
                   sink: AudioSink) -> VoiceLoop:
        self._stack.push_async_callback(sink.close)
        self._stack.push_async_callback(source.close)
        return VoiceLoop(self.assistant, source, sink, engines.wake, engines.stt, engines.tts,
                         earcons=self.config.audio.earcons,
                         speaking_threshold=self.config.wakeword.speaking_threshold,
                         early_stt_s=self.config.stt.early_start_ms / 1000,
                         early_answer=self.config.stt.early_answer,
                         camera=self.camera(), canceller=self.echo_canceller(source, sink),
                         follow_up_s=self.config.session.follow_up_s)

    def echo_canceller(self, source: AudioSource, sink: AudioSink) -> EchoCanceller | None:
        """Echo cancellation between this speaker and this microphone
        (``audio.echo_cancel``): only a live pair has an echo. Without libspeexdsp it is
        reported and the loop runs without it."""
        audio = self.config.audio
        if (audio.echo_cancel != "speex" or not isinstance(source, MicrophoneSource)
                or not isinstance(sink, SpeakerSink)):
            return None
        try:
            canceller = EchoCanceller(EchoReference(), delay_ms=audio.echo_delay_ms)
        except AudioDeviceError as exc:
            log.error("%s; running without echo cancellation", exc.message)
            return None
        sink.reference = canceller.reference
        self._stack.callback(canceller.close)
        return canceller

    def camera(self) -> Camera | None:
        """The configured camera, or None when it is disabled (privacy switch)."""
        if not self.config.camera.enabled:
            return None
        camera = OpenCVCamera(self.config.camera)
        self._stack.callback(camera.close)
        return camera

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
