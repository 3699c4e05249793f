"""Conversation history of one session, with an idle timeout that starts a new session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heisenberg.llm.prompts import Turn

if TYPE_CHECKING:
    from heisenberg.orchestrator.history import HistoryStore


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
                 clock: Callable[[], float] = time.time,
                 store: HistoryStore | None = None, max_loaded: int = 100) -> None:
        """``timeout_s``: idle seconds after which history is dropped; 0 = never.

        With a ``store`` every turn is also saved to disk, and a session that was still
        going when the process stopped (its last turn within ``timeout_s``) is continued.
        """
        self.timeout_s = timeout_s
        self._clock = clock
        self.store = store
        self._turns: list[ConversationTurn] = []
        self.session_id = uuid.uuid4().hex[:12]
        self._last_activity_s = clock()
        if store is not None:
            since = self._last_activity_s - timeout_s if timeout_s else 0.0
            recent = store.recent(max_loaded, since)
            if recent:
                last_session = recent[-1][0]
                self._turns = [t for s, t in recent if s == last_session]
                self.session_id = last_session
                self._last_activity_s = self._turns[-1].timestamp_s

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
        if self.store is not None:
            self.store.append(turn, self.session_id)
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
        """Start a new session: the prompt forgets past turns (the store keeps them)."""
        self._turns.clear()
        self.session_id = uuid.uuid4().hex[:12]

    def clear(self) -> int:
        """Forget everything, on disk too. Returns how many stored turns were deleted."""
        self.reset()
        return self.store.clear() if self.store is not None else 0
