"""The sd_notify protocol: datagrams to ``$NOTIFY_SOCKET`` telling systemd how the daemon is.

A few lines of code instead of a dependency: ``READY=1``, ``STATUS=…``, ``WATCHDOG=1``,
``RELOADING=1``, ``STOPPING=1``. Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a
no-op. A failed send is logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Final

__all__ = ["SystemdNotifier"]

log = logging.getLogger("orderwatch")

_USEC: Final = 1_000_000


class SystemdNotifier:
    """Talks to systemd when it is listening; ``watchdog_interval`` is half of ``WatchdogSec``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@'.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / _USEC / 2
        self._last_watchdog = 0.0
        self._broken = False

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines in one datagram."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as error:
            if not self._broken:
                log.warning("systemd: cannot notify %s: %s", self._address, error.strerror)
            self._broken = True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def reloading(self) -> None:
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """``WATCHDOG=1`` if half the watchdog period has passed since the last one."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_watchdog >= self.watchdog_interval * 0.9:
            self._last_watchdog = now
            self.notify("WATCHDOG=1")
