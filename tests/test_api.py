"""The local HTTP/WebSocket API on the real assistant: real llama.cpp server, real Piper."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import wave
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from heisenberg.api.frames import FrameCache, phash
from heisenberg.api.server import API
from heisenberg.audio.format import read_wav
from heisenberg.audio.sinks import SpeakerSink, WavFileSink
from heisenberg.core.events import (
    Event,
    EventType,
    LLMComplete,
    LLMToken,
    StateChanged,
    TurnEnded,
    WakewordDetected,
)
from tests.conftest import MakeAPI, OffLoopSpy, free_port

WAKE = WakewordDetected(model="hey_jarvis", score=0.9, turn_id="spoken")
"""What the hearing records when someone says the wake word."""


def png(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((240, 320, 3), np.uint8)
    for _ in range(6):
        x, y = rng.integers(0, 280), rng.integers(0, 200)
        image[y:y + 40, x:x + 40] = rng.integers(0, 255, 3)
    return image


async def call(api: API, method: str, path: str, token: str = "",
               **kwargs: Any) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with aiohttp.ClientSession() as session, session.request(
            method, api.url + path, headers=headers, **kwargs) as resp:
        raw = await resp.read()
        body: Any = raw
        if resp.content_type == "application/json":
            body = json.loads(raw)
        return resp.status, body, resp.headers


async def test_status_health_and_openapi(make_api: MakeAPI) -> None:
    api = await make_api()
    status, body, _ = await call(api, "GET", "/api/v1/status")
    assert status == 200 and body["name"] == "heisenberg" and body["state"] == "idle"
    assert body["last_turn"] is None
    status, health, _ = await call(api, "GET", "/api/v1/health")
    assert status == 200 and health["status"] == "ok"
    assert health["llm"] == {"reachable": True, "model_loaded": True,
                             "detail": "reachable, model loaded"}
    status, doc, _ = await call(api, "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for path in ("/api/v1/status", "/api/v1/health", "/api/v1/ask", "/api/v1/process-frame",
                 "/api/v1/speak", "/api/v1/history", "/ws/stream", "/metrics"):
        assert path in doc["paths"]


async def test_ask_answers_keeps_history_and_counts_in_metrics(make_api: MakeAPI) -> None:
    api = await make_api()
    status, body, _ = await call(api, "POST", "/api/v1/ask",
                                 json={"text": "What is the capital of France?"})
    assert status == 200, body
    assert body["answer"].strip() and body["error"] is None
    assert body["usage"]["completion_tokens"] > 0
    status, history, _ = await call(api, "GET", "/api/v1/history")
    assert [t["user"] for t in history["turns"]] == ["What is the capital of France?"]
    assert history["turns"][0]["assistant"] == body["answer"]
    status, last, _ = await call(api, "GET", "/api/v1/status")
    assert last["last_turn"]["question"] == "What is the capital of France?"
    assert last["last_turn"]["stages_ms"]["first_token"] > 0
    status, metrics, headers = await call(api, "GET", "/metrics")
    text = metrics.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'heisenberg_turns_total{outcome="answered",source="api"} 1.0' in text
    assert 'heisenberg_stage_seconds_count{stage="first_token"} 1.0' in text
    assert 'heisenberg_state{state="idle"} 1.0' in text
    status, cleared, _ = await call(api, "DELETE", "/api/v1/history")
    assert status == 200 and cleared == {"deleted": 1}
    assert (await call(api, "GET", "/api/v1/history"))[1]["turns"] == []


async def test_each_session_id_keeps_its_own_conversation(make_api: MakeAPI) -> None:
    api = await make_api()
    answers: list[LLMComplete] = []

    async def keep(event: Event) -> None:
        assert isinstance(event, LLMComplete)
        answers.append(event)

    api.bus.subscribe(keep, [EventType.LLM_COMPLETE], name="answers")

    async def ask(text: str, session_id: str) -> dict[str, Any]:
        status, body, _ = await call(api, "POST", "/api/v1/ask",
                                     json={"text": text, "session_id": session_id})
        assert status == 200 and body["error"] is None, body
        assert body["session_id"] == session_id
        return body

    alice = await ask("My name is Zorblax.", "alice")
    await ask("My name is Quuxle.", "bob")
    await ask("What is my name?", "alice")
    await api.bus.drain()
    prompt = answers[-1].server_prompt
    assert "User: My name is Zorblax." in prompt and f"Assistant: {alice['answer']}" in prompt
    assert "Quuxle" not in prompt
    await ask("What is my name?", "bob")
    await api.bus.drain()
    assert "Zorblax" not in answers[-1].server_prompt
    assert "Quuxle" in answers[-1].server_prompt

    _, mine, _ = await call(api, "GET", "/api/v1/history?session_id=alice")
    assert mine["session_id"] == "alice"
    assert [t["user"] for t in mine["turns"]] == ["My name is Zorblax.", "What is my name?"]
    assert {t["session_id"] for t in mine["turns"]} == {"alice"}
    # The assistant's own conversation (the voice loop's) was not touched.
    _, status, _ = await call(api, "GET", "/api/v1/status")
    assert status["session_id"] not in ("alice", "bob")
    assert api.assistant.session.get_conversation_history() == []
    _, everything, _ = await call(api, "GET", "/api/v1/history")
    assert len(everything["turns"]) == 4
    assert everything["session_id"] is None  # not one conversation's: each turn says its own
    assert {t["session_id"] for t in everything["turns"]} == {"alice", "bob"}
    assert everything["current_session_id"] == status["session_id"]


async def test_ask_streams_tokens_as_sse(make_api: MakeAPI) -> None:
    api = await make_api()
    tokens, done = [], None
    async with aiohttp.ClientSession() as session, session.post(
            api.url + "/api/v1/ask", json={"text": "Name three colors.", "stream": True}
    ) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        kind = "message"
        async for line in resp.content:
            text = line.decode().strip()
            if text.startswith("event: "):
                kind = text[7:]
            elif text.startswith("data: "):
                data = json.loads(text[6:])
                if kind == "done":
                    done = data
                else:
                    tokens.append(data["token"])
                kind = "message"
    assert len(tokens) > 1 and done is not None
    assert "".join(tokens).strip() == done["answer"]  # the answer without padding


async def test_ask_with_an_image_on_a_text_only_server(make_api: MakeAPI) -> None:
    api = await make_api()
    status, body, _ = await call(api, "POST", "/api/v1/ask",
                                 json={"text": "What do you see?",
                                       "image": "data:image/png;base64," + png(scene())})
    assert status == 200 and body["answer"].strip()
    assert body["image_dropped"].startswith("vision unavailable")  # said, not silent
    status, frame, headers = await call(api, "GET", "/api/v1/frame")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and frame[:2] == b"\xff\xd8"
    status, body, _ = await call(api, "POST", "/api/v1/ask", json={"text": "Hi."})
    assert status == 200 and body["image_dropped"] is None


async def test_ask_while_someone_speaks_is_409_and_its_frame_not_shown(
        make_api: MakeAPI) -> None:
    api = await make_api()
    api.config = dataclasses.replace(api.config, states=dataclasses.replace(
        api.config.states, listening_timeout_s=1.0))
    frames: list[Event] = []

    async def keep(event: Event) -> None:
        frames.append(event)
    api.bus.subscribe(keep, [EventType.FRAME_CAPTURED], name="frames")
    ask = {"text": "What do you see?", "image": png(scene(3))}
    api.assistant.record(WAKE)  # a spoken question is being heard
    status, body, _ = await call(api, "POST", "/api/v1/ask", json=ask)
    assert status == 409 and "listening to someone" in body["detail"]
    status, body, _ = await call(api, "POST", "/api/v1/ask", json={**ask, "speak": True})
    assert status == 409
    # A refused spoken answer started nothing (no speech tasks left behind).
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("tts-")]
    api.assistant.record(TurnEnded(outcome="no_speech", turn_id=WAKE.turn_id))
    status, body, _ = await call(api, "POST", "/api/v1/ask", json=ask)
    assert status == 200 and body["answer"].strip()
    await api.bus.drain()
    assert [e.turn_id for e in frames] == [body["turn_id"]]  # the refused frame never shown

@pytest.mark.parametrize(("kwargs", "status", "words"), [
    ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400,
     "not valid JSON"),
    ({"json": ["a list"]}, 400, "JSON object"),
    ({"json": {"image": "x"}}, 400, "missing field 'text'"),
    ({"json": {"text": 42}}, 400, "non-empty string"),
    ({"json": {"text": "hi", "image": "%%%not-base64%%%"}}, 400, "not valid base64"),
    ({"json": {"text": "hi", "image": base64.b64encode(b"just text").decode()}}, 400,
     "not a decodable image"),
    ({"json": {"text": "hi", "image": "A" * 400_000}}, 400, "larger than"),
    ({"json": {"text": "hi", "junk": "B" * 600_000}}, 413, "too large"),
])
async def test_bad_requests_get_a_clear_detail(make_api: MakeAPI, kwargs: dict[str, Any],
                                               status: int, words: str) -> None:
    api = await make_api(max_image_mb=0.2, max_body_mb=0.5)
    got, body, _ = await call(api, "POST", "/api/v1/ask", **kwargs)
    assert got == status and words in body["detail"], body
    assert (await call(api, "GET", "/api/v1/status"))[0] == 200  # still serving


async def test_token_protects_everything_but_health(make_api: MakeAPI) -> None:
    api = await make_api(token="s3cret")
    for method, path in (("GET", "/api/v1/status"), ("GET", "/api/v1/history"),
                         ("GET", "/metrics"), ("POST", "/api/v1/ask")):
        status, body, _ = await call(api, method, path, json={"text": "hi"})
        assert status == 401 and "bearer token" in body["detail"]
    assert (await call(api, "GET", "/api/v1/status", token="wrong"))[0] == 401
    assert (await call(api, "GET", "/api/v1/status", token="s3cret"))[0] == 200
    assert (await call(api, "GET", "/api/v1/health"))[0] == 200


async def test_llm_down_is_503(make_api: MakeAPI) -> None:
    api = await make_api(url=f"http://127.0.0.1:{free_port()}")
    status, health, _ = await call(api, "GET", "/api/v1/health")
    assert status == 503 and health["llm"]["reachable"] is False
    status, body, _ = await call(api, "POST", "/api/v1/ask", json={"text": "hi"})
    assert status == 503 and "not ready" in body["detail"]


async def test_busy_llm_queue_answers_429(make_api: MakeAPI) -> None:
    api = await make_api(max_queue=1, llm={"prompt_format": "gemma", "max_tokens": 200})
    first = asyncio.create_task(call(api, "POST", "/api/v1/ask",
                                     json={"text": "Tell me a long story."}))
    async with asyncio.timeout(30):
        while not api.assistant.busy:
            await asyncio.sleep(0.01)
    status, body, _ = await call(api, "POST", "/api/v1/ask", json={"text": "And now?"})
    assert status == 429 and "api.max_queue" in body["detail"]
    assert (await first)[0] == 200


async def test_unexpected_error_is_500_and_the_api_goes_on(make_api: MakeAPI) -> None:
    api = await make_api()

    def broken() -> int:
        raise RuntimeError("disk on fire")

    api.assistant.session.clear = broken  # type: ignore[method-assign]
    status, body, _ = await call(api, "DELETE", "/api/v1/history")
    assert status == 500 and body == {"detail": "internal error (see the daemon log)"}
    assert (await call(api, "GET", "/api/v1/status"))[0] == 200


async def test_process_frame_on_a_model_that_cannot_see_is_422_and_not_cached(
        make_api: MakeAPI) -> None:
    """The bundled gemma3-270m has no vision projector: nothing is described without the
    image, and nothing is cached."""
    api = await make_api()
    for _ in range(2):
        status, body, _ = await call(api, "POST", "/api/v1/process-frame",
                                     json={"image": png(scene(1))})
        assert status == 422, body
        assert "cannot see images" in body["detail"] and "--mmproj" in body["detail"]
    assert len(api.frames) == 0
    status, body, _ = await call(api, "POST", "/api/v1/process-frame", json={})
    assert status == 400 and "missing field 'image'" in body["detail"]


def test_frame_cache_is_bounded_in_entries_and_age() -> None:
    cache = FrameCache(max_entries=2, ttl_s=10, max_distance=4)
    a, b, c = phash(scene(1)), phash(scene(2)), phash(scene(3))
    assert bin(a ^ b).count("1") > 4 and bin(a ^ c).count("1") > 4
    cache.put(a, "A", now_s=0)
    cache.put(b, "B", now_s=1)
    cache.put(c, "C", now_s=2)
    assert len(cache) == 2 and cache.get(a, now_s=3) is None  # oldest evicted
    assert cache.get(b, now_s=3) == "B"
    assert cache.get(c, now_s=20) is None and len(cache) == 0  # expired


async def test_speak_returns_wav(make_api: MakeAPI) -> None:
    api = await make_api()
    status, body, headers = await call(api, "POST", "/api/v1/speak",
                                       json={"text": "Hello there. **How** are you?"})
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(body)) as wav:
        assert wav.getframerate() == 22050 and wav.getnframes() > 22050 // 2
    status, err, _ = await call(api, "POST", "/api/v1/speak", json={"text": ""})
    assert status == 400 and "'text'" in err["detail"]


async def test_websocket_streams_events_and_drops_a_slow_client(make_api: MakeAPI) -> None:
    api = await make_api(ws_queue=8)
    async with aiohttp.ClientSession() as session:
        fast = await session.ws_connect(api.url + "/ws/stream")
        slow = await session.ws_connect(api.url + "/ws/stream", max_msg_size=0)
        await asyncio.sleep(0.2)
        status, body, _ = await call(api, "POST", "/api/v1/ask", json={"text": "Say hi."})
        assert status == 200
        seen: list[str] = []
        async with asyncio.timeout(10):
            while True:
                event = json.loads((await fast.receive()).data)
                seen.append(event["type"])
                if event["type"] == "state_changed" and event["new"] == "idle":
                    break
        assert {"transcription_final", "llm_token", "llm_complete"} <= set(seen)
        # The slow client reads nothing while 20 MB of events go by: it is dropped; the
        # fast one, reading as they come, is not, and the daemon is not held up.
        got = 0

        async def read_fast() -> None:
            nonlocal got
            while (await fast.receive()).type == aiohttp.WSMsgType.TEXT:
                got += 1

        reader = asyncio.create_task(read_fast())
        for i in range(2000):
            api.bus.publish(LLMToken(text="x" * 10_000, index=i))
            await asyncio.sleep(0.002)
        async with asyncio.timeout(20):
            while got < 2000:
                await asyncio.sleep(0.05)
        reader.cancel()
        assert api.ws_dropped == 1
        await fast.close()
        await slow.close()


async def test_cors_only_for_configured_origins(make_api: MakeAPI) -> None:
    api = await make_api(cors_origins=["http://localhost:3000"])
    _, _, headers = await call(api, "GET", "/api/v1/health",
                               headers={"Origin": "http://localhost:3000"})
    assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    status, _, headers = await call(api, "OPTIONS", "/api/v1/ask",
                                    headers={"Origin": "http://localhost:3000",
                                             "Access-Control-Request-Method": "POST"})
    assert status == 204 and "POST" in headers["Access-Control-Allow-Methods"]
    _, _, headers = await call(api, "GET", "/api/v1/health",
                               headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


async def test_ask_can_speak_the_answer(make_api: MakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "spoken.wav"
    api = await make_api(sink=WavFileSink(out, 22050))
    synthesized: list[tuple[str, bool]] = []
    api.tts = OffLoopSpy(api.tts, synthesized)
    states: list[str] = []

    async def watch(event: Event) -> None:
        if isinstance(event, StateChanged):
            states.append(str(event.new))

    api.bus.subscribe(watch, [EventType.STATE_CHANGED])
    status, body, _ = await call(api, "POST", "/api/v1/ask",
                                 json={"text": "What is the capital of France?", "speak": True})
    assert status == 200 and body["spoken"] is True and body["answer"].strip()
    await api.bus.drain()
    assert states == ["thinking", "speaking", "idle"]
    status, _, _ = await call(api, "POST", "/api/v1/speak",
                              json={"text": "And this is played too.", "play": True})
    assert status == 200
    async with asyncio.timeout(10):
        while api._tasks and any(not t.done() and t.get_name() != "api:frames" for t in api._tasks):
            await asyncio.sleep(0.05)
    assert api.sink is not None
    await api.sink.close()
    assert len(read_wav(out)) > 16000  # more than a second of speech at 16 kHz
    assert synthesized and not any(on_loop for _, on_loop in synthesized)  # Piper off the loop


async def test_a_streamed_answer_closed_mid_way_leaves_the_assistant_ready(
        make_api: MakeAPI) -> None:
    api = await make_api(llm={"max_tokens": 200})
    async with aiohttp.ClientSession() as session:
        resp = await session.post(api.url + "/api/v1/ask", json={
            "text": "Write a long story about a dragon who bakes bread.", "stream": True})
        assert resp.status == 200
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        resp.close()  # the page was closed mid-answer
    async with asyncio.timeout(30):
        while str(api.assistant.state) != "idle":
            await asyncio.sleep(0.02)
    status, body, _ = await call(api, "POST", "/api/v1/ask", json={"text": "Say hello."})
    assert status == 200 and body["error"] is None, body
    _, history, _ = await call(api, "GET", "/api/v1/history")
    assert [t["outcome"] for t in history["turns"]] == ["interrupted", "answered"]


async def test_a_typed_answer_that_ends_while_the_user_speaks_keeps_listening(
        make_api: MakeAPI) -> None:
    api = await make_api(llm={"max_tokens": 40})
    states: list[str] = []

    async def record(event: Event) -> None:
        assert isinstance(event, StateChanged)
        states.append(str(event.new))

    api.bus.subscribe(record, [EventType.STATE_CHANGED], name="states")
    ask = asyncio.create_task(call(api, "POST", "/api/v1/ask", json={"text": "Say hello."}))
    async with asyncio.timeout(30):
        while str(api.assistant.state) != "thinking":
            await asyncio.sleep(0.005)
    api.assistant.record(WAKE)  # the user starts speaking meanwhile
    status, body, _ = await ask
    assert status == 200 and body["answer"].strip(), body
    assert str(api.assistant.state) == "listening"  # the spoken question is not dropped
    await api.bus.drain()
    assert states == ["thinking", "listening"], states
    api.assistant.record(TurnEnded(outcome="no_speech", turn_id=WAKE.turn_id))


async def test_a_spoken_answer_without_a_speaker_says_so_and_is_kept(make_api: MakeAPI) -> None:
    api = await make_api(sink=SpeakerSink("no-such-speaker-xyz"))
    status, body, _ = await call(api, "POST", "/api/v1/ask",
                                 json={"text": "What is the capital of France?", "speak": True})
    assert status == 200 and body["error"] is None and body["answer"]
    assert body["spoken"] is False and "no-such-speaker-xyz" in body["speech_error"]
    _, history, _ = await call(api, "GET", "/api/v1/history")
    [turn] = history["turns"]
    assert (turn["outcome"], turn["assistant"]) == ("answered", body["answer"])
    status, wav, headers = await call(api, "POST", "/api/v1/speak",
                                      json={"text": "Hello there.", "play": True})
    assert status == 200 and wav[:4] == b"RIFF"  # the audio itself is still the answer
    assert headers["Heisenberg-Played"] == "no"
    assert "no-such-speaker-xyz" in headers["Heisenberg-Play-Error"]


async def next_reply(ws: aiohttp.ClientWebSocketResponse, kinds: set[str],
                     seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The next message of one of ``kinds``, skipping (and keeping) the bus events."""
    async with asyncio.timeout(60):
        while True:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, message
            data = json.loads(message.data)
            if seen is not None:
                seen.append(data)
            if data["type"] in kinds:
                return data


