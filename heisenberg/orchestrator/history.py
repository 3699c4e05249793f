"""Conversation turns on disk: one SQLite file, so that history survives restarts.

SQLite in WAL mode commits each turn atomically: a ``kill -9`` (or a crash) at any moment
leaves either the turn or nothing, never a torn file. Writes are small (one row per turn) and
run in the caller's thread. In WAL mode with ``synchronous=NORMAL`` a commit does not wait for
fsync, so an insert costs well under a millisecond; the assistant still writes from a worker
thread, because a file locked by another program (a backup, the sqlite3 shell) makes a write
wait up to ``BUSY_TIMEOUT_S``.

Every failure is a ``HistoryError``. A store that cannot be read at all (not a database, a
corrupt page) is moved aside as ``history.sqlite3.corrupt-<time>`` and a fresh one started:
losing old turns is better than an assistant that does not start.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heisenberg.core.config import HistoryConfig
from heisenberg.core.errors import HistoryError
from heisenberg.llm.prompts import Turn

log = logging.getLogger(__name__)

#: Seconds a write waits for a file another program holds locked, before it fails.
BUSY_TIMEOUT_S = 2.0

#: How a turn ended.
OUTCOMES = ("answered", "interrupted", "failed", "continued")


@dataclass(frozen=True)
class ConversationTurn:
    user: str
    assistant: str
    timestamp_s: float
    """Wall-clock seconds when the turn ended."""
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outcome: str = "answered"
    """answered, interrupted (cut off, e.g. barge-in), failed, or continued (the speaker
    went on with the question just after its end was decided: the next turn has the whole
    question); when not answered, ``assistant`` holds what was said (or given) before that."""

    @property
    def interrupted(self) -> bool:
        return self.outcome == "interrupted"

    def as_prompt_turn(self) -> Turn:
        said = self.assistant + (" [interrupted]" if self.interrupted else "")
        return Turn(self.user, said)


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
    interrupted INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'answered'
);
CREATE INDEX IF NOT EXISTS turns_time ON turns (timestamp_s);
CREATE INDEX IF NOT EXISTS turns_session ON turns (session_id, id);
CREATE TABLE IF NOT EXISTS timers (
    timer_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""


class HistoryStore:
    """``store.append(turn, session_id)``, ``store.recent(n)``, ``store.clear()``."""

    def __init__(self, path: Path, max_turns: int = 0, max_days: float = 0.0) -> None:
        self.path = path
        self.max_turns = max_turns
        self.max_days = max_days
        self._lock = threading.Lock()
        self._count_since_prune = 0
        self.moved_aside: Path | None = None
        """Where an unreadable store found at start was moved."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"history store {str(path)!r}: {exc}") from exc
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not self._unreadable(exc):
                raise HistoryError(
                    f"history store {str(path)!r} cannot be opened: {exc}") from exc
            self.moved_aside = self._move_aside()
            log.error("history store %s could not be read (%s); moved it to %s and started "
                      "a new one", path, exc, self.moved_aside)
            try:
                self._db = self._open()
            except sqlite3.Error as again:
                raise HistoryError(f"history store {str(path)!r} cannot be opened: "
                                   f"{again}") from again

    @staticmethod
    def _unreadable(exc: sqlite3.Error) -> bool:
        text = str(exc).lower()
        return "malformed" in text or "not a database" in text or "corrupt" in text

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=BUSY_TIMEOUT_S)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(turns)")}
            if "outcome" not in columns:  # a store written before outcomes were kept
                db.execute("ALTER TABLE turns ADD COLUMN outcome TEXT NOT NULL "
                           "DEFAULT 'answered'")
                db.execute("UPDATE turns SET outcome = 'interrupted' WHERE interrupted")
            self._db = db
            self.prune()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.replace(target.with_name(target.name + suffix))
            self.path.replace(target)
        except OSError as exc:
            raise HistoryError(f"history store {str(self.path)!r} is unreadable and cannot "
                               f"be moved aside: {exc}") from exc
        return target

    @classmethod
    def from_config(cls, config: HistoryConfig) -> HistoryStore:
        return cls(history_path(config), config.max_turns, config.max_days)

    def append(self, turn: ConversationTurn, session_id: str) -> None:
        """Write one turn; a failure (disk full, file locked, I/O error) is a HistoryError
        and writes nothing."""
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO turns (turn_id, session_id, timestamp_s, user, assistant, "
                    "interrupted, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (turn.turn_id, session_id, turn.timestamp_s, turn.user, turn.assistant,
                     int(turn.interrupted), turn.outcome))
            self._count_since_prune += 1
            if self._count_since_prune >= 100:
                self.prune()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"the conversation could not be saved to {self.path}: "
                               f"{exc}") from exc

    def recent(self, limit: int | None = None, since_s: float = 0.0,
               session_id: str | None = None) -> list[tuple[str, ConversationTurn]]:
        """(session id, turn) pairs, oldest first: the last ``limit`` turns after ``since_s``,
        of one session when ``session_id`` is given."""
        query = ("SELECT session_id, turn_id, timestamp_s, user, assistant, outcome "
                 "FROM turns WHERE timestamp_s >= ?")
        params: tuple[float | int | str, ...] = (since_s,)
        if session_id is not None:
            query += " AND session_id = ?"
            params += (session_id,)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params += (limit,)
        try:
            with self._lock:
                rows = self._db.execute(query, params).fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"the history could not be read from {self.path}: "
                               f"{exc}") from exc
        return [(session, ConversationTurn(user, assistant, ts, turn_id, outcome))
                for session, turn_id, ts, user, assistant, outcome in reversed(rows)]

    def load_timers(self) -> list[dict[str, Any]]:
        """The timers saved by ``save_timers`` (``skills/timers.py``), as their fields."""
        try:
            with self._lock:
                rows = self._db.execute("SELECT data FROM timers").fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"the timers could not be read from {self.path}: "
                               f"{exc}") from exc
        timers = []
        for (data,) in rows:
            try:
                timers.append(json.loads(data))
            except ValueError:
                log.warning("history: a stored timer is not JSON (%r); skipped", data[:80])
        return timers

    def save_timers(self, timers: list[dict[str, Any]]) -> None:
        """Replace the stored timers with ``timers`` (each with its ``timer_id``), at once."""
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN")  # autocommit otherwise: both or neither
                self._db.execute("DELETE FROM timers")
                self._db.executemany("INSERT INTO timers (timer_id, data) VALUES (?, ?)",
                                     [(t["timer_id"], json.dumps(t)) for t in timers])
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"the timers could not be saved to {self.path}: "
                               f"{exc}") from exc

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM turns").fetchone()[0])

    def clear(self) -> int:
        """Delete every turn; returns how many there were."""
        try:
            with self._lock, self._db:
                deleted = self._db.execute("DELETE FROM turns").rowcount
            with self._lock:
                self._db.execute("VACUUM")  # the text is really gone from the file
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"the history in {self.path} could not be deleted: "
                               f"{exc}") from exc
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
