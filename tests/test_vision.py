"""Camera frames and images reaching the model (or not, when the server has no vision)."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from heisenberg.audio.format import RATE_HZ, write_wav
from heisenberg.audio.sinks import NullSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import CameraConfig, Config, LLMConfig
from heisenberg.core.events import EventType
from heisenberg.llm.prompts import PromptBuilder
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.voice import VoiceLoop
from heisenberg.vision.camera import CameraError, FrameGrabber, OpenCVCamera, load_image
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.vad import WebRtcVad
from heisenberg.voice.wakeword import OpenWakeWordEngine, VadGatedWakeWord
from tests.conftest import MakeAPI, OffLoopSpy, RunningServer, silence, speech
from tests.test_api import call
from tests.test_cli import client_env, run
from tests.test_voice_real import record

pytestmark = pytest.mark.usefixtures("close_llms")

MARKER = "<__media_TESTmarker42__>"


def scene(width: int = 1000, height: int = 600) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)  # left half red (BGR)
    return image


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "capture.png"
    cv2.imwrite(str(path), scene())
    return path


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_camera_sources(tmp_path: Path, image_file: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"seq_{i:03d}.jpg"), scene())
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1000, 600))
    for _ in range(4):
        writer.write(scene())
    writer.release()
    for source in (str(image_file), str(tmp_path / "seq_%03d.jpg"), str(video)):
        camera = OpenCVCamera(CameraConfig(source=source, max_side=500))
        frames = [camera.capture() for _ in range(6)]  # past the end: starts again
        camera.close()
        assert (frames[-1].width, frames[-1].height) == (500, 300), source
        pixels = decode(frames[-1].jpeg)
        assert pixels.shape == (300, 500, 3)
        assert pixels[150, 100, 2] > 200 and pixels[150, 400, 2] < 50  # red left, black right


@pytest.mark.parametrize(("source", "words"), [
    ("/no/such/video.mp4", "neither a device index nor an existing file"),
    ("7", "camera '7' could not be opened"),
])
def test_missing_camera_is_a_clear_error(source: str, words: str) -> None:
    with pytest.raises(CameraError, match=words):
        OpenCVCamera(CameraConfig(source=source)).capture()


def test_load_image_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(CameraError, match="not a readable image"):
        load_image(str(bad), CameraConfig())


class FakeVisionServer:
    """A llama-server stand-in that records requests; ``vision`` is what /props reports and
    ``refuse_images`` makes /completion answer like a server without --mmproj."""

    def __init__(self, vision: bool, refuse_images: bool = False) -> None:
        self.vision = vision
        self.refuse_images = refuse_images
        self.requests: list[dict[str, Any]] = []

    async def props(self, request: web.Request) -> web.Response:
        return web.json_response({"modalities": {"vision": self.vision},
                                  "media_marker": MARKER})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if isinstance(body["prompt"], dict) and self.refuse_images:
            return web.json_response({"error": {"code": 500, "type": "server_error",
                                                "message": "image input is not supported - "
                                                           "hint: if this is unexpected, you "
                                                           "may need to provide the mmproj"}},
                                     status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in ({"content": "A red wall.", "stop": False}, {"content": "", "stop": True}):
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
        return resp

    async def __aenter__(self) -> LlamaCppLLM:
        app = web.Application()
        app.router.add_get("/props", self.props)
        app.router.add_get("/health", self.health)
        app.router.add_post("/completion", self.completion)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.llm = LlamaCppLLM(LLMConfig(), str(self.server.make_url("")))
        return self.llm

    async def __aexit__(self, *exc: object) -> None:
        await self.llm.close()
        await self.server.close()


PROMPT = PromptBuilder("plain", system_prompt="Be brief.").build("What do you see?")


async def test_image_goes_in_at_the_media_marker(image_file: Path) -> None:
    frame = load_image(str(image_file), CameraConfig())
    fake = FakeVisionServer(vision=True)
    async with fake as llm:
        result = await llm.complete(PROMPT, frame.jpeg)
    assert result.text == "A red wall."
    [body] = fake.requests
    assert body["prompt"]["prompt_string"] == (
        f"System: Be brief.\n\nUser: {MARKER}\nWhat do you see?\n\nAssistant:")
    assert base64.b64decode(body["prompt"]["multimodal_data"][0]) == frame.jpeg


async def test_no_vision_server_gets_text_only_and_one_warning(
        image_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = load_image(str(image_file), CameraConfig())
    fake = FakeVisionServer(vision=False)
    caplog.set_level(logging.WARNING)
    async with fake as llm:
        for _ in range(2):
            assert (await llm.complete(PROMPT, frame.jpeg)).text == "A red wall."
    assert [isinstance(b["prompt"], str) for b in fake.requests] == [True, True]
    warnings = [r for r in caplog.records if "vision unavailable" in r.getMessage()]
    assert len(warnings) == 1


async def test_image_refused_with_500_is_retried_as_text(image_file: Path) -> None:
    frame = load_image(str(image_file), CameraConfig())
    fake = FakeVisionServer(vision=True, refuse_images=True)
    async with fake as llm:
        assert (await llm.complete(PROMPT, frame.jpeg)).text == "A red wall."
        assert llm.vision is False
        await llm.complete(PROMPT, frame.jpeg)
    assert [isinstance(b["prompt"], dict) for b in fake.requests] == [True, False, False]


async def test_vision_is_asked_again_and_a_dropped_image_is_said(
        image_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that could not see when first asked (loading, or restarted later with a
    projector) is asked again; every image that does not go says so in the result."""
    frame = load_image(str(image_file), CameraConfig())
    fake = FakeVisionServer(vision=False)
    async with fake as llm:
        first = await llm.complete(PROMPT, frame.jpeg)
        assert first.image_dropped.startswith("vision unavailable")
        fake.vision = True  # the projector is there now
        again = await llm.complete(PROMPT, frame.jpeg)
        assert again.image_dropped  # believed for VISION_RECHECK_S...
        monkeypatch.setattr("heisenberg.llm.backend.VISION_RECHECK_S", 0.0)
        later = await llm.complete(PROMPT, frame.jpeg)  # ...then asked again
        assert later.image_dropped == "" and llm.vision is True
        assert (await llm.complete(PROMPT)).image_dropped == ""  # no image, nothing dropped
    assert [isinstance(b["prompt"], dict) for b in fake.requests] == [False, False, True,
                                                                     False]


