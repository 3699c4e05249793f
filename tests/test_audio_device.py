"""Real, real-time audio devices: a PulseAudio server started by the test with a null sink,
whose monitor source loops what the speaker plays back into the microphone."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk
from heisenberg.audio.sinks import SpeakerSink
from heisenberg.audio.sources import MicrophoneSource
from heisenberg.core.tasks import cancel_and_wait
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from tests.conftest import NotifySocket, RunningServer, free_port, reinit_portaudio
from tests.test_service import saved_turn, stop, write_config


async def test_a_failing_echo_reference_does_not_stop_the_speaker(pulse: None) -> None:
    """Fault injection on the real device: the callback's echo reference raises at every
    block; the stream keeps playing (an exception in PortAudio's callback would abort it)."""

    class Broken:
        def played(self, samples: np.ndarray, rate_hz: int, at: float) -> None:
            raise RuntimeError("injected reference failure")

    speaker = SpeakerSink(rate_hz=RATE_HZ)
    speaker.reference = Broken()  # type: ignore[assignment]
    try:
        tone = (3000 * np.sin(np.arange(RATE_HZ) * 0.05)).astype(np.int16)  # 1 s
        for _ in range(2):
            await asyncio.wait_for(speaker.play(AudioChunk(tone.tobytes(), RATE_HZ)), 10.0)
        assert speaker.played_ms == pytest.approx(2000, abs=1)
        assert speaker.reference_failures > 0 and speaker.error is None
    finally:
        await speaker.close()


async def test_the_configured_speaker_buffer_is_the_device_s(pulse: None) -> None:
    """``audio.output_latency_ms`` is what the daemon's speaker asks the device for: a
    smaller buffer holds less of an answer after a stop."""
    from heisenberg.core.config import AudioConfig, Config
    from heisenberg.main import make_sink

    reported = {}
    for ms in (40.0, 250.0):
        sink = make_sink(Config(audio=AudioConfig(output_latency_ms=ms)), None, RATE_HZ)
        assert isinstance(sink, SpeakerSink) and sink.latency_s == ms / 1000
        try:
            await sink.ready()
            reported[ms] = float(sink._stream.latency)
        finally:
            await sink.close()
    assert reported[40.0] < reported[250.0], reported


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
        await cancel_and_wait(task, 5.0)
        await speaker.close()
    assert mic.failures == 0
    assert [c.timestamp_ms for c in heard[:3]] == [0, 80, 160]
    samples = np.concatenate([c.array() for c in heard])
    assert len(samples) / RATE_HZ >= said.duration_ms / 1000
    text = await asyncio.to_thread(stt.transcribe, samples)
    # A loaded machine can cost the loopback a few samples ("cap at all of France"): the
    # words must come through, not a perfect transcript.
    assert "france" in text.lower(), text


async def test_stop_cuts_playback_quickly(pulse: None, tts: PiperTTS) -> None:
    speaker = SpeakerSink(rate_hz=tts.rate_hz)
    long = tts.synthesize("This is a long sentence that would take several seconds to say "
                          "if nobody interrupted it halfway through.")
    play = asyncio.create_task(speaker.play(long))
    await asyncio.sleep(1.0)
    await speaker.stop()
    await asyncio.wait_for(play, 5.0)
    # In audio time: playback ended long before the sentence did. (How fast in wall-clock
    # time is bench/barge_in.py's business: a busy machine would fail a limit here.)
    assert speaker.played_ms < long.duration_ms * 0.7
    await speaker.close()


def steady_tone(seconds: float) -> np.ndarray:
    """A tone that never crosses zero: any zero sample in what was played is a gap."""
    n = int(seconds * RATE_HZ)
    return (3000 + 1000 * np.sin(np.arange(n) * 0.05)).astype(np.int16)


async def test_a_held_answer_waits_where_it_was_and_goes_on(pulse: None) -> None:
    """``hold`` (a sound over the answer that may be the user) pauses the speaker on the
    sample it had reached: the device and the echo reference get silence, and ``release``
    goes on from there, nothing lost or repeated. ``stop`` ends a hold."""
    blocks: list[np.ndarray] = []

    class Recorder:
        def played(self, samples: np.ndarray, rate_hz: int, at: float) -> None:
            blocks.append(samples.copy())

    speaker = SpeakerSink(rate_hz=RATE_HZ)
    speaker.reference = Recorder()  # type: ignore[assignment]
    tone = steady_tone(1.5)
    try:
        play = asyncio.create_task(speaker.play(AudioChunk(tone.tobytes(), RATE_HZ)))
        async with asyncio.timeout(10):  # the device opens, and plays a little of it
            while not (speaker._queue and speaker._queue[0].position > RATE_HZ // 10):
                await asyncio.sleep(0.02)
        speaker.hold()
        await asyncio.sleep(0.1)  # a block in flight when it was held
        position = speaker._queue[0].position
        await asyncio.sleep(0.5)
        assert speaker._queue[0].position == position and not play.done()
        speaker.release()
        await asyncio.wait_for(play, 10.0)
        assert speaker.played_ms == pytest.approx(1500, abs=1)
        sounded = np.concatenate(blocks)
        loud = np.flatnonzero(sounded)
        body = sounded[loud[0]:loud[-1] + 1]
        assert np.array_equal(body[body != 0], tone)  # every sample once, in order
        assert np.count_nonzero(body == 0) >= RATE_HZ // 2  # the hold, as silence

        again = asyncio.create_task(speaker.play(AudioChunk(tone.tobytes(), RATE_HZ)))
        await asyncio.sleep(0.3)
        speaker.hold()
        await speaker.stop()
        await asyncio.wait_for(again, 5.0)
        assert not speaker.held
    finally:
        await speaker.close()


async def test_a_held_file_sink_records_the_pause(tmp_path: Path) -> None:
    """The paced WAV sink (a speaker without a device) holds the same way: the file has
    the whole answer, with the hold as silence in it."""
    from heisenberg.audio.sinks import WavFileSink

    sink = WavFileSink(tmp_path / "held.wav", RATE_HZ, realtime=True)
    tone = steady_tone(0.6)
    play = asyncio.create_task(sink.play(AudioChunk(tone.tobytes(), RATE_HZ)))
    await asyncio.sleep(0.2)
    sink.hold()
    await asyncio.sleep(0.3)
    assert not play.done()
    sink.release()
    await asyncio.wait_for(play, 10.0)
    samples = sink.samples()
    assert np.array_equal(samples[samples != 0], tone)
    assert np.count_nonzero(samples == 0) >= RATE_HZ // 50
    assert sink.played_ms == pytest.approx(600, abs=1)


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
    await cancel_and_wait(task, 5.0)
    assert len(errors) == 1 and "unavailable" in errors[0]  # said once per outage


async def test_the_daemon_hands_free_on_a_real_sound_device(
        pulse: None, llama_server: RunningServer, tts: PiperTTS, stt: WhisperSTT,
        tmp_path: Path, notify: NotifySocket) -> None:
    """``heisenberg run`` on the default microphone and speaker, as on a desk: someone says
    "Hey Jarvis" and a question into the room (the null sink), the daemon hears it through
    the microphone (the sink's monitor), and answers through the speaker into the same room,
    where it hears its own voice too, which must not wake it, even when it says "Hey Jarvis"
    itself (here through the API's /speak)."""
    config, history = tmp_path / "config.toml", tmp_path / "history.sqlite3"
    port = free_port()
    write_config(config, llama_server, history, f"[api]\nenabled = true\nport = {port}\n")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "HF_HUB_OFFLINE": "1"}
    env.pop("WATCHDOG_USEC", None)
    # The room: the user's voice (kept open, so that the sink runs) and what is heard in it.
    user = SpeakerSink(rate_hz=tts.rate_hz)
    await user.play(AudioChunk(np.zeros(tts.rate_hz // 5, np.int16).tobytes(), tts.rate_hz))
    room = MicrophoneSource()
    heard: list[AudioChunk] = []

    async def listen() -> None:
        async for chunk in room.chunks():
            heard.append(chunk)

    recorder = asyncio.create_task(listen())
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "heisenberg", "--config", str(config), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.to_thread(notify.wait_for, lambda m: "READY=1" in m, 60, "READY=1")
        await asyncio.sleep(0.5)
        question_at_ms = len(heard) * 80
        await user.play(tts.synthesize("Hey Jarvis."))
        await asyncio.sleep(0.3)
        await user.play(tts.synthesize("What is the capital of France?"))
        await asyncio.to_thread(notify.wait_for, lambda m: m.startswith("STATUS=speaking"),
                                60, "speaking")
        answer_at_ms = len(heard) * 80
        await asyncio.to_thread(notify.wait_for,
                                lambda m: m.startswith("STATUS=idle (answered)"), 60, "answered")
        await asyncio.sleep(3.0)  # its own voice, still echoing in the room, must not wake it
        spoke_at_ms = len(heard) * 80
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{port}/api/v1/speak",
                json={"text": "Hey Jarvis. That is my name.", "play": True}) as resp:
            assert resp.status == 200
        await asyncio.sleep(5.0)  # played in the room, heard by its microphone
        stderr = await asyncio.to_thread(stop, proc, signal.SIGTERM, notify)
    finally:
        proc.kill()
        await cancel_and_wait(recorder, 5.0)
        await user.close()
    statuses = [m for m in notify.messages if m.startswith("STATUS=listening")]
    assert len(statuses) == 1, (notify.messages, stderr)  # woken once: by the user only
    assert "level=error" not in stderr, stderr  # the devices opened and stayed open
    turn = saved_turn(history)
    assert "france" in turn.user.lower() and turn.assistant.strip()
    # What the room heard after the question: the answer, spoken through the speaker.
    samples = np.concatenate([c.array() for c in heard])
    assert answer_at_ms > question_at_ms
    spoken = await asyncio.to_thread(stt.transcribe, samples[answer_at_ms * 16:spoke_at_ms * 16])
    words = set(re.findall(r"[a-z']{3,}", turn.assistant.lower()))
    assert words & set(re.findall(r"[a-z']{3,}", spoken.lower())), (turn.assistant, spoken)
