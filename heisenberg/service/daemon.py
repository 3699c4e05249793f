"""``heisenberg run``: the hands-free assistant as a long-running process.

It loads the engines, starts the voice loop (and the HTTP API when enabled), tells systemd
when it listens (READY=1), reports each state change (STATUS=), pings the watchdog, reloads
config.toml on SIGHUP, serves the local API and dashboard when ``api.enabled``, and stops
cleanly on SIGTERM/SIGINT: playback stopped, the LLM stream
cancelled, devices closed, the managed server stopped, the history closed; all within
``STOP_BUDGET_S``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from heisenberg.api.server import API
from heisenberg.core.config import Config, load_config
from heisenberg.core.errors import ConfigError
from heisenberg.core.events import ErrorEvent, Event, EventType, StateChanged
from heisenberg.core.logs import setup_logging
from heisenberg.core.tasks import TaskSet, cancel_and_wait
from heisenberg.main import Runtime, load_voice_engines, make_sink, make_source
from heisenberg.orchestrator.voice import VoiceLoop, VoiceTurn
from heisenberg.service.notify import Notifier

log = logging.getLogger(__name__)

STOP_BUDGET_S = 5.0
#: Sections a reload applies at once; the others are read at start only.
LIVE_SECTIONS = frozenset({"llm", "session", "states", "log"})
#: llm keys that pick the server: fixed for the life of the process.
FIXED_LLM_KEYS = frozenset({"backend", "url", "llava_url"})


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changed keys that only take effect after a restart."""
    changed = ["language"] if old.language != new.language else []
    for section in dataclasses.fields(Config):
        if section.name == "language":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        for key in dataclasses.fields(before):
            if getattr(before, key.name) == getattr(after, key.name):
                continue
            if section.name not in LIVE_SECTIONS or (section.name == "llm"
                                                     and key.name in FIXED_LLM_KEYS):
                changed.append(f"{section.name}.{key.name}")
    return changed


