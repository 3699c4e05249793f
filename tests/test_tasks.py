from __future__ import annotations

import asyncio

import pytest

from heisenberg.core.tasks import TaskSet, cancel_and_wait


async def slow_to_stop(stopped: asyncio.Event, cleanup_s: float) -> None:
    """A task whose cleanup takes a while (closing a stream, stopping playback)."""
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(cleanup_s)
        stopped.set()


async def test_cancel_and_wait_waits_for_the_cleanup() -> None:
    stopped = asyncio.Event()
    task = asyncio.create_task(slow_to_stop(stopped, 0.05))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and stopped.is_set()
    await cancel_and_wait(task)  # done already: nothing to do
    await cancel_and_wait(None)


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    stopped = asyncio.Event()
    inner = asyncio.create_task(slow_to_stop(stopped, 1.0))
    reached_the_end = False

    async def caller() -> None:
        nonlocal reached_the_end
        await cancel_and_wait(inner, timeout_s=5.0)
        reached_the_end = True

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0.05)  # the caller is waiting for the inner cleanup
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not reached_the_end  # the old `suppress(CancelledError)` pattern got here
    await asyncio.wait_for(stopped.wait(), 5.0)


async def test_a_failure_or_result_is_consumed() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # no "exception was never retrieved" later
    assert isinstance(task.exception(), RuntimeError)


async def test_a_task_set_keeps_its_tasks_and_closes_them_all() -> None:
    tasks = TaskSet("test")
    stopped = [asyncio.Event() for _ in range(3)]
    for i, event in enumerate(stopped):
        tasks.spawn(slow_to_stop(event, 0.01), f"t{i}")
    done = tasks.spawn(asyncio.sleep(0), "quick")
    await done
    assert len(tasks) == 3 and {t.get_name() for t in tasks} == {"test:t0", "test:t1",
                                                                 "test:t2"}
    await tasks.close()
    assert len(tasks) == 0 and all(e.is_set() for e in stopped)
