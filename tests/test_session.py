from __future__ import annotations

from heisenberg.orchestrator.session import SessionManager


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_history_and_max_turns() -> None:
    session = SessionManager(timeout_s=0)
    for i in range(5):
        session.add_conversation_turn(f"q{i}", f"a{i}")
    assert [t.user for t in session.get_conversation_history(2)] == ["q3", "q4"]
    assert len(session.get_conversation_history()) == 5
    assert session.get_conversation_history(0) == []


def test_idle_timeout_starts_a_new_session() -> None:
    clock = Clock()
    session = SessionManager(timeout_s=60, clock=clock)
    session.add_conversation_turn("q", "a")
    first_id = session.session_id
    clock.now += 59
    assert len(session.get_conversation_history()) == 1
    clock.now += 61
    assert session.get_conversation_history() == []
    assert session.session_id != first_id


def test_reset_and_interrupted_marker() -> None:
    session = SessionManager()
    session.add_conversation_turn("tell me a story", "Once upon", interrupted=True)
    [turn] = session.prompt_history()
    assert turn.assistant == "Once upon [interrupted]"
    session.reset()
    assert session.get_conversation_history() == []
