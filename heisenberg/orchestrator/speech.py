"""Speaking an answer while it is still being generated.

Tokens go into a ``SentenceSplitter``; each ready sentence is synthesized in a worker thread
(one at a time, in order) while the previous one plays, so the first audio waits only for the
first sentence. ``cancel`` stops playback at once and keeps track of what was actually said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from heisenberg.audio.format import AudioChunk
from heisenberg.audio.sinks import AudioSink
from heisenberg.core.bus import EventBus
from heisenberg.core.events import TTSFinished, TTSStarted
from heisenberg.voice.tts import SentenceSplitter, TextToSpeech

log = logging.getLogger(__name__)


@dataclass
class Spoken:
    text: str
    audio_ms: float


class Speaker:
    def __init__(self, tts: TextToSpeech, sink: AudioSink, bus: EventBus, turn_id: str = "",
                 on_first_audio: Callable[[], None] | None = None) -> None:
        self.tts = tts
        self.sink = sink
        self.bus = bus
        self.turn_id = turn_id
        self.on_first_audio = on_first_audio
        self.first_text_at: float | None = None
        """``time.perf_counter()`` when the first piece of the answer arrived."""
        self.first_sentence_at: float | None = None
        """``time.perf_counter()`` when the first sentence was ready for synthesis."""
        self.first_audio_at: float | None = None
        """``time.perf_counter()`` when the first audio sample went to the sink."""
        self.spoken: list[Spoken] = []
        self._splitter = SentenceSplitter()
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self._audio: asyncio.Queue[tuple[str, AudioChunk] | None] = asyncio.Queue(maxsize=2)
        self._partial: tuple[str, float, float] | None = None
        self._tasks = [asyncio.create_task(self._synthesize(), name="tts-synth"),
                       asyncio.create_task(self._play(), name="tts-play")]

    def feed(self, token: str) -> None:
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        for sentence in self._splitter.feed(token):
            self._queue(sentence)

    def _queue(self, sentence: str) -> None:
        if self.first_sentence_at is None:
            self.first_sentence_at = time.perf_counter()
        self._sentences.put_nowait(sentence)

    async def finish(self) -> None:
        """No more tokens: speak the rest and return once everything has been played."""
        for sentence in self._splitter.flush():
            self._queue(sentence)
        self._sentences.put_nowait(None)
        try:
            await asyncio.gather(*self._tasks)
        except BaseException:
            await self.cancel()
            raise
        if self.first_audio_at is not None:
            self.bus.publish(TTSFinished(audio_ms=int(sum(s.audio_ms for s in self.spoken)),
                                         turn_id=self.turn_id))

    async def cancel(self, timeout_s: float = 1.0) -> None:
        """Stop speaking now (barge-in, error, shutdown)."""
        stop = asyncio.create_task(self.sink.stop())
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True),
                                   timeout_s)
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
        while True:
            sentence = await self._sentences.get()
            if sentence is None:  # the end
                await self._audio.put(None)
                return
            chunk = await asyncio.to_thread(self.tts.synthesize, sentence)
            await self._audio.put((sentence, chunk))

    async def _play(self) -> None:
        while True:
            item = await self._audio.get()
            if item is None:
                return
            sentence, chunk = item
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()
                self.bus.publish(TTSStarted(text=sentence, turn_id=self.turn_id))
                if self.on_first_audio is not None:
                    self.on_first_audio()
            self._partial = (sentence, self.sink.played_ms, chunk.duration_ms)
            await self.sink.play_text(chunk, sentence)
            self._partial = None
            self.spoken.append(Spoken(sentence, chunk.duration_ms))
