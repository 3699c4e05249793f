"""Timers: several at once, named or not; they ring, stop, pause, change and survive a restart
(in the history store); the skills set and report them in words; the API lists, sets and
cancels them. Short real timers (a second or two): assertions are on events and order."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from heisenberg.core.config import HistoryConfig
from heisenberg.core.errors import HistoryError, TimerError
from heisenberg.core.events import (
    Event,
    EventType,
    TimerEnded,
    TimerRinging,
    TimerStarted,
    TimerUpdated,
)
from heisenberg.main import Runtime
from heisenberg.orchestrator.history import HistoryStore
from heisenberg.skills import Skills, Timers
from heisenberg.skills.timers import MAX_TIMERS
from tests.conftest import MakeAPI, RunningServer, config_for
from tests.test_api import call
from tests.test_voice_real import record


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def kinds(events: list[Event]) -> list[tuple[EventType, str]]:
    return [(e.type, getattr(e, "name", "")) for e in events]


async def test_several_timers_ring_in_order_and_stop_after_the_limit() -> None:
    events: list[Event] = []
    timers = Timers(events.append, ring_limit_s=0.5)
    tea = timers.add(1.0, "tea")
    plain = timers.add(2.0)
    long = timers.add(600.0, "pasta")
    assert [t.timer_id for t in timers.all()] == [tea.timer_id, plain.timer_id, long.timer_id]
    assert timers.find("TEA") == [tea] and timers.find(duration_s=2.0) == [plain]
    await until(lambda: len([e for e in events if isinstance(e, TimerEnded)]) == 2)
    assert kinds(events) == [
        (EventType.TIMER_STARTED, "tea"), (EventType.TIMER_STARTED, ""),
        (EventType.TIMER_STARTED, "pasta"), (EventType.TIMER_RINGING, "tea"),
        (EventType.TIMER_ENDED, "tea"), (EventType.TIMER_RINGING, ""),
        (EventType.TIMER_ENDED, "")]
    assert {e.reason for e in events if isinstance(e, TimerEnded)} == {"limit"}
    assert [t.name for t in timers.all()] == ["pasta"]
    await timers.close()


async def test_stopping_pausing_and_changing() -> None:
    events: list[Event] = []
    timers = Timers(events.append, ring_limit_s=30.0)
    first = timers.add(1.0)
    await until(lambda: timers.ringing() == [timers.get(first.timer_id)])
    assert timers.ringing_changed.is_set()
    assert [t.timer_id for t in timers.stop_ringing("wake word")] == [first.timer_id]
    assert isinstance(events[-1], TimerEnded) and events[-1].reason == "wake word"
    assert timers.all() == []
    # A paused timer does not ring; resumed, it rings with the time it had left.
    paused = timers.add(1.0, "eggs")
    timers.pause(paused.timer_id)
    left = timers.get(paused.timer_id)
    assert left is not None and left.status == "paused" and 0.5 < left.left_s <= 1.0
    await asyncio.sleep(1.3)
    assert not timers.ringing()
    with pytest.raises(TimerError, match="paused, not running"):
        timers.pause(paused.timer_id)
    timers.change(paused.timer_id, 60.0)  # while paused: more time left
    changed = timers.get(paused.timer_id)
    assert changed is not None and changed.left_s > 60.0
    timers.change(paused.timer_id, -59.5)
    timers.resume(paused.timer_id)
    await until(lambda: bool(timers.ringing()), 5.0)
    updates = [e.change for e in events if isinstance(e, TimerUpdated)]
    assert updates == ["paused", "changed", "changed", "resumed"]
    with pytest.raises(TimerError, match="less than a second"):
        timers.change(timers.add(30.0).timer_id, -40.0)
    await timers.close()


async def test_bad_timers_are_refused_with_a_reason() -> None:
    timers = Timers(lambda e: None)
    for seconds, name, why in ((0, "", "from 1 second"), (400_000, "", "100 hours"),
                               ("5", "", "number of seconds"), (True, "", "number"),
                               (5, "x" * 61, "60 characters"), (5, 3, "text")):
        with pytest.raises(TimerError, match=why):
            timers.add(seconds, name)  # type: ignore[arg-type]
    for _ in range(MAX_TIMERS):
        timers.add(600)
    with pytest.raises(TimerError, match="already 20 timers"):
        timers.add(600)
    with pytest.raises(TimerError, match="no timer 'nope'"):
        timers.cancel("nope")
    await timers.close()


async def test_timers_survive_a_restart(tmp_path: Path) -> None:
    """Stored with the history: a running timer comes back with the same end, and one that
    ended while the daemon was down rings as soon as it is back."""
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    timers = Timers(lambda e: None, store)
    pasta = timers.add(600.0, "pasta")
    timers.add(1.0, "tea")
    paused = timers.add(300.0)
    timers.pause(paused.timer_id)
    await timers.close()  # the last save is written
    store.close()
    await asyncio.sleep(1.2)  # the tea timer ends while nothing runs

    events: list[Event] = []
    store = HistoryStore(path)
    back = Timers(events.append, store)
    await back.start()
    again = back.get(pasta.timer_id)
    assert again is not None and again.ends_at_s == pasta.ends_at_s
    resumed = back.get(paused.timer_id)
    assert resumed is not None and resumed.status == "paused"
    await until(lambda: [t.name for t in back.ringing()] == ["tea"], 5.0)
    assert isinstance(events[0], TimerRinging) and events[0].name == "tea"
    await back.close()
    store.close()


class BrokenStore:
    """A disk that fails: every save raises (fault injection)."""

    def load_timers(self) -> list[dict[str, Any]]:
        return []

    def save_timers(self, timers: list[dict[str, Any]]) -> None:
        raise HistoryError("the timers could not be saved to /x: disk I/O error")


async def test_a_failing_store_keeps_the_timers_running(
        caplog: pytest.LogCaptureFixture) -> None:
    events: list[Event] = []
    timers = Timers(events.append, BrokenStore(), ring_limit_s=0.3)
    timers.add(1.0)
    await until(lambda: any(isinstance(e, TimerEnded) for e in events))
    assert timers.store_error is not None and "disk I/O error" in timers.store_error
    assert "disk I/O error" in caplog.text
    await timers.close()


async def test_the_skills_set_report_and_cancel_timers_in_words() -> None:
    now = [1_796_000_000.0]  # the timers' wall clock, moved by hand: exact figures
    timers = Timers(lambda e: None, clock=lambda: now[0])
    skills = Skills(timers=timers)

    def said(text: str) -> str:
        answer = skills.answer(text)
        assert answer is not None, text
        return answer.text

    assert said("Set a timer for 5 minutes.") == "Timer set for 5 minutes."
    assert said("Set a pasta timer for 8 minutes.") == "Pasta timer set for 8 minutes."
    assert said("Hey, set a timer for an hour and a half.") == \
        "Timer set for 1 hour and 30 minutes."
    now[0] += 55
    assert said("How much time is left on the pasta timer?") == \
        "Your pasta timer has 7 minutes and 5 seconds left."
    assert said("Cancel my timer.") == ("You have 3 timers: the 5 minute timer, the pasta "
                                        "timer and the timer for 1 hour and 30 minutes. "
                                        "Which one?")
    assert said("Pause the pasta timer.") == "Paused your pasta timer."
    now[0] += 600  # paused: the time does not go down
    assert said("How long is left on the pasta timer?") == \
        "Your pasta timer is paused with 7 minutes and 5 seconds left."
    assert said("Resume the pasta timer.") == "Resumed your pasta timer."
    assert said("Add 2 minutes to the pasta timer.") == \
        "Your pasta timer now has 9 minutes and 5 seconds left."
    assert said("Cancel the 5 minute timer.") == "Cancelled your 5 minute timer."
    assert said("Cancel the eggs timer.") == "There is no eggs timer."
    assert said("Cancel all timers.") == "Cancelled 2 timers."
    assert said("Cancel the timer.") == "There are no timers."
    assert said("Set a timer for 100 hours and 5 minutes.").startswith("I couldn't do that: ")
    # Without timers, timer questions are not skills (they go to the LLM).
    assert Skills().recognize("Set a timer for 5 minutes.") is None
    await timers.close()


async def test_the_api_lists_sets_and_cancels_timers(make_api: MakeAPI) -> None:
    api = await make_api()
    events = record(api.bus)
    status, made, _ = await call(api, "POST", "/api/v1/timers",
                                 json={"seconds": 300, "name": "pasta"})
    assert status == 201 and made["name"] == "pasta" and made["status"] == "running"
    status, listed, _ = await call(api, "GET", "/api/v1/timers")
    assert status == 200 and [t["timer_id"] for t in listed["timers"]] == [made["timer_id"]]
    assert 290 < listed["timers"][0]["remaining_s"] <= 300 and listed["saving"]
    for body, why in (({"seconds": 0}, "from 1 second"), ({}, "missing field 'seconds'"),
                      ({"seconds": 5, "colour": "red"}, "unknown field(s) colour"),
                      ({"seconds": "5"}, "number of seconds")):
        status, refused, _ = await call(api, "POST", "/api/v1/timers", json=body)
        assert status == 400 and why in refused["detail"], (body, refused)
    status, gone, _ = await call(api, "DELETE", f"/api/v1/timers/{made['timer_id']}")
    assert status == 200 and gone["timer_id"] == made["timer_id"]
    status, missing, _ = await call(api, "DELETE", f"/api/v1/timers/{made['timer_id']}")
    assert status == 404 and "no timer" in missing["detail"]
    status, listed, _ = await call(api, "GET", "/api/v1/timers")
    assert listed["timers"] == []
    await api.bus.drain()
    timer_events = [e for e in events if e.type.startswith("timer_")]
    assert [type(e) for e in timer_events] == [TimerStarted, TimerEnded]
    assert isinstance(timer_events[1], TimerEnded) and timer_events[1].reason == "cancelled"


async def test_a_one_shot_command_keeps_its_timers_in_memory(
        llama_server: RunningServer, tmp_path: Path) -> None:
    """Only the daemon stores timers: a one-shot command (``resume=False``) replacing the
    stored rows would drop the daemon's."""
    config = dataclasses.replace(config_for(llama_server.url),
                                 history=HistoryConfig(path=str(tmp_path / "h.sqlite3")))
    async with Runtime(config) as daemon:
        daemon.assistant.timers.add(600.0, "pasta")
        await daemon.assistant.timers.close()
        async with Runtime(config, resume=False) as once:
            assert once.assistant.timers.store is None and once.assistant.timers.all() == []
            once.assistant.timers.add(60.0, "tea")
        store = daemon.assistant.session.store
        assert store is not None
        assert [t["name"] for t in store.load_timers()] == ["pasta"]
