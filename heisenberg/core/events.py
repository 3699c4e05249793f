"""Events carried by the bus: small frozen dataclasses tagged by ``EventType``.

Every event serialises to a JSON-ready dict (``to_dict``) and back (``event_from_dict``), which
is what the WebSocket API streams. Units are in the field names and docstrings.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class EventType(StrEnum):
    WAKEWORD_DETECTED = "wakeword_detected"
    FOLLOW_UP_STARTED = "follow_up_started"
    VOICE_INTERRUPT = "voice_interrupt"
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    TRANSCRIPTION_FINAL = "transcription_final"
    FRAME_CAPTURED = "frame_captured"
    LLM_TOKEN = "llm_token"
    LLM_COMPLETE = "llm_complete"
    TTS_STARTED = "tts_started"
    TTS_FINISHED = "tts_finished"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    TURN_ENDED = "turn_ended"
    STATE_CHANGED = "state_changed"
    TIMER_STARTED = "timer_started"
    TIMER_UPDATED = "timer_updated"
    TIMER_RINGING = "timer_ringing"
    TIMER_ENDED = "timer_ended"


#: Control events overtake queued data events in every subscriber's queue.
CONTROL_EVENTS = frozenset({EventType.INTERRUPTED})


def now_ms() -> int:
    """Wall-clock milliseconds, the timestamp unit of every event."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[EventType]
    turn_id: str = ""
    """The turn this event belongs to; empty outside a turn."""
    timestamp_ms: int = field(default_factory=now_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"type": str(self.type), **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True)
class WakewordDetected(Event):
    type: ClassVar[EventType] = EventType.WAKEWORD_DETECTED
    model: str
    score: float
    """Highest model score of the triggering frames, 0..1."""
    verifier: float | None = None
    """The second stage's probability, 0..1; None when the model has no verifier."""
    stage: str = "score"
    """What confirmed it: ``score`` (no verifier), ``verifier``, or, where the verifier was
    unsure, ``acoustic`` (whisper's encoder heard the wake phrase) or ``transcript``
    (whisper's words held it)."""
    check: float | None = None
    """The acoustic check's probability, when it was asked."""
    transcript: str | None = None
    """What the transcript check heard, when it was asked."""


@dataclass(frozen=True, kw_only=True)
class FollowUpStarted(Event):
    """After an answer it listens again without the wake word: speech in the window is a
    new question of the same conversation (``turn_id`` is that question's); silence ends it
    with TURN_ENDED ``no_speech``."""

    type: ClassVar[EventType] = EventType.FOLLOW_UP_STARTED
    window_s: float
    """How long it listens for the start of speech, seconds."""


@dataclass(frozen=True, kw_only=True)
class VoiceInterrupt(Event):
    """The user started speaking over the assistant's answer (``session.interrupt_speech_ms``,
    with echo cancellation): the answer stops as after a wake word, and what they say is the
    new question (``turn_id`` is its turn). Or they went on with the question just after
    its end was decided (``continues``): the answer stops and the new turn hears the whole
    question."""

    type: ClassVar[EventType] = EventType.VOICE_INTERRUPT
    onset_ms: int
    """Audio time at which their speech began, milliseconds on the microphone's clock."""
    speech_ms: int
    """The speech heard before deciding, milliseconds."""
    continues: str = ""
    """The turn whose question this speech goes on (``stt.resume_window_ms``: it came just
    after that question's end was decided); empty for a new question."""


@dataclass(frozen=True, kw_only=True)
class SpeechStarted(Event):
    type: ClassVar[EventType] = EventType.SPEECH_STARTED
    audio_ms: int = 0
    """Audio time of the start of speech, milliseconds since listening began."""


@dataclass(frozen=True, kw_only=True)
class SpeechEnded(Event):
    type: ClassVar[EventType] = EventType.SPEECH_ENDED
    audio_ms: int = 0
    """Audio time of the end-of-speech decision, milliseconds since listening began."""
    duration_ms: int = 0
    """Length of the captured utterance."""
    reason: str = "silence"
    """Why it ended: ``silence``, ``max_length`` (``stt.max_utterance_s``) or
    ``end_of_input`` (the audio source ended mid-utterance)."""


@dataclass(frozen=True, kw_only=True)
class TranscriptionFinal(Event):
    type: ClassVar[EventType] = EventType.TRANSCRIPTION_FINAL
    text: str
    source: str = "voice"
    """``voice`` (speech-to-text), ``text`` (typed) or ``api``."""


@dataclass(frozen=True, kw_only=True)
class FrameCaptured(Event):
    type: ClassVar[EventType] = EventType.FRAME_CAPTURED
    width: int
    height: int
    jpeg_bytes: int
    """Size of the encoded JPEG in bytes (the image itself is not on the bus)."""


