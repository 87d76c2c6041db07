"""Pacing: the request budget (at most ``max_rps`` requests a second, spread evenly, across all
tasks), and the waits servers ask for with ``Retry-After`` (the Orders API and webhooks alike)."""

from __future__ import annotations

import email.utils
from datetime import UTC
from typing import Final

import anyio

__all__ = ["MAX_RETRY_AFTER", "RateLimiter", "retry_after"]

# A longer wait would outlast the systemd watchdog (10 min) while the poll loop waits for the
# API; webhooks get the same cap, so that one rule holds for every server.
MAX_RETRY_AFTER: Final = 300.0


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait from ``now`` (Unix time): whole
    seconds or an HTTP date (RFC 9110), at least 0 and at most :data:`MAX_RETRY_AFTER`. None
    when the header is absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT even where an obsolete form omits the zone
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)


class RateLimiter:
    """Hands out request slots ``1 / max_rps`` seconds apart, in the order they were asked for."""

    def __init__(self, max_rps: float) -> None:
        self._spacing = 1.0 / max_rps
        self._next_slot = 0.0

    async def acquire(self) -> None:
        """Wait for the next free slot. Taking it needs no lock: nothing awaits in between."""
        now = anyio.current_time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._spacing
        if slot > now:
            await anyio.sleep(slot - now)

    def hold_off(self, seconds: float) -> None:
        """Give no slot for ``seconds`` (the server asked us to wait: 429 + Retry-After)."""
        self._next_slot = max(self._next_slot, anyio.current_time() + seconds)
