"""The assistant's state machine: plain synchronous code with explicit transitions.

Time is passed in by the caller (``now_s``), so tests need no sleeps; the orchestrator owns the
clock and the side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from heisenberg.core.errors import IllegalTransitionError


class State(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


#: Allowed moves. Any state may also return to IDLE through ``reset`` (error, interrupt,
#: timeout); barge-in moves THINKING/SPEAKING back to LISTENING.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LISTENING, State.THINKING}),
    State.LISTENING: frozenset({State.THINKING, State.IDLE}),
    State.THINKING: frozenset({State.SPEAKING, State.IDLE, State.LISTENING}),
    State.SPEAKING: frozenset({State.IDLE, State.LISTENING}),
}


@dataclass(frozen=True)
class Transition:
    old: State
    new: State
    reason: str


class StateMachine:
    def __init__(self, timeouts_s: dict[State, float] | None = None, now_s: float = 0.0) -> None:
        """``timeouts_s``: seconds a state may last (states not listed never time out)."""
        self._timeouts = dict(timeouts_s or {})
        self._state = State.IDLE
        self._entered_s = now_s

    @property
    def state(self) -> State:
        return self._state

    def can(self, target: State) -> bool:
        return target in TRANSITIONS[self._state]

    def set_timeouts(self, timeouts_s: dict[State, float]) -> None:
        self._timeouts = dict(timeouts_s)

    def transition(self, target: State, now_s: float, reason: str = "") -> Transition:
        if not self.can(target):
            raise IllegalTransitionError(
                f"illegal transition {self._state} -> {target} ({reason or 'no reason'})")
        return self._move(target, now_s, reason)

    def reset(self, now_s: float, reason: str) -> Transition | None:
        """Back to IDLE from anywhere (error, interruption, timeout); None if already IDLE."""
        if self._state is State.IDLE:
            return None
        return self._move(State.IDLE, now_s, reason)

    def deadline_s(self) -> float | None:
        """When the current state times out, in the caller's clock; None = never."""
        limit = self._timeouts.get(self._state)
        return None if limit is None else self._entered_s + limit

    def timed_out(self, now_s: float) -> bool:
        deadline = self.deadline_s()
        return deadline is not None and now_s >= deadline

    def _move(self, target: State, now_s: float, reason: str) -> Transition:
        step = Transition(self._state, target, reason)
        self._state = target
        self._entered_s = now_s
        return step
