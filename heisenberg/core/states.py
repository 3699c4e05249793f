"""The assistant's state: derived from events by one pure function, written in one place.

``next_state`` is plain synchronous code (no clock, no I/O): the state a single event leads to.
``StateKeeper.record`` is the only writer: every event of every turn goes through it, and it
then publishes the event (and a STATE_CHANGED when the state moved) to the bus, whose
subscribers only observe.

The state belongs to one turn at a time (``Current.turn_id``). A turn's events move the state
only while the state is that turn's: a typed answer that ends while the user is speaking (a
wake word gave the state to a new turn) leaves LISTENING alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from heisenberg.core.events import (
    Event,
    FollowUpStarted,
    StateChanged,
    TranscriptionFinal,
    TTSStarted,
    TurnEnded,
    VoiceInterrupt,
    WakewordDetected,
)


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    """From the wake word until the question is transcribed."""
    THINKING = "thinking"
    SPEAKING = "speaking"


#: The moves ``next_state`` can make (besides staying). Barge-in moves THINKING/SPEAKING
#: back to LISTENING; a turn's end (or a wake word with no question after it) goes to IDLE.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LISTENING, State.THINKING}),
    State.LISTENING: frozenset({State.THINKING, State.IDLE}),
    State.THINKING: frozenset({State.SPEAKING, State.IDLE, State.LISTENING}),
    State.SPEAKING: frozenset({State.IDLE, State.LISTENING}),
}


@dataclass(frozen=True)
class Current:
    state: State = State.IDLE
    turn_id: str = ""
    """The turn the state belongs to ("" in IDLE)."""


def next_state(current: Current, event: Event) -> Current:
    """The state after ``event``."""
    mine = bool(event.turn_id) and event.turn_id == current.turn_id
    if isinstance(event, WakewordDetected | VoiceInterrupt):  # a new question, or a barge-in
        return Current(State.LISTENING, event.turn_id)
    if isinstance(event, FollowUpStarted):  # only from IDLE: a typed question keeps its turn
        return Current(State.LISTENING, event.turn_id) if current.state is State.IDLE \
            else current
    if isinstance(event, TranscriptionFinal):
        if current.state is State.IDLE or (mine and current.state is State.LISTENING):
            return Current(State.THINKING, event.turn_id)
        return current  # someone else's question holds the state (the user is speaking)
    if isinstance(event, TTSStarted) and mine and current.state is State.THINKING:
        return Current(State.SPEAKING, current.turn_id)
    if isinstance(event, TurnEnded) and mine:
        return Current()
    return current


def reason(event: Event) -> str:
    """Why the state moved, for STATE_CHANGED and the log."""
    if isinstance(event, WakewordDetected):
        return "wake word"
    if isinstance(event, FollowUpStarted):
        return "follow-up"
    if isinstance(event, VoiceInterrupt):
        return "question continued" if event.continues else "voice interruption"
    if isinstance(event, TranscriptionFinal):
        return f"{event.source} question"
    if isinstance(event, TTSStarted):
        return "first audio"
    if isinstance(event, TurnEnded):
        return event.outcome.replace("_", " ")
    return str(event.type)


class StateKeeper:
    """The one writer of the state: ``record`` every event, in order, from the loop."""

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self.current = Current()
        self._publish = publish
        self._changed = asyncio.Event()

    @property
    def state(self) -> State:
        return self.current.state

    def record(self, event: Event) -> None:
        """Apply ``event`` to the state, then publish it (and the change, if any). Never
        awaits: a cancellation cannot come between an event and its state."""
        old, self.current = self.current, next_state(self.current, event)
        self._publish(event)
        if self.current.state is not old.state:
            self._publish(StateChanged(old=old.state, new=self.current.state,
                                       reason=reason(event), turn_id=event.turn_id))
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_while(self, state: State, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until the state is no longer ``state``; False if it
        still is."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.current.state is state:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True
