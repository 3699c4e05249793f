"""The streaming client against a local aiohttp server that injects every fault."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from heisenberg.core.bus import EventBus
from heisenberg.core.config import LLMConfig
from heisenberg.core.errors import (
    LLMConnectionError,
    LLMIncompleteError,
    LLMLoadingError,
    LLMProtocolError,
    LLMServerError,
    LLMStallError,
)
from heisenberg.core.events import Event, EventType
from heisenberg.core.states import State
from heisenberg.llm.backend import LLMResult, SpeakerTurnGuard
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from tests.conftest import config_for, free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROMPT = PromptBuilder("plain").build("What is the capital of France?")


def sse(payload: Any) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


async def open_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


async def good_completion(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    resp = await open_sse(request)
    for piece in ["The", " capital", " is", " Paris."]:
        await resp.write(sse({"content": piece, "stop": False}))
    await resp.write(sse({"content": "", "stop": True, "tokens_predicted": 4,
                          "tokens_evaluated": 17, "stop_type": "eos", "prompt": body["prompt"],
                          "timings": {"prompt_n": 17, "predicted_n": 4}}))
    return resp


async def good_chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    assert body["stream"] is True and body["messages"][-1]["role"] == "user"
    resp = await open_sse(request)
    for piece in ["Par", "is."]:
        await resp.write(sse({"choices": [{"index": 0, "delta": {"content": piece},
                                           "finish_reason": None}]}))
    await resp.write(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    await resp.write(sse({"choices": [], "usage": {"prompt_tokens": 12,
                                                   "completion_tokens": 2}}))
    await resp.write(sse("[DONE]"))
    return resp


@contextlib.asynccontextmanager
async def fake_llm(handler: Handler, path: str = "/completion", **cfg: Any):  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = dataclasses.replace(
        LLMConfig(retry_backoff_s=0.01, stall_timeout_s=5.0, connect_timeout_s=2.0), **cfg)
    client = LlamaCppLLM(config, str(server.make_url("")))
    try:
        yield client
    finally:
        await client.close()
        await server.close()


async def test_completion_streams_pieces_usage_and_callbacks() -> None:
    tokens: list[str] = []
    done: list[LLMResult] = []

    async def on_complete(result: LLMResult) -> None:
        done.append(result)

    async with fake_llm(good_completion) as llm:
        *pieces, last = [p async for p in llm.stream(PROMPT)]
        assert isinstance(last, LLMResult) and last.text == "The capital is Paris."
        assert (tokens, done) == ([], [])  # the stream itself calls nothing
        llm.on_token = tokens.append
        llm.on_complete = on_complete
        result = await llm.generate(PROMPT)  # seed 004's callbacks
    assert pieces == tokens == ["The", " capital", " is", " Paris."]
    assert done == [result]
    assert result.text == "The capital is Paris."
    assert (result.prompt_tokens, result.completion_tokens) == (17, 4)
    assert result.stop_reason == "eos" and result.server_prompt == PROMPT.text
    assert result.first_token_ms > 0 and result.total_ms >= result.first_token_ms


async def test_chat_endpoint_streams_until_done() -> None:
    async with fake_llm(good_chat, "/v1/chat/completions", endpoint="chat") as llm:
        result = await llm.complete(PromptBuilder("openai").build("Capital of France?"))
    assert result.text == "Paris."
    assert (result.prompt_tokens, result.completion_tokens, result.stop_reason) == (12, 2, "stop")


async def test_connection_refused() -> None:
    llm = LlamaCppLLM(LLMConfig(), f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LLMConnectionError, match="cannot reach the LLM server"):
        await llm.complete(PROMPT)
    await llm.close()


async def test_503_loading_is_retried_then_succeeds() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.json_response({"error": {"code": 503, "message": "Loading model",
                                                "type": "unavailable_error"}}, status=503)
        return await good_completion(request)

    async with fake_llm(handler) as llm:
        result = await llm.complete(PROMPT)
    assert calls == 3 and result.text == "The capital is Paris."


async def test_503_forever_gives_up_after_the_limit() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": {"message": "Loading model"}}, status=503)

    async with fake_llm(handler, max_retries=3) as llm:
        with pytest.raises(LLMLoadingError, match="Loading model"):
            await llm.complete(PROMPT)
    assert calls == 4


@pytest.mark.parametrize(("status", "body", "words"), [
    (400, {"error": {"code": 400, "type": "exceed_context_size_error",
                     "message": "the request exceeds the available context size"}},
     ["HTTP 400", "exceeds the available context size"]),
    (500, "segfault in the kitchen", ["HTTP 500", "segfault in the kitchen"]),
    (404, {"detail": "Not Found"}, ["HTTP 404", "Not Found"]),
])
async def test_http_errors_carry_the_servers_message(status: int, body: Any,
                                                     words: list[str]) -> None:
    async def handler(request: web.Request) -> web.Response:
        if isinstance(body, str):
            return web.Response(text=body, status=status)
        return web.json_response(body, status=status)

    async with fake_llm(handler) as llm:
        with pytest.raises(LLMServerError) as info:
            await llm.complete(PROMPT)
    assert info.value.status == status
    for word in words:
        assert word in str(info.value)


def broken_stream(chunks: list[bytes], pause_s: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = await open_sse(request)
        for chunk in chunks:
            await resp.write(chunk)
        if pause_s:
            await asyncio.sleep(pause_s)
        return resp

    return handler


@pytest.mark.parametrize(("chunks", "error", "words"), [
    ([sse({"content": "a", "stop": False}), b"garbage line\n\n"], LLMProtocolError,
     "malformed SSE line"),
    ([sse({"content": "a", "stop": False}), b"data: {not json\n\n"], LLMProtocolError,
     "malformed JSON"),
    ([sse({"content": 5, "stop": False})], LLMProtocolError, "not text"),
    ([sse({"content": "a", "stop": False})], LLMIncompleteError, "without a stop event"),
    ([sse({"content": "a", "stop": False}),
      b'error: {"code": 500, "message": "slot crashed", "type": "server_error"}\n\n'],
     LLMServerError, "slot crashed"),
])
async def test_broken_completion_streams(chunks: list[bytes], error: type[Exception],
                                         words: str) -> None:
    async with fake_llm(broken_stream(chunks)) as llm:
        with pytest.raises(error, match=words):
            await llm.complete(PROMPT)


async def test_chat_stream_without_done_is_incomplete() -> None:
    chunks = [sse({"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]})]
    async with fake_llm(broken_stream(chunks), "/v1/chat/completions", endpoint="chat") as llm:
        with pytest.raises(LLMIncompleteError, match=r"without \[DONE\]"):
            await llm.complete(PROMPT)


def chat_piece(text: str, finish: str | None = None) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text} if text else {},
                             "finish_reason": finish}]})


async def test_chat_stream_error_shows_the_servers_words_even_before_done() -> None:
    """Seed 003's custom URL: an error object mid-stream (then [DONE]) is an error with the
    server's message, never a truncated answer reported as success."""
    chunks = [chat_piece("Par"), sse({"error": {"message": "CUDA out of memory", "code": 500}}),
              sse("[DONE]")]
    async with fake_llm(broken_stream(chunks), "/v1/chat/completions", endpoint="chat") as llm:
        with pytest.raises(LLMServerError, match="CUDA out of memory"):
            await llm.complete(PROMPT)


