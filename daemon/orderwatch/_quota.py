"""The request budget's ledger: how many requests went to the Orders API in the last hour,
kept in a small file beside the state so that a restart does not forget them.

Requests are counted a minute at a time; the spend "in the last hour" is the sum over the
minute now and the 60 before it, so it counts the oldest minute whole and never under-counts
any hour-long window. The file is written ahead of use, a lease of requests at a time (the
lease counts as spent), so that a crash loses no request made: at most a lease is counted
that was never made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import anyio

__all__ = ["RequestLedger", "SpendWindow", "ledger_path"]

log = logging.getLogger("orderwatch")

_MINUTE: Final = 60.0
_WINDOW: Final = 61  # minutes summed: this one and the 60 before it
_LEASE: Final = 16  # requests written ahead a time


def ledger_path(state_path: Path) -> Path:
    """Where the ledger of the state file ``state_path`` lives (beside it)."""
    return state_path.with_name(state_path.name + ".budget.json")


@dataclass(slots=True)
class SpendWindow:
    """Requests counted per minute (minute number → requests). Pure."""

    minutes: dict[int, int] = field(default_factory=dict)

    def add(self, now: float, count: int = 1) -> None:
        minute = int(now // _MINUTE)
        self.minutes[minute] = self.minutes.get(minute, 0) + count
        if len(self.minutes) > _WINDOW:
            self.forget_before(now)

    def forget_before(self, now: float) -> None:
        oldest = int(now // _MINUTE) - _WINDOW + 1
        for minute in [m for m in self.minutes if m < oldest]:
            del self.minutes[minute]

    def spent(self, now: float) -> int:
        """Requests in the last hour (counting its oldest minute whole)."""
        oldest = int(now // _MINUTE) - _WINDOW + 1
        return sum(n for m, n in self.minutes.items() if m >= oldest)

    def to_json(self) -> dict[str, int]:
        return {str(m): n for m, n in self.minutes.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SpendWindow:
        minutes: dict[int, int] = {}
        for key, value in data.items():
            if key.lstrip("-").isdigit() and isinstance(value, int) and value >= 0:
                minutes[int(key)] = value
        return cls(minutes)


class RequestLedger:
    """Counts requests against ``per_hour`` and keeps the count in ``path`` (None: memory).

    A file that cannot be read starts the count afresh, with a warning; one that cannot be
    written is warned about once and the count goes on in memory.
    """

    def __init__(self, per_hour: float, path: Path | None, *, lease: int = _LEASE) -> None:
        self.per_hour = per_hour
        self._path = path
        self._lease = lease
        self._leased = 0  # requests written to the file ahead of use, not yet made
        self._lease_minute = -1  # the minute they are counted in
        self._window = SpendWindow()
        self._write_failed = False
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._window = SpendWindow.from_json(data.get("minutes", {}))
            except (OSError, ValueError, AttributeError) as error:
                log.warning("budget: cannot read %s (%s); counting afresh", path, error)

    def spent(self, now: float) -> int:
        """Requests made in the last hour (a lease written ahead counts once made). For a
        ``now`` still to come: the requests made so far that will still count then."""
        return max(0, self._window.spent(now) - self._leased)

    def remaining(self, now: float) -> float:
        """Requests the budget still allows in the hour ending ``now``."""
        return self.per_hour - self.spent(now)

    def record(self, now: float, count: int = 1) -> None:
        """``count`` requests went out at ``now``."""
        minute = int(now // _MINUTE)
        if minute != self._lease_minute:
            self._give_back()  # a lease counts in its own minute only
        if count <= self._leased:
            self._leased -= count
            return
        count -= self._leased
        self._window.add(now, count + self._lease)
        self._leased, self._lease_minute = self._lease, minute
        self._save()

    def _give_back(self) -> None:
        if self._leased and self._lease_minute in self._window.minutes:
            left = self._window.minutes[self._lease_minute] - self._leased
            self._window.minutes[self._lease_minute] = max(0, left)
        self._leased = 0

    async def acquire(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Wait until the last hour has room for one more request, then count it. ``clock``
        tells the time and ``sleep`` lets it pass (a simulation hands in its own)."""
        while self.spent(now := clock()) >= self.per_hour:
            # Room comes back when the oldest minute leaves the window.
            await sleep(_MINUTE - now % _MINUTE + 0.01)
        self.record(now)

    def close(self) -> None:
        """Give back the unused lease and write the exact count."""
        if self._leased:
            self._give_back()
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            temporary.write_text(json.dumps({"minutes": self._window.to_json()}), encoding="utf-8")
            temporary.replace(self._path)
        except OSError as error:
            if not self._write_failed:
                log.warning("budget: cannot write %s (%s); counting in memory", self._path, error)
            self._write_failed = True
            with contextlib.suppress(OSError):
                temporary.unlink()
