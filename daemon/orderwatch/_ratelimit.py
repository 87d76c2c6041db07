"""The request budget: at most ``max_rps`` requests a second, spread evenly, across all tasks."""

from __future__ import annotations

import anyio

__all__ = ["RateLimiter"]


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