class Daemon:
    def __init__(self, config: Config, config_path: str | None = None, *,
                 input_path: str | None = None, output_path: str | None = None,
                 realtime: bool = False, verbosity: int = 0,
                 notifier: Notifier | None = None, resume: bool = True,
                 on_listening: Callable[[], None] | None = None) -> None:
        """``on_listening``: called once audio flows through the wake word engine (the
        command line prints "listening for ..." then)."""
        self.config = config
        self.on_listening = on_listening
        self._device_failed = asyncio.Event()
        self.config_path = config_path
        self.input_path = input_path
        self.output_path = output_path
        self.realtime = realtime
        self.verbosity = verbosity
        self.notifier = notifier or Notifier()
        self.resume = resume
        self.started_s = time.monotonic()
        self.runtime: Runtime | None = None
        self.voice: VoiceLoop | None = None
        self.api: API | None = None
        self._stop = asyncio.Event()
        self._tasks = TaskSet("daemon")

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Asked to stop (SIGTERM, SIGINT): a clean end, whatever the turns before it did."""
        return self._stop.is_set()

    async def run(self) -> list[VoiceTurn]:
        """Run until the input ends or a stop is asked; returns the voice turns."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        try:
            async with Runtime(self.config, resume=self.resume) as rt:
                self.runtime = rt
                engines = await load_voice_engines(self.config)
                source = make_source(self.config, rt.assistant.record, self.input_path,
                                     self.realtime)
                sink = make_sink(self.config, self.output_path, engines.tts.rate_hz)
                self.voice = rt.voice_loop(engines, source, sink)
                rt.bus.subscribe(self._on_event, [EventType.STATE_CHANGED, EventType.ERROR],
                                 name="systemd")
                if self.config.wyoming.enabled:
                    from heisenberg.api.wyoming import WyomingServer, wyoming_engines

                    served = wyoming_engines(self.config, rt.assistant, engines.stt,
                                             engines.tts)
                    await rt.enter_async_context(WyomingServer(self.config.wyoming, served))
                if self.config.api.enabled:
                    self.api = API(self.config, rt.assistant, tts=engines.tts, sink=sink,
                                   devices=self.voice.device_status)
                    await self.api.start()
                    rt.push_async_callback(self.api.stop)
                voice_task = asyncio.create_task(self.voice.run(), name="voice-loop")
                self._spawn(self._announce_ready(voice_task))
                self._spawn(self.notifier.watchdog(lambda: not voice_task.done()))
                stop_task = asyncio.create_task(self._stop.wait())
                await asyncio.wait({voice_task, stop_task},
                                   return_when=asyncio.FIRST_COMPLETED)
                stop_task.cancel()
                self.notifier.stopping()
                started = time.monotonic()
                await self._finish(voice_task)
                turns = self.voice.turns
                await rt.bus.drain(timeout_s=1.0)
            log.info("stopped in %.2f s", time.monotonic() - started)
            if voice_task.done() and not voice_task.cancelled() and voice_task.exception():
                raise voice_task.exception()  # type: ignore[misc]
            return turns
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self._tasks.close(0.5)
            self.notifier.close()

    async def _finish(self, voice_task: asyncio.Task[list[VoiceTurn]]) -> None:
        """Stop the voice loop: its ``finally`` cancels the turn (LLM stream, playback)."""
        if not voice_task.done():
            voice_task.cancel()
            await asyncio.wait({voice_task}, timeout=STOP_BUDGET_S / 2)
        await self._tasks.close(0.5)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        self._tasks.spawn(coro, getattr(coro, "__name__", "task"))

    async def _announce_ready(self, voice_task: asyncio.Task[list[VoiceTurn]]) -> None:
        """READY once the daemon serves (LLM, API, models) and the microphone either works
        or has failed: a missing microphone is a degraded daemon that retries (STATUS says
        so, /health too), not one that never starts (systemd would restart it in a loop)."""
        assert self.voice is not None
        word = ", ".join(self.config.wakeword.models)
        listening = asyncio.create_task(self.voice.listening.wait())
        failed = asyncio.create_task(self._device_failed.wait())
        await asyncio.wait({listening, failed, voice_task},
                           return_when=asyncio.FIRST_COMPLETED)
        if not listening.done() and not voice_task.done():
            self.notifier.ready(f"{self.voice.source.error or 'no audio yet'}; retrying, "
                                f"then listening for {word}")
            await asyncio.wait({listening, voice_task}, return_when=asyncio.FIRST_COMPLETED)
        else:
            self.notifier.ready(f"idle, listening for {word}" if listening.done()
                                else "the audio input ended")
        if listening.done():
            log.info("listening for %r", word)
            self.notifier.status(f"idle, listening for {word}")
            if self.on_listening is not None:
                self.on_listening()
        await cancel_and_wait(listening)
        await cancel_and_wait(failed)

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.notifier.status(f"{event.new} ({event.reason})" if event.reason
                                 else event.new)
        elif isinstance(event, ErrorEvent) and event.code == "audio_device":
            self._device_failed.set()
            self.notifier.status(f"{event.message}; retrying")

    def _spawn_reload(self) -> None:
        self._spawn(self.reload())

    async def reload(self) -> bool:
        """SIGHUP: read the config file again. A bad file keeps the running config."""
        self.notifier.reloading()
        try:
            new, path = await asyncio.to_thread(load_config, self.config_path)
            setup_logging(new.log, self.verbosity)  # validates log.modules too
        except ConfigError as exc:
            log.error("config reload failed, keeping the running config: %s", exc)
            self.notifier.send("READY=1", "STATUS=config reload failed, running config kept")
            return False
        except Exception as exc:  # whatever it is, the running daemon goes on serving
            log.exception("config reload failed, keeping the running config: %s: %s",
                          type(exc).__name__, exc)
            self.notifier.send("READY=1", "STATUS=config reload failed, running config kept")
            return False
        fixed = restart_needed(self.config, new)
        if fixed:
            log.warning("config reload: %s changed; these take effect after a restart",
                        ", ".join(fixed))
        if self.runtime is not None:
            self.runtime.assistant.reconfigure(new)
        self.config = new
        log.info("config reloaded from %s", path or "built-in defaults")
        self.notifier.send("READY=1", "STATUS=config reloaded")
        return True
