"""Heisenberg as a Wyoming server, driven by the wyoming package's own client the way Home
Assistant's integration drives it, on the real engines (whisper, Piper, openWakeWord, a real
llama.cpp server)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient, AsyncUnixClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)
from wyoming.wake import Detect, Detection, NotDetected

from heisenberg.api.wyoming import WyomingServer, wyoming_engines
from heisenberg.audio.format import RATE_HZ, resample, write_wav
from heisenberg.audio.format import AudioChunk as PcmChunk
from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config, WyomingConfig, load_config
from heisenberg.core.errors import ConfigError
from heisenberg.llm.stream import LlamaCppLLM
from heisenberg.orchestrator.assistant import Assistant
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import WakeWordEngine
from tests.conftest import RunningServer, config_for, free_port, silence, speech

CHUNK = 1024  # samples per audio-chunk, as Home Assistant sends them


@pytest.fixture
async def server(llama_server: RunningServer, tts: PiperTTS,
                 stt: WhisperSTT) -> AsyncIterator[str]:
    config = dataclasses.replace(config_for(llama_server.url),
                                 wyoming=WyomingConfig(uri=f"tcp://127.0.0.1:{free_port()}"))
    bus = EventBus()
    llm = LlamaCppLLM(config.llm, llama_server.url)
    assistant = Assistant(config, bus, llm)
    async with WyomingServer(config.wyoming, wyoming_engines(config, assistant, stt, tts)):
        yield config.wyoming.uri
    await llm.close()
    await bus.close()


def client(uri: str) -> AsyncTcpClient:
    host, port = uri.removeprefix("tcp://").rsplit(":", 1)
    return AsyncTcpClient(host, int(port))


async def read(c: AsyncTcpClient, timeout_s: float = 60) -> Event:
    event = await asyncio.wait_for(c.read_event(), timeout_s)
    assert event is not None, "the server closed the connection"
    return event


async def send_audio(c: AsyncTcpClient, samples: np.ndarray, rate: int = RATE_HZ,
                     stop: bool = True) -> None:
    await c.write_event(AudioStart(rate=rate, width=2, channels=1).event())
    pcm = samples.astype(np.int16).tobytes()
    for i in range(0, len(pcm), CHUNK * 2):
        await c.write_event(AudioChunk(rate=rate, width=2, channels=1,
                                       audio=pcm[i:i + CHUNK * 2]).event())
    if stop:
        await c.write_event(AudioStop().event())


def shifted(audio: np.ndarray, factor: float = 1.08) -> np.ndarray:
    """Slower and lower: not the exact voice the wake word was tuned on."""
    return resample(audio, RATE_HZ, int(RATE_HZ * factor))


async def test_describe_lists_the_four_services(server: str) -> None:
    async with client(server) as c:
        await c.write_event(Describe().event())
        info = Info.from_event(await read(c))
    assert [p.name for p in info.asr] == ["faster-whisper"] and info.asr[0].models[0].languages
    assert info.tts[0].supports_synthesize_streaming and info.tts[0].voices[0].name
    assert info.wake[0].models[0].name == "hey_jarvis"
    assert info.handle[0].models[0].name == "heisenberg"


async def test_transcribe_recorded_speech(server: str, tts: PiperTTS) -> None:
    async with client(server) as c:
        await c.write_event(Transcribe(language="en").event())
        # Sent at 22050 Hz, as some satellites do: the server converts it.
        await send_audio(c, resample(shifted(speech(tts, "What is the capital of France?")),
                                     RATE_HZ, 22050), rate=22050)
        transcript = Transcript.from_event(await read(c))
    assert "capital of france" in transcript.text.lower()


async def test_synthesize_whole_and_streamed(server: str) -> None:
    async with client(server) as c:
        await c.write_event(Synthesize(text="Hello there. This is Heisenberg.").event())
        start = AudioStart.from_event(await read(c))
        assert (start.rate, start.width, start.channels) == (22050, 2, 1)
        audio = b""
        while AudioChunk.is_type((event := await read(c)).type):
            audio += AudioChunk.from_event(event).audio
        assert AudioStop.is_type(event.type) and len(audio) > 22050  # over half a second
        # Streamed: audio for the first sentence before the text is complete.
        await c.write_event(SynthesizeStart().event())
        await c.write_event(SynthesizeChunk(text="The capital of France is Paris. ").event())
        first = await read(c)
        assert AudioStart.is_type(first.type)  # sentence one is spoken already
        await c.write_event(SynthesizeChunk(text="It is big.").event())
        await c.write_event(Synthesize(text="The capital of France is Paris. It is big."
                                       ).event())  # the compatibility copy: not spoken again
        await c.write_event(SynthesizeStop().event())
        kinds = []
        while not SynthesizeStopped.is_type((event := await read(c)).type):
            kinds.append(event.type)
        assert kinds.count("audio-start") == 0 and kinds.count("audio-stop") == 1
        assert kinds.count("audio-chunk") > 10


async def test_detect_the_wake_word_and_its_absence(server: str, tts: PiperTTS) -> None:
    async with client(server) as c:
        await c.write_event(Detect(names=["hey_jarvis"]).event())
        await send_audio(c, np.concatenate([silence(0.5), shifted(speech(tts, "Hey Jarvis.")),
                                            silence(1.0)]))
        detection = Detection.from_event(await read(c))
        assert detection.name == "hey_jarvis"
        await c.write_event(Detect().event())
        await send_audio(c, np.concatenate([silence(0.5), speech(tts, "Good morning."),
                                            silence(0.5)]))
        assert NotDetected.is_type((await read(c)).type)


async def test_handle_is_a_conversation(server: str) -> None:
    async with client(server) as c:
        await c.write_event(Transcript(text="My name is Zorblax.").event())
        first = Handled.from_event(await read(c))
        assert first.text and first.context and first.context["conversation_id"]
        await c.write_event(Transcript(text="What is my name?").event())
        second = Handled.from_event(await read(c))
        assert second.context == first.context  # the same conversation goes on


async def test_bad_input_is_an_error_event_and_the_server_goes_on(server: str) -> None:
    async with client(server) as c:
        await c.write_event(Event(type="make-coffee"))
        error = Error.from_event(await read(c))
        assert error.code == "unknown_event" and "make-coffee" in error.text
        await c.write_event(Transcribe().event())
        await c.write_event(AudioStart(rate=16000, width=3, channels=1).event())
        error = Error.from_event(await read(c))
        assert error.code == "audio_format" and "16000 Hz, 2 bytes, 1 channel" in error.text
        await c.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0").event())
        assert Error.from_event(await read(c)).code == "audio_order"
        await c.write_event(Detect(names=["okay_computer"]).event())
        assert Error.from_event(await read(c)).code == "wake_model"
    # A client that goes away in the middle of its audio.
    async with client(server) as c:
        await c.write_event(Transcribe().event())
        await send_audio(c, silence(1.0), stop=False)
    # Fifty at once: every one is answered.
    async def describe_once() -> Info:
        async with client(server) as c:
            await c.write_event(Describe().event())
            return Info.from_event(await read(c))

    infos = await asyncio.gather(*(describe_once() for _ in range(50)))
    assert len(infos) == 50 and all(i.asr for i in infos)


def test_wyoming_stays_on_loopback_unless_told() -> None:
    with pytest.raises(ConfigError, match="no authentication"):
        load_config(None, env={"HEISENBERG_WYOMING_URI": "tcp://0.0.0.0:10300"})
    config, _ = load_config(None, env={"HEISENBERG_WYOMING_URI": "tcp://0.0.0.0:10300",
                                       "HEISENBERG_WYOMING_ALLOW_REMOTE": "true"})
    assert config.wyoming.allow_remote
    with pytest.raises(ConfigError, match="tcp://host:port"):
        load_config(None, env={"HEISENBERG_WYOMING_URI": "http://x"})
    assert Config().wyoming.uri == "tcp://127.0.0.1:10300"


async def test_too_much_audio_is_refused_and_memory_stays_bounded(server: str) -> None:
    async with client(server) as c:
        await c.write_event(Transcribe().event())
        await c.write_event(AudioStart(rate=RATE_HZ, width=2, channels=1).event())
        second = np.zeros(RATE_HZ, np.int16).tobytes()
        for _ in range(61):
            await c.write_event(AudioChunk(rate=RATE_HZ, width=2, channels=1,
                                           audio=second).event())
        error = Error.from_event(await read(c))
        assert error.code == "audio_too_long" and "60 s" in error.text
        await c.write_event(Describe().event())  # and the connection goes on
        assert Info.is_type((await read(c)).type)


class SlowWake(WakeWordEngine):
    """Fault injection: a wake word model that takes its time over a chunk."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.busy = self.closed = False
        self.closed_while_busy: bool | None = None

    def process(self, chunk: PcmChunk, threshold: float | None = None) -> None:
        self.busy = True
        self.started.set()
        self.release.wait(30)
        self.busy = False

    def close(self) -> None:
        self.closed_while_busy, self.closed = self.busy, True


