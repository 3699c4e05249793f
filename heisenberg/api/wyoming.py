"""Heisenberg's engines as a Wyoming server, for Home Assistant and satellites.

Built on the ``wyoming`` package's own server (``AsyncServer.from_uri``, ``AsyncEventHandler``)
and event classes. One server offers four services, advertised in ``info``:

- asr: ``transcribe`` + ``audio-start/chunk/stop`` → ``transcript`` (faster-whisper);
- tts: ``synthesize`` → ``audio-start/chunk/stop`` (Piper), or streamed:
  ``synthesize-start``, ``synthesize-chunk``..., ``synthesize-stop`` → audio sentence by
  sentence as the text arrives, then ``synthesize-stopped``;
- wake: ``detect`` + audio → ``detection`` (openWakeWord, with Heisenberg's detection rule),
  or ``not-detected`` at ``audio-stop``;
- handle: ``transcript`` → ``handled`` (the LLM conversation: PromptBuilder and history, one
  conversation per client, or per ``context.conversation_id`` when the caller gives one). A
  question is one more ``Turn``, consumed here like the API consumes it.

Audio in may be any rate, 8/16/32-bit, mono or stereo (converted to 16 kHz mono 16-bit);
anything else, an unknown event, or more than ``MAX_AUDIO_S`` of audio is answered with an
``error`` event and the connection goes on. Wyoming has no authentication: the server binds
to loopback unless told otherwise (``wyoming.allow_remote``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    Describe,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
    WakeModel,
    WakeProgram,
)
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)
from wyoming.wake import Detect, Detection, NotDetected

from heisenberg import __version__
from heisenberg.audio.format import CHUNK_SAMPLES, RATE_HZ
from heisenberg.audio.format import AudioChunk as PcmChunk
from heisenberg.core.config import (
    Config,
    WyomingConfig,
    check_wyoming_uri,
    is_loopback,
    wyoming_host,
)
from heisenberg.core.errors import HeisenbergError
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.voice.stt import SpeechToText
from heisenberg.voice.tts import SentenceSplitter, TextToSpeech
from heisenberg.voice.wakeword import Detection as WakeDetection
from heisenberg.voice.wakeword import WakeWordEngine

log = logging.getLogger(__name__)

MAX_AUDIO_S = 60.0
"""Audio one transcription may carry; more is refused (memory stays bounded)."""
STOP_WAIT_S = 10.0
"""How long a stopping server waits for its connections to finish what they are on."""
WIDTHS = (1, 2, 4)
"""Bytes per sample the converter takes."""
#: Who made each engine (Home Assistant shows it). Heisenberg itself has no public home page.
ATTRIBUTION = {
    "faster-whisper": Attribution(name="SYSTRAN", url="https://github.com/SYSTRAN/faster-whisper"),
    "piper": Attribution(name="Open Home Foundation", url="https://github.com/OHF-Voice/piper1-gpl"),
    "openwakeword": Attribution(name="David Scripka",
                                url="https://github.com/dscripka/openWakeWord"),
    "heisenberg": Attribution(name="Heisenberg", url=""),
}


@dataclass
class WyomingEngines:
    """What the server serves. ``new_wake``: a wake word engine for one client (its models
    keep state between chunks, so clients do not share one)."""

    assistant: Assistant
    stt: SpeechToText
    tts: TextToSpeech
    new_wake: Callable[[], WakeWordEngine]
    wake_names: list[str]
    stt_model: str
    stt_languages: list[str]
    voice_name: str
    voice_languages: list[str]


def wyoming_engines(config: Config, assistant: Assistant, stt: SpeechToText,
                    tts: TextToSpeech) -> WyomingEngines:
    """The daemon's own engines (and a fresh wake word engine per client)."""
    from heisenberg.voice.stt import add_transcript_check
    from heisenberg.voice.wakeword import OpenWakeWordEngine

    def new_wake() -> WakeWordEngine:
        wake = OpenWakeWordEngine(config.wakeword)
        add_transcript_check(wake, stt)
        return wake

    voice = Path(config.tts.voice_path).name.removesuffix(".onnx") if config.tts.voice_path \
        else "en_US-joe-medium"
    language = config.stt.language or "en"
    return WyomingEngines(
        assistant=assistant, stt=stt, tts=tts,
        new_wake=new_wake,
        wake_names=[Path(m).stem for m in config.wakeword.models],
        stt_model=config.stt.model or "tiny.en",
        stt_languages=[language], voice_name=voice,
        voice_languages=[voice.split("-", 1)[0] if "-" in voice else "en_US"])