async def test_real_server_without_mmproj_reports_no_vision(llama_server: RunningServer,
                                                            image_file: Path) -> None:
    llm = LlamaCppLLM(LLMConfig(max_tokens=16, temperature=0.0), llama_server.url)
    assert await llm.supports_vision() is False
    frame = load_image(str(image_file), CameraConfig())
    result = await llm.complete(PROMPT, frame.jpeg)
    assert result.text
    await llm.close()


def test_ask_with_an_image_on_a_text_only_server(llama_server: RunningServer,
                                                  image_file: Path) -> None:
    out = run(["ask", "--image", str(image_file), "What do you see?"], client_env(llama_server))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "vision unavailable" in out.stderr


def test_snapshot(image_file: Path, tmp_path: Path) -> None:
    out_jpg = tmp_path / "snap.jpg"
    out = run(["snapshot", str(out_jpg)], {"HEISENBERG_CAMERA_SOURCE": str(image_file)})
    assert out.returncode == 0, out.stderr
    assert decode(out_jpg.read_bytes()).shape == (461, 768, 3)
    off = run(["snapshot", str(out_jpg)], {"HEISENBERG_CAMERA_ENABLED": "false"})
    assert off.returncode == 1 and "camera is disabled" in off.stderr
    # No webcam here: one clear line, without OpenCV's own backend warnings.
    none = run(["snapshot", str(out_jpg)], {"HEISENBERG_CAMERA_SOURCE": "0"})
    assert none.returncode == 1 and "camera '0' could not be opened" in none.stderr
    assert "WARN" not in none.stderr, none.stderr


@pytest.mark.parametrize("camera_source", ["image", "broken", None])
async def test_voice_turn_captures_a_frame_at_end_of_speech(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        image_file: Path, camera_source: str | None) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What do you see?")]), RATE_HZ)
    config = Config(llm=LLMConfig(url=llama_server.url, max_tokens=16, temperature=0.0))
    bus = EventBus()
    events = record(bus)
    camera = None
    if camera_source is not None:
        source = str(image_file) if camera_source == "image" else "/no/such/camera.mp4"
        camera = OpenCVCamera(dataclasses.replace(config.camera, source=source))
    loop = VoiceLoop(Assistant(config, bus, LlamaCppLLM(config.llm, llama_server.url)),
                     FileSource(wav), NullSink(), OpenWakeWordEngine(config.wakeword), stt, tts,
                     camera=camera)
    [turn] = await loop.run()
    await bus.drain()
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.answer
    frames = [e for e in events if e.type is EventType.FRAME_CAPTURED]
    if camera_source == "image":
        [frame] = frames
        assert (frame.width, frame.height) == (768, 461) and frame.jpeg_bytes > 0
        kinds = [e.type for e in events]
        assert kinds.index(EventType.FRAME_CAPTURED) < kinds.index(EventType.LLM_TOKEN)
    else:
        assert frames == []  # no camera, or a broken one: the question goes on without


