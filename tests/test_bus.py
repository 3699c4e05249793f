from __future__ import annotations

import asyncio

from heisenberg.core.bus import EventBus
from heisenberg.core.events import ErrorEvent, Event, EventType, Interrupted, LLMToken, TurnEnded


async def test_delivers_in_order_and_filters_by_type() -> None:
    bus = EventBus()
    got: list[str] = []

    async def handler(event: Event) -> None:
        assert isinstance(event, LLMToken)
        got.append(event.text)

    bus.subscribe(handler, [EventType.LLM_TOKEN])
    for text in "abc":
        bus.publish(LLMToken(text=text))
    bus.publish(TurnEnded(outcome="answered"))
    await bus.drain(timeout_s=2)
    assert got == ["a", "b", "c"]
    await bus.close()


async def test_slow_subscriber_does_not_block_publisher_or_others() -> None:
    bus = EventBus(max_queue=10)
    release = asyncio.Event()
    fast: list[int] = []

    async def slow(event: Event) -> None:
        await release.wait()

    async def quick(event: Event) -> None:
        assert isinstance(event, LLMToken)
        fast.append(event.index)

    slow_sub = bus.subscribe(slow, name="slow")
    bus.subscribe(quick, name="quick", max_queue=1000)
    for i in range(100):
        bus.publish(LLMToken(text="x", index=i))  # must not block
    async with asyncio.timeout(2):
        while len(fast) < 100:
            await asyncio.sleep(0.01)
    assert fast == list(range(100))
    # The slow one kept only its newest events and counted what it dropped.
    assert slow_sub.dropped >= 89
    release.set()
    await bus.drain(timeout_s=2)
    await bus.close()


async def test_failing_subscriber_keeps_receiving_and_others_unaffected() -> None:
    bus = EventBus()
    calls = 0
    ok: list[int] = []

    async def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("subscriber bug")

    async def good(event: Event) -> None:
        assert isinstance(event, LLMToken)
        ok.append(event.index)

    errors: list[Event] = []

    async def collect(event: Event) -> None:
        errors.append(event)

    sub = bus.subscribe(broken, [EventType.LLM_TOKEN], name="broken")
    bus.subscribe(good, [EventType.LLM_TOKEN])
    bus.subscribe(collect, [EventType.ERROR])
    for i in range(3):
        bus.publish(LLMToken(text="x", index=i, turn_id="t1"))
    await bus.drain(timeout_s=2)
    await bus.drain(timeout_s=2)  # the ERROR events published by the failures
    assert calls == 3 and sub.failures == 3
    assert ok == [0, 1, 2]
    # Each failure is reported once on the bus, in the failing event's turn.
    assert [(e.code, e.turn_id) for e in errors if isinstance(e, ErrorEvent)] == [
        ("subscriber", "t1")] * 3
    assert isinstance(errors[0], ErrorEvent)
    assert "broken failed on llm_token: RuntimeError: subscriber bug" in errors[0].message
    await bus.close()


async def test_control_events_overtake_queued_data() -> None:
    bus = EventBus()
    seen: list[str] = []
    gate = asyncio.Event()
    busy = asyncio.Event()

    async def handler(event: Event) -> None:
        busy.set()
        await gate.wait()
        seen.append(event.type.value if not isinstance(event, LLMToken) else event.text)

    bus.subscribe(handler)
    bus.publish(LLMToken(text="t1"))
    await asyncio.wait_for(busy.wait(), 2)
    for text in ("t2", "t3"):
        bus.publish(LLMToken(text=text))
    bus.publish(Interrupted(reason="barge_in"))
    bus.publish(Interrupted(reason="cancelled"))
    gate.set()
    await bus.drain(timeout_s=2)
    # t1 was already being handled; the control events jump ahead of t2 and t3, in order.
    assert seen == ["t1", "interrupted", "interrupted", "t2", "t3"]
    await bus.close()


async def test_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    sub = bus.subscribe(handler)
    await bus.unsubscribe(sub)
    bus.publish(TurnEnded(outcome="answered"))
    await bus.drain(timeout_s=1)
    assert got == []
