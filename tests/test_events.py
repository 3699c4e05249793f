from __future__ import annotations

import json
from typing import Any

import pytest

from heisenberg.core.events import EVENT_CLASSES, Event, EventType, event_from_dict

SAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.WAKEWORD_DETECTED: {"model": "hey_jarvis", "score": 0.97},
    EventType.FOLLOW_UP_STARTED: {"window_s": 5.0},
    EventType.VOICE_INTERRUPT: {"onset_ms": 5120, "speech_ms": 96},
    EventType.SPEECH_STARTED: {"audio_ms": 480},
    EventType.SPEECH_ENDED: {"audio_ms": 2100, "duration_ms": 1620},
    EventType.TRANSCRIPTION_FINAL: {"text": "what time is it", "source": "voice"},
    EventType.FRAME_CAPTURED: {"width": 640, "height": 480, "jpeg_bytes": 31000},
    EventType.LLM_TOKEN: {"text": " Paris", "index": 3},
    EventType.LLM_COMPLETE: {"text": "Paris.", "prompt_tokens": 20, "completion_tokens": 3,
                             "first_token_ms": 95.5, "total_ms": 300.0, "stop_reason": "eos",
                             "timings": {"predicted_per_second": 41.5},
                             "server_prompt": "User: Capital of France?\nAssistant:"},
    EventType.TTS_STARTED: {"text": "Paris."},
    EventType.TTS_FINISHED: {"audio_ms": 900},
    EventType.INTERRUPTED: {"reason": "barge_in"},
    EventType.ERROR: {"code": "llm_connection", "message": "refused"},
    EventType.TURN_ENDED: {"outcome": "answered"},
    EventType.STATE_CHANGED: {"old": "idle", "new": "thinking", "reason": "text question"},
    EventType.TIMER_STARTED: {"timer_id": "a1b2", "name": "pasta", "duration_s": 480.0,
                              "remaining_s": 480.0, "ends_at_ms": 1_796_000_000_000},
    EventType.TIMER_UPDATED: {"timer_id": "a1b2", "duration_s": 300.0, "remaining_s": 212.5,
                              "change": "paused"},
    EventType.TIMER_RINGING: {"timer_id": "a1b2", "duration_s": 300.0,
                              "ends_at_ms": 1_796_000_000_000},
    EventType.TIMER_ENDED: {"timer_id": "a1b2", "name": "tea", "duration_s": 120.0,
                            "reason": "wake word"},
}


def test_every_event_type_has_a_class_and_a_sample() -> None:
    assert set(EVENT_CLASSES) == set(EventType) == set(SAMPLES)


@pytest.mark.parametrize("etype", list(EventType))
def test_round_trip_through_json(etype: EventType) -> None:
    event = EVENT_CLASSES[etype](turn_id="t1", timestamp_ms=1234, **SAMPLES[etype])
    data = json.loads(json.dumps(event.to_dict()))
    assert data["type"] == etype.value
    back = event_from_dict(data)
    assert back == event
    assert back.type is etype


def test_events_are_frozen() -> None:
    event = EVENT_CLASSES[EventType.LLM_TOKEN](text="a")
    with pytest.raises(AttributeError):
        event.text = "b"  # type: ignore[attr-defined]


@pytest.mark.parametrize("data", [{"type": "nope"}, {}, {"type": "llm_token", "bogus": 1}])
def test_bad_dicts_are_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        event_from_dict(data)


def test_timestamp_is_milliseconds() -> None:
    import time

    event: Event = EVENT_CLASSES[EventType.INTERRUPTED]()
    assert abs(event.timestamp_ms - time.time() * 1000) < 5000
