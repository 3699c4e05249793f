"""The hands-free loop: wake word -> listen -> transcribe -> think -> speak, with barge-in.

Audio is read continuously. In IDLE every chunk goes to the wake word engine; after a
detection the recent audio (pre-roll) and what follows go to the end-of-speech detector; the
utterance is transcribed and handed to ``Assistant.respond`` with a ``Speaker``, as a task.
While that task thinks or speaks the wake word engine keeps listening: the wake word then is a
barge-in that cancels the task (LLM stream and playback) and starts listening again.
Blocking inference (wake word, whisper, piper) always runs in worker threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.audio.sources import AudioDeviceError, AudioSource
from heisenberg.core.errors import HeisenbergError, InternalError
from heisenberg.core.events import (
    ErrorEvent,
    SpeechEnded,
    SpeechStarted,
    WakewordDetected,
)
from heisenberg.core.states import State
from heisenberg.orchestrator.assistant import Assistant, TurnOutcome
from heisenberg.orchestrator.prefetch import Prefetch, adopt, drop_task
from heisenberg.orchestrator.speech import Speaker
from heisenberg.vision.camera import Camera, CameraError, Frame
from heisenberg.voice.stt import SpeechToText
from heisenberg.voice.tts import TextToSpeech
from heisenberg.voice.vad import Endpointer, EndpointEvent, WebRtcVad
from heisenberg.voice.wakeword import WakeWordEngine

log = logging.getLogger(__name__)

KEEP_TURNS = 500
"""Voice turns kept in memory (at least; twice as many at most)."""


@dataclass
class TurnTimings:
    """Seconds from the end-of-speech decision to each milestone of a voice turn."""

    transcript_s: float = 0.0
    first_token_s: float = 0.0
    first_sentence_s: float = 0.0
    """The first sentence (or clause) complete and handed to Piper."""
    first_audio_s: float = 0.0
    total_s: float = 0.0

    def line(self) -> str:
        return (f"end of speech -> transcript {self.transcript_s * 1000:.0f} ms, "
                f"first token {self.first_token_s * 1000:.0f} ms, "
                f"first audio {self.first_audio_s * 1000:.0f} ms, "
                f"done {self.total_s * 1000:.0f} ms")


@dataclass
class VoiceTurn:
    turn_id: str
    transcript: str
    outcome: TurnOutcome | None = None
    timings: TurnTimings = field(default_factory=TurnTimings)
    interrupted: bool = False
    early_answer: bool = False
    """The answer was started on the early transcript (before the end of speech)."""

    @property
    def finished(self) -> bool:
        return self.outcome is not None or self.interrupted


def earcon(rate_hz: int, freq_hz: float, ms: int = 120, volume: float = 0.25) -> AudioChunk:
    """A short sine blip with soft edges: the "I'm listening" / "got it" sound."""
    t = np.arange(int(rate_hz * ms / 1000)) / rate_hz
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    wave = volume * 32767 * envelope * np.sin(2 * np.pi * freq_hz * t)
    return AudioChunk(wave.astype(np.int16).tobytes(), rate_hz)


class VoiceLoop:
    def __init__(self, assistant: Assistant, source: AudioSource, sink: AudioSink,
                 wake: WakeWordEngine, stt: SpeechToText, tts: TextToSpeech,
                 vad: WebRtcVad | None = None, earcons: bool = True,
                 speaking_threshold: float = 0.7, early_stt_s: float = 0.15,
                 camera: Camera | None = None, early_answer: bool = True) -> None:
        cfg = assistant.config
        self.assistant = assistant
        self.bus = assistant.bus
        self.source = source
        self.sink = sink
        self.wake = wake
        self.stt = stt
        self.tts = tts
        self.vad = vad or WebRtcVad(cfg.stt.vad_aggressiveness)
        self.earcons = earcons
        self.speaking_threshold = speaking_threshold
        self.endpointer = Endpointer(cfg.stt.end_silence_ms / 1000, cfg.stt.max_utterance_s,
                                     cfg.stt.no_speech_timeout_s)
        preroll_chunks = max(1, round(cfg.stt.preroll_ms / 80))
        self._recent: collections.deque[AudioChunk] = collections.deque(maxlen=preroll_chunks)
        self._utterance: list[AudioChunk] = []
        self._listen_turn = ""
        self._turn_task: asyncio.Task[None] | None = None
        self.turns: list[VoiceTurn] = []
        """The recent voice turns, oldest first: the last ``KEEP_TURNS`` to ``2 * KEEP_TURNS``
        (a daemon runs for months; the history store keeps every conversation turn)."""
        self._forgotten_finished = 0
        self.early_stt_s = early_stt_s
        self.camera = camera
        self._camera_failed = False
        self._early_stt: asyncio.Task[str] | None = None
        self.early_answer = early_answer
        self._prefetch: asyncio.Task[Prefetch] | None = None
        self.prefetches = 0
        """Answers started on an early transcript (for the tests and the benchmark)."""
        self._background: set[asyncio.Task[Any]] = set()
        self.barge_in_ms: collections.deque[float] = collections.deque(maxlen=KEEP_TURNS)
        """Milliseconds from each barge-in detection to playback and LLM stream stopped."""
        self.wake_word = wake_word_text(getattr(wake, "name", ""))
        self.listening = asyncio.Event()
        """Set once the first audio chunk went through the wake word engine."""
        self.audio_error: str | None = None
        """The input device's last failure, until audio flows again."""

    @property
    def state(self) -> State:
        return self.assistant.state

    async def run(self, max_turns: int | None = None) -> list[VoiceTurn]:
        """Process audio until the source ends (then finish the running turn) or until
        ``max_turns`` turns have completed."""
        try:
            while True:
                try:
                    async for chunk in self.source.chunks():
                        try:
                            await self._on_chunk(chunk)
                            self.listening.set()
                            self.audio_error = None
                        except Exception as exc:  # an engine bug: report it, keep listening
                            log.exception("audio processing failed")
                            self._error(InternalError(
                                f"audio processing failed ({type(exc).__name__}: {exc})"))
                            self._recover()
                        if max_turns is not None and self._finished_turns() >= max_turns:
                            return self.turns
                    break
                except AudioDeviceError as exc:
                    self.audio_error = exc.message
                    self._error(exc)
                    if self.source.name.startswith("file:"):
                        raise
                    await asyncio.sleep(1.0)
            if self._turn_task is not None:
                await self._turn_task
            if self.state is State.LISTENING:
                self.assistant.idle("input ended")
            return self.turns
        finally:
            await self._cancel_turn()

    def device_status(self) -> dict[str, str]:
        """Microphone, speaker and camera, as the health endpoint reports them."""
        if self.audio_error:
            mic = f"error: {self.audio_error}"
        else:
            mic = "ok" if self.listening.is_set() else "starting"
        camera = "disabled" if self.camera is None else (
            "failed" if self._camera_failed else "ok")
        return {"microphone": f"{self.source.name}: {mic}", "speaker": self.sink.name,
                "camera": camera}

    def _recover(self) -> None:
        """Back to a clean IDLE after a failure outside a turn."""
        self._utterance = []
        self.endpointer.reset()
        if self._turn_task is None or self._turn_task.done():
            self.assistant.idle("error")

    def _finished_turns(self) -> int:
        return self._forgotten_finished + sum(1 for t in self.turns if t.finished)

    def _record(self, turn: VoiceTurn) -> None:
        self.turns.append(turn)
        if len(self.turns) > 2 * KEEP_TURNS:  # forget in batches: a trim costs a copy
            old, self.turns = self.turns[:-KEEP_TURNS], self.turns[-KEEP_TURNS:]
            self._forgotten_finished += sum(1 for t in old if t.finished)

    def _error(self, exc: HeisenbergError) -> None:
        self.bus.publish(ErrorEvent(code=exc.code, message=exc.message))

    async def _on_chunk(self, chunk: AudioChunk) -> None:
        state = self.state
        if state is State.LISTENING and not self.endpointer.done:
            await self._listen(chunk)
            return
        # IDLE, THINKING, SPEAKING, and LISTENING while the utterance is being transcribed:
        # the wake word engine hears everything (a new wake word then is a barge-in).
        threshold = None
        if state is State.SPEAKING or self.sink.now_playing is not None:
            threshold = self.speaking_threshold
        detection = await asyncio.to_thread(self.wake.process, chunk, threshold)
        self._recent.append(chunk)
        if detection is None:
            return
        if self._hearing_myself():
            log.info("wake word ignored: it is in what I am saying")
            return
        self.bus.publish(WakewordDetected(model=detection.model, score=detection.score))
        if state in (State.LISTENING, State.THINKING, State.SPEAKING):
            await self._barge_in()
            if self.state is State.LISTENING:  # it was still transcribing: start afresh
                self.assistant.idle("wake word again", self._listen_turn)
        await self._start_listening()

    def _hearing_myself(self) -> bool:
        """The wake word is in what the speaker plays (whoever asked it to), or just played."""
        return bool(self.wake_word) and self.wake_word in self.sink.hearing().lower()

    async def _barge_in(self) -> None:
        started = time.perf_counter()
        await self._cancel_turn()
        stopped_ms = (time.perf_counter() - started) * 1000
        self.barge_in_ms.append(stopped_ms)
        log.info("barge-in: playback and LLM stream stopped in %.0f ms", stopped_ms)

    async def _cancel_turn(self) -> None:
        self._drop_prefetch()
        task, self._turn_task = self._turn_task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, 2.0)

    async def _start_listening(self) -> None:
        self._listen_turn = uuid.uuid4().hex[:12]
        self.assistant.listen("wake word", self._listen_turn)
        self.endpointer.reset()
        self._early_stt = None
        self._drop_prefetch()
        # Pre-roll: the audio just before the detection, else the first word is lost.
        self._utterance = list(self._recent)
        self._recent.clear()
        if self.earcons:
            await self._play_earcon(880.0)

    async def _play_earcon(self, freq_hz: float) -> None:
        try:
            await self.sink.play(earcon(self.tts.rate_hz, freq_hz))
        except AudioDeviceError as exc:
            self._error(exc)

    async def _listen(self, chunk: AudioChunk) -> None:
        self._utterance.append(chunk)
        is_speech = self.vad.is_speech(chunk)
        event = self.endpointer.process(chunk.duration_ms / 1000, is_speech)
        self._speculate(is_speech)
        if event is EndpointEvent.SPEECH_STARTED:
            self.bus.publish(SpeechStarted(audio_ms=int(self.endpointer.elapsed_s * 1000),
                                           turn_id=self._listen_turn))
        elif event is EndpointEvent.NO_SPEECH:
            self._drop_prefetch()
            self.assistant.idle("no speech", self._listen_turn)
        elif event in (EndpointEvent.SPEECH_ENDED, EndpointEvent.MAX_LENGTH):
            ended_at = time.perf_counter()
            samples = np.concatenate([c.array() for c in self._utterance])
            self._utterance = []
            self.bus.publish(SpeechEnded(audio_ms=int(self.endpointer.elapsed_s * 1000),
                                         duration_ms=len(samples) * 1000 // RATE_HZ,
                                         turn_id=self._listen_turn))
            if self.earcons:
                await self._play_earcon(660.0)
            early, self._early_stt = self._early_stt, None
            prefetch, self._prefetch = self._prefetch, None
            self._turn_task = asyncio.create_task(
                self._turn(samples, ended_at, self._listen_turn, early, prefetch),
                name="voice-turn")

    def _speculate(self, is_speech: bool) -> None:
        """Start transcribing when the speaker pauses, before the end of speech is certain.

        Whisper takes ~0.3-0.6 s here; starting it ``early_stt_s`` into the silence instead of
        at the end-of-speech decision saves most of that. Speech resuming drops the early
        result (the thread finishes in the background; its result is ignored).
        """
        ep = self.endpointer
        if is_speech or not ep.in_speech:
            self._early_stt = None
            self._drop_prefetch()
            return
        if (self._early_stt is None and self.early_stt_s > 0 and not ep.done
                and ep.silence_s >= self.early_stt_s):
            samples = np.concatenate([c.array() for c in self._utterance])
            task = asyncio.create_task(asyncio.to_thread(self.stt.transcribe, samples),
                                       name="early-stt")
            self._keep(task)
            self._early_stt = task
            if self.early_answer:
                task.add_done_callback(self._start_prefetch)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _start_prefetch(self, early: asyncio.Task[str]) -> None:
        """The early transcript is ready and the speaker is still silent: start the answer."""
        if early is not self._early_stt or early.cancelled() or early.exception() is not None:
            return
        text = strip_wake_word(early.result(), self.wake_word)
        if text:
            self._prefetch = asyncio.create_task(self._prefetched(text), name="prefetch")

    async def _prefetched(self, text: str) -> Prefetch:
        frame = await self._grab_frame()
        self.prefetches += 1
        return await self.assistant.prefetch(text, frame)

    def _drop_prefetch(self) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            self._keep(asyncio.create_task(drop_task(task)))

    async def _capture_frame(self, turn_id: str, frame: Frame | None = None,
                             ready: bool = False) -> Frame | None:
        """One frame for the question, or None (no camera, or it failed: said once).
        ``ready``: ``frame`` was already taken (for an early answer); only announce it."""
        if not ready:
            frame = await self._grab_frame()
        if frame is not None:
            self.assistant.show_frame(frame, turn_id)
        return frame

    async def _grab_frame(self) -> Frame | None:
        if self.camera is None:
            return None
        try:
            frame = await asyncio.to_thread(self.camera.capture)
        except CameraError as exc:
            if not self._camera_failed:
                log.warning("%s; the question goes on without an image", exc)
                self._camera_failed = True
            return None
        if self._camera_failed:
            log.info("camera works again")
        self._camera_failed = False
        return frame

    async def _say(self, text: str) -> None:
        """A short message of the assistant's own, after a turn (failed, or no answer)."""
        try:
            audio = await asyncio.to_thread(self.tts.synthesize, text)
            await self.sink.play_text(audio, text)
        except Exception:  # the turn is over and logged; the message is a courtesy
            log.warning("could not say %r", text, exc_info=True)

    async def _turn(self, samples: np.ndarray, ended_at: float, turn_id: str,
                    early: asyncio.Task[str] | None = None,
                    prefetch_task: asyncio.Task[Prefetch] | None = None) -> None:
        turn = VoiceTurn(turn_id, "")
        self._record(turn)
        # Without an early answer (which took its own), the frame is taken now, at the end
        # of speech, while whisper works.
        grab = None if prefetch_task else asyncio.create_task(self._grab_frame(), name="camera")
        try:
            raw = await early if early is not None else await asyncio.to_thread(
                self.stt.transcribe, samples)
            text = strip_wake_word(raw, self.wake_word)
        except BaseException as exc:
            for task in (grab, prefetch_task):
                if task is not None:
                    self._keep(asyncio.create_task(drop_task(task)))
            if not isinstance(exc, Exception):
                raise
            error = HeisenbergError(f"speech-to-text failed: {exc}")
            turn.outcome = TurnOutcome(turn_id, "", "", None, error)
            self._error(error)
            self.assistant.idle("stt failed", turn_id)
            return
        turn.transcript = text
        turn.timings.transcript_s = time.perf_counter() - ended_at
        prefetch = await adopt(prefetch_task, text)
        turn.early_answer = prefetch is not None
        if prefetch is not None:
            frame = await self._capture_frame(turn_id, prefetch.frame, ready=True)
        elif prefetch_task is not None:  # its frame is gone with it: take one now
            frame = await self._capture_frame(turn_id)
        else:
            assert grab is not None
            frame = await self._capture_frame(turn_id, await grab, ready=True)
        if not text:
            log.info("nothing intelligible was said; back to idle")
            turn.outcome = TurnOutcome(turn_id, "", "", None)
            self.assistant.idle("empty transcript", turn_id)
            return
        speaker = Speaker(self.tts, self.sink, self.bus)
        try:
            turn.outcome = await self.assistant.respond(
                text, source="voice", speaker=speaker, turn_id=turn_id,
                image=frame.jpeg if frame is not None else None, prefetched=prefetch)
            if turn.outcome.error is not None:
                if self.assistant.config.session.speak_errors:
                    await self._say(SORRY)
            elif not speaker.spoken:
                # Silence after "got it" would leave the user wondering; small models do
                # sometimes stop at once (or answer only with symbols).
                log.warning("the model gave no speakable answer (%r)", turn.outcome.answer)
                await self._say(NO_ANSWER)
        except asyncio.CancelledError:
            turn.interrupted = True
            raise
        finally:
            if speaker.first_text_at is not None:
                turn.timings.first_token_s = speaker.first_text_at - ended_at
            if speaker.first_sentence_at is not None:
                turn.timings.first_sentence_s = speaker.first_sentence_at - ended_at
            if speaker.first_audio_at is not None:
                turn.timings.first_audio_s = speaker.first_audio_at - ended_at
            turn.timings.total_s = time.perf_counter() - ended_at


SORRY = "Sorry, something went wrong."
NO_ANSWER = "Sorry, I have no answer to that."


def wake_word_text(model_name: str) -> str:
    """The distinctive word of a wake word model's name ("hey_jarvis" -> "jarvis")."""
    words = [w for w in model_name.lower().replace("-", "_").split("_")
             if w not in ("hey", "okay", "ok", "v0", "v1", "v2", "")]
    return words[-1] if words else ""


def strip_wake_word(text: str, wake_word: str) -> str:
    """Drop a leading "hey jarvis," that the pre-roll brought into the transcript."""
    if wake_word:
        pattern = rf"^\W*((hey|hi|okay|ok)\W+)?{re.escape(wake_word)}\b\W*"
        text = re.sub(pattern, "", text.strip(), flags=re.IGNORECASE)
    return text.strip()
