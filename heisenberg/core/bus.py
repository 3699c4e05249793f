"""The event bus: publish never blocks, every subscriber has its own queue and task.

A slow subscriber only delays itself (its bounded queue drops its oldest *data* events when
full), a failing one is logged and keeps receiving, and control events (interrupt) are
delivered before any queued data event.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable

from heisenberg.core.events import CONTROL_EVENTS, ErrorEvent, Event, EventType
from heisenberg.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]


class Subscription:
    """One subscriber: a handler, the event types it wants, and its own queue and task."""

    def __init__(self, name: str, handler: Handler, types: frozenset[EventType] | None,
                 max_queue: int) -> None:
        self.name = name
        self.handler = handler
        self.types = types
        self.max_queue = max_queue
        self.dropped = 0
        self.failures = 0
        self._control: collections.deque[Event] = collections.deque()
        self._data: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.on_failure: Callable[[Event], None] | None = None
        """Called with an ERROR event when the handler raises (the bus publishes it)."""

    def wants(self, event: Event) -> bool:
        return self.types is None or event.type in self.types

    def offer(self, event: Event) -> None:
        if event.type in CONTROL_EVENTS:
            self._control.append(event)
        else:
            if len(self._data) >= self.max_queue:
                self._data.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("bus: subscriber %s is too slow, %d events dropped",
                                self.name, self.dropped)
            self._data.append(event)
        self._idle.clear()
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus:{self.name}")

    async def _run(self) -> None:
        while True:
            if not self._control and not self._data:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._control.popleft() if self._control else self._data.popleft()
            try:
                await self.handler(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.exception("bus: subscriber %s failed on %s", self.name, event.type)
                if self.on_failure is not None and event.type is not EventType.ERROR:
                    self.on_failure(ErrorEvent(
                        code="subscriber", turn_id=event.turn_id,
                        message=f"subscriber {self.name} failed on {event.type}: "
                                f"{type(exc).__name__}: {exc}"))

    async def drained(self) -> None:
        await self._idle.wait()

    async def close(self, timeout_s: float) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout_s)


class EventBus:
    def __init__(self, max_queue: int = 1000) -> None:
        self._subs: list[Subscription] = []
        self._max_queue = max_queue

    def subscribe(self, handler: Handler, types: Iterable[EventType] | None = None,
                  name: str | None = None, max_queue: int | None = None) -> Subscription:
        """Register ``handler`` for ``types`` (all types when None). Needs a running loop."""
        label = name or str(getattr(handler, "__qualname__", repr(handler)))
        sub = Subscription(label, handler,
                           frozenset(types) if types is not None else None,
                           max_queue or self._max_queue)
        sub.on_failure = self.publish
        sub.start()
        self._subs.append(sub)
        return sub

    async def unsubscribe(self, sub: Subscription, timeout_s: float = 1.0) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        await sub.close(timeout_s)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every interested subscriber; never blocks, never raises."""
        for sub in self._subs:
            if sub.wants(event):
                sub.offer(event)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every subscriber has handled what was published so far."""
        async with asyncio.timeout(timeout_s):
            for sub in list(self._subs):
                await sub.drained()

    async def close(self, timeout_s: float = 1.0) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.close(timeout_s)
