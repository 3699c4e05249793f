"""The orchestrator: turns questions into ``Turn``s and keeps the one state they all share.

``Assistant.turn`` builds a turn (see ``orchestrator/turn.py``) from a transcript or a typed
question; its caller consumes it. ``record`` is the one place where the state is written (by
``StateKeeper``, from events) and events reach the bus: the turn's events, the hearing's (wake
word, speech start and end) and the voice loop's own (a failed transcription). Turns run one
at a time; a typed question waits while a spoken one is being heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config
from heisenberg.core.errors import TurnTimeoutError
from heisenberg.core.events import Event, FrameCaptured
from heisenberg.core.states import State, StateKeeper
from heisenberg.core.tasks import TaskSet
from heisenberg.llm.backend import LLMBackend, LLMResult
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.orchestrator.prefetch import Prefetch
from heisenberg.orchestrator.session import SessionManager
from heisenberg.orchestrator.speech import Hold
from heisenberg.orchestrator.turn import Turn, TurnOutcome, Voice, complete_event
from heisenberg.skills import Skills, Timers
from heisenberg.vision.camera import Frame
from heisenberg.voice.tts import SentenceSplitter, TextToSpeech, splitter_for

log = logging.getLogger(__name__)

__all__ = ["Assistant", "Turn", "TurnOutcome", "Voice"]


def new_turn_id() -> str:
    return uuid.uuid4().hex[:12]


class Assistant:
    def __init__(self, config: Config, bus: EventBus, backend: LLMBackend,
                 session: SessionManager | None = None) -> None:
        self.config = config
        self.bus = bus
        self.backend = backend
        self.session = session or SessionManager(config.session.timeout_min * 60)
        self.prompts = self._prompt_builder(config)
        self.states = StateKeeper(bus.publish)
        self.timers = Timers(self.record, self.session.store, config.skills.timer_ring_s)
        """The user's timers, kept in the history store (``start`` brings them back)."""
        self.skills = Skills(config.language, timers=self.timers) \
            if config.skills.enabled else None
        """Exact answers before the LLM (the time, the date, timers); None: everything to
        the LLM."""
        self.lock = asyncio.Lock()
        """Held by the running turn (and by ``describe``): one question at a time."""
        self._saving = TaskSet("history")
        self.last_image: bytes | None = None
        """The last JPEG that went with a question (camera frame or API image)."""
        self.hold_llm: Hold = contextlib.nullcontext
        """Held while the first piece of a spoken answer is synthesized (an early answer's,
        or the speaker's when there was none): the managed server paused
        (``server.pause_for_first_audio``; set by ``Runtime``)."""

    @property
    def busy(self) -> bool:
        """A turn is running or waiting (the next question would queue behind it)."""
        return self.lock.locked()

    @property
    def state(self) -> State:
        return self.states.state

    @staticmethod
    def _prompt_builder(config: Config) -> PromptBuilder:
        return PromptBuilder(config.llm.prompt_format, config.llm.personality,
                             config.llm.system_prompt, config.session.max_turns,
                             config.session.max_history_tokens, config.language)

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded config from the next turn on: prompt, skills, sampling, session and
        turn time limits. (Which server to talk to is fixed for the process.)"""
        self.config = config
        self.prompts = self._prompt_builder(config)
        if config.skills.enabled != (self.skills is not None):
            self.skills = Skills(config.language, timers=self.timers) \
            if config.skills.enabled else None
        self.timers.ring_limit_s = config.skills.timer_ring_s
        self.backend.reconfigure(config.llm)
        self.session.timeout_s = config.session.timeout_min * 60

    def record(self, event: Event) -> None:
        """The state follows ``event``; then the event (and the change) go to the bus."""
        self.states.record(event)

    async def wait_until_heard(self, timeout_s: float) -> None:
        """A typed question waits (up to ``timeout_s``) while a spoken one is being heard."""
        await self.states.wait_while(State.LISTENING, timeout_s)

    def turn(self, question: str, *, image: bytes | None = None, source: str = "text",
             voice: Voice | None = None, turn_id: str | None = None,
             prefetched: Prefetch | None = None, session_id: str | None = None,
             show: Frame | None = None) -> Turn:
        """A turn for ``question``, to run with ``async with`` and ``async for``. With a
        ``voice`` the answer is spoken while it streams (state SPEAKING at the first sample)."""
        return Turn(self, question, turn_id or new_turn_id(), image=image, source=source,
                    voice=voice, prefetched=prefetched, session_id=session_id, show=show)

    async def ask(self, question: str, image: bytes | None = None, source: str = "text",
                  session_id: str | None = None) -> TurnOutcome:
        """A whole typed turn, for callers that do not need its events."""
        async with self.turn(question, image=image, source=source,
                             session_id=session_id) as turn:
            async for _ in turn:
                pass
        return turn.outcome

    async def save(self) -> None:
        """Write the finished turns to the store off the event loop (a locked file makes it
        wait). A failure is reported by the session (once) and never fails the turn."""
        await asyncio.shield(asyncio.to_thread(self.session.flush))

    def save_later(self) -> None:
        """``save`` from a turn that is being cancelled (it cannot wait)."""
        self._saving.spawn(asyncio.to_thread(self.session.flush), "save")

    async def start(self) -> None:
        """Bring back the stored timers."""
        await self.timers.start()

    async def close(self) -> None:
        """Let the last saves finish (each waits at most ``BUSY_TIMEOUT_S`` for the file)."""
        await self.timers.close()
        await self._saving.join(5.0)

    def show_frame(self, frame: Frame, turn_id: str = "") -> None:
        """A frame goes to the model outside a turn (the API's /process-frame): keep it for
        ``/frame`` and announce it."""
        self.last_image = frame.jpeg
        self.record(FrameCaptured(width=frame.width, height=frame.height,
                                  jpeg_bytes=len(frame.jpeg), turn_id=turn_id))

    def prefetch(self, question: str, frame: Frame | None = None,
                 tts: TextToSpeech | None = None) -> Prefetch:
        """Start answering ``question`` without a turn (see ``orchestrator/prefetch.py``);
        with ``tts`` its first sentence is synthesized too."""
        history = self.session.prompt_history(self.config.session.max_turns)
        prefetch = Prefetch(self.backend, self.prompts.build(question, history), question,
                            frame, tts, self.splitter(), self.hold_llm)
        prefetch.start()
        return prefetch

    def splitter(self) -> SentenceSplitter:
        """A new splitter for a spoken answer: the turn's speaker and an early answer cut
        the same way (the early answer's first audio is used only if its piece is the
        speaker's first)."""
        return splitter_for(self.config.language, self.config.tts.first_phrase)

    async def describe(self, question: str, image: bytes,
                       session_id: str | None = None) -> LLMResult:
        """A one-off question about an image, outside the conversation: no history, no
        state change, but in turn with the conversation's questions (one at a time). Its
        LLM_COMPLETE (no turn id) tells observers what it cost. A model that cannot see
        raises ``VisionUnavailableError``: nothing is described without the image."""
        limit_s = self.config.states.thinking_timeout_s
        async with self.lock:
            try:
                async with asyncio.timeout(limit_s):
                    result = await self.backend.complete(self.prompts.build(question), image,
                                                         require_image=True)
            except TimeoutError:
                raise TurnTimeoutError(f"no description within {limit_s:.0f}s "
                                       "(states.thinking_timeout_s)") from None
        self.record(complete_event(result))
        if result.text.strip():  # the session's next questions are about this scene
            self.session.set_scene(image, result.text.strip(), session_id)
        return result
