"""One latency record per turn, built from the turn's own events and their timestamps.

The voice loop (for its callers and bench/latency.py), the dashboard and the Prometheus
metrics all measure a turn this way, with one clock: the events' ``timestamp_ms``. Stages are
milliseconds from the start of the turn: the end-of-speech decision for a spoken question,
the question itself for a typed one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from heisenberg.core.events import (
    ErrorEvent,
    Event,
    LLMComplete,
    LLMToken,
    SpeechEnded,
    TranscriptionFinal,
    TTSStarted,
    TurnEnded,
)

STAGES = ("transcript", "first_token", "first_audio", "total")
"""transcript: the question's text is ready (spoken questions only); first_token: the first
piece of the answer; first_audio: its first sample went to the speaker; total: the turn
ended."""


@dataclass
class TurnRecord:
    turn_id: str
    source: str = "voice"
    question: str = ""
    answer: str = ""
    error: str = ""
    outcome: str = ""
    """How the turn ended (``TurnEnded.outcome``); empty while it runs."""
    started_ms: int = 0
    stages_ms: dict[str, int] = field(default_factory=dict)
    """Milliseconds from the start (end of speech, or the question) to each stage."""

    @property
    def finished(self) -> bool:
        return bool(self.outcome)

    def observe(self, event: Event) -> str | None:
        """Take one of the turn's events; returns the stage it completed, if any."""
        if isinstance(event, SpeechEnded):
            self.started_ms = event.timestamp_ms
        elif isinstance(event, TranscriptionFinal):
            self.source, self.question = event.source, event.text
            if not self.started_ms:
                self.started_ms = event.timestamp_ms
            elif self.source == "voice":
                return self._stage("transcript", event.timestamp_ms)
        elif isinstance(event, LLMToken):
            return self._stage("first_token", event.timestamp_ms)
        elif isinstance(event, LLMComplete):
            self.answer = event.text
        elif isinstance(event, TTSStarted):
            return self._stage("first_audio", event.timestamp_ms)
        elif isinstance(event, ErrorEvent):
            self.error = event.message
        elif isinstance(event, TurnEnded):
            self.outcome = event.outcome
            return self._stage("total", event.timestamp_ms)
        return None

    def _stage(self, stage: str, at_ms: int) -> str | None:
        if not self.started_ms or stage in self.stages_ms:
            return None
        self.stages_ms[stage] = at_ms - self.started_ms
        return stage

    def seconds(self, stage: str) -> float:
        """Seconds from the start to ``stage``; 0.0 when the turn did not reach it."""
        return self.stages_ms.get(stage, 0) / 1000

    def line(self) -> str:
        return "end of speech -> " + ", ".join(
            f"{stage.replace('_', ' ')} {self.stages_ms[stage]} ms"
            for stage in STAGES if stage in self.stages_ms)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
