"""Starting the answer before the end of speech is certain.

When the speaker pauses, whisper transcribes early (``VoiceLoop._speculate``). With that early
transcript the LLM can start too: a ``Prefetch`` streams the answer into a buffer, publishing
nothing. If the end of speech is then confirmed and the prompt is still the same, the turn
takes the buffered pieces and the rest of the stream as its own (the first token is there
already); if the speaker goes on talking, the prefetch is cancelled, which closes the request
and frees the server's slot. Nothing of a dropped prefetch reaches the history or the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from heisenberg.llm.backend import LLMBackend, LLMResult
from heisenberg.llm.prompts import Prompt
from heisenberg.vision.camera import Frame

log = logging.getLogger(__name__)


class Prefetch:
    def __init__(self, backend: LLMBackend, prompt: Prompt, question: str,
                 frame: Frame | None) -> None:
        self.prompt = prompt
        self.question = question
        """The transcript it was started for (wake word already stripped)."""
        self.frame = frame
        self.result: LLMResult | None = None
        self._backend = backend
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="llm-prefetch")

    async def _run(self) -> None:
        image = self.frame.jpeg if self.frame is not None else None
        try:
            stream = self._backend.stream(self.prompt, image)
            async with contextlib.aclosing(stream):
                async for piece in stream:
                    self._pieces.put_nowait(piece)
            # Read at once: no other stream of this backend can end in between (no await).
            self.result = self._backend.last_result
        finally:
            self._pieces.put_nowait(None)

    async def pieces(self) -> AsyncGenerator[str, None]:
        """The answer: what was buffered, then the rest as it streams. Raises what the
        stream raised (an ``LLMError``)."""
        while (piece := await self._pieces.get()) is not None:
            yield piece
        await self._task  # re-raises the stream's failure, if any

    async def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 2.0)
        elif not self._task.cancelled():
            self._task.exception()  # retrieved: a dropped prefetch's failure is not news


async def drop_task(task: asyncio.Task[Any]) -> None:
    """Drop an early answer (or a frame grab), whether or not it has started yet."""
    task.cancel()
    try:
        result = await task
    except (asyncio.CancelledError, Exception):
        return
    if isinstance(result, Prefetch):
        await result.cancel()


async def adopt(task: asyncio.Task[Prefetch] | None, text: str) -> Prefetch | None:
    """The early answer, if it was started for exactly this transcript."""
    if task is None:
        return None
    try:
        prefetch = await task
    except Exception:
        log.warning("the early answer could not start", exc_info=True)
        return None
    if prefetch is not None and prefetch.question != text:
        await prefetch.cancel()  # the whole utterance was transcribed differently
        return None
    return prefetch