async def test_chat_stream_complete_without_done_is_accepted() -> None:
    chunks = [chat_piece("Paris"), chat_piece(".", "stop"),
              sse({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})]
    async with fake_llm(broken_stream(chunks), "/v1/chat/completions", endpoint="chat") as llm:
        result = await llm.complete(PROMPT)
    assert (result.text, result.stop_reason, result.completion_tokens) == ("Paris.", "stop", 2)


async def test_stall_timeout() -> None:
    handler = broken_stream([sse({"content": "a", "stop": False})], pause_s=3.0)
    async with fake_llm(handler, stall_timeout_s=0.3) as llm:
        got: list[str] = []
        with pytest.raises(LLMStallError, match="stalled"):
            async for piece in llm.stream(PROMPT):
                got.append(piece)
    assert got == ["a"]


async def test_cancel_mid_stream_closes_the_connection() -> None:
    noticed = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = await open_sse(request)
        try:
            while True:
                await resp.write(sse({"content": "tok ", "stop": False}))
                await asyncio.sleep(0.01)
        except (ConnectionResetError, asyncio.CancelledError):
            noticed.set()
            raise

    async with fake_llm(endless) as llm:
        async def consume() -> None:
            async for _ in llm.stream(PROMPT):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(noticed.wait(), 3)


