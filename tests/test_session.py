from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from heisenberg.llm.prompts import PromptBuilder
from heisenberg.orchestrator.history import ConversationTurn, HistoryError, HistoryStore
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


def test_memory_keeps_what_a_restart_would_load(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    session = SessionManager(timeout_s=0, store=store, max_loaded=3)
    for i in range(10):  # a daemon that runs for months must not hold every turn
        session.add_conversation_turn(f"q{i}", f"a{i}")
    assert [t.user for t in session.get_conversation_history()] == ["q7", "q8", "q9"]
    assert store.count() == 10  # the store keeps them all
    store.close()


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


def test_named_conversations_are_kept_apart_from_each_other_and_the_current_one() -> None:
    clock = Clock()
    session = SessionManager(timeout_s=60, clock=clock, max_sessions=2)
    session.add_conversation_turn("I am Alice.", "Hi Alice.", session_id="alice")
    session.add_conversation_turn("I am Bob.", "Hi Bob.", session_id="bob")
    session.add_conversation_turn("Spoken question", "Spoken answer")
    session.add_conversation_turn("Who am I?", "Alice.", session_id="alice")
    assert [t.user for t in session.prompt_history(session_id="alice")] == [
        "I am Alice.", "Who am I?"]
    assert [t.user for t in session.prompt_history(session_id="bob")] == ["I am Bob."]
    assert [t.user for t in session.prompt_history()] == ["Spoken question"]
    assert session.get_conversation_history(session_id=session.session_id) == \
        session.get_conversation_history()

    assert len(session.get_conversation_history(session_id="alice")) == 2  # bob is the LRU
    session.add_conversation_turn("I am Carol.", "Hi Carol.", session_id="carol")
    # Without a store, the least recently used of more than max_sessions is forgotten.
    assert session.get_conversation_history(session_id="bob") == []

    clock.now += 61  # idle too long: a named conversation starts again under its name
    assert session.get_conversation_history(session_id="alice") == []
    session.add_conversation_turn("Again", "Yes", session_id="alice")
    assert [t.user for t in session.get_conversation_history(session_id="alice")] == ["Again"]


# --- persistence ---------------------------------------------------------------------------

def test_turns_survive_a_restart_and_continue_the_session(tmp_path: Path) -> None:
    clock = Clock()
    store = HistoryStore(tmp_path / "h.sqlite3")
    first = SessionManager(timeout_s=600, clock=clock, store=store)
    first.add_conversation_turn("What is the capital of France?", "Paris.")
    first.add_conversation_turn("And of Italy?", "Rome.", interrupted=True)
    store.close()

    clock.now += 60  # restarted a minute later: the same conversation goes on
    store = HistoryStore(tmp_path / "h.sqlite3")
    again = SessionManager(timeout_s=600, clock=clock, store=store)
    assert again.session_id == first.session_id
    assert [(t.user, t.assistant, t.interrupted) for t in again.get_conversation_history()] == [
        ("What is the capital of France?", "Paris.", False), ("And of Italy?", "Rome.", True)]
    store.close()

    clock.now += 3600  # an hour later: a new session, but the turns are still on disk
    store = HistoryStore(tmp_path / "h.sqlite3")
    later = SessionManager(timeout_s=600, clock=clock, store=store)
    assert later.get_conversation_history() == []
    assert store.count() == 2
    assert later.clear() == 2 and store.count() == 0
    store.close()


def test_named_conversations_come_back_from_the_store(tmp_path: Path) -> None:
    clock = Clock()
    store = HistoryStore(tmp_path / "h.sqlite3")
    first = SessionManager(timeout_s=600, clock=clock, store=store, max_sessions=1)
    first.add_conversation_turn("I am Alice.", "Hi Alice.", session_id="alice")
    first.add_conversation_turn("I am Bob.", "Hi Bob.", session_id="bob")  # alice evicted
    first.add_conversation_turn("Spoken question", "Spoken answer")
    assert [t.user for t in first.get_conversation_history(session_id="alice")] == [
        "I am Alice."]  # read back from the store
    store.close()

    clock.now += 60
    store = HistoryStore(tmp_path / "h.sqlite3")
    again = SessionManager(timeout_s=600, clock=clock, store=store)
    assert again.session_id == first.session_id  # the current conversation goes on
    assert [t.user for t in again.get_conversation_history()] == ["Spoken question"]
    assert [t.user for t in again.get_conversation_history(session_id="bob")] == ["I am Bob."]
    assert [s for s, _ in store.recent(session_id="alice")] == ["alice"]
    store.close()


def test_retention_by_turns_and_days(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3", max_turns=3, max_days=1)
    now = time.time()
    for i, age_days in enumerate([5, 0.5, 0.4, 0.3, 0.2, 0.1]):
        store.append(ConversationTurn(f"q{i}", f"a{i}", now - age_days * 86400), "s")
    store.prune()
    assert [t.user for _, t in store.recent()] == ["q3", "q4", "q5"]
    store.close()


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="history store"):
        HistoryStore(blocker / "sub" / "h.sqlite3")


WRITER = """
import sys, time
from pathlib import Path
from heisenberg.orchestrator.history import HistoryStore
from heisenberg.orchestrator.history import ConversationTurn
store = HistoryStore(Path(sys.argv[1]))
i = store.count()
while True:
    store.append(ConversationTurn(f"question {i}", "answer " * 4000, time.time()), "s")
    i += 1
    print(i, flush=True)
"""


def test_kill_9_during_writes_never_corrupts_the_store(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(7)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(script), str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        committed = 0
        target = rng.randint(5, 60)
        while committed < target:
            line = proc.stdout.readline()
            assert line, "the writer died on its own"
            committed = int(line)
        proc.send_signal(signal.SIGKILL)  # mid-write, most likely: it writes non-stop
        proc.wait(10)
        proc.stdout.close()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        store = HistoryStore(path)
        assert store.count() >= committed  # every acknowledged turn is there
        turns = store.recent(5)
        assert all(t.assistant == "answer " * 4000 for _, t in turns)  # none torn
        store.close()


def test_seed_004s_example_runs_as_written() -> None:
    """docs: ../shared/seeds/004 "Gestion de l'historique", verbatim but for the setup."""
    session = SessionManager()
    builder = PromptBuilder("plain")
    current_query = "Et celle de l'Italie ?"
    # SessionManager stocke les tours de conversation
    session.add_turn(
        user_query="Quelle est la capitale de la France ?",
        assistant_response="La capitale de la France est Paris."
    )

    # PromptBuilder construit le prompt avec contexte
    history = session.get_history(max_turns=5)
    prompt = builder.build(history, current_query)
    assert prompt.text.endswith("User: Quelle est la capitale de la France ?\n\nAssistant: "
                                "La capitale de la France est Paris.\n\n"
                                "User: Et celle de l'Italie ?\n\nAssistant:")
    assert prompt == builder.build(current_query, history)  # the usual order, same prompt
    with pytest.raises(TypeError):
        builder.build(history, history)  # type: ignore[arg-type]
