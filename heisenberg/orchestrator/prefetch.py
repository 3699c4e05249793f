"""Starting the answer before the end of speech is certain.

When the speaker pauses, whisper transcribes early (``Hearing`` reports the pause). With that early
transcript the LLM can start too: a ``Prefetch`` streams the answer into a buffer, publishing
nothing. If the end of speech is then confirmed and the prompt is still the same, the turn
takes the buffered pieces and the rest of the stream as its own (the first token is there
already); if the speaker goes on talking, the prefetch is cancelled, which closes the request
and frees the server's slot. Nothing of a dropped prefetch reaches the history or the bus.

With a ``tts``, the first sentence is also synthesized as soon as it is complete, so that when
the end of speech is decided its audio is ready and playback starts at once (the turn's
``Speaker`` takes it, ``ready_audio``); a dropped prefetch's audio is never played.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from heisenberg.audio.format import AudioChunk
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.llm.backend import LLMBackend, LLMResult
from heisenberg.llm.prompts import Prompt
from heisenberg.orchestrator.speech import Hold, synthesize_held
from heisenberg.vision.camera import Frame
from heisenberg.voice.tts import SentenceSplitter, TextToSpeech


class Prefetch:
    def __init__(self, backend: LLMBackend, prompt: Prompt, question: str,
                 frame: Frame | None, tts: TextToSpeech | None = None,
                 splitter: SentenceSplitter | None = None,
                 hold: Hold = contextlib.nullcontext) -> None:
        """``splitter``: a new one, as the turn's speaker will cut the answer (its first
        piece must be the speaker's first piece for its audio to be used). ``hold``: held
        while the first piece is synthesized (the managed server paused,
        ``server.pause_for_first_audio``)."""
        self.prompt = prompt
        self._splitter = splitter or SentenceSplitter()
        self.question = question
        """The transcript it was started for (wake word already stripped)."""
        self.frame = frame
        self._backend = backend
        self._items: asyncio.Queue[str | LLMResult | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._tts = tts
        self._hold = hold
        self.first_sentence = ""
        """The answer's first sentence as the speaker will split it, once complete."""
        self.first_audio: asyncio.Future[AudioChunk] | None = None
        """Its audio, synthesized in a worker thread as soon as it was complete."""
        self.settled = asyncio.Event()
        """Set once the first sentence's audio is ready, or once it is known that this
        prefetch makes none (no ``tts``, or the answer ended before a sentence was
        complete)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="llm-prefetch")
        if self._tts is None:
            self.settled.set()

    async def _run(self) -> None:
        image = self.frame.jpeg if self.frame is not None else None
        try:
            splitter = self._splitter if self._tts is not None else None
            async with contextlib.aclosing(self._backend.stream(self.prompt, image)) as items:
                async for item in items:
                    self._items.put_nowait(item)
                    if splitter is not None and isinstance(item, str):
                        ready = splitter.feed(item)
                        if ready:
                            self._synthesize_first(ready[0])
                            splitter = None
            if splitter is not None and (rest := splitter.flush()):
                self._synthesize_first(rest[0])  # a short answer without an end mark
        finally:
            self._items.put_nowait(None)
            if self.first_audio is None:
                self.settled.set()

    def _synthesize_first(self, sentence: str) -> None:
        assert self._tts is not None
        self.first_sentence = sentence
        self.first_audio = asyncio.ensure_future(
            asyncio.to_thread(synthesize_held, self._tts, sentence, self._hold))
        # A dropped prefetch's audio is never awaited: its failure is not an error then.
        self.first_audio.add_done_callback(
            lambda f: None if f.cancelled() else f.exception())
        self.first_audio.add_done_callback(lambda _: self.settled.set())

    def ready_audio(self, sentence: str) -> asyncio.Future[AudioChunk] | None:
        """The audio of ``sentence`` if it is the first one, already being synthesized."""
        if self.first_audio is not None and sentence == self.first_sentence:
            return self.first_audio
        return None

    async def items(self) -> AsyncGenerator[str | LLMResult, None]:
        """The answer as ``LLMBackend.stream`` gives it: what was buffered, then the rest as
        it streams. Raises what the stream raised (an ``LLMError``)."""
        assert self._task is not None, "start() first"
        while (item := await self._items.get()) is not None:
            yield item
        await self._task  # re-raises the stream's failure, if any

    async def cancel(self) -> None:
        await cancel_and_wait(self._task)
