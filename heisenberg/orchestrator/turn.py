"""One turn: a question and its answer, as the stream of events its caller consumes.

    async with assistant.turn("What is the capital of France?") as turn:
        async for event in turn:          # FRAME_CAPTURED?, TRANSCRIPTION_FINAL, LLM_TOKEN...,
            ...                           # LLM_COMPLETE, TTS_STARTED/FINISHED?, ERROR?, TURN_ENDED
    turn.outcome                          # the same, summed up

The stages read top to bottom (``_events``): the prompt from the history, the LLM stream
(or an early answer's), the speech. The turn touches neither the bus nor the state: every
event it yields goes through ``Assistant.record`` (the one writer) before the caller sees it.
Leaving the ``async with`` early (the caller went away, a barge-in cancelled it) stops the
LLM stream and the speech, keeps what was actually said in the history as interrupted, and
records INTERRUPTED and TURN_ENDED, whatever the reason: a cancellation cannot skip the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from heisenberg.audio.sinks import AudioSink
from heisenberg.core.errors import (
    AssistantBusyError,
    HeisenbergError,
    InternalError,
    TurnTimeoutError,
)
from heisenberg.core.events import (
    ErrorEvent,
    Event,
    FrameCaptured,
    Interrupted,
    LLMComplete,
    LLMToken,
    TranscriptionFinal,
    TurnEnded,
)
from heisenberg.core.logs import current_turn
from heisenberg.core.states import State
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.lang import language
from heisenberg.llm.backend import LLMResult
from heisenberg.llm.prompts import Prompt
from heisenberg.orchestrator.prefetch import Prefetch
from heisenberg.orchestrator.speech import Speaker
from heisenberg.skills import SkillAnswer
from heisenberg.vision.camera import Frame
from heisenberg.voice.tts import TextToSpeech

if TYPE_CHECKING:  # the assistant builds turns; a turn only calls back into it
    from heisenberg.orchestrator.assistant import Assistant

log = logging.getLogger(__name__)

CONTINUED = "continued"
"""The reason a voice turn is cancelled with when its speaker went on with the question
(``stt.resume_window_ms``): it is kept as ``continued``, out of the prompt."""


@dataclass(frozen=True)
class Voice:
    """Where a spoken answer goes."""

    tts: TextToSpeech
    sink: AudioSink


@dataclass(frozen=True)
class TurnOutcome:
    turn_id: str
    question: str
    answer: str
    result: LLMResult | None
    error: HeisenbergError | None = None
    session_id: str = ""
    """The conversation the turn belongs to."""
    spoken: bool = False
    """Some of the answer was played."""
    speech_error: str = ""
    """Why the answer (or its rest) was not spoken, when the speaker or Piper failed."""


def scene_context(description: str, language_code: str = "en") -> str:
    return language(language_code).scene.format(description=description)


async def skill_stream(skill: SkillAnswer) -> AsyncGenerator[str | LLMResult, None]:
    """A skill's answer, as the LLM's stream would give it: the words, then the result
    (``stop_reason`` ``skill:<intent>``)."""
    yield skill.text
    yield LLMResult(text=skill.text, prompt_tokens=0, completion_tokens=0, first_token_ms=0.0,
                    total_ms=0.0, stop_reason=f"skill:{skill.intent}")


def complete_event(result: LLMResult, turn_id: str = "") -> LLMComplete:
    return LLMComplete(text=result.text, prompt_tokens=result.prompt_tokens,
                       completion_tokens=result.completion_tokens,
                       first_token_ms=result.first_token_ms, total_ms=result.total_ms,
                       stop_reason=result.stop_reason, timings=result.timings,
                       server_prompt=result.server_prompt,
                       image_dropped=result.image_dropped, turn_id=turn_id)


class Turn:
    def __init__(self, assistant: Assistant, question: str, turn_id: str, *,
                 image: bytes | None = None, source: str = "text", voice: Voice | None = None,
                 prefetched: Prefetch | None = None, session_id: str | None = None,
                 show: Frame | None = None) -> None:
        """``session_id``: the conversation to continue (an API caller's own); None is the
        current one. ``show``: a frame sent with the question, announced once the turn runs.
        ``prefetched``: an early answer, used if it was started for the same prompt."""
        self.turn_id = turn_id
        self.question = question.strip()
        self.source = source
        self._assistant = assistant
        self._image = image
        self._voice = voice
        self._prefetched = prefetched
        self._session_id = session_id
        self._show = show
        self._events: AsyncGenerator[Event, None] | None = None
        self._ended = False
        self._failed: HeisenbergError | None = None
        self._result: LLMResult | None = None
        self._answer = ""
        self._spoken = False
        self._speech_error = ""
        self._token: contextvars.Token[str] | None = None

    # --- the caller's side ----------------------------------------------------------------

    async def __aenter__(self) -> Turn:
        """Wait for the turns before this one; a typed question while the user is speaking
        raises ``AssistantBusyError``."""
        if not self.question:
            raise ValueError("the question is empty")
        await self._assistant.lock.acquire()
        if self.source != "voice" and self._assistant.state is State.LISTENING:
            self._assistant.lock.release()
            raise AssistantBusyError("the assistant is listening to someone; ask again in a "
                                     "moment")
        self._token = current_turn.set(self.turn_id)
        self._events = self._run()
        return self

    def __aiter__(self) -> Turn:
        return self

    async def __anext__(self) -> Event:
        if self._events is None:
            raise RuntimeError("use a turn inside 'async with'")
        event = await self._events.__anext__()
        self._record(event)
        return event

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._events is not None:
                await self._events.aclose()  # a turn left early cleans up in its generator
            if not self._ended:
                if self._failed is None:
                    self._record(Interrupted(reason="cancelled", turn_id=self.turn_id))
                self._record(TurnEnded(outcome="failed" if self._failed else "interrupted",
                                       turn_id=self.turn_id))
        finally:
            if self._token is not None:
                current_turn.reset(self._token)
            self._assistant.lock.release()

    @property
    def outcome(self) -> TurnOutcome:
        """What the turn came to (so far, while it runs)."""
        return TurnOutcome(self.turn_id, self.question, self._answer, self._result,
                           self._failed,
                           self._session_id or self._assistant.session.session_id,
                           self._spoken, self._speech_error)

    def _record(self, event: Event) -> None:
        self._assistant.record(event)
        if isinstance(event, TurnEnded):
            self._ended = True

    # --- the stages -----------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[Event, None]:
        a = self._assistant
        if self._show is not None:
            a.last_image = self._show.jpeg
            yield FrameCaptured(width=self._show.width, height=self._show.height,
                                jpeg_bytes=len(self._show.jpeg), turn_id=self.turn_id)
        yield TranscriptionFinal(text=self.question, source=self.source, turn_id=self.turn_id)
        history = a.session.prompt_history(a.config.session.max_turns, self._session_id)
        context = ""
        if self._image is None:  # the last scene this session was shown, if still fresh
            scene = a.session.scene(a.config.session.scene_ttl_s, self._session_id)
            if scene is not None:
                self._image = scene.jpeg
                context = scene_context(scene.description, a.config.language)
        prompt = a.prompts.build(self.question, history, context)
        out: asyncio.Queue[Event | None] = asyncio.Queue()
        speaker = None if self._voice is None else Speaker(
            self._voice.tts, self._voice.sink, out.put_nowait, self.turn_id, a.splitter(),
            a.hold_llm)
        pieces: list[str] = []
        answering = asyncio.create_task(self._answer_with(prompt, out, speaker, pieces),
                                        name="turn-answer")
        try:
            while (event := await out.get()) is not None:
                yield event
            result = await answering
        except HeisenbergError as exc:
            self._failed = exc
        except Exception as exc:  # a bug in an engine must not end the daemon
            log.exception("unexpected failure in the turn")
            self._failed = InternalError(f"internal error ({type(exc).__name__}: {exc})")
        except BaseException as exc:  # cancelled, or the caller stopped listening
            await cancel_and_wait(answering)
            said = await self._stop_speaking(speaker, pieces)
            went_on = isinstance(exc, asyncio.CancelledError) and CONTINUED in exc.args
            a.session.add_conversation_turn(self.question, said, session_id=self._session_id,
                                            turn_id=self.turn_id, save=False,
                                            outcome="continued" if went_on else "interrupted")
            a.save_later()
            raise
        if self._failed is not None:
            self._answer = "".join(pieces)  # what the LLM gave before the failure
            said = await self._stop_speaking(speaker, pieces)
            a.session.add_conversation_turn(self.question, said, session_id=self._session_id,
                                            turn_id=self.turn_id, outcome="failed", save=False)
            await a.save()
            yield ErrorEvent(code=self._failed.code, message=self._failed.message,
                             turn_id=self.turn_id)
            yield TurnEnded(outcome="failed", turn_id=self.turn_id)
            return
        self._result = result
        self._answer = result.text.strip()  # models pad with spaces and newlines
        if speaker is not None:
            self._spoken = bool(speaker.spoken)
            if speaker.error is not None:  # the answer stands; the user is told it was mute
                self._speech_error = speaker.error.message
                yield ErrorEvent(code=speaker.error.code, message=speaker.error.message,
                                 turn_id=self.turn_id)
        a.session.add_conversation_turn(self.question, self._answer,
                                        session_id=self._session_id, turn_id=self.turn_id,
                                        save=False)
        await a.save()
        yield TurnEnded(outcome="answered", turn_id=self.turn_id)

    async def _stop_speaking(self, speaker: Speaker | None, pieces: list[str]) -> str:
        """Stop the speech; what the user heard of the answer (all of it, without speech)."""
        if speaker is None:
            return "".join(pieces)
        await speaker.cancel()
        self._spoken = bool(speaker.spoken)
        return speaker.spoken_text()

    async def _answer_with(self, prompt: Prompt, out: asyncio.Queue[Event | None],
                           speaker: Speaker | None, pieces: list[str]) -> LLMResult:
        """The LLM stream into ``out`` (and the speaker), then the speech to its end."""
        st = self._assistant.config.states
        try:
            if speaker is not None:
                speaker.start()
            try:
                async with asyncio.timeout(st.thinking_timeout_s):
                    result = await self._think(prompt, out, speaker, pieces)
            except TimeoutError:
                raise TurnTimeoutError(
                    f"no complete answer within {st.thinking_timeout_s:.0f}s "
                    "(states.thinking_timeout_s)") from None
            out.put_nowait(complete_event(result, self.turn_id))
            if speaker is not None:
                try:
                    async with asyncio.timeout(st.speaking_timeout_s):
                        await speaker.finish()
                except TimeoutError:
                    raise TurnTimeoutError(
                        f"speaking took longer than {st.speaking_timeout_s:.0f}s "
                        "(states.speaking_timeout_s)") from None
            return result
        finally:
            out.put_nowait(None)

    async def _think(self, prompt: Prompt, out: asyncio.Queue[Event | None],
                     speaker: Speaker | None, pieces: list[str]) -> LLMResult:
        prefetched = self._prefetched
        skills = self._assistant.skills
        found = (await asyncio.to_thread(skills.match, self.question)
                 if skills is not None else None)
        skill = skills.reply(found) if skills is not None and found is not None else None
        if skill is not None:  # answered exactly: the LLM is not asked
            if prefetched is not None:
                await prefetched.cancel()
                self._prefetched = prefetched = None
            items: AsyncGenerator[str | LLMResult, None] = skill_stream(skill)
        elif prefetched is not None and prefetched.prompt == prompt:
            items = prefetched.items()
            if speaker is not None:
                speaker.ready = prefetched.ready_audio
        else:
            if prefetched is not None:
                await prefetched.cancel()
            items = self._assistant.backend.stream(prompt, self._image)
        result: LLMResult | None = None
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    if isinstance(item, LLMResult):
                        result = item
                        continue
                    out.put_nowait(LLMToken(text=item, index=len(pieces),
                                            turn_id=self.turn_id))
                    pieces.append(item)
                    if speaker is not None:
                        speaker.feed(item)
        finally:
            if prefetched is not None:  # its request stops with the turn
                await prefetched.cancel()
        assert result is not None  # a stream always ends with its result
        return result
