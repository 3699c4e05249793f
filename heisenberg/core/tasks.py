"""Cancelling tasks without losing a cancellation, and a set of tasks that is closed as one.

pipecat's ``TaskManager.cancel_task`` cancels *and awaits* with a timeout; the trap it avoids is
``task.cancel(); with suppress(CancelledError): await task``, which also swallows the
cancellation of the task doing the waiting (a barge-in or a shutdown that then never happens).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Future[Any] | None, timeout_s: float = 2.0,
                          msg: str | None = None) -> None:
    """Cancel ``task`` and wait (up to ``timeout_s``) until it has finished. ``msg``: the
    reason, which the task sees as its ``CancelledError``'s argument.

    Whatever the task ends with (cancelled, a result, an exception) is consumed. A
    cancellation of the caller while it waits is not: ``asyncio.wait`` never raises the
    awaited task's own outcome, so a ``CancelledError`` from it is always the caller's and
    propagates.
    """
    if task is None:
        return
    if not task.done():
        task.cancel(msg)
        await asyncio.wait({task}, timeout=timeout_s)
        if not task.done():
            log.warning("task %s did not stop within %.1f s", task, timeout_s)
            return
    if not task.cancelled():
        task.exception()  # retrieved: nobody else will ask


class TaskSet:
    """Tasks that belong to one owner: a reference is kept to each (the loop only keeps weak
    ones), failures are logged, and ``close`` cancels and awaits every one still running."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s failed: %s: %s", task.get_name(), type(exc).__name__, exc,
                      exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def join(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) for the tasks to finish on their own."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def close(self, timeout_s: float = 2.0) -> None:
        for task in list(self._tasks):
            await cancel_and_wait(task, timeout_s)
