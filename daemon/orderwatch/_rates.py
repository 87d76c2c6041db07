"""How fast orders leave each status, and how fast new ones arrive, learned from what
orderwatch observes. Pure: the caller passes the time.

Dwell times are modelled as exponential with a rate ``λ_s`` per status. Over the observed
history, with ``T_s`` the order-hours spent in status ``s`` (orders still in it count up to now:
censored, not dropped) and ``k_s`` the exits from it, the maximum-likelihood rate is
``k_s / T_s``. A prior of ``prior_exits`` exits in ``prior_exits / prior_rate`` hours is added to
both, so a new install starts at ``prior_rate`` for every status (every order is worth the
same: fixed-interval polling) and moves to the data as it comes. Old observations fade with a
half-life, so the rates follow a shop whose pace changes. Arrivals an hour are learned the same
way (new orders seen over hours watched), with their own, shorter half-life and a lighter
prior (they are counted over hours, not order-hours): arrivals follow the time of day.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from orderwatch._models import OPEN_STATUSES, is_final

__all__ = ["RateLearner"]

_HOUR = 3600.0


@dataclass(slots=True)
class _Tally:
    """Decayed events over decayed exposure (hours, or order-hours)."""

    events: float = 0.0
    exposure: float = 0.0

    def fade(self, factor: float) -> None:
        self.events *= factor
        self.exposure *= factor


@dataclass(slots=True)
class RateLearner:
    """Learned exit rates per status and arrivals, both per hour.

    Feed it, in time order: :meth:`advance` with the open orders per status as they were since
    the last call, then :meth:`exited` / :meth:`arrived` for what a cycle observed.
    """

    prior_rate: float = 1.0  # exits (and arrivals) an hour assumed before any data
    prior_exits: float = 2.0  # how many observed exits the prior weighs as
    half_life: float = 6 * _HOUR  # seconds after which an observed exit weighs half
    arrivals_half_life: float = 2 * _HOUR
    prior_arrival_hours: float = 0.1  # arrivals are counted over hours, not order-hours
    exits: dict[str, _Tally] = field(default_factory=dict)
    arrivals: _Tally = field(default_factory=_Tally)
    updated: float | None = None  # the time of the last :meth:`advance`

    def advance(self, now: float, open_counts: Mapping[str, int]) -> None:
        """Let time pass until ``now`` with ``open_counts`` orders in each status."""
        if self.updated is None or now <= self.updated:
            self.updated = now if self.updated is None else self.updated
            return
        elapsed = now - self.updated
        self.updated = now
        fade = 0.5 ** (elapsed / self.half_life)
        for tally in self.exits.values():
            tally.fade(fade)
        for status, count in open_counts.items():
            if count > 0 and not is_final(status):
                self.exits.setdefault(status, _Tally()).exposure += count * elapsed / _HOUR
        self.arrivals.fade(0.5 ** (elapsed / self.arrivals_half_life))
        self.arrivals.exposure += elapsed / _HOUR

    def exited(self, status: str, count: int = 1) -> None:
        """``count`` orders were seen to have left ``status``."""
        if not is_final(status):
            self.exits.setdefault(status, _Tally()).events += count

    def arrived(self, count: int) -> None:
        """``count`` new orders were seen at the head."""
        self.arrivals.events += count

    def _estimate(self, tally: _Tally | None, prior_hours: float) -> float:
        events = self.prior_rate * prior_hours + (tally.events if tally else 0.0)
        return events / (prior_hours + (tally.exposure if tally else 0.0))

    def exit_rate(self, status: str) -> float:
        """Exits an hour of one order in ``status`` (0 for a final status)."""
        if is_final(status):
            return 0.0
        return self._estimate(self.exits.get(status), self.prior_exits / self.prior_rate)

    def exit_rates(self) -> dict[str, float]:
        """Every open status seen or known, with its rate."""
        statuses = dict.fromkeys([*OPEN_STATUSES, *self.exits])
        return {status: self.exit_rate(status) for status in statuses}

    @property
    def arrival_rate(self) -> float:
        """New orders an hour at the head."""
        return self._estimate(self.arrivals, self.prior_arrival_hours)

    def to_json(self) -> dict[str, object]:
        """What :meth:`from_json` needs to go on learning after a restart."""
        return {
            "updated": self.updated,
            "exits": {s: [t.events, t.exposure] for s, t in self.exits.items()},
            "arrivals": [self.arrivals.events, self.arrivals.exposure],
        }

    def restore(self, data: Mapping[str, object]) -> None:
        """Take up what :meth:`to_json` saved; anything unreadable leaves the prior."""
        try:
            saved_exits = data["exits"]
            saved_arrivals = data["arrivals"]
            if not isinstance(saved_exits, Mapping) or not isinstance(saved_arrivals, list):
                return
            exits = {
                str(status): _Tally(float(pair[0]), float(pair[1]))
                for status, pair in saved_exits.items()
            }
            arrivals = _Tally(float(saved_arrivals[0]), float(saved_arrivals[1]))
            updated = data.get("updated")
            when = None if updated is None else float(str(updated))
        except (KeyError, TypeError, ValueError, IndexError):
            return
        tallies = [*exits.values(), arrivals]
        if not all(math.isfinite(v) and v >= 0 for t in tallies for v in (t.events, t.exposure)):
            return
        self.exits, self.arrivals, self.updated = exits, arrivals, when
