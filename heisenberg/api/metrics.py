"""Per-turn figures from the bus: the dashboard's recent turns and Prometheus metrics.

A turn's stages are measured from the events' timestamps (milliseconds, wall clock): from the
end of speech (voice) or the question (typed, API) to the transcript, the first token, the
first audio (state SPEAKING) and the end of the turn.
"""

from __future__ import annotations

import collections

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from heisenberg.core.events import ErrorEvent, Event, StateChanged, TurnEnded, WakewordDetected
from heisenberg.core.latency import TurnRecord
from heisenberg.core.states import State


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
        self.recent: collections.deque[TurnRecord] = collections.deque(maxlen=keep)
        self._open: dict[str, TurnRecord] = {}

    def _turn(self, turn_id: str) -> TurnRecord:
        if turn_id not in self._open:
            self._open[turn_id] = TurnRecord(turn_id)
            while len(self._open) > 50:  # turns that never finished (should not happen)
                self._open.pop(next(iter(self._open)))
        return self._open[turn_id]

    async def __call__(self, event: Event) -> None:
        if isinstance(event, ErrorEvent):
            self.errors.labels(event.code).inc()
        if isinstance(event, StateChanged):
            for state in State:
                self.state.labels(str(state)).set(1 if str(state) == str(event.new) else 0)
            return
        if not event.turn_id or isinstance(event, WakewordDetected):
            return
        turn = self._turn(event.turn_id)
        stage = turn.observe(event)
        if stage is not None:
            self.latency.labels(stage).observe(turn.seconds(stage))
        if isinstance(event, TurnEnded):
            del self._open[turn.turn_id]
            if turn.question:  # a wake word with nothing after it is not a turn
                self.turns.labels(turn.source, turn.outcome).inc()
                self.recent.append(turn)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