async def test_assistant_turns_a_failure_into_one_error_event_and_idle() -> None:
    calls = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await broken_stream([sse({"content": "Par", "stop": False})])(request)
        return await good_completion(request)

    async with fake_llm(flaky) as llm:
        bus = EventBus()
        events: list[Event] = []

        async def record(event: Event) -> None:
            events.append(event)

        bus.subscribe(record)
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        outcome = await assistant.ask("What is the capital of France?")
        await bus.drain()
        assert outcome.error is not None and outcome.error.code == "llm_incomplete"
        assert assistant.state is State.IDLE
        [failed] = assistant.session.get_conversation_history()
        assert (failed.outcome, failed.assistant, failed.turn_id) == (
            "failed", "Par", outcome.turn_id)
        assert assistant.session.prompt_history() == []  # no failed turn in the prompt
        kinds = [e.type for e in events]
        assert kinds.count(EventType.ERROR) == 1
        assert kinds[-1] is EventType.STATE_CHANGED
        # The daemon keeps going: the next turn works and is remembered.
        outcome = await assistant.ask("What is the capital of France?")
        assert outcome.error is None and outcome.answer == "The capital is Paris."
        assert [t.assistant for t in assistant.session.get_conversation_history()] == [
            "Par", "The capital is Paris."]
        await bus.close()


async def test_answers_come_without_the_models_padding() -> None:
    async def padded(request: web.Request) -> web.StreamResponse:
        resp = await open_sse(request)
        for piece in ["  ", " Paris", " is", " nice.", "\n\n", "\n"]:
            await resp.write(sse({"content": piece, "stop": False}))
        await resp.write(sse({"content": "", "stop": True}))
        return resp

    async with fake_llm(padded) as llm:
        bus = EventBus()
        assistant = Assistant(config_for(llm.base_url), bus, llm)
        outcome = await assistant.ask("Where?")
        assert outcome.answer == "Paris is nice."
        assert assistant.session.get_conversation_history()[-1].assistant == "Paris is nice."
        await bus.close()


INVENTED = "Nice to meet you, Bob.\nBob: I was at a party.\nAssistant: Tell me more."


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7])
def test_an_invented_speaker_turn_is_cut_however_the_tokens_fall(split: int) -> None:
    guard = SpeakerTurnGuard()
    out = ""
    for i in range(0, len(INVENTED), split):
        out += guard.feed(INVENTED[i:i + split])
        if guard.cut:
            break
    out += guard.flush()
    assert guard.cut and out == "Nice to meet you, Bob."


@pytest.mark.parametrize("text", ["Paris.\nIt is big.", "Yes.\n\nThe Eiffel tower is tall.",
                                  "Two lines\nand more\n", "A\nB C d: lower case is prose."])
def test_an_answers_own_lines_are_kept(text: str) -> None:
    guard = SpeakerTurnGuard()
    out = "".join(guard.feed(c) for c in text) + guard.flush()
    assert out == text and not guard.cut


async def test_the_stream_stops_at_an_invented_turn_and_closes_the_request() -> None:
    closed = asyncio.Event()

    async def runaway(request: web.Request) -> web.StreamResponse:
        resp = await open_sse(request)
        try:
            for piece in ["Nice", " to meet you", ", Bob.", "\n", "Bob", ":", " I was",
                          " at a party."] + [" more"] * 200:
                await resp.write(sse({"content": piece, "stop": False}))
                await asyncio.sleep(0.005)
        except (ConnectionResetError, asyncio.CancelledError):
            closed.set()
            raise
        await resp.write(sse({"content": "", "stop": True}))
        return resp

    async with fake_llm(runaway) as llm:
        *pieces, result = [p async for p in llm.stream(PROMPT)]
        assert "".join(pieces) == "Nice to meet you, Bob." == result.text
        assert result.stop_reason == "speaker_turn"
        await asyncio.wait_for(closed.wait(), 5)  # the server saw the request go away
