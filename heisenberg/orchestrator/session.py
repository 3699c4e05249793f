"""Conversation history of one session, with an idle timeout that starts a new session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from heisenberg.llm.prompts import Turn


@dataclass(frozen=True)
class ConversationTurn:
    user: str
    assistant: str
    timestamp_s: float
    """Wall-clock seconds when the turn ended."""
    interrupted: bool = False
    """True when the answer was cut off (barge-in); ``assistant`` holds what was said."""
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def as_prompt_turn(self) -> Turn:
        said = self.assistant + (" [interrupted]" if self.interrupted else "")
        return Turn(self.user, said)


class SessionManager:
    def __init__(self, timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.time) -> None:
        """``timeout_s``: idle seconds after which history is dropped; 0 = never."""
        self.timeout_s = timeout_s
        self._clock = clock
        self._turns: list[ConversationTurn] = []
        self.session_id = uuid.uuid4().hex[:12]
        self._last_activity_s = clock()

    def _expire_if_idle(self) -> None:
        now = self._clock()
        if self.timeout_s and now - self._last_activity_s > self.timeout_s:
            self.reset()
        self._last_activity_s = now

    def add_conversation_turn(self, user_query: str, assistant_response: str,
                              interrupted: bool = False) -> ConversationTurn:
        self._expire_if_idle()
        turn = ConversationTurn(user_query, assistant_response, self._clock(), interrupted)
        self._turns.append(turn)
        return turn

    def get_conversation_history(self, max_turns: int | None = None) -> list[ConversationTurn]:
        """The last ``max_turns`` turns of the current session (all when None)."""
        self._expire_if_idle()
        if max_turns is None:
            return list(self._turns)
        return self._turns[-max_turns:] if max_turns > 0 else []

    def prompt_history(self, max_turns: int | None = None) -> list[Turn]:
        return [t.as_prompt_turn() for t in self.get_conversation_history(max_turns)]

    def reset(self) -> None:
        """Forget the history and start a new session id."""
        self._turns.clear()
        self.session_id = uuid.uuid4().hex[:12]
