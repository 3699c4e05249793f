"""A turn as the stream of events its caller consumes, against a server that injects faults:
what the caller sees, in order, and that no way of leaving a turn can skip its end."""

from __future__ import annotations

import asyncio

from aiohttp import web

from heisenberg.core.bus import EventBus
from heisenberg.core.errors import AssistantBusyError
from heisenberg.core.events import (
    Event,
    EventType,
    LLMComplete,
    LLMToken,
    StateChanged,
    WakewordDetected,
)
from heisenberg.core.states import State
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.turn import CONTINUED
from tests.conftest import config_for
from tests.test_llm_faults import fake_llm, good_completion, open_sse, sse


def observed(bus: EventBus) -> list[Event]:
    events: list[Event] = []

    async def keep(event: Event) -> None:
        events.append(event)

    bus.subscribe(keep, name="observer")
    return events


async def test_the_caller_gets_the_whole_turn_in_order_and_the_bus_the_same() -> None:
    async with fake_llm(good_completion) as llm:
        bus = EventBus()
        seen = observed(bus)
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        got: list[Event] = []
        async with assistant.turn("What is the capital of France?") as turn:
            async for event in turn:
                got.append(event)
        await bus.drain()
        kinds = [e.type for e in got]
        assert kinds == [EventType.TRANSCRIPTION_FINAL, *[EventType.LLM_TOKEN] * 4,
                         EventType.LLM_COMPLETE, EventType.TURN_ENDED]
        complete = got[-2]
        assert isinstance(complete, LLMComplete) and complete.text == "The capital is Paris."
        assert (complete.prompt_tokens, complete.completion_tokens) == (17, 4)
        assert turn.outcome.answer == "The capital is Paris." and turn.outcome.error is None
        assert {e.turn_id for e in got} == {turn.turn_id}
        # Observers see the same events, each followed by the state change it caused.
        assert [e for e in seen if not isinstance(e, StateChanged)] == got
        changes = [(e.old, e.new) for e in seen if isinstance(e, StateChanged)]
        assert changes == [("idle", "thinking"), ("thinking", "idle")]
        await bus.close()


async def test_a_failure_is_an_error_event_then_the_end() -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = await open_sse(request)
        await resp.write(sse({"content": "Par", "stop": False}))
        return resp  # no stop event

    async with fake_llm(dies) as llm:
        bus = EventBus()
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        async with assistant.turn("Where?") as turn:
            kinds = [event.type async for event in turn]
        assert kinds[-2:] == [EventType.ERROR, EventType.TURN_ENDED]
        assert EventType.LLM_COMPLETE not in kinds
        assert turn.outcome.error is not None and turn.outcome.error.code == "llm_incomplete"
        assert assistant.state is State.IDLE
        await bus.close()


async def slow_answer(request: web.Request) -> web.StreamResponse:
    resp = await open_sse(request)
    for i in range(200):
        await resp.write(sse({"content": f" w{i}", "stop": False}))
        await asyncio.sleep(0.02)
    await resp.write(sse({"content": "", "stop": True}))
    return resp


async def test_a_caller_that_stops_listening_ends_the_turn_and_frees_the_state() -> None:
    async with fake_llm(slow_answer) as llm:
        bus = EventBus()
        seen = observed(bus)
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        async with assistant.turn("Tell me a story.") as turn:
            async for event in turn:
                if isinstance(event, LLMToken) and event.index == 2:
                    break  # the client went away
        await bus.drain()
        assert assistant.state is State.IDLE and not assistant.busy
        tail = [e.type for e in seen if e.turn_id == turn.turn_id][-3:]
        assert tail == [EventType.INTERRUPTED, EventType.TURN_ENDED, EventType.STATE_CHANGED]
        [saved] = assistant.session.get_conversation_history()
        assert saved.outcome == "interrupted" and saved.assistant == " w0 w1 w2"
        # The next question is answered at once.
        outcome = await assistant.ask("Again?")
        assert outcome.error is None and outcome.answer.startswith("w0")
        await bus.close()


async def test_a_cancelled_consumer_cannot_skip_the_end() -> None:
    async with fake_llm(slow_answer) as llm:
        bus = EventBus()
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        started = asyncio.Event()

        async def consume() -> None:
            async with assistant.turn("Tell me a story.") as turn:
                async for event in turn:
                    if isinstance(event, LLMToken):
                        started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 10)
        assert assistant.state is State.THINKING
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled()  # the cancellation reached the caller: not swallowed
        assert assistant.state is State.IDLE and not assistant.busy
        await bus.close()


async def test_a_turn_whose_speaker_went_on_is_kept_out_of_the_prompt() -> None:
    """Cancelled with ``CONTINUED`` (the voice loop's reason when the speaker went on with
    the question): saved as ``continued``, and the next prompt does not hold it; an
    ordinary cancellation is ``interrupted`` and stays in the prompt."""
    async with fake_llm(slow_answer) as llm:
        bus = EventBus()
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        for question, reason in (("What is the capital", CONTINUED), ("Tell me", None)):
            started = asyncio.Event()

            async def consume(question: str = question,
                              started: asyncio.Event = started) -> None:
                async with assistant.turn(question, source="voice") as turn:
                    async for event in turn:
                        if isinstance(event, LLMToken):
                            started.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(started.wait(), 10)
            await cancel_and_wait(task, msg=reason)
        saved = assistant.session.get_conversation_history()
        assert [t.outcome for t in saved] == ["continued", "interrupted"]
        assert [t.user for t in assistant.session.prompt_history()] == ["Tell me"]
        await bus.close()


async def test_a_typed_question_while_the_user_speaks_is_refused_without_running() -> None:
    async with fake_llm(good_completion) as llm:
        bus = EventBus()
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        assistant.record(WakewordDetected(model="hey_jarvis", score=0.9, turn_id="spoken"))
        turn = assistant.turn("Hello?", source="api")
        try:
            async with turn:
                raise AssertionError("the turn must not run")
        except AssistantBusyError as exc:
            assert "listening" in exc.message
        assert not assistant.busy and assistant.state is State.LISTENING
        # The spoken question, once transcribed, runs as usual.
        async with assistant.turn("What is the capital?", source="voice",
                                  turn_id="spoken") as spoken:
            kinds = [e.type async for e in spoken]
        assert kinds[-1] is EventType.TURN_ENDED and assistant.state is State.IDLE
        await bus.close()
