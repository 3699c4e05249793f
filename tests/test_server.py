"""Managed mode: Heisenberg starts, supervises and stops the real llama.cpp server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from heisenberg.core.errors import LLMServerProcessError
from heisenberg.llm.server import ManagedLlamaServer, server_command, wait_healthy
from tests.conftest import make_server_config


async def test_start_restart_after_crash_and_stop(tmp_path: Path) -> None:
    server = ManagedLlamaServer(make_server_config(), tmp_path / "llama.log")
    await server.start()
    try:
        first_pid = server.pid
        assert first_pid is not None
        # It runs below the daemon's priority (server.nice): the daemon's own work first.
        assert make_server_config().nice == 10
        assert os.getpriority(os.PRIO_PROCESS, first_pid) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        # Paused while the first piece of an answer is synthesized: stopped, a request
        # waits; running again after the block, or after max_s if the block lasts longer.
        with server.paused(max_s=10):
            await until_state(first_pid, "T")
            with pytest.raises(LLMServerProcessError):
                await wait_healthy(server.url, 0.5)
        await until_state(first_pid, "RS")
        await wait_healthy(server.url, 5)
        with server.paused(max_s=0.3):
            await until_state(first_pid, "T")
            await until_state(first_pid, "RS")
        await wait_healthy(server.url, 5)
        os.kill(first_pid, signal.SIGKILL)
        async with asyncio.timeout(60):
            while server.restarts == 0:
                await asyncio.sleep(0.1)
        assert server.pid != first_pid
        await wait_healthy(server.url, 5)
    finally:
        started = time.monotonic()
        await server.stop()
    assert time.monotonic() - started < 5
    with pytest.raises(LLMServerProcessError):
        await wait_healthy(server.url, 0.5)


async def until_state(pid: int, states: str, timeout_s: float = 5.0) -> None:
    """Until the process's state (/proc/PID/stat: R running, S sleeping, T stopped) is one
    of ``states``."""
    async with asyncio.timeout(timeout_s):
        while True:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")  # noqa: ASYNC240
            if stat.rsplit(")", 1)[1].split()[0] in states:
                return
            await asyncio.sleep(0.02)


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        cfg = make_server_config(port=sock.getsockname()[1])
        with pytest.raises(LLMServerProcessError, match="already in use"):
            await ManagedLlamaServer(cfg).start()


async def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    cfg = make_server_config(model_path=str(tmp_path / "nope.gguf"))
    with pytest.raises(LLMServerProcessError, match=r"model_path.*nope.gguf.*not found"):
        await ManagedLlamaServer(cfg).start()


async def test_a_model_that_is_not_gguf_fails_with_the_log_tail(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a model" * 100)
    cfg = make_server_config(model_path=str(bogus), restart=False)
    with pytest.raises(LLMServerProcessError, match="exited with code"):
        await ManagedLlamaServer(cfg, tmp_path / "log").start()


def test_command_prefers_the_binary_and_falls_back_to_the_wheel(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    wheel = server_command(make_server_config(engine="auto", binary="no-such-llama-server"),
                           model)
    assert wheel[1:3] == ["-m", "heisenberg.llm.xserver"]
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    binary = server_command(make_server_config(engine="auto", mmproj_path=str(model)), model)
    assert binary[0] == str(fake)
    assert binary[-3:] == ["--no-jinja", "--chat-template", "gemma"]
    assert binary[binary.index("--mmproj") + 1] == str(model)
    assert "--swa-full" in binary and "--swa-full" in wheel
    assert "--swa-full" not in server_command(make_server_config(swa_full=False), model)
    with pytest.raises(LLMServerProcessError, match="not on PATH"):
        server_command(make_server_config(engine="binary", binary="nope-nope"), model)


async def test_auto_falls_back_to_the_wheel_when_the_binary_cannot_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A llama-server built for CPU features this machine lacks dies of SIGILL as it starts
    (seen here: a native build on a VM that advertises AMX): "auto" then serves the model with
    the wheel; "binary" fails with an error that says why."""
    crashing = tmp_path / "llama-server"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(0o755)
    auto = make_server_config(engine="auto", binary=str(crashing))
    server = ManagedLlamaServer(auto, tmp_path / "auto.log")
    with caplog.at_level("WARNING", logger="heisenberg.llm.server"):
        await server.start()
    try:
        await wait_healthy(server.url, 5)
        assert "SIGILL" in caplog.text and "xllamacpp wheel instead" in caplog.text
    finally:
        await server.stop()
    forced = make_server_config(engine="binary", binary=str(crashing), restart=False)
    with pytest.raises(LLMServerProcessError, match="killed by SIGILL.*illegal instruction"):
        await ManagedLlamaServer(forced, tmp_path / "forced.log").start()


def test_start_llama_server_script_serves_until_sigterm() -> None:
    import subprocess
    import urllib.error
    import urllib.request

    from tests.conftest import free_port

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    proc = subprocess.Popen([str(root / "start_llama_server.sh"), "--port", str(port),
                             "--threads", "1"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "HEISENBERG_CONFIG": "", "HEISENBERG_SERVER_ENGINE":
                                 os.environ.get("TEST_LLAMA_ENGINE", "xllamacpp"),
                                 "HEISENBERG_LLM_API_KEY": "shared-key"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once /health answered
        assert f"ready at http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            assert resp.status == 200
        # llm.api_key is the key: the daemon's config and the server's are the same file.
        for key, status in (("", 401), ("wrong", 401), ("shared-key", 200)):
            ask = urllib.request.Request(
                f"http://127.0.0.1:{port}/completion", data=b'{"prompt": "hi", "n_predict": 1}',
                headers={"Authorization": f"Bearer {key}"} if key else {})
            try:
                with urllib.request.urlopen(ask, timeout=30) as resp:
                    got = resp.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, key
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
