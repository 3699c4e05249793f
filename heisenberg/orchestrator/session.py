"""Conversation history: the assistant's own conversation plus the API callers' named ones.

The *current* conversation is the one the voice loop and typed questions continue; an idle
timeout starts a new one. An API caller that passes a ``session_id`` gets a conversation of
its own under that name, so that two callers (or a caller and the person at the desk) never
see each other's turns. Named conversations are kept in memory up to ``max_sessions`` (least
recently used dropped first) and reloaded from the store when they come back.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heisenberg.llm.prompts import Turn

if TYPE_CHECKING:
    from heisenberg.orchestrator.history import HistoryStore


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


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


@dataclass
class Conversation:
    session_id: str
    turns: list[ConversationTurn]
    last_activity_s: float
    """Wall-clock seconds of the last turn or look at the history."""


class SessionManager:
    def __init__(self, timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.time,
                 store: HistoryStore | None = None, max_loaded: int = 100,
                 max_sessions: int = 32) -> None:
        """``timeout_s``: idle seconds after which a conversation is forgotten; 0 = never.

        With a ``store`` every turn is also saved to disk, and a conversation that was still
        going when the process stopped (its last turn within ``timeout_s``) is continued.
        ``max_loaded``: turns read back from the store per conversation, and kept in memory.
        """
        self.timeout_s = timeout_s
        self._clock = clock
        self.store = store
        self.max_loaded = max_loaded
        self.max_sessions = max_sessions
        self._current = Conversation(new_session_id(), [], clock())
        self._named: collections.OrderedDict[str, Conversation] = collections.OrderedDict()
        if store is not None:
            recent = store.recent(max_loaded, self._since())
            if recent:
                last_session = recent[-1][0]
                turns = [t for s, t in recent if s == last_session]
                self._current = Conversation(last_session, turns, turns[-1].timestamp_s)

    @property
    def session_id(self) -> str:
        """The current conversation's id."""
        return self._current.session_id

    def _since(self) -> float:
        return self._clock() - self.timeout_s if self.timeout_s else 0.0

    def _conversation(self, session_id: str | None) -> Conversation:
        if session_id is None or session_id == self._current.session_id:
            conversation = self._current
        else:
            if session_id not in self._named:
                self._named[session_id] = self._load(session_id)
            self._named.move_to_end(session_id)  # most recently used last
            conversation = self._named[session_id]
            while len(self._named) > self.max_sessions:
                self._named.popitem(last=False)
        self._expire_if_idle(conversation)
        return conversation

    def _load(self, session_id: str) -> Conversation:
        turns = [] if self.store is None else [
            t for _, t in self.store.recent(self.max_loaded, self._since(), session_id)]
        return Conversation(session_id, turns, turns[-1].timestamp_s if turns else self._clock())

    def _expire_if_idle(self, conversation: Conversation) -> None:
        now = self._clock()
        if self.timeout_s and now - conversation.last_activity_s > self.timeout_s:
            conversation.turns.clear()
            if conversation is self._current:  # a named one keeps its caller's name
                conversation.session_id = new_session_id()
        conversation.last_activity_s = now

    def add_conversation_turn(self, user_query: str, assistant_response: str,
                              interrupted: bool = False,
                              session_id: str | None = None) -> ConversationTurn:
        conversation = self._conversation(session_id)
        turn = ConversationTurn(user_query, assistant_response, self._clock(), interrupted)
        conversation.turns.append(turn)
        # Memory holds what a restart would load back; the store keeps everything.
        del conversation.turns[:-self.max_loaded]
        if self.store is not None:
            self.store.append(turn, conversation.session_id)
        return turn

    def get_conversation_history(self, max_turns: int | None = None,
                                 session_id: str | None = None) -> list[ConversationTurn]:
        """The last ``max_turns`` turns of a conversation (all when None); the current one
        unless ``session_id`` names another."""
        turns = self._conversation(session_id).turns
        if max_turns is None:
            return list(turns)
        return turns[-max_turns:] if max_turns > 0 else []

    def prompt_history(self, max_turns: int | None = None,
                       session_id: str | None = None) -> list[Turn]:
        return [t.as_prompt_turn() for t in self.get_conversation_history(max_turns, session_id)]

    def reset(self) -> None:
        """Start a new current conversation: the prompt forgets past turns (the store keeps
        them)."""
        self._current = Conversation(new_session_id(), [], self._clock())

    def clear(self) -> int:
        """Forget everything, on disk too. Returns how many stored turns were deleted."""
        self.reset()
        self._named.clear()
        return self.store.clear() if self.store is not None else 0