async def test_stopping_waits_for_the_chunk_in_detection(tts: PiperTTS,
                                                          stt: WhisperSTT) -> None:
    """SIGTERM while a client's chunk is in the wake word model: the server ends that
    connection after the chunk, and closes the model then, not under it."""
    config = dataclasses.replace(config_for("http://127.0.0.1:9"),
                                 wyoming=WyomingConfig(uri=f"tcp://127.0.0.1:{free_port()}"))
    bus = EventBus()
    llm = LlamaCppLLM(config.llm, "http://127.0.0.1:9")
    wakes: list[SlowWake] = []

    def new_wake() -> SlowWake:
        wakes.append(SlowWake())
        return wakes[-1]

    engines = dataclasses.replace(wyoming_engines(config, Assistant(config, bus, llm), stt, tts),
                                  new_wake=new_wake)
    server = WyomingServer(config.wyoming, engines)
    await server.__aenter__()
    try:
        async with client(config.wyoming.uri) as c:
            await c.write_event(Detect(names=["hey_jarvis"]).event())
            await send_audio(c, silence(0.2), stop=False)
            async with asyncio.timeout(30):
                while not wakes or not wakes[0].started.is_set():
                    await asyncio.sleep(0.02)
            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            await asyncio.sleep(0.3)
            assert not stopping.done() and not wakes[0].closed
            wakes[0].release.set()
            await asyncio.wait_for(stopping, 30)
    finally:
        for wake in wakes:
            wake.release.set()
        await llm.close()
        await bus.close()
    assert wakes[0].closed and wakes[0].closed_while_busy is False


async def test_the_daemon_serves_wyoming_on_a_unix_socket(
        llama_server: RunningServer, tmp_path: Path) -> None:
    sock = tmp_path / "heisenberg.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'[llm]\nurl = "{llama_server.url}"\n[camera]\nenabled = false\n'
                      f'[history]\nenabled = false\n[wyoming]\nenabled = true\n'
                      f'uri = "unix://{sock}"\n')
    wav = tmp_path / "quiet.wav"
    write_wav(wav, silence(60.0), RATE_HZ)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heisenberg", "--config", str(config), "run", "--input",
        str(wav), "--realtime", "--output", str(tmp_path / "out.wav"),
        env={**os.environ, "HEISENBERG_CONFIG": "", "HF_HUB_OFFLINE": "1"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(90):
            while not sock.exists():
                await asyncio.sleep(0.2)
        async with AsyncUnixClient(str(sock)) as c:
            await c.write_event(Describe().event())
            info = Info.from_event(await read(c))
            assert info.asr and info.tts and info.wake and info.handle
            await c.write_event(Transcript(text="Say hello.").event())
            assert Handled.from_event(await read(c)).text
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
    assert proc.returncode == 0
