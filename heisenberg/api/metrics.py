"""Per-turn figures from the bus: the dashboard's recent turns and Prometheus metrics.

A turn's stages are measured from the events' timestamps (milliseconds, wall clock): from the
end of speech (voice) or the question (typed, API) to the transcript, the first token, the
first audio (state SPEAKING) and the end of the turn.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from heisenberg.core.events import (
    ErrorEvent,
    Event,
    EventType,
    LLMComplete,
    SpeechEnded,
    StateChanged,
    TranscriptionFinal,
)
from heisenberg.core.states import State

STAGES = ("transcript", "first_token", "first_audio", "total")


@dataclass
class TurnStats:
    turn_id: str
    source: str = "voice"
    question: str = ""
    answer: str = ""
    error: str = ""
    started_ms: int = 0
    stages_ms: dict[str, int] = field(default_factory=dict)
    """Milliseconds from the start (end of speech, or the question) to each stage."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TurnMetrics:
    """A bus subscriber: ``await metrics(event)``."""

    def __init__(self, keep: int = 20) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("heisenberg_turns", "Turns finished, by source and outcome",
                             ["source", "outcome"], registry=self.registry)
        self.errors = Counter("heisenberg_errors", "ERROR events, by code", ["code"],
                              registry=self.registry)
        self.latency = Histogram("heisenberg_stage_seconds",
                                 "Seconds from end of speech (or question) to each stage",
                                 ["stage"], registry=self.registry,
                                 buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30))
        self.state = Gauge("heisenberg_state", "1 for the current state", ["state"],
                           registry=self.registry)
        for state in State:
            self.state.labels(str(state)).set(1 if state is State.IDLE else 0)
        self.recent: collections.deque[TurnStats] = collections.deque(maxlen=keep)
        self._open: dict[str, TurnStats] = {}

    def _turn(self, turn_id: str) -> TurnStats:
        if turn_id not in self._open:
            self._open[turn_id] = TurnStats(turn_id)
            while len(self._open) > 50:  # turns that never finished (should not happen)
                self._open.pop(next(iter(self._open)))
        return self._open[turn_id]

    def _stage(self, turn: TurnStats, stage: str, at_ms: int) -> None:
        if turn.started_ms and stage not in turn.stages_ms:
            turn.stages_ms[stage] = at_ms - turn.started_ms
            self.latency.labels(stage).observe(turn.stages_ms[stage] / 1000)

    async def __call__(self, event: Event) -> None:
        if isinstance(event, ErrorEvent):
            self.errors.labels(event.code).inc()
            if event.turn_id in self._open:
                self._open[event.turn_id].error = event.message
        if not event.turn_id:
            return
        if isinstance(event, SpeechEnded):
            self._turn(event.turn_id).started_ms = event.timestamp_ms
        elif isinstance(event, TranscriptionFinal):
            turn = self._turn(event.turn_id)
            turn.source, turn.question = event.source, event.text
            if turn.started_ms:
                self._stage(turn, "transcript", event.timestamp_ms)
            else:
                turn.started_ms = event.timestamp_ms
        elif event.type is EventType.LLM_TOKEN and event.turn_id in self._open:
            self._stage(self._open[event.turn_id], "first_token", event.timestamp_ms)
        elif isinstance(event, LLMComplete) and event.turn_id in self._open:
            self._open[event.turn_id].answer = event.text
        elif event.type is EventType.INTERRUPTED and event.turn_id in self._open:
            self._finish(self._open[event.turn_id], event.timestamp_ms, "interrupted")
        elif isinstance(event, StateChanged):
            for state in State:
                self.state.labels(str(state)).set(1 if str(state) == str(event.new) else 0)
            open_turn = self._open.get(event.turn_id)
            if open_turn is None:
                return
            if event.new == State.SPEAKING:
                self._stage(open_turn, "first_audio", event.timestamp_ms)
            elif event.new == State.IDLE and open_turn.question:
                self._finish(open_turn, event.timestamp_ms,
                             "error" if open_turn.error else "answered")

    def _finish(self, turn: TurnStats, at_ms: int, outcome: str) -> None:
        self._stage(turn, "total", at_ms)
        del self._open[turn.turn_id]
        self.turns.labels(turn.source, outcome).inc()
        self.recent.append(turn)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
