"""Shared fixtures. The real llama.cpp server is started once per test session."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from heisenberg.core.config import Config, LLMConfig, ServerConfig
from heisenberg.llm.server import default_model_path, server_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_server_config(**overrides: object) -> ServerConfig:
    # One thread: this machine has two cores and the tests run other work beside the server.
    base = ServerConfig(port=free_port(), threads=1, n_ctx=2048, startup_timeout_s=60.0)
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
    cfg = make_server_config()
    log_file = (tmp_path_factory.mktemp("llama") / "server.log").open("wb")
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
    yield RunningServer(url, proc)
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
