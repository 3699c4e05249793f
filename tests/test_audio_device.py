"""Real, real-time audio devices: a PulseAudio server started by the test with a null sink,
whose monitor source loops what the speaker plays back into the microphone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.audio.sinks import SpeakerSink
from heisenberg.audio.sources import MicrophoneSource
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from tests.conftest import reinit_portaudio


async def test_speaker_to_microphone_loopback_is_transcribed(pulse: None, tts: PiperTTS,
                                                             stt: WhisperSTT) -> None:
    mic = MicrophoneSource()
    speaker = SpeakerSink(rate_hz=tts.rate_hz)
    heard: list[AudioChunk] = []

    async def capture() -> None:
        async for chunk in mic.chunks():
            heard.append(chunk)

    # A null sink's monitor only runs while something plays into the sink: open the
    # speaker first (it keeps the sink running), then the microphone.
    await speaker.play(AudioChunk(np.zeros(tts.rate_hz // 5, np.int16).tobytes(), tts.rate_hz))
    task = asyncio.create_task(capture())
    try:
        await asyncio.sleep(0.5)
        said = tts.synthesize("What is the capital of France?")
        started = time.perf_counter()
        await speaker.play(said)
        # play() returns when the audio was played, in real time.
        assert time.perf_counter() - started >= said.duration_ms / 1000 * 0.8
        await asyncio.sleep(0.8)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await speaker.close()
    assert mic.failures == 0
    assert [c.timestamp_ms for c in heard[:3]] == [0, 80, 160]
    samples = np.concatenate([c.array() for c in heard])
    assert len(samples) / RATE_HZ >= said.duration_ms / 1000
    text = await asyncio.to_thread(stt.transcribe, samples)
    assert "capital of france" in text.lower()


async def test_stop_cuts_playback_quickly(pulse: None, tts: PiperTTS) -> None:
    speaker = SpeakerSink(rate_hz=tts.rate_hz)
    long = tts.synthesize("This is a long sentence that would take several seconds to say "
                          "if nobody interrupted it halfway through.")
    play = asyncio.create_task(speaker.play(long))
    await asyncio.sleep(1.0)
    asked = time.perf_counter()
    await speaker.stop()
    await asyncio.wait_for(play, 1.0)
    assert (time.perf_counter() - asked) * 1000 < 150
    assert speaker.played_ms < long.duration_ms * 0.7
    await speaker.close()


async def test_no_sound_server_is_reported_and_retried(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # no PulseAudio listens there
    monkeypatch.setenv("HOME", str(tmp_path))
    reinit_portaudio()
    errors: list[str] = []
    mic = MicrophoneSource(retry_s=0.2, on_error=errors.append)

    async def consume() -> None:
        async for _ in mic.chunks():
            pass

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        while mic.failures < 3:
            await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(errors) == 1 and "unavailable" in errors[0]  # said once per outage