async def test_websocket_takes_questions_and_frames(make_api: MakeAPI) -> None:
    """Seed 001's real-time stream: a client sends over the socket and gets its replies and
    the events; what it cannot use is rejected and the connection stays open."""
    api = await make_api()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(api.url + "/ws/stream")
        await ws.send_json({"type": "ask", "text": "What is the capital of France?",
                            "session_id": "ws"})
        seen: list[dict[str, Any]] = []
        answer = await next_reply(ws, {"answer"}, seen)
        assert answer["error"] is None and answer["answer"] and answer["session_id"] == "ws"
        kinds = [m["type"] for m in seen if m.get("turn_id") == answer["turn_id"]]
        assert {"transcription_final", "llm_token", "llm_complete", "turn_ended"} <= set(kinds)
        # A frame, as the image file's bytes: this model cannot see, and says so.
        await ws.send_bytes(base64.b64decode(png(scene(1))))
        rejected = await next_reply(ws, {"rejected", "description"})
        assert rejected["type"] == "rejected" and "cannot see images" in rejected["detail"]
        for bad, words in [("not json", "must be JSON"), ("[1, 2]", "JSON object"),
                           ('{"type": "dance"}', "unknown message type"),
                           ('{"type": "frame", "image": "@@@"}', "not valid base64"),
                           ('{"type": "ask"}', "needs 'text'")]:
            await ws.send_str(bad)
            reply = await next_reply(ws, {"rejected"})
            assert words in reply["detail"], (bad, reply)
        await ws.send_bytes(b"\x89PNG not really")
        assert "not a decodable image" in (await next_reply(ws, {"rejected"}))["detail"]
        assert not ws.closed
        await ws.close()
    _, history, _ = await call(api, "GET", "/api/v1/history?session_id=ws")
    assert [t["outcome"] for t in history["turns"]] == ["answered"]
