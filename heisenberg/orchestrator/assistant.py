"""The orchestrator: the only place that knows the assistant's state.

It turns inputs (a transcript, a typed question) into a turn: state changes, the prompt from
``PromptBuilder`` and the session history, the streamed answer, events on the bus, and the
turn saved to history. Failures become one ERROR event and a return to IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config
from heisenberg.core.errors import AssistantBusyError, HeisenbergError, InternalError
from heisenberg.core.events import (
    ErrorEvent,
    FrameCaptured,
    Interrupted,
    LLMComplete,
    LLMToken,
    StateChanged,
    TranscriptionFinal,
)
from heisenberg.core.logs import current_turn
from heisenberg.core.states import State, StateMachine
from heisenberg.llm.backend import LLMBackend, LLMResult
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.orchestrator.prefetch import Prefetch
from heisenberg.orchestrator.session import SessionManager
from heisenberg.orchestrator.speech import Speaker
from heisenberg.vision.camera import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnOutcome:
    turn_id: str
    question: str
    answer: str
    result: LLMResult | None
    error: HeisenbergError | None = None
    session_id: str = ""
    """The conversation the turn belongs to."""


class Assistant:
    def __init__(self, config: Config, bus: EventBus, backend: LLMBackend,
                 session: SessionManager | None = None) -> None:
        self.config = config
        self.bus = bus
        self.backend = backend
        self.session = session or SessionManager(config.session.timeout_min * 60)
        self.prompts = self._prompt_builder(config)
        self.states = StateMachine(self._state_timeouts(config), time.monotonic())
        self._lock = asyncio.Lock()
        self.not_listening = asyncio.Event()
        """Clear while a spoken question is being heard (typed ones wait for it)."""
        self.not_listening.set()
        self._saving: set[asyncio.Task[int]] = set()
        self.last_image: bytes | None = None
        """The last JPEG that went with a question (camera frame or API image)."""

    @property
    def busy(self) -> bool:
        """A turn is running or waiting (the next question would queue behind it)."""
        return self._lock.locked()

    @staticmethod
    def _prompt_builder(config: Config) -> PromptBuilder:
        return PromptBuilder(config.llm.prompt_format, config.llm.personality,
                             config.llm.system_prompt, config.session.max_turns,
                             config.session.max_history_tokens)

    @staticmethod
    def _state_timeouts(config: Config) -> dict[State, float]:
        st = config.states
        return {State.LISTENING: st.listening_timeout_s, State.THINKING: st.thinking_timeout_s,
                State.SPEAKING: st.speaking_timeout_s}

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config from the next turn on: prompt, sampling, session and
        state timeouts. (Which server to talk to is fixed for the process.)"""
        self.config = config
        self.prompts = self._prompt_builder(config)
        self.backend.reconfigure(config.llm)
        self.session.timeout_s = config.session.timeout_min * 60
        self.states.set_timeouts(self._state_timeouts(config))

    @property
    def state(self) -> State:
        return self.states.state

    def _move(self, target: State, reason: str, turn_id: str) -> None:
        step = self.states.transition(target, time.monotonic(), reason)
        self._track_listening()
        self.bus.publish(StateChanged(old=step.old, new=step.new, reason=reason,
                                      turn_id=turn_id))

    def _reset(self, reason: str, turn_id: str) -> None:
        step = self.states.reset(time.monotonic(), reason)
        self._track_listening()
        if step is not None:
            self.bus.publish(StateChanged(old=step.old, new=step.new, reason=reason,
                                          turn_id=turn_id))

    def _end_move(self, target: State | None, reason: str, turn_id: str, source: str) -> None:
        """A turn moves the state on (to ``target``; None = back to IDLE), unless it is a
        typed turn and a spoken question has taken the state over meanwhile (LISTENING):
        that one is the voice loop's to end."""
        if source != "voice" and self.state is State.LISTENING:
            return
        if target is None:
            self._reset(reason, turn_id)
        else:
            self._move(target, reason, turn_id)

    def _track_listening(self) -> None:
        if self.state is State.LISTENING:
            self.not_listening.clear()
        else:
            self.not_listening.set()

    def listen(self, reason: str, turn_id: str = "") -> None:
        """Wake word heard: to LISTENING (from IDLE, or from THINKING/SPEAKING on barge-in)."""
        self._move(State.LISTENING, reason, turn_id)

    def idle(self, reason: str, turn_id: str = "") -> None:
        self._reset(reason, turn_id)

    async def ask(self, question: str, image: bytes | None = None,
                  source: str = "text") -> TurnOutcome:
        """A typed turn: IDLE -> THINKING -> IDLE, the answer streamed as LLM_TOKEN events."""
        return await self.respond(question, image=image, source=source)

    async def respond(self, question: str, *, image: bytes | None = None,
                      source: str = "text", speaker: Speaker | None = None,
                      turn_id: str | None = None,
                      prefetched: Prefetch | None = None,
                      session_id: str | None = None,
                      show: Frame | None = None) -> TurnOutcome:
        """One turn. With a ``speaker`` the answer is spoken while it streams, and the state
        goes THINKING -> SPEAKING at the first audio sample. ``session_id`` names the
        conversation to continue (an API caller's own); None is the current one. ``show``
        is a frame sent with the question, announced once the turn is sure to run.

        Cancelling the task (barge-in, shutdown) stops the LLM stream and the speech, keeps
        what was actually said in the history with an interrupted marker, publishes
        INTERRUPTED and re-raises; the caller decides the next state.
        """
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        async with self._lock:
            if source != "voice" and self.state is State.LISTENING:
                raise AssistantBusyError("the assistant is listening to someone; ask again "
                                         "in a moment")
            turn_id = turn_id or uuid.uuid4().hex[:12]
            if show is not None:
                self.show_frame(show, turn_id)
            token = current_turn.set(turn_id)
            try:
                return await self._respond(question, image, source, speaker, turn_id,
                                           prefetched, session_id)
            finally:
                current_turn.reset(token)

    async def _respond(self, question: str, image: bytes | None, source: str,
                       speaker: Speaker | None, turn_id: str,
                       prefetched: Prefetch | None = None,
                       session_id: str | None = None) -> TurnOutcome:
        self.bus.publish(TranscriptionFinal(text=question, source=source, turn_id=turn_id))
        self._move(State.THINKING, f"{source} question", turn_id)
        if speaker is not None:
            speaker.turn_id = turn_id
            speaker.on_first_audio = lambda: self._end_move(State.SPEAKING, "first audio",
                                                            turn_id, source)
        pieces: list[str] = []
        st = self.config.states
        try:
            try:
                async with asyncio.timeout(st.thinking_timeout_s):
                    result = await self._think(question, image, turn_id, pieces, speaker,
                                               prefetched, session_id)
            except TimeoutError:
                raise HeisenbergError(
                    f"no complete answer within {st.thinking_timeout_s:.0f}s") from None
            if speaker is not None:
                try:
                    async with asyncio.timeout(st.speaking_timeout_s):
                        await speaker.finish()
                except TimeoutError:
                    raise HeisenbergError(
                        f"speaking took longer than {st.speaking_timeout_s:.0f}s") from None
        except asyncio.CancelledError:
            said = "".join(pieces)
            if speaker is not None:
                await speaker.cancel()  # settles what was actually heard
                said = speaker.spoken_text()
            self.session.add_conversation_turn(question, said, session_id=session_id,
                                               turn_id=turn_id, outcome="interrupted",
                                               save=False)
            self._save_later()
            self.bus.publish(Interrupted(reason="cancelled", turn_id=turn_id))
            if source != "voice":  # the caller went away: nobody else will end the turn
                self._end_move(None, "cancelled", turn_id, source)
            raise
        except HeisenbergError as exc:
            failure = exc
        except Exception as exc:  # a bug in an engine must not end the daemon
            log.exception("unexpected failure in the turn")
            failure = InternalError(f"internal error ({type(exc).__name__}: {exc})")
        else:
            answer = result.text.strip()  # models pad with spaces and newlines
            self.session.add_conversation_turn(question, answer, session_id=session_id,
                                               turn_id=turn_id, save=False)
            self._end_move(State.IDLE, "answered", turn_id, source)
            await self._save()
            return TurnOutcome(turn_id, question, answer, result,
                               session_id=session_id or self.session.session_id)
        said = "".join(pieces)
        if speaker is not None:
            await speaker.cancel()
            said = speaker.spoken_text()
        outcome = self._fail(turn_id, question, "".join(pieces), said, failure, session_id,
                             source)
        await self._save()
        return outcome

    async def _save(self) -> None:
        """Write the turn to the store off the event loop (a locked file makes it wait).
        A failure is reported by the session (once) and never fails the turn."""
        await asyncio.shield(asyncio.to_thread(self.session.flush))

    def _save_later(self) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.session.flush))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    def show_frame(self, frame: Frame, turn_id: str = "") -> None:
        """A frame goes with a question: keep it (the API's /frame) and announce it."""
        self.last_image = frame.jpeg
        self.bus.publish(FrameCaptured(width=frame.width, height=frame.height,
                                       jpeg_bytes=len(frame.jpeg), turn_id=turn_id))

    async def prefetch(self, question: str, frame: Frame | None = None) -> Prefetch:
        """Start answering ``question`` without a turn (see ``orchestrator/prefetch.py``)."""
        history = self.session.prompt_history(self.config.session.max_turns)
        return Prefetch(self.backend, self.prompts.build(question, history), question, frame)

    async def describe(self, question: str, image: bytes) -> LLMResult:
        """A one-off question about an image, outside the conversation: no history, no
        state change, but in turn with the conversation's questions (one at a time)."""
        async with self._lock:
            return await self.backend.complete(self.prompts.build(question), image)

    async def _think(self, question: str, image: bytes | None, turn_id: str,
                     pieces: list[str], speaker: Speaker | None,
                     prefetched: Prefetch | None = None,
                     session_id: str | None = None) -> LLMResult:
        history = self.session.prompt_history(self.config.session.max_turns, session_id)
        prompt = self.prompts.build(question, history)
        stream: AsyncGenerator[str, None]
        if prefetched is not None and prefetched.prompt == prompt:
            stream = prefetched.pieces()
        else:
            if prefetched is not None:
                await prefetched.cancel()
                prefetched = None
            stream = self.backend.stream(prompt, image)
        async with contextlib.aclosing(stream):
            async for piece in stream:
                self.bus.publish(LLMToken(text=piece, index=len(pieces), turn_id=turn_id))
                pieces.append(piece)
                if speaker is not None:
                    speaker.feed(piece)
        result = prefetched.result if prefetched is not None else self.backend.last_result
        assert result is not None
        self.bus.publish(LLMComplete(text=result.text, prompt_tokens=result.prompt_tokens,
                                     completion_tokens=result.completion_tokens,
                                     first_token_ms=result.first_token_ms,
                                     total_ms=result.total_ms, stop_reason=result.stop_reason,
                                     turn_id=turn_id))
        return result

    def _fail(self, turn_id: str, question: str, answer: str, said: str,
              exc: HeisenbergError, session_id: str | None = None,
              source: str = "text") -> TurnOutcome:
        """``answer``: what the LLM gave before the failure; ``said``: what was heard of it
        (the same without speech), kept in the history as a failed turn."""
        # Reported once: the ERROR event (the event log writes it at error level).
        self.bus.publish(ErrorEvent(code=exc.code, message=exc.message, turn_id=turn_id))
        self.session.add_conversation_turn(question, said, session_id=session_id,
                                           turn_id=turn_id, outcome="failed", save=False)
        self._end_move(None, f"error: {exc.code}", turn_id, source)
        return TurnOutcome(turn_id, question, answer, None, exc,
                           session_id or self.session.session_id)
