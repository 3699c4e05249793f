"""Speaking an answer while it is still being generated.

Tokens go into a ``SentenceSplitter``; each ready sentence is synthesized in a worker thread
(one at a time, in order) while the previous one plays, so the first audio waits only for the
first sentence. ``cancel`` stops playback at once and keeps track of what was actually said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.core.errors import AudioDeviceError, HeisenbergError, TTSError
from heisenberg.core.events import Event, TTSFinished, TTSStarted
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.voice.tts import SentenceSplitter, TextToSpeech

log = logging.getLogger(__name__)

Hold = Callable[[], contextlib.AbstractContextManager[object]]
"""Held while the first piece of an answer is synthesized (``Assistant.hold_llm``: the
managed server paused, ``server.pause_for_first_audio``)."""


def synthesize_held(tts: TextToSpeech, text: str, hold: Hold) -> AudioChunk:
    """``tts.synthesize(text)`` inside ``hold`` (blocking: for a worker thread)."""
    with hold():
        return tts.synthesize(text)


@dataclass
class Spoken:
    text: str
    audio_ms: float


class Speaker:
    """Speaks one answer. Its events (TTS_STARTED at the first sample, TTS_FINISHED) go to
    ``emit``, given by whoever builds it (the turn). No task runs before ``start``."""

    def __init__(self, tts: TextToSpeech, sink: AudioSink, emit: Callable[[Event], None],
                 turn_id: str = "", splitter: SentenceSplitter | None = None,
                 hold: Hold = contextlib.nullcontext) -> None:
        """``splitter``: how the answer is cut into pieces and a URL said, in its language
        (``Assistant.splitter``); by default English, sentence by sentence. ``hold``: held
        while the first piece is synthesized (``Assistant.hold_llm``)."""
        self.tts = tts
        self.sink = sink
        self.turn_id = turn_id
        self._emit = emit
        self.started_playing = False
        self.spoken: list[Spoken] = []
        self._splitter = splitter or SentenceSplitter()
        self._hold = hold
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._audio: asyncio.Queue[tuple[str, AudioChunk] | None] = asyncio.Queue(maxsize=2)
        self._partial: tuple[str, float, float] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ready: Callable[[str], asyncio.Future[AudioChunk] | None] | None = None
        """Audio already being synthesized for a sentence (an early answer's first one)."""
        self.error: HeisenbergError | None = None
        """Why (some of) the answer could not be spoken: the speaker or Piper failed. The
        answer itself goes on; the rest of it is not spoken."""

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._synthesize(), name="tts-synth"),
                       asyncio.create_task(self._play(), name="tts-play")]

    def feed(self, token: str) -> None:
        for sentence in self._splitter.feed(token):
            self._sentences.put_nowait(sentence)

    async def finish(self) -> None:
        """No more tokens: speak the rest and return once everything has been played."""
        for sentence in self._splitter.flush():
            self._sentences.put_nowait(sentence)
        self._sentences.put_nowait(None)
        try:
            await asyncio.gather(*self._tasks)
        except BaseException:
            await self.cancel()
            raise
        if self.spoken:
            self._emit(TTSFinished(audio_ms=int(sum(s.audio_ms for s in self.spoken)),
                                   turn_id=self.turn_id))

    async def cancel(self, timeout_s: float = 1.0) -> None:
        """Stop speaking now (barge-in, error, shutdown); what was heard stays in ``spoken``."""
        stop = asyncio.ensure_future(self.sink.stop())
        for task in self._tasks:
            await cancel_and_wait(task, timeout_s)
        await stop
        if self._partial is not None:
            text, start_ms, length_ms = self._partial
            played = max(0.0, self.sink.played_ms - start_ms)
            words = text.split()
            keep = round(len(words) * min(1.0, played / length_ms)) if length_ms else 0
            if keep:
                self.spoken.append(Spoken(" ".join(words[:keep]), played))
            self._partial = None

    def spoken_text(self) -> str:
        return " ".join(s.text for s in self.spoken)

    async def _synthesize(self) -> None:
        first = True
        while True:
            sentence = await self._sentences.get()
            if sentence is None:  # the end
                await self._audio.put(None)
                return
            if self.error is not None:
                continue  # nothing more is spoken; the queue is drained to its end
            ready = self.ready(sentence) if self.ready is not None else None
            hold = self._hold if first else contextlib.nullcontext
            first = False
            try:
                chunk = await (ready if ready is not None
                               else asyncio.to_thread(synthesize_held, self.tts, sentence,
                                                      hold))
            except TTSError as exc:
                self._failed(exc)
                continue
            await self._audio.put((sentence, chunk))

    async def _play(self) -> None:
        while True:
            item = await self._audio.get()
            if item is None:
                return
            sentence, chunk = item
            if self.error is not None:
                continue
            if not self.started_playing:
                self.started_playing = True
                self._emit(TTSStarted(text=sentence, turn_id=self.turn_id))
            self._partial = (sentence, self.sink.played_ms, chunk.duration_ms)
            try:
                await self.sink.play_text(chunk, sentence)
            except AudioDeviceError as exc:
                self._partial = None
                self._failed(exc)
                continue
            self._partial = None
            self.spoken.append(Spoken(sentence, chunk.duration_ms))

    def _failed(self, exc: HeisenbergError) -> None:
        if self.error is None:
            log.error("the answer cannot be spoken: %s", exc.message)
            self.error = exc
