"""Conversation history: the assistant's own conversation plus the API callers' named ones.

The *current* conversation is the one the voice loop and typed questions continue; an idle
timeout starts a new one. An API caller that passes a ``session_id`` gets a conversation of
its own under that name, so that two callers (or a caller and the person at the desk) never
see each other's turns. Named conversations are kept in memory up to ``max_sessions`` (least
recently used dropped first) and reloaded from the store when they come back.

Turns are written to the store by ``flush()``. A write that fails (disk full, file locked)
loses nothing: the turn stays in memory and in the queue of unsaved turns, the failure is
reported once through ``on_store_error``, and the queue is written by the next flush that
works.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heisenberg.core.errors import HistoryError
from heisenberg.llm.prompts import Turn
from heisenberg.orchestrator.history import OUTCOMES, ConversationTurn, HistoryStore

log = logging.getLogger(__name__)

#: Unsaved turns kept for a store that fails; beyond that the oldest are dropped (counted).
MAX_UNSAVED = 10_000


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]
@dataclass(frozen=True)
class Scene:
    """The last frame a session showed (``/process-frame``) and what the model saw in it."""

    jpeg: bytes
    description: str
    at_s: float
    """Wall-clock seconds when it was described."""


@dataclass
class Conversation:
    session_id: str
    turns: list[ConversationTurn]
    last_activity_s: float
    """Wall-clock seconds of the last turn or look at the history."""
    scene: Scene | None = None


class SessionManager:
    def __init__(self, timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.time,
                 store: HistoryStore | None = None, max_loaded: int = 100,
                 max_sessions: int = 32,
                 on_store_error: Callable[[str], None] | None = None,
                 store_error: str | None = None, resume: bool = True) -> None:
        """``timeout_s``: idle seconds after which a conversation is forgotten; 0 = never.

        With a ``store`` every turn is also saved to disk, and a conversation that was still
        going when the process stopped (its last turn within ``timeout_s``) is continued.
        ``max_loaded``: turns read back from the store per conversation, and kept in memory.
        ``on_store_error``: told (once per outage) when the store fails. ``store_error``:
        why there is no store although one was wanted (it could not be opened). ``resume``:
        False starts a new conversation even when the store's last one is recent.
        """
        self.timeout_s = timeout_s
        self._clock = clock
        self.store = store
        self.max_loaded = max_loaded
        self.max_sessions = max_sessions
        self._current = Conversation(new_session_id(), [], clock())
        self._named: collections.OrderedDict[str, Conversation] = collections.OrderedDict()
        self.on_store_error = on_store_error
        self.store_error = store_error
        """Why turns are not being saved, while they are not; None when they are."""
        self.unsaved_dropped = 0
        self._unsaved: collections.deque[tuple[ConversationTurn, str]] = collections.deque()
        self._unsaved_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        if store is not None and resume:
            recent = self._read_store(max_loaded, self._since())
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
        turns = [t for _, t in self._read_store(self.max_loaded, self._since(), session_id)]
        return Conversation(session_id, turns, turns[-1].timestamp_s if turns else self._clock())

    def _read_store(self, limit: int, since_s: float = 0.0,
                    session_id: str | None = None) -> list[tuple[str, ConversationTurn]]:
        if self.store is None:
            return []
        try:
            return self.store.recent(limit, since_s, session_id)
        except HistoryError as exc:
            self._store_failed(exc.message)
            return []

    def _store_failed(self, message: str) -> None:
        first = self.store_error is None
        self.store_error = message
        if first:
            log.error("history: %s; turns are kept in memory and saved when it works again",
                      message)
            if self.on_store_error is not None:
                self.on_store_error(message)

    def saved_turns(self, limit: int, session_id: str | None = None
                    ) -> list[tuple[str, ConversationTurn]]:
        """(session id, turn) pairs from the store, oldest first, with the turns not yet
        saved; from memory when there is no store or it cannot be read."""
        if self.store is None:
            wanted = session_id or self.session_id
            return [(wanted, t) for t in self.get_conversation_history(limit, session_id)]
        self.flush()
        rows = self._read_store(limit, 0.0, session_id)
        with self._unsaved_lock:
            seen = {t.turn_id for _, t in rows}
            rows += [(s, t) for t, s in self._unsaved if t.turn_id not in seen
                     and (session_id is None or s == session_id)]
        return rows[-limit:] if limit > 0 else []

    def flush(self) -> int:
        """Write the unsaved turns to the store, in order; returns how many were written.
        Stops at the first failure (reported once), keeping the rest for the next flush."""
        if self.store is None:
            return 0
        written = 0
        with self._flush_lock:
            while True:
                with self._unsaved_lock:
                    if not self._unsaved:
                        break
                    turn, session_id = self._unsaved[0]
                try:
                    self.store.append(turn, session_id)
                except HistoryError as exc:
                    self._store_failed(exc.message)
                    return written
                with self._unsaved_lock:
                    self._unsaved.popleft()
                written += 1
        if self.store_error is not None and written:
            log.warning("history: the store works again; %d unsaved turns written", written)
        self.store_error = None
        return written

    @property
    def unsaved(self) -> int:
        return len(self._unsaved)

    def _expire_if_idle(self, conversation: Conversation) -> None:
        now = self._clock()
        if self.timeout_s and now - conversation.last_activity_s > self.timeout_s:
            conversation.turns.clear()
            if conversation is self._current:  # a named one keeps its caller's name
                conversation.session_id = new_session_id()
        conversation.last_activity_s = now

    def add_conversation_turn(self, user_query: str, assistant_response: str,
                              interrupted: bool = False,
                              session_id: str | None = None, *,
                              turn_id: str | None = None, outcome: str | None = None,
                              save: bool = True) -> ConversationTurn:
        """Record a turn. ``save``: write it to the store now (in this thread); False
        leaves it to a ``flush()`` the caller runs where blocking is allowed."""
        conversation = self._conversation(session_id)
        outcome = outcome or ("interrupted" if interrupted else "answered")
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        turn = ConversationTurn(user_query, assistant_response, self._clock(),
                                turn_id or uuid.uuid4().hex[:12], outcome)
        conversation.turns.append(turn)
        # Memory holds what a restart would load back; the store keeps everything.
        del conversation.turns[:-self.max_loaded]
        if self.store is not None:
            with self._unsaved_lock:
                self._unsaved.append((turn, conversation.session_id))
                while len(self._unsaved) > MAX_UNSAVED:
                    self._unsaved.popleft()
                    self.unsaved_dropped += 1
            if save:
                self.flush()
        return turn

    def add_turn(self, user_query: str, assistant_response: str,
                 **kwargs: Any) -> ConversationTurn:
        """Seed 004's name for ``add_conversation_turn``."""
        return self.add_conversation_turn(user_query, assistant_response, **kwargs)

    def get_history(self, max_turns: int | None = None,
                    session_id: str | None = None) -> list[Turn]:
        """Seed 004's ``get_history``: the past turns as ``PromptBuilder.build`` takes them
        (``prompt_history``)."""
        return self.prompt_history(max_turns, session_id)

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
        """Past turns for the prompt; failed turns are left out (they have no answer), and
        continued ones (the next turn asks the whole question)."""
        turns = [t for t in self.get_conversation_history(None, session_id)
                 if t.outcome not in ("failed", "continued")]
        if max_turns is not None:
            turns = turns[-max_turns:] if max_turns > 0 else []
        return [t.as_prompt_turn() for t in turns]

    def set_scene(self, jpeg: bytes, description: str, session_id: str | None = None) -> None:
        """Remember the scene a session was shown; it replaces the one before."""
        self._conversation(session_id).scene = Scene(jpeg, description, self._clock())

    def scene(self, max_age_s: float, session_id: str | None = None) -> Scene | None:
        """The session's last scene, if it is younger than ``max_age_s``."""
        scene = self._conversation(session_id).scene
        if scene is None or not max_age_s or self._clock() - scene.at_s > max_age_s:
            return None
        return scene

    def reset(self) -> None:
        """Start a new current conversation: the prompt forgets past turns (the store keeps
        them)."""
        self._current = Conversation(new_session_id(), [], self._clock())

    def clear(self) -> int:
        """Forget everything, on disk too. Returns how many stored turns were deleted."""
        self.reset()
        self._named.clear()
        with self._unsaved_lock:
            self._unsaved.clear()
        return self.store.clear() if self.store is not None else 0
