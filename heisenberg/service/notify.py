"""systemd's notify protocol (``Type=notify``): READY, STATUS, WATCHDOG and STOPPING.

A datagram to the unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract
namespace). Outside systemd the variable is unset and every call does nothing. The protocol is
a few lines of socket code, so no library is pulled in for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_s = int(usec) / 1e6 if watched else 0.0
        """The WatchdogSec= of the unit, in seconds; 0 when no watchdog is asked for."""
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd gone or socket full: never fatal
            log.warning("sd_notify %s failed: %s", fields[0].split("=")[0], exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading config")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping at half the watchdog interval while ``healthy()`` holds. A ping is also proof
        that the event loop is not blocked, since this coroutine runs on it."""
        if self.watchdog_s <= 0:
            return
        while True:
            if healthy():
                self.send("WATCHDOG=1")
            else:
                log.warning("watchdog: not healthy, not pinging")
            await asyncio.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