def describe(engines: WyomingEngines) -> Info:
    def program(cls: Any, engine: str, name: str, description: str, **fields: Any) -> Any:
        return cls(name=name, description=description, attribution=ATTRIBUTION[engine],
                   installed=True, version=__version__, **fields)

    asr, tts, wake, handle = "faster-whisper", "piper", "openwakeword", "heisenberg"
    return Info(
        asr=[program(AsrProgram, asr, asr, "Heisenberg's speech-to-text", models=[
            program(AsrModel, asr, engines.stt_model, f"whisper {engines.stt_model}",
                    languages=engines.stt_languages)])],
        tts=[program(TtsProgram, tts, tts, "Heisenberg's text-to-speech", voices=[
            program(TtsVoice, tts, engines.voice_name, f"Piper {engines.voice_name}",
                    languages=engines.voice_languages)], supports_synthesize_streaming=True)],
        wake=[program(WakeProgram, wake, wake, "Heisenberg's wake word detection",
                      models=[program(WakeModel, wake, name,
                                      f"openWakeWord {name.replace('_', ' ')}",
                                      languages=["en"], phrase=name.replace("_", " "))
                              for name in engines.wake_names])],
        handle=[program(HandleProgram, handle, handle, "Heisenberg's conversation (local LLM)",
                        models=[program(HandleModel, handle, handle, "the configured LLM",
                                        languages=engines.voice_languages)])])


