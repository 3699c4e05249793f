"""Remote engines: the voice loop hearing and speaking here while another process (Heisenberg's
own Wyoming server) transcribes, synthesizes and spots the wake word."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from heisenberg.audio.format import RATE_HZ, AudioChunk, write_wav
from heisenberg.audio.sinks import WavFileSink
from heisenberg.audio.sources import FileSource
from heisenberg.core.bus import EventBus
from heisenberg.core.config import STTConfig, TTSConfig, WakeWordConfig
from heisenberg.core.errors import STTError, TTSError
from heisenberg.core.states import State
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.main import load_voice_engines
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.orchestrator.voice import SORRY, VoiceLoop
from heisenberg.voice.remote import WyomingSTT, WyomingTTS, WyomingWake
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine
from tests.conftest import RunningServer, config_for, free_port, silence, speech


def silent_chunk() -> AudioChunk:
    """80 ms of silence, as the microphone gives it."""
    return AudioChunk(np.zeros(1280, np.int16).tobytes(), RATE_HZ)


def start_server(llama_server: RunningServer, uri: str, log: Path) -> subprocess.Popen[str]:
    """The server in its own process; what it logs goes to ``log`` (a pipe nobody reads
    would fill up and block it)."""
    env = {**os.environ, "HEISENBERG_CONFIG": "", "HEISENBERG_LLM_URL": llama_server.url,
           "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1"}
    with log.open("a") as err:
        proc = subprocess.Popen([sys.executable, "-m", "heisenberg", "-v", "wyoming", "--uri",
                                 uri], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once it serves
    assert line.startswith("Wyoming server at"), (line, proc.poll(), log.read_text()[-2000:])
    return proc


def stop_server(proc: subprocess.Popen[str], log: Path) -> None:
    """SIGTERM, and the server gone within a minute; if not, what it logged says why."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # the fault handler writes every thread's stack
        proc.wait()
        raise AssertionError("the Wyoming server did not exit within 60 s of SIGTERM; its "
                             f"log ends:\n{log.read_text()[-6000:]}") from None
    assert proc.returncode == 0, log.read_text()[-4000:]


@pytest.fixture
def remote(llama_server: RunningServer, tmp_path: Path
           ) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    uri = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "wyoming.log"
    proc = start_server(llama_server, uri, log)
    yield uri, proc, log
    if proc.poll() is None:
        stop_server(proc, log)


async def test_a_voice_turn_on_remote_engines(
        remote: tuple[str, subprocess.Popen[str], Path], llama_server: RunningServer,
        tts: PiperTTS, tmp_path: Path) -> None:
    uri, proc, log = remote
    base = config_for(llama_server.url)
    config = dataclasses.replace(
        base, stt=STTConfig(engine="wyoming", uri=uri),
        tts=TTSConfig(engine="wyoming", uri=uri),
        wakeword=WakeWordConfig(engine="wyoming", uri=uri))
    engines = await load_voice_engines(config)
    assert isinstance(engines.stt, WyomingSTT) and isinstance(engines.tts, WyomingTTS)
    wav = tmp_path / "q.wav"
    write_wav(wav, np.concatenate([silence(0.5), speech(tts, "Hey Jarvis."), silence(0.3),
                                   speech(tts, "What is the capital of France?")]), RATE_HZ)
    reply = tmp_path / "reply.wav"
    sink = WavFileSink(reply, engines.tts.rate_hz)
    bus = EventBus()
    llm = LlamaCppLLM(config.llm, llama_server.url)
    loop = VoiceLoop(Assistant(config, bus, llm), FileSource(wav, realtime=True), sink,
                     engines.wake, engines.stt, engines.tts, earcons=False)
    [turn] = await asyncio.wait_for(loop.run(), 120)
    await sink.close()
    assert "capital of france" in turn.transcript.lower()
    assert turn.outcome is not None and turn.outcome.error is None and turn.outcome.spoken
    assert len(sink.samples()) > engines.tts.rate_hz // 2  # the remote voice, played here

    # The remote machine goes away: a clear error within the time limit, never a hang. (Its
    # own exit waits for its worker threads: once, on a machine running two test sessions,
    # longer than 20 s.)
    stop_server(proc, log)
    started = time.monotonic()
    with pytest.raises(STTError, match="cannot be reached"):
        await asyncio.to_thread(engines.stt.transcribe, silence(1.0))
    with pytest.raises(TTSError, match="cannot be reached"):
        await asyncio.to_thread(engines.tts.synthesize, "Hello.")
    assert await asyncio.to_thread(engines.wake.process, silent_chunk()) is None
    assert time.monotonic() - started < 30
    # A spoken question meanwhile: the turn fails, the user hears it once, the loop goes on.
    sink2 = WavFileSink(tmp_path / "sorry.wav", tts.rate_hz)
    loop = VoiceLoop(Assistant(config, bus, llm), FileSource(wav), sink2,
                     OpenWakeWordEngine(WakeWordConfig()), engines.stt, tts, earcons=False)
    [failed] = await asyncio.wait_for(loop.run(), 60)
    assert failed.outcome is not None and failed.outcome.error is not None
    assert failed.outcome.error.code == "stt" and "cannot be reached" in str(
        failed.outcome.error)
    assert SORRY in sink2.hearing(echo_s=600) and loop.state is State.IDLE
    # ...and comes back: the next call connects again.
    proc2 = start_server(llama_server, uri, log)
    try:
        assert await asyncio.to_thread(engines.stt.transcribe, silence(1.0)) == ""
    finally:
        stop_server(proc2, log)
    await llm.close()
    await bus.close()


def FileChunk():
    from heisenberg.audio.format import AudioChunk

    return AudioChunk(np.zeros(1280, np.int16).tobytes(), RATE_HZ)


def test_a_remote_stage_needs_its_uri() -> None:
    from heisenberg.core.config import Config
    from heisenberg.core.errors import ConfigError

    config = dataclasses.replace(Config(), stt=STTConfig(engine="wyoming"))
    with pytest.raises(ConfigError, match="stt.uri must name the Wyoming service"):
        asyncio.run(load_voice_engines(config))
    with pytest.raises(Exception, match="not tcp://host:port"):
        WyomingWake("http://x", "hey_jarvis")
