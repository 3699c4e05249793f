from __future__ import annotations

import asyncio

import pytest

from heisenberg.core.events import (
    EVENT_CLASSES,
    Event,
    EventType,
    FollowUpStarted,
    StateChanged,
    TranscriptionFinal,
    TTSStarted,
    TurnEnded,
    VoiceInterrupt,
    WakewordDetected,
)
from heisenberg.core.states import TRANSITIONS, Current, State, StateKeeper, next_state, reason
from tests.test_events import SAMPLES


def every_event(turn_id: str) -> list[Event]:
    return [EVENT_CLASSES[t](turn_id=turn_id, **SAMPLES[t]) for t in EventType]


CURRENTS = [Current(), *(Current(s, "a") for s in State if s is not State.IDLE)]


@pytest.mark.parametrize("current", CURRENTS, ids=lambda c: str(c.state))
@pytest.mark.parametrize("turn_id", ["a", "b", ""])
def test_every_event_in_every_state_makes_an_allowed_move(current: Current,
                                                          turn_id: str) -> None:
    for event in every_event(turn_id):
        after = next_state(current, event)
        assert after.state in {current.state, *TRANSITIONS[current.state]}, (current, event)
        if after.state is State.IDLE:
            assert after.turn_id == ""


def test_a_voice_turn_walks_the_cycle() -> None:
    current = Current()
    for event, state in [(WakewordDetected(model="hey_jarvis", score=0.9, turn_id="v"),
                          State.LISTENING),
                         (TranscriptionFinal(text="hi", source="voice", turn_id="v"),
                          State.THINKING),
                         (TTSStarted(text="Hello.", turn_id="v"), State.SPEAKING),
                         (TurnEnded(outcome="answered", turn_id="v"), State.IDLE)]:
        current = next_state(current, event)
        assert current.state is state


def test_a_turn_that_lost_the_state_cannot_move_it() -> None:
    """A typed answer that ends (or starts speaking) while the user is speaking."""
    current = next_state(Current(), TranscriptionFinal(text="hi", source="api", turn_id="t"))
    assert current == Current(State.THINKING, "t")
    current = next_state(current, WakewordDetected(model="m", score=1.0, turn_id="v"))
    assert current == Current(State.LISTENING, "v")
    for event in (TTSStarted(turn_id="t"), TurnEnded(outcome="answered", turn_id="t"),
                  TranscriptionFinal(text="again", source="api", turn_id="t2")):
        assert next_state(current, event) == current


def test_a_follow_up_listens_only_from_idle() -> None:
    """After an answer the window opens (LISTENING for its own turn; silence ends it); a
    typed question that got there first keeps the state."""
    after = next_state(Current(), FollowUpStarted(window_s=5.0, turn_id="f"))
    assert after == Current(State.LISTENING, "f")
    assert next_state(after, TurnEnded(outcome="no_speech", turn_id="f")) == Current()
    thinking = Current(State.THINKING, "t")
    assert next_state(thinking, FollowUpStarted(window_s=5.0, turn_id="f")) == thinking


def test_barge_in_goes_straight_back_to_listening() -> None:
    speaking = Current(State.SPEAKING, "v1")
    after = next_state(speaking, WakewordDetected(model="m", score=1.0, turn_id="v2"))
    assert after == Current(State.LISTENING, "v2")
    # The cancelled turn's end does not touch the new one.
    assert next_state(after, TurnEnded(outcome="interrupted", turn_id="v1")) == after


def test_speaking_over_the_answer_is_a_barge_in() -> None:
    """With ``session.interrupt_speech_ms`` the user's voice alone takes the state, as a wake
    word would, and says why."""
    speaking = Current(State.SPEAKING, "v1")
    event = VoiceInterrupt(onset_ms=4000, speech_ms=96, turn_id="v2")
    after = next_state(speaking, event)
    assert after == Current(State.LISTENING, "v2")
    assert reason(event) == "voice interruption"
    assert next_state(after, TurnEnded(outcome="interrupted", turn_id="v1")) == after


async def test_the_keeper_publishes_the_event_then_the_change() -> None:
    published: list[Event] = []
    keeper = StateKeeper(published.append)
    keeper.record(TranscriptionFinal(text="hi", source="text", turn_id="t"))
    keeper.record(TTSStarted(turn_id="other"))  # not the state's turn: no change
    keeper.record(TurnEnded(outcome="answered", turn_id="t"))
    kinds = [(e.type, getattr(e, "new", None)) for e in published]
    assert kinds == [(EventType.TRANSCRIPTION_FINAL, None),
                     (EventType.STATE_CHANGED, State.THINKING),
                     (EventType.TTS_STARTED, None),
                     (EventType.TURN_ENDED, None),
                     (EventType.STATE_CHANGED, State.IDLE)]
    changes = [e for e in published if isinstance(e, StateChanged)]
    assert [c.reason for c in changes] == ["text question", "answered"]
    assert keeper.state is State.IDLE


async def test_waiting_while_listening_ends_with_the_listening() -> None:
    keeper = StateKeeper(lambda event: None)
    assert await keeper.wait_while(State.LISTENING, 0.01)  # not listening: at once
    keeper.record(WakewordDetected(model="m", score=1.0, turn_id="v"))
    assert not await keeper.wait_while(State.LISTENING, 0.01)
    waiter = asyncio.create_task(keeper.wait_while(State.LISTENING, 5.0))
    await asyncio.sleep(0)
    keeper.record(TranscriptionFinal(text="hi", source="voice", turn_id="v"))
    assert await asyncio.wait_for(waiter, 5.0)
