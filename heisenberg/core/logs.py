"""Structured logs: one ``key=value`` line per record, with the turn it belongs to.

Lines go to stderr, which journald collects under systemd; there (``$JOURNAL_STREAM`` set) the
timestamp is left to the journal and each line starts with a ``<N>`` syslog priority so that
``journalctl -p err`` works. Every bus event is logged as one line by ``EventLogger``; what the
user said and what the assistant answered appear only when ``log.transcripts`` is on.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import Any

from heisenberg.core.config import LogConfig
from heisenberg.core.errors import ConfigError
from heisenberg.core.events import Event, EventType

#: The turn being handled by the current task; asyncio tasks inherit it from their creator.
current_turn: contextvars.ContextVar[str] = contextvars.ContextVar("heisenberg_turn",
                                                                   default="")

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if not self.journal:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            parts.append(f"ts={stamp}.{int(record.msecs):03d}")
        parts += [f"level={record.levelname.lower()}", f"logger={record.name}"]
        turn = getattr(record, "turn", "") or current_turn.get()
        if turn:
            parts.append(f"turn={turn}")
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts += [f"{k}={logfmt_value(v)}" for k, v in fields.items()]
        message = record.getMessage()
        if message:
            parts.append(f"msg={logfmt_value(message)}")
        if record.exc_info:
            parts.append(f"exc={logfmt_value(self.formatException(record.exc_info))}")
        line = " ".join(parts)
        if self.journal:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def parse_module_levels(spec: str) -> dict[str, int]:
    """``"heisenberg.llm=debug, aiohttp=warning"`` -> {logger name: level}."""
    levels: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, level = item.partition("=")
        if not sep or not name.strip() or level.strip().lower() not in _LEVELS:
            raise ConfigError(f"log.modules: {item!r} is not 'module=level' with level one of "
                              f"{', '.join(_LEVELS)}")
        levels[name.strip()] = _LEVELS[level.strip().lower()]
    return levels


class _StderrHandler(logging.StreamHandler):
    """The handler ``setup_logging`` installs (so that it can find and replace it)."""


def setup_logging(config: LogConfig, verbosity: int = 0, quiet: bool = False) -> None:
    """Configure the root logger. ``quiet``: one-shot commands show warnings and up only,
    and not the event log (they print their own outcome, failures included); each ``-v``
    lowers the threshold one step."""
    base = logging.WARNING if quiet else _LEVELS[config.level]
    level = max(logging.DEBUG, base - 10 * verbosity)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)  # a reload replaces ours, and leaves others' alone
    root.addHandler(handler)
    root.setLevel(level)
    events = logging.getLogger("heisenberg.events")
    events.setLevel(logging.CRITICAL if quiet and not verbosity else logging.NOTSET)
    for name, module_level in parse_module_levels(config.modules).items():
        logging.getLogger(name).setLevel(module_level)


class EventLogger:
    """A bus subscriber writing one log line per event (tokens only at debug level)."""

    _TEXT_FIELDS = ("text",)

    def __init__(self, transcripts: bool = False) -> None:
        self.transcripts = transcripts
        self.log = logging.getLogger("heisenberg.events")

    async def __call__(self, event: Event) -> None:
        level = logging.DEBUG if event.type is EventType.LLM_TOKEN else logging.INFO
        if event.type is EventType.ERROR:
            level = logging.ERROR
        if not self.log.isEnabledFor(level):
            return
        data = event.to_dict()
        data.pop("timestamp_ms", None)
        turn = data.pop("turn_id", "")
        kind = data.pop("type")
        for key in self._TEXT_FIELDS:
            if key in data and not self.transcripts:
                data[f"{key}_chars"] = len(data.pop(key))
        if "server_prompt" in data:  # the whole conversation: never in the log
            data["prompt_chars"] = len(data.pop("server_prompt"))
        timings = data.pop("timings", None) or {}
        if "predicted_per_second" in timings:
            data["tokens_per_s"] = round(float(timings["predicted_per_second"]), 1)
        self.log.log(level, "", extra={"turn": turn, "fields": {"event": kind, **data}})