async def test_vision_demo_for_the_llava_engine(image_file: Path) -> None:
    import asyncio
    import os
    import sys

    seen: list[dict[str, Any]] = []

    async def vision(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"text": "Un mur rouge et un mur noir."})

    app = web.Application()
    app.router.add_post("/v1/vision", vision)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    env = {**os.environ, "HEISENBERG_CONFIG": "",
           "LLAVA_SERVER_URL": str(server.make_url("/v1/vision"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heisenberg", "demo", "--engine", "llava", "--image",
        str(image_file), "--prompt", "Décrire la scène", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    await server.close()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().splitlines() == [
        "engine: llava", "prompt: Décrire la scène", f"image: {image_file}", "vision: yes",
        "answer: Un mur rouge et un mur noir."]
    assert base64.b64decode(seen[0]["image"])[:2] == b"\xff\xd8"  # a JPEG
    assert seen[0]["prompt"] == "Décrire la scène"  # as the user wrote it (seed 000)


def test_vision_demo_for_llamacpp_without_mmproj(llama_server: RunningServer,
                                                 image_file: Path) -> None:
    out = run(["demo", "--engine", "llamacpp", "--image", str(image_file), "--prompt",
               "Describe the scene"], client_env(llama_server))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == ["engine: llamacpp", "prompt: Describe the scene",
                         f"image: {image_file}"]
    assert lines[3] == "vision: no (the image was not sent)"
    assert lines[4].startswith("answer: ")


async def test_no_inference_runs_on_the_event_loop(
        llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT, tmp_path: Path,
        image_file: Path) -> None:
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What do you see?"), silence(1.5)]), RATE_HZ)
    config = Config(llm=LLMConfig(url=llama_server.url, max_tokens=16, temperature=0.0))
    seen: list[tuple[str, bool]] = []
    camera = OpenCVCamera(dataclasses.replace(config.camera, source=str(image_file)))
    wake = VadGatedWakeWord(OffLoopSpy(OpenWakeWordEngine(config.wakeword), seen),
                            WebRtcVad(2).any_speech)
    loop = VoiceLoop(Assistant(config, EventBus(), LlamaCppLLM(config.llm, llama_server.url)),
                     FileSource(wav, realtime=True), NullSink(), wake, OffLoopSpy(stt, seen),
                     OffLoopSpy(tts, seen), camera=OffLoopSpy(camera, seen), early_answer=True)
    [turn] = await loop.run()
    assert turn.outcome is not None and turn.outcome.error is None
    names = {name for name, _ in seen}
    assert names == {"OpenWakeWordEngine.process", "WhisperSTT.transcribe",
                     "PiperTTS.synthesize", "OpenCVCamera.capture"}, names
    assert [name for name, on_loop in seen if on_loop] == []


async def test_a_missing_webcam_is_reported_as_missing_and_never_opened(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    grabber = FrameGrabber(OpenCVCamera(CameraConfig(source="97")))
    assert grabber.status == "missing: no webcam (/dev/video97 does not exist)"
    assert await grabber.grab() is None and await grabber.grab() is None
    warnings = [r for r in caplog.records if "no webcam" in r.getMessage()]
    assert len(warnings) == 1  # said once, not every turn
    assert "WARN" not in capfd.readouterr().err  # OpenCV was not asked to open it
    assert FrameGrabber(None).status == "disabled"


def test_a_bad_image_gives_our_message_not_opencvs(tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text")
    with pytest.raises(CameraError, match="not a readable image file"):
        load_image(str(bad), CameraConfig())
    assert "findDecoder" not in capfd.readouterr().err


async def test_the_last_scene_goes_with_the_sessions_next_questions(
        make_api: MakeAPI) -> None:
    """Seed 001: "questions contextuelles sur la dernière scène"."""
    fake = FakeVisionServer(vision=True)
    llm = await fake.__aenter__()
    try:
        api = await make_api(url=llm.base_url)
        image = base64.b64encode(cv2.imencode(".png", np.full((64, 64, 3), 90, np.uint8))[1]
                                 .tobytes()).decode()
        status, body, _ = await call(api, "POST", "/api/v1/process-frame",
                                     json={"image": image, "session_id": "desk"})
        assert status == 200 and body["description"] == "A red wall."
        status, _, _ = await call(api, "POST", "/api/v1/ask",
                                  json={"text": "What colour is it?", "session_id": "desk"})
        assert status == 200
        asked = fake.requests[-1]["prompt"]
        assert isinstance(asked, dict), asked  # the frame went with the question...
        assert "What you saw in it: A red wall." in asked["prompt_string"]  # ...and what it showed
        assert asked["prompt_string"].rstrip().endswith("What colour is it?\n\nAssistant:")
        # Another session was shown nothing.
        await call(api, "POST", "/api/v1/ask", json={"text": "Hi.", "session_id": "other"})
        assert isinstance(fake.requests[-1]["prompt"], str)
        assert "red wall" not in fake.requests[-1]["prompt"]
        # Past its time, the scene is forgotten.
        api.assistant.config = dataclasses.replace(api.assistant.config, session=(
            dataclasses.replace(api.assistant.config.session, scene_ttl_s=0.0)))
        await call(api, "POST", "/api/v1/ask", json={"text": "And now?", "session_id": "desk"})
        assert isinstance(fake.requests[-1]["prompt"], str)
    finally:
        await fake.__aexit__()
