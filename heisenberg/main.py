"""Wiring: config -> managed LLM server (if no URL) -> backend -> bus -> orchestrator."""

from __future__ import annotations

import contextlib
from types import TracebackType

from heisenberg.core.bus import EventBus
from heisenberg.core.config import Config
from heisenberg.llm.backends import create_backend
from heisenberg.llm.server import ManagedLlamaServer
from heisenberg.orchestrator.assistant import Assistant


class Runtime:
    """Everything one Heisenberg process runs, started and stopped together.

    ``async with Runtime(config) as rt: await rt.assistant.ask("...")``
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bus = EventBus()
        self.server: ManagedLlamaServer | None = None
        self._stack = contextlib.AsyncExitStack()
        self.assistant: Assistant

    async def __aenter__(self) -> Runtime:
        try:
            url = self.config.llm.url
            if not url:
                self.server = ManagedLlamaServer(self.config.server)
                await self._stack.enter_async_context(self.server)
                url = self.server.url
            backend = create_backend(self.config.llm, url)
            self._stack.push_async_callback(backend.close)
            self._stack.push_async_callback(self.bus.close)
            self.assistant = Assistant(self.config, self.bus, backend)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
