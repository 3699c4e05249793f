from __future__ import annotations

import pytest

from heisenberg.core.errors import IllegalTransitionError
from heisenberg.core.states import TRANSITIONS, State, StateMachine


def _machine_in(state: State) -> StateMachine:
    paths = {State.IDLE: [], State.LISTENING: [State.LISTENING],
             State.THINKING: [State.LISTENING, State.THINKING],
             State.SPEAKING: [State.LISTENING, State.THINKING, State.SPEAKING]}
    sm = StateMachine()
    for step in paths[state]:
        sm.transition(step, 0.0)
    return sm


ALL_PAIRS = [(a, b) for a in State for b in State]


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_every_transition(source: State, target: State) -> None:
    sm = _machine_in(source)
    if target in TRANSITIONS[source]:
        step = sm.transition(target, 1.0, "test")
        assert (step.old, step.new, sm.state) == (source, target, target)
    else:
        with pytest.raises(IllegalTransitionError, match=f"{source} -> {target}"):
            sm.transition(target, 1.0)
        assert sm.state is source


def test_the_voice_loop_walks_its_cycle() -> None:
    sm = StateMachine()
    for target in (State.LISTENING, State.THINKING, State.SPEAKING, State.IDLE):
        sm.transition(target, 0.0)
    assert sm.state is State.IDLE


@pytest.mark.parametrize("state", list(State))
def test_reset_always_returns_to_idle(state: State) -> None:
    sm = _machine_in(state)
    step = sm.reset(5.0, "error")
    assert sm.state is State.IDLE
    assert step is None if state is State.IDLE else step is not None and step.old is state


def test_timeouts_are_per_state_and_use_the_callers_clock() -> None:
    sm = StateMachine({State.LISTENING: 10.0, State.THINKING: 30.0}, now_s=100.0)
    assert sm.deadline_s() is None and not sm.timed_out(1e9)
    sm.transition(State.LISTENING, 100.0)
    assert sm.deadline_s() == 110.0
    assert not sm.timed_out(109.9) and sm.timed_out(110.0)
    sm.transition(State.THINKING, 105.0)
    assert sm.deadline_s() == 135.0
