"""The real image path: gemma3-270m + a random-weight mmproj (tests/mmproj.py) on llama.cpp.

The model's answers are gibberish, so these tests check what does not depend on the weights:
the server reports vision, an image really enters the prompt (it costs more prompt tokens),
and a whole spoken turn with a camera frame completes through the native and chat APIs.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import CameraConfig, Config, LLMConfig
from heisenberg.core.events import Event, EventType, LLMComplete
from heisenberg.llm.openai_compat import OpenAICompatLLM
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.vision.camera import OpenCVCamera, load_image
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import (
    MakeAPI,
    RunningServer,
    make_server_config,
    serve,
    silence,
    speech,
)
from tests.mmproj import IMAGE_TOKENS, write_gemma3_mmproj
from tests.test_api import call, next_reply, png, scene
from tests.test_voice_real import record

pytestmark = pytest.mark.usefixtures("close_llms")

PROMPT = PromptBuilder("plain", system_prompt="Be brief.").build("What do you see?")


@pytest.fixture(scope="module")
def vision_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("vision")
    mmproj = write_gemma3_mmproj(tmp / "mmproj-test.gguf")
    yield from serve(make_server_config(mmproj_path=str(mmproj)), tmp)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, :320] = (0, 0, 255)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize("endpoint", ["completion", "chat"])
async def test_an_image_reaches_the_model(vision_server: RunningServer, image_file: Path,
                                          endpoint: str) -> None:
    llm = LlamaCppLLM(LLMConfig(max_tokens=8, endpoint=endpoint, temperature=0.0),
                      vision_server.url)
    try:
        assert await llm.supports_vision() is True
        frame = load_image(str(image_file), CameraConfig())
        text_only = await llm.complete(PROMPT)
        with_image = await llm.complete(PROMPT, frame.jpeg)
    finally:
        await llm.close()
    assert llm.vision is True  # the image was accepted, not retried as text
    # The frame becomes IMAGE_TOKENS embeddings plus the model's image delimiters.
    assert with_image.prompt_tokens >= text_only.prompt_tokens + IMAGE_TOKENS, (
        text_only.prompt_tokens, with_image.prompt_tokens)


async def test_openai_backend_sees_vision_in_models(vision_server: RunningServer,
                                                    image_file: Path) -> None:
    llm = OpenAICompatLLM(LLMConfig(backend="openai", max_tokens=8, temperature=0.0),
                          vision_server.url)
    try:
        frame = load_image(str(image_file), CameraConfig())
        text_only = await llm.complete(PROMPT)
        with_image = await llm.complete(PROMPT, frame.jpeg)
    finally:
        await llm.close()
    assert llm.vision is True
    assert with_image.prompt_tokens >= text_only.prompt_tokens + IMAGE_TOKENS, (
        text_only.prompt_tokens, with_image.prompt_tokens)


async def test_voice_turn_with_a_frame_on_a_vision_model(
        vision_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        image_file: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What do you see?")]), RATE_HZ)
    config = Config(llm=LLMConfig(url=vision_server.url, max_tokens=16, temperature=0.0))
    bus = EventBus()
    events = record(bus)
    camera = OpenCVCamera(dataclasses.replace(config.camera, source=str(image_file)))
    llm = LlamaCppLLM(config.llm, vision_server.url)
    loop = VoiceLoop(Assistant(config, bus, llm), FileSource(wav), NullSink(),
                     OpenWakeWordEngine(config.wakeword), stt, tts, camera=camera)
    [turn] = await loop.run()
    await bus.drain()
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.answer
    assert [e.type for e in events].count(EventType.FRAME_CAPTURED) == 1
    assert llm.vision is True
    [done] = [e for e in events if isinstance(e, LLMComplete)]
    assert done.prompt_tokens > IMAGE_TOKENS


async def test_process_frame_on_a_vision_model(vision_server: RunningServer, make_api: MakeAPI,
                                               image_file: Path) -> None:
    api = await make_api(url=vision_server.url)
    answers: list[Event] = []

    async def keep(event: Event) -> None:
        answers.append(event)

    api.bus.subscribe(keep, [EventType.LLM_COMPLETE], name="answers")
    image = base64.b64encode(await asyncio.to_thread(image_file.read_bytes)).decode()
    async with aiohttp.ClientSession() as session, session.post(
            api.url + "/api/v1/process-frame", json={"image": image}) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["cached"] is False and body["vision"] is True
    await api.bus.drain()
    [done] = answers
    assert isinstance(done, LLMComplete) and done.prompt_tokens > IMAGE_TOKENS


async def test_process_frame_caches_an_unchanged_scene(vision_server: RunningServer,
                                                       make_api: MakeAPI) -> None:
    api = await make_api(url=vision_server.url)
    image = scene(1)
    status, first, _ = await call(api, "POST", "/api/v1/process-frame",
                                  json={"image": png(image)})
    assert status == 200 and first["cached"] is False and first["vision"] is True
    noisy = np.clip(image.astype(int) + np.random.default_rng(0).integers(-6, 7, image.shape),
                    0, 255).astype(np.uint8)
    calls_before = api.frames.misses
    status, again, _ = await call(api, "POST", "/api/v1/process-frame",
                                  json={"image": png(noisy)})
    if first["description"]:  # a description made from the image is kept...
        assert status == 200 and again["cached"] is True and api.frames.misses == calls_before
        assert again["description"] == first["description"]
        assert set(again) == set(first)  # ...and comes back with the same fields
    else:  # ...an empty one is not (random weights may say nothing)
        assert status == 200 and again["cached"] is False
    status, other, _ = await call(api, "POST", "/api/v1/process-frame",
                                  json={"image": png(scene(2))})
    assert status == 200 and other["cached"] is False


async def test_websocket_frames_are_described_bounded_and_cached(
        vision_server: RunningServer, make_api: MakeAPI) -> None:
    api = await make_api(url=vision_server.url, ws_max_fps=1.0)
    burst = [base64.b64decode(png(scene(i))) for i in range(5)]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(api.url + "/ws/stream")
        for frame in burst:  # far faster than 1 a second
            await ws.send_bytes(frame)
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(120):
            while not any(r["type"] == "description" and r["hash"] == phash_hex(scene(4))
                          for r in replies):
                reply = json.loads((await ws.receive()).data)
                if reply["type"] in ("description", "dropped", "rejected"):
                    replies.append(reply)
        kinds = [r["type"] for r in replies]
        assert "rejected" not in kinds, replies
        # The first is described; those that waited behind it were replaced by the newest.
        assert kinds.count("description") < len(burst) and "dropped" in kinds
        last = replies[-1]
        assert last["vision"] is True and last["cached"] is False
        if last["description"]:  # the same scene again: from the cache, not the model
            await ws.send_json({"type": "frame", "image": png(scene(4))})
            again = await next_reply(ws, {"description"})
            assert again["cached"] is True and again["description"] == last["description"]
        await ws.close()


def phash_hex(image: np.ndarray) -> str:
    from heisenberg.api.frames import phash

    return f"{phash(image):016x}"
