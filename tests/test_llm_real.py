"""The streaming client and the orchestrator against a real llama.cpp server (gemma3-270m)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import pytest

from heisenberg.core.bus import EventBus
from heisenberg.core.config import LLMConfig
from heisenberg.core.events import Event, EventType, LLMComplete
from heisenberg.llm.backend import LLMResult
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from tests.conftest import RunningServer, config_for

pytestmark = pytest.mark.usefixtures("close_llms")

QUESTION = "What is the capital of France?"


async def test_completion_endpoint_streams(llama_server: RunningServer,
                                           llm_config: LLMConfig) -> None:
    llm = LlamaCppLLM(llm_config, llama_server.url)
    prompt = PromptBuilder("plain").build(QUESTION)
    *pieces, result = [p async for p in llm.stream(prompt)]
    await llm.close()
    assert isinstance(result, LLMResult) and all(isinstance(p, str) for p in pieces)
    assert len(pieces) >= 2 and result.text == "".join(pieces) and result.text.strip()
    assert result.server_prompt.endswith(prompt.text)
    assert result.prompt_tokens > 10 and 0 < result.completion_tokens <= 24
    assert "predicted_per_second" in result.timings


async def test_chat_endpoint_streams(llama_server: RunningServer,
                                     llm_config: LLMConfig) -> None:
    llm = LlamaCppLLM(dataclasses.replace(llm_config, endpoint="chat"), llama_server.url)
    result = await llm.complete(PromptBuilder("openai").build(QUESTION))
    await llm.close()
    assert result.text.strip()
    assert result.stop_reason in ("stop", "length")
    assert result.prompt_tokens > 5 and result.completion_tokens > 0


async def _slot_busy(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(url + "/slots") as resp:
        return any(slot["is_processing"] for slot in await resp.json())


async def test_cancel_frees_the_slot(llama_server: RunningServer,
                                     llm_config: LLMConfig) -> None:
    long = dataclasses.replace(llm_config, max_tokens=4000, temperature=1.0)
    llm = LlamaCppLLM(long, llama_server.url)
    prompt = PromptBuilder("plain", system_prompt="").build("Write a very long story.")
    prompt = dataclasses.replace(prompt, stop=[])
    got: list[str] = []

    async def consume() -> None:
        async for piece in llm.stream(prompt):
            got.append(piece)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(60):
        while len(got) < 5:
            if task.done():  # at temperature 1 the small model may end at once: ask again
                await task
                got.clear()
                task = asyncio.create_task(consume())
            await asyncio.sleep(0.01)
    assert await _slot_busy(llama_server.url)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    freed_at = time.monotonic() + 5
    while await _slot_busy(llama_server.url):
        assert time.monotonic() < freed_at, "slot still processing 5 s after cancel"
        await asyncio.sleep(0.05)
    # The single slot serves the next request at once.
    quick = LlamaCppLLM(llm_config, llama_server.url)
    result = await asyncio.wait_for(quick.complete(PromptBuilder("plain").build(QUESTION)), 20)
    assert result.text
    await llm.close()
    await quick.close()


async def test_history_reaches_the_prompt(llama_server: RunningServer) -> None:
    bus = EventBus()
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    bus.subscribe(record)
    config = config_for(llama_server.url)
    llm = LlamaCppLLM(config.llm, llama_server.url)
    assistant = Assistant(config, bus, llm)
    first = await assistant.ask("My name is Zorblax.")
    second = await assistant.ask("What is my name?")
    await bus.drain()
    assert first.error is None and second.error is None
    [*_, last] = [e for e in events if isinstance(e, LLMComplete)]
    server_prompt = last.server_prompt
    assert "User: My name is Zorblax." in server_prompt
    assert f"Assistant: {first.answer}" in server_prompt
    assert server_prompt.rstrip().endswith("User: What is my name?\n\nAssistant:")
    tokens = [e for e in events if e.type is EventType.LLM_TOKEN]
    assert "".join(e.text for e in tokens if e.turn_id == second.turn_id).strip() == second.answer
    states = [(e.old, e.new) for e in events if e.type is EventType.STATE_CHANGED]
    assert states == [("idle", "thinking"), ("thinking", "idle")] * 2
    await llm.close()
    await bus.close()


async def test_the_prompt_prefix_is_reused_between_turns(llama_server: RunningServer,
                                                         llm_config: LLMConfig) -> None:
    # Gemma 3 uses sliding-window attention: without server.swa_full the server evaluates the
    # whole prompt again on every turn (cache_n 0).
    llm = LlamaCppLLM(llm_config, llama_server.url)
    builder = PromptBuilder("plain")
    first = await llm.complete(builder.build("What is the capital of France?"))
    second = await llm.complete(builder.build("How many legs does a spider have?"))
    await llm.close()
    system_tokens = first.prompt_tokens - 15  # the system prompt is most of it
    assert second.timings["cache_n"] >= system_tokens > 10
    assert second.timings["prompt_n"] < second.prompt_tokens
