"""Timers: several at once, named or not, on the wall clock, kept in the history store.

    timers = Timers(publish, store)       # on the event loop; stored timers come back
    await timers.start()
    timer = timers.add(300, "pasta")      # TIMER_STARTED; in 5 minutes TIMER_RINGING
    timers.stop_ringing("wake word")      # TIMER_ENDED reason "wake word"

A timer runs on the wall clock (``ends_at_s``), so that it survives a restart: one that ended
while the daemon was down rings as soon as it is back. The wait is re-checked at least every
``CHECK_S`` against the wall clock, because the event loop's monotonic clock stops while the
machine sleeps. A ringing timer rings until it is stopped (the wake word, "stop", the API) or
for ``ring_limit_s`` (from when it was first heard: ``heard``). What makes it heard (an alarm
and a spoken "your 5 minute timer is done") is the voice loop's part, which waits for
``ringing_changed``. Every change is
published (TIMER_STARTED, TIMER_UPDATED, TIMER_RINGING, TIMER_ENDED) and saved from a worker
thread. Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from heisenberg.core.errors import HistoryError, TimerError
from heisenberg.core.events import Event, TimerEnded, TimerRinging, TimerStarted, TimerUpdated
from heisenberg.core.tasks import TaskSet

log = logging.getLogger(__name__)

MAX_TIMERS = 20
"""Timers at once; one more is refused with a message."""
MAX_DURATION_S = 100 * 3600.0
"""The longest timer (Home Assistant's templates go up to 100 hours)."""
MAX_NAME = 60
"""Characters of a timer's name."""
CHECK_S = 30.0
"""A running timer's wait is checked against the wall clock at least this often."""


class TimerStore(Protocol):
    """Where timers are kept across restarts (``HistoryStore`` is one)."""

    def load_timers(self) -> list[dict[str, Any]]: ...

    def save_timers(self, timers: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Timer:
    timer_id: str
    name: str
    """What the user called it ("pasta"); empty for an unnamed timer."""
    duration_s: float
    """The duration asked for, seconds ("the 5 minute timer" finds it by this)."""
    created_s: float
    """Wall-clock seconds when it was set."""
    ends_at_s: float = 0.0
    """Wall-clock seconds when it rings; 0 while paused."""
    left_s: float = 0.0
    """Seconds left when it was paused (0 while it runs)."""
    ringing_since_s: float = 0.0
    """Wall-clock seconds since when it rings; 0 while it has not ended."""

    @property
    def status(self) -> str:
        """running, paused or ringing."""
        if self.ringing_since_s:
            return "ringing"
        return "paused" if not self.ends_at_s else "running"

    def remaining_s(self, now_s: float) -> float:
        if self.ringing_since_s:
            return 0.0
        return self.left_s if not self.ends_at_s else max(0.0, self.ends_at_s - now_s)

    def as_dict(self, now_s: float) -> dict[str, Any]:
        """The API's view: what is stored, with the status and the seconds left."""
        return {**asdict(self), "status": self.status,
                "remaining_s": round(self.remaining_s(now_s), 1)}


def check_timer(duration_s: float, name: str) -> tuple[float, str]:
    """A duration and a name that can be a timer, or a ``TimerError`` naming what is wrong."""
    if not isinstance(duration_s, int | float) or isinstance(duration_s, bool):
        raise TimerError("a timer's duration must be a number of seconds", "range")
    if not 1 <= duration_s <= MAX_DURATION_S:
        raise TimerError(f"a timer lasts from 1 second to {MAX_DURATION_S / 3600:.0f} hours, "
                         f"not {duration_s:g} seconds", "range")
    if not isinstance(name, str) or len(name.strip()) > MAX_NAME:
        raise TimerError(f"a timer's name is text of at most {MAX_NAME} characters", "name")
    return float(duration_s), name.strip()


class Timers:
    def __init__(self, publish: Callable[[Event], None], store: TimerStore | None = None,
                 ring_limit_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        """``publish``: where the timers' events go (the assistant's ``record``).
        ``ring_limit_s``: a timer nobody stops stops ringing after this long."""
        self.publish = publish
        self.store = store
        self.ring_limit_s = ring_limit_s
        self.clock = clock
        self._timers: dict[str, Timer] = {}
        self._waits: dict[str, asyncio.TimerHandle] = {}
        self._heard: set[str] = set()
        """Ringing timers whose ring has been heard (``heard``)."""
        self._saving = TaskSet("timers")
        self._save_lock = asyncio.Lock()
        self.ringing_changed = asyncio.Event()
        """Set whenever a timer starts or stops ringing (the voice loop clears it)."""
        self.store_error: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring back the stored timers (a ringing one rings again; one that ended while the
        daemon was down rings now)."""
        if self.store is None:
            return
        try:
            rows = await asyncio.to_thread(self.store.load_timers)
        except HistoryError as exc:
            self.store_error = exc.message
            log.error("timers: %s; the stored timers are not back", exc.message)
            return
        for row in rows:
            try:
                timer = Timer(**row)
            except TypeError:
                log.warning("timers: a stored timer could not be read (%r); dropped", row)
                continue
            self._timers[timer.timer_id] = replace(timer, ringing_since_s=0.0) \
                if timer.ringing_since_s else timer
            if timer.ringing_since_s:
                self._ring(timer.timer_id)
            elif timer.ends_at_s:
                self._schedule(timer.timer_id)
        if rows:
            log.info("timers: %d back from the store", len(self._timers))

    async def close(self) -> None:
        for handle in self._waits.values():
            handle.cancel()
        self._waits.clear()
        await self._saving.join(5.0)

    # --- what there is --------------------------------------------------------------------

    def all(self) -> list[Timer]:
        """Every timer, the one that rings (or ends) first first."""
        now = self.clock()
        return sorted(self._timers.values(), key=lambda t: (t.status != "ringing",
                                                            t.remaining_s(now)))

    def get(self, timer_id: str) -> Timer | None:
        return self._timers.get(timer_id)

    def ringing(self) -> list[Timer]:
        return [t for t in self.all() if t.status == "ringing"]

    def find(self, name: str = "", duration_s: float = 0.0) -> list[Timer]:
        """The timers called ``name`` or set for ``duration_s`` (every timer without
        either)."""
        found = self.all()
        if name:
            found = [t for t in found if t.name.lower() == name.strip().lower()]
        if duration_s:
            found = [t for t in found if abs(t.duration_s - duration_s) < 0.5]
        return found

    # --- changes --------------------------------------------------------------------------

    def add(self, duration_s: float, name: str = "") -> Timer:
        duration_s, name = check_timer(duration_s, name)
        if len(self._timers) >= MAX_TIMERS:
            raise TimerError(f"there are already {MAX_TIMERS} timers; cancel one first",
                             "too_many")
        now = self.clock()
        timer = Timer(uuid.uuid4().hex[:12], name, duration_s, now, ends_at_s=now + duration_s)
        self._timers[timer.timer_id] = timer
        self._schedule(timer.timer_id)
        self._changed(TimerStarted(**self._fields(timer)))
        return timer

    def cancel(self, timer_id: str, reason: str = "cancelled") -> Timer:
        """Remove a timer (running, paused or ringing)."""
        timer = self._timers.pop(timer_id, None)
        if timer is None:
            raise TimerError(f"no timer {timer_id!r}")
        handle = self._waits.pop(timer_id, None)
        if handle is not None:
            handle.cancel()
        self._heard.discard(timer_id)
        self._changed(TimerEnded(reason=reason, **self._fields(timer)))
        if timer.ringing_since_s:
            self.ringing_changed.set()
        return timer

    def stop_ringing(self, reason: str, heard_only: bool = False) -> list[Timer]:
        """Stop every ringing timer (the wake word, "stop"; with ``heard_only``, those whose
        ring was heard); they are done."""
        return [self.cancel(t.timer_id, reason) for t in self.ringing()
                if not heard_only or t.timer_id in self._heard]

    def heard(self, timer_id: str) -> None:
        """The ring was first heard now (it may have waited for the user's turn): the limit
        counts from here."""
        if timer_id in self._heard or self._timers.get(timer_id) is None:
            return
        self._heard.add(timer_id)
        old = self._waits.pop(timer_id, None)
        if old is not None:
            old.cancel()
        self._waits[timer_id] = asyncio.get_running_loop().call_later(
            self.ring_limit_s, self._give_up, timer_id)

    def pause(self, timer_id: str) -> Timer:
        timer = self._running(timer_id)
        handle = self._waits.pop(timer_id, None)
        if handle is not None:
            handle.cancel()
        return self._update(replace(timer, ends_at_s=0.0,
                                    left_s=timer.remaining_s(self.clock())), "paused")

    def resume(self, timer_id: str) -> Timer:
        timer = self._known(timer_id)
        if timer.status != "paused":
            raise TimerError("that timer is not paused", "not_paused")
        timer = self._update(replace(timer, ends_at_s=self.clock() + timer.left_s,
                                     left_s=0.0), "resumed")
        self._schedule(timer_id)
        return timer

    def change(self, timer_id: str, delta_s: float) -> Timer:
        """Add (or, negative, take away) seconds; a timer cannot go below one second."""
        timer = self._known(timer_id)
        if timer.status == "ringing":
            raise TimerError("that timer has already ended", "ended")
        left = timer.remaining_s(self.clock()) + delta_s
        if not 1 <= left <= MAX_DURATION_S:
            if left < 1:
                raise TimerError("that would leave less than a second on the timer",
                                 "too_short")
            raise TimerError("a timer cannot last over 100 hours", "too_long")
        if timer.status == "paused":
            timer = replace(timer, left_s=left)
        else:
            timer = replace(timer, ends_at_s=self.clock() + left)
        timer = self._update(timer, "changed")
        if timer.ends_at_s:
            self._schedule(timer_id)
        return timer

    # --- inside ---------------------------------------------------------------------------

    def _known(self, timer_id: str) -> Timer:
        timer = self._timers.get(timer_id)
        if timer is None:
            raise TimerError(f"no timer {timer_id!r}")
        return timer

    def _running(self, timer_id: str) -> Timer:
        timer = self._known(timer_id)
        if timer.status != "running":
            raise TimerError(f"that timer is {timer.status}, not running", "not_running")
        return timer

    def _update(self, timer: Timer, change: str) -> Timer:
        self._timers[timer.timer_id] = timer
        self._changed(TimerUpdated(change=change, **self._fields(timer)))
        return timer

    def _fields(self, timer: Timer) -> dict[str, Any]:
        return {"timer_id": timer.timer_id, "name": timer.name,
                "duration_s": timer.duration_s,
                "remaining_s": round(timer.remaining_s(self.clock()), 3),
                "ends_at_ms": round(timer.ends_at_s * 1000)}

    def _schedule(self, timer_id: str) -> None:
        old = self._waits.pop(timer_id, None)
        if old is not None:
            old.cancel()
        timer = self._timers[timer_id]
        wait = min(CHECK_S, max(0.0, timer.ends_at_s - self.clock()))
        self._waits[timer_id] = asyncio.get_running_loop().call_later(
            wait, self._due, timer_id)

    def _due(self, timer_id: str) -> None:
        self._waits.pop(timer_id, None)
        timer = self._timers.get(timer_id)
        if timer is None or timer.status != "running":
            return
        if timer.ends_at_s - self.clock() > 0.001:  # a check on the way (or a slept machine)
            self._schedule(timer_id)
            return
        self._ring(timer_id)

    def _ring(self, timer_id: str) -> None:
        timer = replace(self._timers[timer_id], ringing_since_s=self.clock())
        self._timers[timer_id] = timer
        log.info("timer %s (%s, %.0f s) rings", timer_id, timer.name or "unnamed",
                 timer.duration_s)
        self._changed(TimerRinging(**self._fields(timer)))
        self.ringing_changed.set()
        self._waits[timer_id] = asyncio.get_running_loop().call_later(
            self.ring_limit_s, self._give_up, timer_id)

    def _give_up(self, timer_id: str) -> None:
        self._waits.pop(timer_id, None)
        if timer_id in self._timers:
            log.info("timer %s rang %.0f s without being stopped", timer_id, self.ring_limit_s)
            self.cancel(timer_id, "limit")

    def _changed(self, event: Event) -> None:
        self.publish(event)
        if self.store is not None:
            self._saving.spawn(self._save(), "save")

    async def _save(self) -> None:
        """Write what there is now (the last of several quick changes writes them all)."""
        assert self.store is not None
        async with self._save_lock:
            rows = [asdict(t) for t in self._timers.values()]
            try:
                await asyncio.to_thread(self.store.save_timers, rows)
                self.store_error = None
            except HistoryError as exc:
                if self.store_error is None:
                    log.error("timers: %s", exc.message)
                self.store_error = exc.message