@dataclass(frozen=True, kw_only=True)
class LLMToken(Event):
    type: ClassVar[EventType] = EventType.LLM_TOKEN
    text: str
    index: int = 0
    """0-based position of this piece in the answer."""


@dataclass(frozen=True, kw_only=True)
class LLMComplete(Event):
    type: ClassVar[EventType] = EventType.LLM_COMPLETE
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_ms: float = 0.0
    """Milliseconds from request to the first token."""
    total_ms: float = 0.0
    stop_reason: str = ""
    timings: dict[str, Any] = field(default_factory=dict)
    """The server's own figures, when it reports them (llama.cpp: ``predicted_per_second``)."""
    server_prompt: str = ""
    """The prompt as the server saw it, when it echoes it (llama.cpp ``/completion``)."""
    image_dropped: str = ""
    """Why the question's image did not reach the model (empty: it did, or there was none)."""


@dataclass(frozen=True, kw_only=True)
class TTSStarted(Event):
    """The first audio sample of the answer went to the speaker."""

    type: ClassVar[EventType] = EventType.TTS_STARTED
    text: str = ""
    """The sentence that starts playing."""


@dataclass(frozen=True, kw_only=True)
class TTSFinished(Event):
    type: ClassVar[EventType] = EventType.TTS_FINISHED
    audio_ms: int = 0
    """Milliseconds of audio played."""


@dataclass(frozen=True, kw_only=True)
class Interrupted(Event):
    type: ClassVar[EventType] = EventType.INTERRUPTED
    reason: str = "barge_in"


@dataclass(frozen=True, kw_only=True)
class TurnEnded(Event):
    """The last event of every turn (and of a listening that heard no question)."""

    type: ClassVar[EventType] = EventType.TURN_ENDED
    outcome: str
    """``answered``, ``failed``, ``interrupted``, ``empty`` (nothing intelligible was said),
    ``dismissed`` ("stop", "never mind": nothing asked of the LLM) or ``no_speech`` (the
    wake word, then silence)."""


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[EventType] = EventType.ERROR
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    type: ClassVar[EventType] = EventType.STATE_CHANGED
    old: str
    new: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class TimerEvent(Event):
    """What every timer event says of its timer (``skills/timers.py``)."""

    timer_id: str
    name: str = ""
    """What the user called it; empty for an unnamed timer."""
    duration_s: float
    """The duration it was set for, seconds."""
    remaining_s: float = 0.0
    """Seconds left when the event was made."""
    ends_at_ms: int = 0
    """Wall-clock milliseconds when it rings; 0 while paused (or once it rang)."""


@dataclass(frozen=True, kw_only=True)
class TimerStarted(TimerEvent):
    type: ClassVar[EventType] = EventType.TIMER_STARTED


@dataclass(frozen=True, kw_only=True)
class TimerUpdated(TimerEvent):
    type: ClassVar[EventType] = EventType.TIMER_UPDATED
    change: str
    """``paused``, ``resumed`` or ``changed`` (time added or taken away)."""


@dataclass(frozen=True, kw_only=True)
class TimerRinging(TimerEvent):
    """The timer ended: it rings until it is stopped or for ``skills.timer_ring_s``."""

    type: ClassVar[EventType] = EventType.TIMER_RINGING


@dataclass(frozen=True, kw_only=True)
class TimerEnded(TimerEvent):
    """The timer is gone."""

    type: ClassVar[EventType] = EventType.TIMER_ENDED
    reason: str
    """``cancelled`` (before it rang), ``continued`` (set by a question whose speaker went
    on: the whole question is asked again), ``limit`` (it rang ``skills.timer_ring_s``
    unstopped), or what stopped its ringing: ``stop`` (said), ``wake word``, ``voice`` (a
    question asked over it) or ``api``."""


EVENT_CLASSES: dict[EventType, type[Event]] = {
    cls.type: cls
    for cls in (WakewordDetected, FollowUpStarted, VoiceInterrupt, SpeechStarted, SpeechEnded,
                TranscriptionFinal, FrameCaptured, LLMToken, LLMComplete, TTSStarted,
                TTSFinished, Interrupted, ErrorEvent, TurnEnded, StateChanged, TimerStarted,
                TimerUpdated, TimerRinging, TimerEnded)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of ``Event.to_dict``; an unknown type or field raises ``ValueError``."""
    fields = dict(data)
    try:
        cls = EVENT_CLASSES[EventType(fields.pop("type"))]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not an event: {data!r}") from exc
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"bad fields for {cls.type}: {exc}") from exc