class WyomingHandler(AsyncEventHandler):
    """One client's connection."""

    def __init__(self, engines: WyomingEngines, clients: asyncio.Semaphore,
                 running: set[asyncio.Task[Any]], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.engines = engines
        self.clients = clients
        self.running = running  # the server's handlers, which it waits for when it stops
        self.conversation = f"wyoming-{uuid.uuid4().hex[:8]}"
        self._mode = ""  # "transcribe" or "detect" while audio comes
        self._converter: AudioChunkConverter | None = None
        self._audio: list[bytes] = []
        self._audio_bytes = 0
        self._wake: WakeWordEngine | None = None
        # A chunk's detection runs in a worker thread, which a cancelled handler does not
        # stop: the engine is closed only between two chunks (a model closed while it runs
        # can crash or hang the process: the likely cause of a CI run where the server never
        # exited after SIGTERM).
        self._wake_lock = threading.Lock()
        self._wake_ms = 0
        self._detected = False
        self._pending = b""
        self._streaming: SentenceSplitter | None = None
        self._audio_started = False

    async def run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            if self.clients.locked():  # over the limit: say so and close
                await self.write_event(Error(text="too many Wyoming clients at once; try "
                                             "again", code="busy").event())
                self.writer.close()
                return
            async with self.clients:
                await super().run()
        finally:
            self.running.discard(task)

    async def disconnect(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None:
            def close() -> None:
                with self._wake_lock:
                    wake.close()

            await asyncio.to_thread(close)

    def _detect(self, wake: WakeWordEngine, chunk: PcmChunk) -> WakeDetection | None:
        with self._wake_lock:
            return wake.process(chunk, None)

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except HeisenbergError as exc:
            await self._error(exc.message, exc.code)
        return True

    async def _error(self, text: str, code: str = "error") -> None:
        log.info("wyoming: %s", text)
        await self.write_event(Error(text=text, code=code).event())

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(describe(self.engines).event())
        elif Transcribe.is_type(event.type):
            self._mode, self._audio, self._audio_bytes = "transcribe", [], 0
        elif Detect.is_type(event.type):
            names = Detect.from_event(event).names
            if names and not set(names) & set(self.engines.wake_names):
                await self._error(f"no such wake word model {names!r} (this server has "
                                  f"{', '.join(self.engines.wake_names)})", "wake_model")
                return
            self._mode, self._detected, self._pending = "detect", False, b""
            self._wake_ms = 0  # a new stream: the engine sees its audio clock restart
            if self._wake is None:
                self._wake = await asyncio.to_thread(self.engines.new_wake)
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            if start.width not in WIDTHS or start.channels not in (1, 2) or start.rate < 8000:
                self._converter = None
                await self._error(f"audio format not supported: {start.rate} Hz, "
                                  f"{start.width} bytes, {start.channels} channels (send "
                                  "16000 Hz, 2 bytes, 1 channel)", "audio_format")
                return
            self._converter = AudioChunkConverter(rate=RATE_HZ, width=2, channels=1)
            self._audio, self._audio_bytes, self._pending = [], 0, b""
        elif AudioChunk.is_type(event.type):
            await self._on_audio(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._on_audio_stop()
        elif Synthesize.is_type(event.type):
            if self._streaming is None:  # during a stream it only repeats the text
                await self._speak(Synthesize.from_event(event).text, stop=True)
        elif SynthesizeStart.is_type(event.type):
            self._streaming, self._audio_started = self.engines.assistant.splitter(), False
        elif SynthesizeChunk.is_type(event.type):
            if self._streaming is None:
                await self._error("synthesize-chunk without synthesize-start", "tts_stream")
                return
            for sentence in self._streaming.feed(SynthesizeChunk.from_event(event).text):
                await self._speak(sentence, stop=False)
        elif SynthesizeStop.is_type(event.type):
            splitter, self._streaming = self._streaming, None
            for sentence in splitter.flush() if splitter else []:
                await self._speak(sentence, stop=False)
            if self._audio_started:
                await self.write_event(AudioStop().event())
            await self.write_event(SynthesizeStopped().event())
        elif Transcript.is_type(event.type):
            await self._answer(Transcript.from_event(event))
        else:
            await self._error(f"unknown or unsupported event type {event.type[:60]!r}",
                              "unknown_event")

    async def _on_audio(self, chunk: AudioChunk) -> None:
        if self._converter is None or not self._mode:
            await self._error("audio-chunk without a transcribe/detect and a supported "
                              "audio-start", "audio_order")
            return
        try:
            pcm = self._converter.convert(chunk).audio
        except Exception as exc:  # audioop's errors: a chunk that is not what it said
            raise HeisenbergError(f"audio chunk not in its announced format: {exc}") from exc
        if self._mode == "transcribe":
            self._audio_bytes += len(pcm)
            if self._audio_bytes > MAX_AUDIO_S * RATE_HZ * 2:
                self._mode, self._audio = "", []
                await self._error(f"more than {MAX_AUDIO_S:.0f} s of audio in one "
                                  "transcription", "audio_too_long")
                return
            self._audio.append(pcm)
        elif self._mode == "detect" and not self._detected and self._wake is not None:
            self._pending += pcm
            step = CHUNK_SAMPLES * 2
            while len(self._pending) >= step and not self._detected:
                part, self._pending = self._pending[:step], self._pending[step:]
                found = await asyncio.to_thread(self._detect, self._wake,
                                                PcmChunk(part, RATE_HZ, self._wake_ms))
                self._wake_ms += CHUNK_SAMPLES * 1000 // RATE_HZ
                if found is not None:
                    self._detected = True
                    await self.write_event(Detection(name=found.model,
                                                     timestamp=chunk.timestamp).event())

    async def _on_audio_stop(self) -> None:
        mode, self._mode = self._mode, ""
        if mode == "transcribe":
            samples = np.frombuffer(b"".join(self._audio), np.int16)
            self._audio = []
            text = await asyncio.to_thread(self.engines.stt.transcribe, samples)
            await self.write_event(Transcript(text=text, language=self.engines.stt_languages[0]
                                              ).event())
        elif mode == "detect" and not self._detected:
            await self.write_event(NotDetected().event())

    async def _speak(self, text: str, stop: bool) -> None:
        """Piper's audio for ``text``: audio-start once, chunks, and audio-stop if ``stop``."""
        tts = self.engines.tts
        audio = await asyncio.to_thread(tts.synthesize, text) if text.strip() else None
        if not self._audio_started or stop:
            await self.write_event(AudioStart(rate=tts.rate_hz, width=2, channels=1).event())
            self._audio_started = True
        if audio is not None:
            raw = audio.pcm
            step = tts.rate_hz // 10 * 2  # 100 ms per chunk
            for i in range(0, len(raw), step):
                await self.write_event(AudioChunk(rate=tts.rate_hz, width=2, channels=1,
                                                  audio=raw[i:i + step]).event())
        if stop:
            await self.write_event(AudioStop().event())
            self._audio_started = False

    async def _answer(self, transcript: Transcript) -> None:
        context = transcript.context or {}
        conversation = str(context.get("conversation_id") or self.conversation)[:200]
        outcome = await self.engines.assistant.ask(transcript.text, source="wyoming",
                                                   session_id=conversation)
        if outcome.error is not None:
            await self._error(outcome.error.message, outcome.error.code)
            return
        await self.write_event(Handled(text=outcome.answer,
                                       context={"conversation_id": conversation}).event())


class WyomingServer:
    """``async with WyomingServer(config, engines):`` serves until the block ends."""

    def __init__(self, config: WyomingConfig, engines: WyomingEngines) -> None:
        check_wyoming_uri(config)
        host = wyoming_host(config.uri)
        if host and not is_loopback(host):
            log.warning("wyoming: serving %s to other machines, without authentication",
                        config.uri)
        self.config = config
        self.engines = engines
        self.server = AsyncServer.from_uri(config.uri)
        self._clients = asyncio.Semaphore(config.max_clients)
        self._running: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> WyomingServer:
        await self.server.start(partial(WyomingHandler, self.engines, self._clients,
                                        self._running))
        log.info("wyoming: serving asr, tts, wake and handle at %s", self.config.uri)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop listening, end every connection, and wait for each to finish the chunk or
        transcription it is on (at most ``STOP_WAIT_S``, then they are cancelled): its
        engines are closed before the process goes on to exit."""
        await self.server.stop()
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_WAIT_S)
            for task in late:
                task.cancel()
            if late:
                log.warning("wyoming: %d connection(s) still busy after %.0f s; cancelled",
                            len(late), STOP_WAIT_S)
                await asyncio.wait(late)
