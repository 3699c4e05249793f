"""Conversation turns on disk: one SQLite file, so that history survives restarts.

SQLite in WAL mode commits each turn atomically: a ``kill -9`` (or a crash) at any moment
leaves either the turn or nothing, never a torn file. Writes are small (one row per turn) and
run in the caller's thread. In WAL mode with ``synchronous=NORMAL`` a commit does not wait for
fsync, so an insert costs well under a millisecond and may run on the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from heisenberg.core.config import HistoryConfig
from heisenberg.core.errors import HeisenbergError
from heisenberg.orchestrator.session import ConversationTurn


class HistoryError(HeisenbergError):
    code = "history"


def default_history_path() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "heisenberg" / "history.sqlite3"


def history_path(config: HistoryConfig) -> Path:
    return Path(config.path).expanduser() if config.path else default_history_path()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    timestamp_s REAL NOT NULL,
    user TEXT NOT NULL,
    assistant TEXT NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS turns_time ON turns (timestamp_s);
CREATE INDEX IF NOT EXISTS turns_session ON turns (session_id, id);
"""


class HistoryStore:
    """``store.append(turn, session_id)``, ``store.recent(n)``, ``store.clear()``."""

    def __init__(self, path: Path, max_turns: int = 0, max_days: float = 0.0) -> None:
        self.path = path
        self.max_turns = max_turns
        self.max_days = max_days
        self._lock = threading.Lock()
        self._count_since_prune = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise HistoryError(f"history store {str(path)!r} cannot be opened: {exc}") from exc
        except OSError as exc:
            raise HistoryError(f"history store {str(path)!r}: {exc}") from exc
        self.prune()

    @classmethod
    def from_config(cls, config: HistoryConfig) -> HistoryStore:
        return cls(history_path(config), config.max_turns, config.max_days)

    def append(self, turn: ConversationTurn, session_id: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO turns (turn_id, session_id, timestamp_s, user, assistant, "
                "interrupted) VALUES (?, ?, ?, ?, ?, ?)",
                (turn.turn_id, session_id, turn.timestamp_s, turn.user, turn.assistant,
                 int(turn.interrupted)))
        self._count_since_prune += 1
        if self._count_since_prune >= 100:
            self.prune()

    def recent(self, limit: int | None = None, since_s: float = 0.0,
               session_id: str | None = None) -> list[tuple[str, ConversationTurn]]:
        """(session id, turn) pairs, oldest first: the last ``limit`` turns after ``since_s``,
        of one session when ``session_id`` is given."""
        query = ("SELECT session_id, turn_id, timestamp_s, user, assistant, interrupted "
                 "FROM turns WHERE timestamp_s >= ?")
        params: tuple[float | int | str, ...] = (since_s,)
        if session_id is not None:
            query += " AND session_id = ?"
            params += (session_id,)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params += (limit,)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [(session, ConversationTurn(user, assistant, ts, bool(interrupted), turn_id))
                for session, turn_id, ts, user, assistant, interrupted in reversed(rows)]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM turns").fetchone()[0])

    def clear(self) -> int:
        """Delete every turn; returns how many there were."""
        with self._lock, self._db:
            deleted = self._db.execute("DELETE FROM turns").rowcount
        with self._lock:
            self._db.execute("VACUUM")  # the text is really gone from the file
        return int(deleted)

    def prune(self) -> None:
        """Apply the retention limits (days, then turns)."""
        self._count_since_prune = 0
        with self._lock, self._db:
            if self.max_days > 0:
                self._db.execute("DELETE FROM turns WHERE timestamp_s < ?",
                                 (time.time() - self.max_days * 86400,))
            if self.max_turns > 0:
                self._db.execute(
                    "DELETE FROM turns WHERE id <= (SELECT id FROM turns ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?)", (self.max_turns,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
